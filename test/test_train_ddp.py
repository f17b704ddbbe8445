"""DistributedDataParallel: two CPU processes (gloo) train a few steps and end with identical, changed weights."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from mgdepth_core.config import from_dict
from mgdepth_core.train import checkpoints
from mgdepth_core.train.config import TrainConfig
from mgdepth_core.train.distributed import shutdown
from mgdepth_core.train.trainer import Trainer

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(tmp_path) -> TrainConfig:
    return from_dict(TrainConfig, {
        "model": {"method": "manydepth", "height": 64, "width": 64, "pretrained": False, "num_depth_bins": 8},
        "data": {"dataset": "synthetic", "height": 64, "width": 64, "num_workers": 0, "synthetic_sequences": 2,
                 "synthetic_frames": 6},
        "optim": {"batch_size": 2, "epochs": 1}, "log_dir": str(tmp_path), "log_frequency": 1, "device": "cpu",
        "max_steps": 2})


def _worker(rank: int, port: int, tmp_path) -> None:
    """One torchrun-like process: the environment torchrun would set, then the ordinary Trainer."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE))
    torch.set_num_threads(1)
    trainer = Trainer(_config(tmp_path), tmp_path / "run")
    assert trainer.context.world_size == WORLD_SIZE and trainer.context.rank == rank
    torch.save(trainer.model.state_dict(), tmp_path / f"initial{rank}.pt")
    trainer.train()
    torch.save(trainer.model.state_dict(), tmp_path / f"final{rank}.pt")
    shutdown(trainer.context)


@pytest.mark.slow
def test_two_gloo_processes_hold_identical_trained_weights(tmp_path):
    mp.spawn(_worker, args=(_free_port(), tmp_path), nprocs=WORLD_SIZE, join=True)
    initial = [torch.load(tmp_path / f"initial{r}.pt") for r in range(WORLD_SIZE)]
    final = [torch.load(tmp_path / f"final{r}.pt") for r in range(WORLD_SIZE)]
    for key in final[0]:
        # DDP broadcast rank 0's initialisation (ranks are seeded differently), then every update was all-reduced.
        assert torch.equal(initial[0][key], initial[1][key]), key
        # Parameters and buffers (BatchNorm statistics, averaged depth bins) alike.
        assert torch.allclose(final[0][key].float(), final[1][key].float(), atol=1e-6), key
    changed = [key for key in final[0] if not torch.equal(initial[0][key], final[0][key])]
    assert any(key.startswith("depth.") for key in changed) and any(key.startswith("mono_encoder.") for key in changed)
    # Only rank 0 wrote the checkpoint; it carries both ranks' RNG states for an exact resume.
    state, weights = checkpoints.load_checkpoint(tmp_path / "run")
    assert state["world_size"] == WORLD_SIZE and len(state["rng"]) == WORLD_SIZE and state["step"] == 2
    assert weights.name == "weights_0"  # 8 samples, 2 ranks × batch 2: the 2 steps are one full epoch
