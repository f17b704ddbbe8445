"""Resumable HTTP(S) download into ``<target>.part``, checked against a SHA-256 before it is moved into place.

An interrupted download leaves the ``.part`` file; the next call asks the server for the rest (HTTP Range) and
starts over when the server ignores the request. Only :func:`download` touches the network, and only when called.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from mgdepth_core import __version__

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0


class DownloadError(RuntimeError):
    """A download that could not be completed or verified; the message says what to do."""


def part_path(target: Path) -> Path:
    """Where the download of ``target`` accumulates until it is verified."""
    return target.with_name(target.name + ".part")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def place_verified(part: Path, target: Path, sha256: str, origin: str) -> str:
    """Check ``part`` against ``sha256`` (a full digest or a published prefix; empty = none published) and move it
    to ``target``. A mismatch deletes ``part`` and raises. Returns the file's digest."""
    digest = sha256_of(part)
    if sha256 and not digest.startswith(sha256.lower()):
        part.unlink()
        raise DownloadError(f"checksum mismatch for {origin}: expected SHA-256 {sha256}…, got {digest}. The file "
                            f"was deleted and nothing was installed; run the command again, or check the mirror")
    os.replace(part, target)
    return digest


def _open(url: str, offset: int, timeout_s: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"mgdepth/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the part is not a prefix of this file: start again
            raise
        raise DownloadError(f"{url}: the server answered {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url} ({reason}). Offline? Set MGDEPTH_WEIGHTS_MIRROR to a mirror, or "
                            f"fetch the file on another machine and pass it with --from FILE") from exc


def download(url: str, target: Path, sha256: str = "", timeout_s: float = TIMEOUT_S, progress: bool = True) -> str:
    """Fetch ``url`` to ``target`` through ``<target>.part``, resuming a part left by an earlier call.

    ``sha256``: the published digest or prefix the file must match (empty: none published, nothing is checked).
    Returns the file's SHA-256. Raises DownloadError when the host is unreachable, the transfer breaks (the part is
    kept for the next call) or the checksum does not match (the part is deleted).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout_s)
    except urllib.error.HTTPError:
        part.unlink()
        offset = 0
        response = _open(url, offset, timeout_s)
    with response:
        resumed = response.status == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            raise DownloadError(f"{url}: the server sent Content-Range {response.headers.get('Content-Range')!r} "
                                f"for a request from byte {offset}; delete {part} and run again")
        offset = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        with open(part, "ab" if resumed else "wb") as handle, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name,
                disable=not progress, leave=False) as bar:
            try:
                for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                    handle.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
                raise _interrupted(url, received, total, part, exc) from exc
    if total is not None and received < total:
        raise _interrupted(url, received, total, part, "connection closed early")
    return place_verified(part, target, sha256, url)


def _interrupted(url: str, received: int, total: int | None, part: Path, why: object) -> DownloadError:
    of_total = f" of {total}" if total is not None else ""
    return DownloadError(f"download of {url} interrupted after {received}{of_total} bytes ({why}); run the same "
                         f"command again to resume from {part}")
