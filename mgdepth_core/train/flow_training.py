"""Supervised optical-flow training for Manydepth2's flow network (RAFT through torchvision).

No GMFlow or RAFT weights can be downloaded on every machine, and a flow network with random weights says nothing,
so ``mgdepth train-flow`` trains RAFT on a set with exact flow: the synthetic dynamic-scene set (camera motion and
the objects' own motion, current frame → previous frame, the pair Manydepth2 uses). The loss is RAFT's sequence
loss (L1 of every refinement, weighted γ^(N−1−i)), AdamW with warm-up and linear decay, gradients clipped at 1.

A run folder holds ``config.yaml``, ``flow.pth`` (the network's plain state dict: ``model.flow_weights`` /
``FlowEstimator(weights=...)`` load it) and ``flow_state.pt`` (weights, optimiser, schedule, step, torch RNG),
both written atomically; ``state`` loads with ``torch.load(weights_only=True)``. The sample order depends only on
the seed and the step, so a resumed run draws what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import default_collate
from tqdm import tqdm

from mgdepth_core.config import option, save_config
from mgdepth_core.data.synthetic import SyntheticDynamicDataset
from mgdepth_core.models.flow import FlowEstimator
from mgdepth_core.torch_files import atomic_torch_save, load_weights_only
from mgdepth_core.train import checkpoints

LOG = logging.getLogger("mgdepth.train_flow")
STATE_FILE = "flow_state.pt"
WEIGHTS_FILE = "flow.pth"


@dataclass
class FlowTrainConfig:
    """One flow-training run (saved as ``config.yaml`` in the run folder)."""

    backend: Literal["raft_small", "raft_large"] = option("raft_small", "torchvision RAFT variant to train")
    init_weights: str = option("", "start from this checkpoint (e.g. torchvision's RAFT file); empty = random")
    height: int = option(96, "training image height, pixels")
    width: int = option(320, "training image width, pixels")
    synthetic_seed: int = option(0, "first training sequence's seed (held-out test seeds start at 2000)")
    synthetic_sequences: int = option(8, "training sequences, one seed each")
    synthetic_frames: int = option(30, "frames per sequence")
    augment: bool = option(True, "horizontal flip and colour jitter (one draw per pair; the flow is flipped too)")
    batch_size: int = option(4, "pairs per step")
    learning_rate: float = option(4e-4, "peak AdamW learning rate (after 5 % warm-up, decays linearly)")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    num_flow_updates: int = option(8, "RAFT refinements per forward pass during training")
    gamma: float = option(0.8, "sequence loss: weight of refinement i is gamma^(N - 1 - i)")
    max_steps: int = option(2000, "optimisation steps (the learning rate decays towards this step)")
    save_every_steps: int = option(100, "checkpoint every N steps (and at the end or on Ctrl-C)")
    seed: int = option(1, "random seed (initial weights, sample order, augmentation)")
    threads: int = option(0, "torch CPU threads; 0 = torch's default")
    device: str = option("cpu", "cpu, cuda or cuda:N")


def sequence_loss(predictions: list[torch.Tensor], target: torch.Tensor, gamma: float) -> torch.Tensor:
    """RAFT's loss: Σ_i γ^(N−1−i)·mean |flow_i − target|₁ over every pixel. ``predictions``: N × B×2×H×W;
    ``target``: B×2×H×W pixels."""
    count = len(predictions)
    return sum(gamma ** (count - 1 - i) * (flow - target).abs().mean() for i, flow in enumerate(predictions))


def endpoint_errors(flow: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel end-point error |flow − target|₂, B×1×H×W pixels."""
    return (flow - target).norm(dim=1, keepdim=True)


