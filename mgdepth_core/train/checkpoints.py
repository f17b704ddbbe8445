"""Run folders and atomic checkpoints.

A run folder holds::

    config.yaml                  the full TrainConfig of the run
    models/weights_{epoch}/      model weights after that epoch, official per-network layout
                                 (encoder.pth, depth.pth, mono_encoder.pth, mono_depth.pth, pose_encoder.pth, pose.pth)
    models/weights_{epoch}_{step}/  a mid-epoch checkpoint (save_every_steps, max_steps); only the newest is kept
    state.pt                     optimiser, scheduler, epoch, step, RNG states, frozen flag and the name of the
                                 weights folder they belong to; tensors and plain values only (format 2), so it
                                 loads with ``torch.load(weights_only=True)`` and a crafted file cannot run code
    events.out.tfevents.*        TensorBoard logs

Every file and folder is written under a temporary name and moved into place with ``os.replace``, and
``state.pt`` is replaced only after its weights folder is complete, so an interrupted save never leaves a
checkpoint that points at half-written weights. A folder is renamed to a temporary name before it is deleted, so
none is ever seen half-deleted. What a killed process leaves under temporary names (``.*.tmp`` files,
``models/.weights_*`` folders) is removed when training starts again (:func:`remove_stale_temporaries`).

Format 1 ``state.pt`` files (before format 2) pickled Python's and NumPy's RNG states as objects and can only be read
by the full unpickler, which runs whatever code a file names. They are refused; :func:`convert_legacy_state`
(``mgdepth train --resume RUN --trust-legacy-checkpoint``) rewrites a trusted one once, keeping it as
``state.format1.pt``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgdepth_core.torch_files import UnsafeTorchFileError, atomic_torch_save, load_weights_only

LOG = logging.getLogger(__name__)

STATE_FILE = "state.pt"
LEGACY_STATE_FILE = "state.format1.pt"
CONFIG_FILE = "config.yaml"
STATE_FORMAT = 2
TRUST_FLAG = "--trust-legacy-checkpoint"
_STEP_FOLDER = re.compile(r"^weights_\d+_\d+$")


def _python_rng(state: tuple) -> list:
    """``random.getstate()`` as [version, [624 + 1 ints], gauss_next]: plain values only."""
    version, internal, gauss_next = state
    return [int(version), [int(value) for value in internal], gauss_next]


def _numpy_rng(state: tuple) -> dict[str, Any]:
    """``np.random.get_state()`` (legacy tuple) as a dict of a str, an int64 tensor and plain numbers."""
    name, keys, position, has_gauss, cached_gaussian = state
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(position),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}


def rng_state() -> dict[str, Any]:
    """The state of every random number generator a training step draws from (Python, NumPy, torch, CUDA), as
    tensors and plain values."""
    state = {"python": _python_rng(random.getstate()), "numpy": _numpy_rng(np.random.get_state()),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generators saved by :func:`rng_state`."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _remove_folder(folder: Path) -> None:
    """Rename ``folder`` to a temporary name, then delete it."""
    hidden = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    os.replace(folder, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def remove_stale_temporaries(run_dir: Path) -> list[str]:
    """Delete what interrupted saves left in ``run_dir``: temporary files (``.*.tmp``) and temporary or
    half-deleted weights folders (``models/.weights_*``). Only while no other process writes to the run folder (the
    trainer calls it on start). Returns the names removed."""
    run_dir = Path(run_dir)
    stale = [*run_dir.glob(".*.tmp"), *(run_dir / "models").glob(".weights_*")]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return [str(path.relative_to(run_dir)) for path in stale]


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
            _remove_folder(folder)
    return final


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / STATE_FILE).is_file()


def _legacy_refusal(state_path: Path) -> str:
    return (f"resume: {state_path} was refused: it holds pickled Python objects, which only the unsafe unpickler "
            f"reads and which could run code from the file. A state.pt written by mgdepth before checkpoint format "
            f"{STATE_FORMAT} looks like this; if you wrote it yourself, convert it once with `mgdepth train --resume "
            f"{state_path.parent} {TRUST_FLAG}` (the old file is kept as {LEGACY_STATE_FILE}). Never pass that flag "
            f"for a file from elsewhere")


def load_checkpoint(run_dir: Path) -> tuple[dict[str, Any], Path]:
    """(state, weights folder) of the newest checkpoint in ``run_dir``; a clear error when there is none, when it
    is unreadable and when it is not format 2 (``state.pt`` is read weights-only, so it never runs code)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"resume: run folder {run_dir} does not exist")
    state_path = run_dir / STATE_FILE
    if not state_path.is_file():
        raise FileNotFoundError(f"resume: {run_dir} holds no checkpoint ({STATE_FILE} missing); "
                                f"nothing to resume, start a new run instead")
    try:
        state = load_weights_only(state_path, "training state")
    except UnsafeTorchFileError as error:
        raise UnsafeTorchFileError(_legacy_refusal(state_path)) from error
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"resume: {state_path} has format {found!r}, expected {STATE_FORMAT}")
    weights = run_dir / "models" / str(state["weights"])
    if not weights.is_dir():
        raise FileNotFoundError(f"resume: {state_path} refers to {weights}, which does not exist")
    return state, weights


def convert_legacy_state(run_dir: Path) -> bool:
    """Rewrite a trusted format-1 ``state.pt`` of ``run_dir`` in format 2; False when it already is format 2.

    This is the one place that unpickles with ``weights_only=False``. The old file is copied to
    ``state.format1.pt`` before ``state.pt`` is replaced atomically, so an interruption leaves a usable run.
    """
    state_path = Path(run_dir) / STATE_FILE
    try:
        load_weights_only(state_path, "training state")
        return False
    except UnsafeTorchFileError:
        pass
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != 1:
        raise ValueError(f"resume: {state_path} is not a format-1 mgdepth training state; not converted")
    legacy = state_path.with_name(LEGACY_STATE_FILE)
    tmp = legacy.with_name(f".{legacy.name}.{os.getpid()}.tmp")
    shutil.copy2(state_path, tmp)
    os.replace(tmp, legacy)
    rng = [{**ranks, "python": _python_rng(ranks["python"]), "numpy": _numpy_rng(ranks["numpy"])}
           for ranks in state["rng"]]
    atomic_torch_save({**state, "rng": rng, "format": STATE_FORMAT}, state_path)
    LOG.info("converted %s to checkpoint format %d; the format-1 file is kept as %s", state_path, STATE_FORMAT, legacy)
    return True
