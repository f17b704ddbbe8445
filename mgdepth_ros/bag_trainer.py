"""``ros2 run mgdepth_ros bag_trainer``: ``mgdepth train --bag`` as a ROS 2 entry point.

Either ROS parameters or plain command-line arguments (the same flags as ``mgdepth train``; they win over
parameters)::

    ros2 run mgdepth_ros bag_trainer --ros-args -p bag:=/data/run1 -p image_topic:=/camera/image_raw \\
        -p config:=config/train_bag.yaml -p set:="['optim.batch_size=4']"
    ros2 run mgdepth_ros bag_trainer --bag /data/run1 --image-topic /camera/image_raw --config config/train_bag.yaml

The node declares its parameters (``ros2 param describe``), forwards the trainer's log messages to the ROS logger,
reports progress there every ``progress_period_s``, and runs the same :class:`~mgdepth_core.train.trainer.Trainer`
as ``mgdepth train`` (resumable with ``resume:=auto`` or a run folder). Training runs in the main thread; Ctrl-C
or SIGTERM lets the Trainer finish its step and write a checkpoint before the node exits.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

from mgdepth_core.commands import train as train_command
from mgdepth_core.config import ConfigError

# parameter name → (default, description, argparse destination of the same option of ``mgdepth train``)
PARAMETERS: dict[str, tuple[object, str, str]] = {
    "bag": ("", "rosbag2 folder (sqlite3 or MCAP) to train on", "bag"),
    "image_topic": ("", "camera topic: sensor_msgs/Image or sensor_msgs/CompressedImage (JPEG/PNG)", "image_topic"),
    "camera_info_topic": ("", "CameraInfo topic paired by header stamp; empty = the image topic's sibling "
                              "camera_info", "camera_info_topic"),
    "intrinsics": ("", "YAML/JSON intrinsics file for a bag without camera_info", "intrinsics"),
    "config": ("", "training config YAML (e.g. config/train_bag.yaml)", "config"),
    "method": ("", "manydepth2 or manydepth; empty = the config's", "method"),
    "dynamic_objects": ("", "none or dyna-dm (needs instance masks); empty = the config's", "dynamic_objects"),
    "run_dir": ("", "run folder for a new run; empty = log_dir/run_name", "run_dir"),
    "resume": ("", "a run folder to continue, or 'auto'; empty = new run", "resume"),
    "max_steps": (0, "stop after this many optimisation steps in total; 0 = the config's", "max_steps"),
    "max_gap_s": (0.0, "largest stamp gap inside one sample, seconds; 0 = the config's", "max_gap"),
    "camera_info_tolerance_s": (0.0, "largest frame/camera_info stamp difference, seconds; 0 = the config's",
                                "camera_info_tolerance"),
}
PATH_OPTIONS = {"config", "run_dir"}


class RosLogHandler(logging.Handler):
    """Forwards Python log records (the trainer's and the data loaders') to a ROS logger."""

    def __init__(self, ros_logger) -> None:
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        message = f"{record.name}: {record.getMessage()}"
        if record.levelno >= logging.ERROR:
            self.ros_logger.error(message)
        elif record.levelno >= logging.WARNING:
            self.ros_logger.warning(message)
        elif record.levelno >= logging.INFO:
            self.ros_logger.info(message)
        else:
            self.ros_logger.debug(message)


class BagTrainer(Node):
    """Holds the parameters and the logger of a bag training run."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("mgdepth_bag_trainer", **node_kwargs)
        for name, (default, description, _) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description, read_only=True))
        self.declare_parameter("set", Parameter.Type.STRING_ARRAY, ParameterDescriptor(
            description="config overrides KEY=VALUE, e.g. ['optim.batch_size=4'] (after the command line's --set)",
            read_only=True))
        self.declare_parameter("progress_period_s", 30.0, ParameterDescriptor(
            description="log epoch and step through the ROS logger every this many seconds", read_only=True))

    def training_arguments(self, argv: list[str]) -> argparse.Namespace:
        """``mgdepth train`` arguments: the command line (``argv`` without ROS arguments), then the parameters
        for every option the command line left unset."""
        parser = argparse.ArgumentParser(prog="bag_trainer", description=train_command.HELP)
        train_command.add_arguments(parser)
        args = parser.parse_args(argv)
        for name, (default, _, dest) in PARAMETERS.items():
            value = self.get_parameter(name).value
            if getattr(args, dest) is None and value != default:
                setattr(args, dest, Path(value) if name in PATH_OPTIONS else value)
        args.overrides = list(args.overrides) + list(self.get_parameter_or("set", Parameter("set", value=[])).value)
        if args.bag is None:
            raise ConfigError("no bag given: set -p bag:=PATH (or --bag PATH)")
        return args


def _report_progress(node: BagTrainer, trainer_holder: dict, stop: threading.Event) -> None:
    period = float(node.get_parameter("progress_period_s").value)
    while not stop.wait(period):
        trainer = trainer_holder.get("trainer")
        if trainer is not None:
            limit = f" of {trainer.config.max_steps}" if trainer.config.max_steps else ""
            node.get_logger().info(f"epoch {trainer.epoch + 1}/{trainer.config.optim.epochs}, "
                                   f"step {trainer.step}{limit}")


def train(node: BagTrainer, args: argparse.Namespace) -> int:
    """Run ``mgdepth train`` with ``args``, logging through ``node``; returns the exit status."""
    from mgdepth_core.train.distributed import init_distributed, shutdown
    from mgdepth_core.train.trainer import Trainer, TrainingDivergedError, describe

    config, run_dir, resume = train_command.resolve_run(args)
    context = init_distributed(config.device)
    holder: dict = {}
    stop = threading.Event()
    reporter = threading.Thread(target=_report_progress, args=(node, holder, stop), daemon=True)
    reporter.start()
    try:
        node.get_logger().info(f"{'resuming ' if resume else ''}{describe(config)} from {config.data.path} "
                               f"({config.data.image_topic}) → {run_dir}")
        holder["trainer"] = trainer = Trainer(config, run_dir, resume=resume, context=context)
        last = trainer.train()
    except TrainingDivergedError as exc:
        node.get_logger().error(str(exc))
        return 1
    finally:
        stop.set()
        reporter.join()
        shutdown(context)
    node.get_logger().info(f"done at epoch {trainer.epoch}, step {trainer.step}; last checkpoint {last}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console script ``bag_trainer``."""
    argv = list(sys.argv if argv is None else ["bag_trainer", *argv])
    # The node never spins: Ctrl-C / SIGTERM go to the Trainer, which finishes the step and writes a checkpoint.
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    node = BagTrainer()
    handler = RosLogHandler(node.get_logger())
    root = logging.getLogger()
    root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        return train(node, node.training_arguments(remove_ros_args(argv)[1:]))
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        node.get_logger().error(str(exc))
        return 1
    except KeyboardInterrupt as exc:
        node.get_logger().warning(f"interrupted{': ' + str(exc) if str(exc) else ''}; continue with resume:=auto "
                                  "(or --resume RUN_DIR)")
        return 130
    finally:
        root.removeHandler(handler)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