class FlowTrainer:
    """Trains ``config.backend`` on synthetic pairs; ``train()`` runs to ``max_steps`` from where the run folder
    stopped (``resume=True``) or from scratch."""

    def __init__(self, config: FlowTrainConfig, run_dir: str | Path, resume: bool = False):
        self.config, self.run_dir = config, Path(run_dir)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.device = torch.device(config.device)
        self.estimator = FlowEstimator(config.backend, config.init_weights or None, config.num_flow_updates,
                                       search_cache=False).to(self.device)
        self.net = self.estimator.net
        self.net.requires_grad_(True)
        self.dataset = SyntheticDynamicDataset(
            [config.synthetic_seed + i for i in range(config.synthetic_sequences)], config.synthetic_frames,
            config.height, config.width, [0, -1], augment=config.augment, with_flow=True)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.learning_rate_factor)
        self.step = 0
        if resume:
            self._load()

    def learning_rate_factor(self, step: int) -> float:
        """Linear warm-up over the first 5 % of the steps, then linear decay to 5 % at ``max_steps`` (a resumed run
        with more steps stretches the decay)."""
        warmup = max(1, self.config.max_steps // 20)
        return min(1.0, (step + 1) / warmup) * max(0.05, 1.0 - step / self.config.max_steps)

    def _load(self) -> None:
        path = self.run_dir / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"resume: {self.run_dir} holds no flow checkpoint ({STATE_FILE} missing)")
        state = load_weights_only(path, "flow training state")
        if state.get("backend") != self.config.backend:
            raise ValueError(f"resume: {path} holds a {state.get('backend')} run, the config asks for "
                             f"{self.config.backend}")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        LOG.info("resuming %s at step %d", self.run_dir, self.step)

    def save(self) -> Path:
        """``flow.pth`` (plain state dict) and ``flow_state.pt``, each atomic; returns the weights file."""
        model = {key: value.detach().cpu() for key, value in self.net.state_dict().items()}
        atomic_torch_save(model, self.run_dir / WEIGHTS_FILE)
        atomic_torch_save({"backend": self.config.backend, "model": model, "step": self.step,
                                       "optimizer": self.optimizer.state_dict(),
                                       "scheduler": self.scheduler.state_dict(),
                                       "torch_rng": torch.get_rng_state()}, self.run_dir / STATE_FILE)
        return self.run_dir / WEIGHTS_FILE

    def batch(self, step: int) -> dict:
        """The pairs of optimisation ``step``: drawn from a generator seeded by (seed, step)."""
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        indices = torch.randint(len(self.dataset), (self.config.batch_size,), generator=generator).tolist()
        return default_collate([self.dataset[i] for i in indices])

    def train(self, on_step: Callable[[int], None] | None = None) -> Path:
        """Train to ``max_steps``; Ctrl-C / SIGTERM finish the step, save and raise KeyboardInterrupt.
        ``on_step(step)`` is called after every step; with it the caller shows progress (no bar here)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.config, self.run_dir / checkpoints.CONFIG_FILE)
        stop = threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda *_: stop.set())
        self.net.train()
        bar = tqdm(total=self.config.max_steps, initial=self.step, desc="train-flow", unit="step",
                   dynamic_ncols=True, disable=on_step is not None)
        try:
            while self.step < self.config.max_steps and not stop.is_set():
                inputs = self.batch(self.step)
                image, previous_image = (inputs["color_aug"][f].to(self.device) for f in (0, -1))
                target = inputs["flow_gt"][-1].to(self.device)
                predictions = self.estimator.flow_predictions(image, previous_image)
                loss = sequence_loss(predictions, target, self.config.gamma)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"train-flow: loss is {loss.item()} at step {self.step}; the last "
                                             f"checkpoint in {self.run_dir} is intact")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                epe = endpoint_errors(predictions[-1].detach(), target).mean().item()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", epe=f"{epe:.2f}")
                if on_step is not None:
                    on_step(self.step)
                if self.step % self.config.save_every_steps == 0:
                    self.save()
            weights = self.save()
        finally:
            bar.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.net.eval()
        if stop.is_set():
            raise KeyboardInterrupt(f"stopped at step {self.step}; continue with --resume {self.run_dir}")
        return weights
