"""``mgdepth data splits``: install the official split lists (eigen, eigen_zhou, …) into the user splits folder."""

from __future__ import annotations

import argparse
import functools

from mgdepth_core.data.splits import SPLIT_FILES, download_splits, install_splits_from, user_splits_dir

HELP = "data set utilities: install split lists (mgdepth data splits --from DIR | --download)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="data_action", metavar="<action>", required=True)
    splits = actions.add_parser(
        "splits", help="install split lists into the user splits folder",
        description="Copy the monodepth2/Manydepth split lists from a checkout's splits/ folder (--from) or fetch "
                    "them from github.com/nianticlabs/manydepth (--download). They carry Niantic's non-commercial "
                    "licence, so mgdepth does not ship them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = splits.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", metavar="DIR",
                        help="a splits/ folder holding eigen/, eigen_zhou/, … (monodepth2 or manydepth checkout)")
    source.add_argument("--download", action="store_true", help="fetch the lists from GitHub (needs internet)")
    splits.add_argument("--out", default=None,
                        help=f"target folder (default $MGDEPTH_SPLITS or {user_splits_dir()})")
    splits.add_argument("--names", nargs="+", default=list(SPLIT_FILES), choices=list(SPLIT_FILES),
                        metavar="NAME", help=f"splits to install, of: {', '.join(SPLIT_FILES)}")


def run(args: argparse.Namespace) -> int:
    names = tuple(args.names)
    fetch = download_splits if args.download else functools.partial(install_splits_from, args.source)
    installed = fetch(args.out, names)
    folders = sorted({path.parent.name for path in installed})
    target = installed[0].parent.parent
    print(f"installed {len(installed)} files of {len(folders)} splits ({', '.join(folders)}) into {target}")
    return 0
