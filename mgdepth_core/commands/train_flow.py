"""``mgdepth train-flow``: train Manydepth2's optical flow network (RAFT) on the synthetic set's exact flow."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mgdepth_core.config import ConfigError, load_config

HELP = ("train the optical flow network (torchvision RAFT) with the synthetic set's exact flow; resumable; the "
        "result is a flow.pth for model.flow_weights")

LOG = logging.getLogger("mgdepth.train_flow")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML FlowTrainConfig (e.g. config/train_flow.yaml); default: the built-in defaults")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/flow_raft_small"),
                        help="run folder (config.yaml, flow.pth, flow_state.pt)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its last checkpoint (with its own config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config option, e.g. --set batch_size=8 (repeatable)")
    parser.add_argument("--max-steps", type=int, default=None, help="max_steps: optimisation steps in total")


def run(args: argparse.Namespace) -> int:
    from mgdepth_core.train import checkpoints
    from mgdepth_core.train.flow_training import STATE_FILE, FlowTrainConfig, FlowTrainer

    overrides = list(args.overrides) + ([f"max_steps={args.max_steps}"] if args.max_steps is not None else [])
    state = args.run_dir / STATE_FILE
    if args.resume:
        saved = args.run_dir / checkpoints.CONFIG_FILE
        if not state.is_file() or not saved.is_file():
            raise FileNotFoundError(f"--resume: {args.run_dir} holds no flow checkpoint ({STATE_FILE} and "
                                    f"{checkpoints.CONFIG_FILE} needed)")
        config = load_config(FlowTrainConfig, saved, overrides)
    else:
        if state.is_file():
            raise ConfigError(f"{args.run_dir} already holds a flow checkpoint; continue it with --resume, or "
                              f"choose another --run-dir")
        config = load_config(FlowTrainConfig, args.config, overrides)
    LOG.info("%s%s at %d×%d, %d steps → %s", "resuming " if args.resume else "", config.backend, config.width,
             config.height, config.max_steps, args.run_dir)
    trainer = FlowTrainer(config, args.run_dir, resume=args.resume)
    try:
        weights = trainer.train()
    except FloatingPointError as exc:
        print(f"mgdepth train-flow: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"mgdepth train-flow: interrupted; {exc}", file=sys.stderr)
        return 130
    LOG.info("done at step %d: %s (use it as model.flow_weights with model.flow=%s)", trainer.step, weights,
             config.backend)
    return 0
