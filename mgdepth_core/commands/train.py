"""``mgdepth train``: train Manydepth or Manydepth2 from a YAML config; resumable; DDP under torchrun."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mgdepth_core.commands._bag_options import add_bag_input_arguments, bag_overrides
from mgdepth_core.config import ConfigError, load_config

HELP = "train Manydepth or Manydepth2 (self-supervised, multi-frame) from a config file; resumable, DDP-ready"

LOG = logging.getLogger("mgdepth.train")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=["manydepth", "manydepth2"], default=None,
                        help="model.method; default: the config's")
    parser.add_argument("--dynamic-objects", choices=["none", "dyna-dm"], default=None,
                        help="dynamic_objects: dyna-dm = Dyna-DM object motion for truly dynamic objects (needs "
                             "instance masks: data.masks_path or the synthetic set); default: the config's")
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML TrainConfig (e.g. config/train_kitti_manydepth2.yaml); with --resume RUN_DIR "
                             "the run's own config.yaml is used instead")
    parser.add_argument("--data", default=None, help="data.path: root folder of the data set (or bag)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR|auto",
                        help="continue a run exactly where it stopped: a run folder, or 'auto' = the config's run "
                             "folder if it holds a checkpoint (else start there). state.pt is read weights-only "
                             "(tensors and plain values), so a crafted file cannot run code; a format-1 state.pt "
                             "from an older mgdepth is refused")
    parser.add_argument("--trust-legacy-checkpoint", action="store_true",
                        help="with --resume: convert the run's format-1 state.pt (pickled, unsafe: loading runs "
                             "code from the file) once to format 2, keeping it as state.format1.pt; only for a "
                             "file you wrote yourself")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config option, e.g. --set optim.batch_size=8 (repeatable)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N optimisation steps in total")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="run folder for a new run; default: log_dir/run_name (or log_dir/<method>_<dataset>)")
    add_bag_input_arguments(parser)


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = bag_overrides(args) + list(args.overrides)
    if args.method:
        overrides.append(f"model.method={args.method}")
    if args.dynamic_objects:
        overrides.append(f"dynamic_objects={args.dynamic_objects}")
    if args.data is not None:
        overrides.append(f"data.path={args.data}")
    if args.max_steps is not None:
        overrides.append(f"max_steps={args.max_steps}")
    return overrides


def resolve_run(args: argparse.Namespace):
    """(TrainConfig, run folder, resume?) from the command line; clear errors for every bad combination."""
    from mgdepth_core.train import checkpoints
    from mgdepth_core.train.config import TrainConfig
    from mgdepth_core.train.trainer import default_run_dir

    overrides = _overrides(args)
    if args.resume not in (None, "auto"):
        run_dir = Path(args.resume)
        saved = run_dir / checkpoints.CONFIG_FILE
        if not checkpoints.has_checkpoint(run_dir):
            raise FileNotFoundError(f"--resume {run_dir}: no checkpoint there ({checkpoints.STATE_FILE} missing)")
        if not saved.is_file():
            raise FileNotFoundError(f"--resume {run_dir}: {saved} is missing")
        config = load_config(TrainConfig, saved, overrides)
        return config, run_dir, True
    if args.config is None:
        raise ConfigError("--config FILE is required (or --resume RUN_DIR)")
    config = load_config(TrainConfig, args.config, overrides)
    run_dir = args.run_dir or default_run_dir(config)
    if args.resume == "auto":
        return config, run_dir, checkpoints.has_checkpoint(run_dir)
    if checkpoints.has_checkpoint(run_dir):
        raise ConfigError(f"{run_dir} already holds a checkpoint; continue it with --resume {run_dir} (or --resume "
                          f"auto), or choose another run folder (--run-dir or --set run_name=...)")
    return config, run_dir, False


def run(args: argparse.Namespace) -> int:
    from mgdepth_core.train import checkpoints
    from mgdepth_core.train.distributed import barrier, init_distributed, shutdown
    from mgdepth_core.train.trainer import Trainer, TrainingDivergedError, describe

    config, run_dir, resume = resolve_run(args)
    if args.trust_legacy_checkpoint and not resume:
        raise ConfigError(f"{checkpoints.TRUST_FLAG} converts the checkpoint of a run being resumed; it needs "
                          f"--resume RUN_DIR (or --resume auto with a checkpoint there)")
    context = init_distributed(config.device)
    try:
        if args.trust_legacy_checkpoint:
            if context.is_main:
                checkpoints.convert_legacy_state(run_dir)
            barrier(context)
        if context.is_main:
            LOG.info("%s%s → %s", "resuming " if resume else "", describe(config), run_dir)
        trainer = Trainer(config, run_dir, resume=resume, context=context)
        last = trainer.train()
    except TrainingDivergedError as exc:
        print(f"mgdepth train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"mgdepth train: interrupted; {exc}" if str(exc) else "mgdepth train: interrupted", file=sys.stderr)
        return 130
    finally:
        shutdown(context)
    if context.is_main:
        LOG.info("done at epoch %d, step %d; last checkpoint %s", trainer.epoch, trainer.step, last)
    return 0
