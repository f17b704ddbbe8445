"""Run folders and atomic checkpoints.

A run folder holds::

    config.yaml                  the full TrainConfig of the run
    models/weights_{epoch}/      model weights after that epoch, official per-network layout
                                 (encoder.pth, depth.pth, mono_encoder.pth, mono_depth.pth, pose_encoder.pth, pose.pth)
    models/weights_{epoch}_{step}/  a mid-epoch checkpoint (save_every_steps, max_steps); only the newest is kept
    state.pt                     optimiser, scheduler, epoch, step, RNG states, frozen flag and the name of the
                                 weights folder they belong to
    events.out.tfevents.*        TensorBoard logs

Every file and folder is written under a temporary name and moved into place with ``os.replace``, and
``state.pt`` is replaced only after its weights folder is complete, so an interrupted save never leaves a
checkpoint that points at half-written weights.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgdepth_core.config import save_config

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
STATE_FORMAT = 1
_STEP_FOLDER = re.compile(r"^weights_\d+_\d+$")


def rng_state() -> dict[str, Any]:
    """The state of every random number generator a training step draws from (Python, NumPy, torch, CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generators saved by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, fsync, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_config(config: Any, path: Path) -> None:
    """:func:`mgdepth_core.config.save_config` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_config(config, tmp)
    os.replace(tmp, path)


def _replace_folder(tmp: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)


def save_checkpoint(run_dir: Path, model: torch.nn.Module, weights_name: str, state: dict[str, Any]) -> Path:
    """Write ``models/<weights_name>`` (official layout) and then ``state.pt`` pointing at it.

    ``state`` holds the optimiser/scheduler state dicts, counters, frozen flag and RNG states. Older mid-epoch
    folders are removed once the new checkpoint is in place. Returns the weights folder.
    """
    from mgdepth_core.models.weights import save_weights

    models_dir = run_dir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / weights_name
    tmp = Path(tempfile.mkdtemp(prefix=f".{weights_name}.", dir=models_dir))
    try:
        save_weights(model, tmp)
        _replace_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_torch_save({**state, "weights": weights_name, "format": STATE_FORMAT}, run_dir / STATE_FILE)
    for folder in models_dir.iterdir():
        if folder.name != weights_name and _STEP_FOLDER.match(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
    return final


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / STATE_FILE).is_file()


def load_checkpoint(run_dir: Path) -> tuple[dict[str, Any], Path]:
    """(state, weights folder) of the newest checkpoint in ``run_dir``; a clear error when there is none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"resume: run folder {run_dir} does not exist")
    state_path = run_dir / STATE_FILE
    if not state_path.is_file():
        raise FileNotFoundError(f"resume: {run_dir} holds no checkpoint ({STATE_FILE} missing); "
                                f"nothing to resume, start a new run instead")
    # Our own file: it holds Python/NumPy RNG states, which the weights-only unpickler refuses.
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"resume: {state_path} has format {state.get('format')!r}, expected {STATE_FORMAT}")
    weights = run_dir / "models" / state["weights"]
    if not weights.is_dir():
        raise FileNotFoundError(f"resume: {state_path} refers to {weights}, which does not exist")
    return state, weights
