"""``mgdepth <verb>``: the command-line entry point.

Each verb is a module in :mod:`mgdepth_core.commands` that defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Verbs are discovered, so adding a module adds a verb.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from mgdepth_core import __version__, commands
from mgdepth_core.config import ConfigError
from mgdepth_core.download import DownloadError


def _verbs() -> dict[str, object]:
    found = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        found[info.name.replace("_", "-")] = module
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgdepth",
        description="Motion-aware self-supervised monocular depth (Manydepth2, Manydepth, Dyna-DM).",
    )
    parser.add_argument("--version", action="version", version=f"mgdepth {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for name, module in _verbs().items():
        verb_parser = sub.add_parser(name, help=module.HELP, description=module.HELP,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(_run=module.run)
    return parser


def error_message(exc: BaseException) -> str:
    """The message of ``exc`` for the one-line CLI error. An error raised in a DataLoader worker reaches the main
    process with the worker's traceback as its message; its last line is the worker's own message."""
    text = str(exc).strip()
    if text.startswith("Caught ") and "DataLoader worker" in text.splitlines()[0]:
        return text.splitlines()[-1].split(": ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "verb", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ConfigError, DownloadError, FileNotFoundError, ValueError) as exc:
        print(f"mgdepth {args.verb}: error: {error_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mgdepth {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
