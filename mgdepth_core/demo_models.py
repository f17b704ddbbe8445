"""The demo's models, built once and cached: an optical flow network, Manydepth2 with it, and Manydepth.

``make demo`` trains what it needs on the built-in synthetic dynamic street scenes from random initialisation (no
pretrained weights reach this machine) and keeps each model in the XDG cache, ``$XDG_CACHE_HOME/mgdepth/models``
(default ``~/.cache/mgdepth/models``), in a folder keyed by the model's training config and the package version:

    flow-<key>/flow.pth              RAFT-small trained on exact synthetic flow (the ``mgdepth train-flow`` recipe)
    manydepth2-<key>/weights/        a weights folder (with its flow.pth) for DepthEstimator and the node
    manydepth-<key>/weights/
    <each>/complete.json             sha256 of every file, the config, steps and seconds; written last

A folder without ``complete.json``, or whose files do not match it, is rebuilt, never loaded. Training runs in
``<name>-<key>.building/`` (checkpoints there: an interrupted build resumes), and the finished model is copied
into a staging folder that is renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from mgdepth_core import __version__
from mgdepth_core.config import option, to_dict
from mgdepth_core.download import sha256_of

LOG = logging.getLogger("mgdepth.demo_models")
MARKER = "complete.json"
METHODS = ("manydepth2", "manydepth")
# CPU seconds per training sample measured on a 2-core machine at 64×192 (flow 0.79 s, Manydepth 1.48 s, Manydepth2
# 2.58 s per step of 4): the weights of the build's progress bar, so that its ETA covers the models still to come.
SAMPLE_COST = {"flow": 0.2, "manydepth": 0.37, "manydepth2": 0.65}
CHECKPOINT_MIN_STEPS = 25  # checkpoints (for resuming a build) every sixth of a run, at least this many steps apart


@dataclass
class DemoModelsConfig:
    """What ``make demo`` trains (config/demo.yaml); every field enters the cache key."""

    height: int = option(64, "training and inference height, pixels (multiple of 32)")
    width: int = option(192, "training and inference width, pixels (multiple of 32)")
    flow_steps: int = option(170, "optical flow network (RAFT-small) training steps")
    depth_steps: int = option(270, "training steps of Manydepth and of Manydepth2 each")
    automask_warmup_steps: int = option(150, "depth training: teacher loss without auto-masking for the first N "
                                             "steps (from random weights; docs/training.md, the cold start)")
    flow_batch_size: int = option(4, "flow network training batch size, pairs")
    batch_size: int = option(2, "depth training batch size, samples")
    num_depth_bins: int = option(32, "cost-volume depth bins")
    synthetic_sequences: int = option(8, "training sequences of the synthetic set (seeds 0..N-1; the demo's "
                                         "sequence is a held-out seed)")
    synthetic_frames: int = option(30, "frames per training sequence")
    seed: int = option(1, "training seed of every model")
    methods: list[str] = option(["manydepth2", "manydepth"], "depth models to build: manydepth2 (with the flow "
                                                              "network) and/or manydepth")


@dataclass
class CachedModel:
    """A finished model in the cache: ``path`` is what loads it (a weights folder, or flow.pth)."""

    name: str
    folder: Path
    path: Path
    built: bool  # trained by this call (False: taken from the cache)
    record: dict


@dataclass
class PlannedModel:
    """A model the builder needs: its training config (FlowTrainConfig or TrainConfig) and cache key."""

    name: str
    config: object
    key: str


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/mgdepth/models``, ``~/.cache/mgdepth/models`` when XDG_CACHE_HOME is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mgdepth" / "models"


def flow_config(demo: DemoModelsConfig):
    """The flow network's FlowTrainConfig: ``mgdepth train-flow``'s recipe at the demo's size and budget."""
    from mgdepth_core.train.flow_training import FlowTrainConfig

    return FlowTrainConfig(backend="raft_small", height=demo.height, width=demo.width, synthetic_seed=0,
                           synthetic_sequences=demo.synthetic_sequences, synthetic_frames=demo.synthetic_frames,
                           batch_size=demo.flow_batch_size, max_steps=demo.flow_steps, seed=demo.seed, device="cpu",
                           save_every_steps=max(demo.flow_steps // 6, CHECKPOINT_MIN_STEPS))


def depth_config(demo: DemoModelsConfig, method: str, flow_weights: str = ""):
    """TrainConfig of ``method`` (the recipe of issue 12's claim: pose net, auto-masking warm-up, no augmentation);
    Manydepth2 uses RAFT-small with ``flow_weights``."""
    from mgdepth_core.data import DataConfig
    from mgdepth_core.models import ModelConfig
    from mgdepth_core.train.config import LossConfig, OptimConfig, TrainConfig

    flow = {"flow": "raft_small", "flow_weights": flow_weights} if method == "manydepth2" else {"flow": "none"}
    model = ModelConfig(method=method, height=demo.height, width=demo.width, pretrained=False,
                        num_depth_bins=demo.num_depth_bins, flow_start_epoch=0, **flow)
    data = DataConfig(dataset="synthetic", height=demo.height, width=demo.width, frame_ids=[0, -1, 1],
                      augment=False, synthetic_seed=0, synthetic_sequences=demo.synthetic_sequences,
                      synthetic_frames=demo.synthetic_frames, num_workers=0)
    return TrainConfig(model=model, data=data,
                       optim=OptimConfig(batch_size=demo.batch_size, epochs=1000, freeze_teacher_epoch=-1),
                       losses=LossConfig(automask_warmup_steps=demo.automask_warmup_steps),
                       max_steps=demo.depth_steps,
                       save_every_steps=max(demo.depth_steps // 6, CHECKPOINT_MIN_STEPS),
                       seed=demo.seed, log_frequency=10 ** 9, save_frequency=10 ** 6, device="cpu")


def model_key(name: str, config, depends_on: tuple[str, ...] = ()) -> str:
    """12 hex digits of sha256 over the model's training config, the keys it depends on and the package version."""
    payload = json.dumps({"name": name, "config": to_dict(config), "depends_on": list(depends_on),
                          "version": __version__}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER)


def check_complete(folder: Path) -> str | None:
    """Why the cached model in ``folder`` cannot be used (missing, no marker, a file missing, added or changed),
    or None when every file matches ``complete.json``."""
    if not folder.is_dir():
        return "not built"
    try:
        record = json.loads((folder / MARKER).read_text())
        expected = record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MARKER} (the build did not finish)"
    present = {str(p.relative_to(folder)): p for p in _files(folder)}
    if set(present) != set(expected):
        return f"files differ from {MARKER}: {sorted(set(present) ^ set(expected))[:3]}"
    for name, path in present.items():
        if sha256_of(path) != expected[name]:
            return f"{name} does not match its checksum (corrupt or changed)"
    return None


def _publish(staging: Path, final: Path, record: dict) -> None:
    """Write ``complete.json`` (checksums of every staged file) last, then rename the staging folder into place."""
    record = {**record, "files": {str(p.relative_to(staging)): sha256_of(p) for p in _files(staging)}}
    marker = staging / (MARKER + ".tmp")
    marker.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(marker, staging / MARKER)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


class ModelBuilder:
    """Builds (or finds) the demo's models in ``root``; ``retrain`` rebuilds even complete ones. One progress bar
    with an ETA covers every model still to train."""

    def __init__(self, demo: DemoModelsConfig, root: Path | None = None, retrain: bool = False,
                 log: Callable[[str], None] = print):
        unknown = [m for m in demo.methods if m not in METHODS]
        if unknown or not demo.methods:
            raise ValueError(f"demo methods must be among {METHODS}, got {demo.methods}")
        self.demo, self.root, self.retrain, self.log = demo, root or cache_root(), retrain, log
        flow = flow_config(demo)
        self.plan: list[PlannedModel] = []  # in build order
        if "manydepth2" in demo.methods:
            flow_key = model_key("flow", flow)
            self.plan.append(PlannedModel("flow", flow, flow_key))
            flow_path = self.root / f"flow-{flow_key}" / "flow.pth"
            md2 = depth_config(demo, "manydepth2", str(flow_path))
            key_config = replace(md2, model=replace(md2.model, flow_weights=f"flow-{flow_key}"))  # not the path
            self.plan.append(PlannedModel("manydepth2", md2, model_key("manydepth2", key_config, (flow_key,))))
        if "manydepth" in demo.methods:
            md = depth_config(demo, "manydepth")
            self.plan.append(PlannedModel("manydepth", md, model_key("manydepth", md)))

    def folder(self, planned: PlannedModel) -> Path:
        return self.root / f"{planned.name}-{planned.key}"

    def build(self) -> dict[str, CachedModel]:
        """Every model of the plan, from the cache where complete (and not ``retrain``), else trained now."""
        todo = []
        for planned in self.plan:
            folder = self.folder(planned)
            problem = "--retrain" if self.retrain else check_complete(folder)
            if problem is not None:
                if problem != "not built":
                    self.log(f"[demo] cached {planned.name} model {folder} is not usable ({problem}): rebuilding it")
                todo.append(planned)
        if todo:
            self.log(f"[demo] training {', '.join(p.name for p in todo)} from random initialisation on synthetic "
                     f"street scenes (CPU); models are cached in {self.root}")
        total = sum(self._cost(p) * p.config.max_steps for p in todo)
        models: dict[str, CachedModel] = {}
        with tqdm(total=round(total), desc="building models", dynamic_ncols=True, disable=not todo,
                  bar_format="{l_bar}{bar}| [{elapsed}<{remaining}{postfix}]") as bar:
            done = 0.0
            for planned in self.plan:
                folder = self.folder(planned)
                built = planned in todo
                if built:
                    def advance(step: int, planned=planned, base=done) -> None:
                        bar.n = round(base + self._cost(planned) * step)
                        bar.set_postfix_str(f"{planned.name} step {step}/{planned.config.max_steps}")
                    seconds = self._train(planned, advance)
                    done += self._cost(planned) * planned.config.max_steps
                    self.log(f"[demo] {planned.name}: {planned.config.max_steps} steps in {seconds:.0f} s -> {folder}")
                record = json.loads((folder / MARKER).read_text())
                path = folder / ("flow.pth" if planned.name == "flow" else "weights")
                models[planned.name] = CachedModel(planned.name, folder, path, built, record)
        return models

    @staticmethod
    def _cost(planned: PlannedModel) -> float:
        """Expected seconds per training step of ``planned`` (its batch × SAMPLE_COST)."""
        config = planned.config
        batch = config.batch_size if planned.name == "flow" else config.optim.batch_size
        return SAMPLE_COST[planned.name] * batch

    def _train(self, planned: PlannedModel, on_step: Callable[[int], None]) -> float:
        """Train one model in its ``.building`` folder (resuming a checkpoint there) and publish it; seconds."""
        name, config = planned.name, planned.config
        final = self.folder(planned)
        building = final.with_name(final.name + ".building")
        staging = final.with_name(final.name + ".staging")
        if self.retrain and building.exists():
            shutil.rmtree(building)
        run_dir = building / "run"
        started = time.monotonic()
        if name == "flow":
            from mgdepth_core.train.flow_training import STATE_FILE, FlowTrainer

            trainer = FlowTrainer(config, run_dir, resume=(run_dir / STATE_FILE).is_file())
            weights = trainer.train(on_step)
        else:
            from mgdepth_core.train import checkpoints
            from mgdepth_core.train.trainer import Trainer

            trainer = Trainer(config, run_dir, resume=checkpoints.has_checkpoint(run_dir))
            weights = trainer.train(on_step)
        seconds = time.monotonic() - started
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        if name == "flow":
            shutil.copy2(weights, staging / "flow.pth")
        else:
            shutil.copytree(weights, staging / "weights")
        _publish(staging, final, {"name": name, "key": planned.key, "version": __version__, "steps": trainer.step,
                                  "train_seconds": round(seconds, 1), "threads": torch.get_num_threads(),
                                  "initialisation": "random (no pretrained weights)", "config": to_dict(config)})
        shutil.rmtree(building)
        return seconds
