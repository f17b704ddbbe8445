"""``mgdepth weights list | get NAME``: the official weights, fetched and verified into the cache on request."""

from __future__ import annotations

import argparse
import os

from mgdepth_core.download import DownloadError
from mgdepth_core.official_weights import MIRROR_ENV, REGISTRY, OfficialWeights, get, installed_path, location, lookup

HELP = "official weights: list them, or get one into the cache and print its path (mgdepth weights get NAME)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="weights_action", metavar="<action>", required=True)
    actions.add_parser("list", help="names, URLs, sizes, checksums and where each lands",
                       description="List the official weights mgdepth knows, with their published size and SHA-256 "
                                   "(or that none is published) and where each lands in the cache.")
    fetch = actions.add_parser(
        "get", help="fetch NAME into the cache (resumable, verified) and print the path to use",
        description="Print the cached path of NAME, downloading it first when it is missing: resumable, checked "
                    "against the published SHA-256 where there is one, folder zips extracted. Only the path goes to "
                    f"stdout. {MIRROR_ENV}=BASE_URL fetches BASE_URL/<file name> instead of the official URL.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    fetch.add_argument("name", metavar="NAME", help="a name from `mgdepth weights list`")
    fetch.add_argument("--from", dest="source", metavar="FILE", default=None,
                       help="install this already downloaded file (the zip, the checkpoint, or a zip holding it) "
                            "instead of downloading; needed for the Google Drive releases")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.weights_action == "list":
        mirror = os.environ.get(MIRROR_ENV)
        if mirror:
            print(f"{MIRROR_ENV}={mirror}: files are fetched from {mirror.rstrip('/')}/<file>\n")
        print("\n\n".join(describe(entry) for entry in REGISTRY.values()))
        return 0
    print(get(lookup(args.name), args.source, progress=not args.no_progress))
    return 0


def describe(entry: OfficialWeights) -> str:
    """The ``list`` block of one entry."""
    if entry.sha256 and len(entry.sha256) < 64:
        checksum = f"{entry.sha256}… (the published prefix, from the file name; verified)"
    elif entry.sha256:
        checksum = f"{entry.sha256} (verified)"
    else:
        zip_note = "; the zip's CRC-32s are checked on extraction" if entry.folder else ""
        checksum = f"not published: not verified{zip_note}"
    try:
        found = installed_path(entry)
        state = f"installed: {found}" if found else "not installed"
    except DownloadError as exc:
        state = str(exc)
    how = "" if entry.fetchable else f" (Google Drive: download in a browser, then get {entry.name} --from FILE)"
    return "\n".join([
        f"{entry.name}  {entry.title}",
        f"  url     {entry.url}{how}",
        f"  size    {entry.size or 'not published'}",
        f"  sha256  {checksum}",
        f"  lands   {location(entry)}{'/' if entry.folder else ''}  [{state}]",
        f"  use     {entry.use}",
    ])
