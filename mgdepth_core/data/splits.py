"""Split lists (monodepth2 / Manydepth format): where they live, how they are read and installed.

The official lists (eigen, eigen_zhou, …) carry Niantic's non-commercial licence, so the project does not ship
them. ``mgdepth data splits --from DIR`` copies them from a monodepth2 / Manydepth checkout's ``splits/`` folder,
``mgdepth data splits --download`` fetches them from GitHub. They are installed into the user splits folder
(``$MGDEPTH_SPLITS``, default ``~/.cache/mgdepth/splits``). ``DataConfig.split`` is either a name looked up there
(or in ``mgdepth_core/data/splits``) or the path of a folder holding ``{train,val,test}_files.txt``.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# Files of each split in nianticlabs/manydepth's splits/ folder (pinned commit, see MANYDEPTH_SPLITS_URL).
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "eigen": ("test_files.txt",),
    "eigen_zhou": ("train_files.txt", "val_files.txt"),
    "eigen_benchmark": ("test_files.txt",),
    "eigen_full": ("train_files.txt", "val_files.txt"),
    "benchmark": ("train_files.txt", "val_files.txt", "test_files.txt", "eigen_to_benchmark_ids.npy"),
    "odom": ("train_files.txt", "val_files.txt", "test_files_09.txt", "test_files_10.txt"),
    "cityscapes": ("test_files.txt",),
    "cityscapes_preprocessed": ("train_files.txt", "val_files.txt"),
}
MANYDEPTH_SPLITS_URL = ("https://raw.githubusercontent.com/nianticlabs/manydepth/"
                        "a36212bda725438c0b96ce0793a92f9c148914bf/splits")
PACKAGED_SPLITS = Path(__file__).resolve().parent / "splits"


class SplitError(FileNotFoundError):
    """A split that cannot be found, or a split file line that does not parse or names a missing file."""


@dataclass(frozen=True)
class SplitLine:
    """One line of a split file: ``folder frame side`` (KITTI) or ``city frame_name`` (Cityscapes)."""

    fields: tuple[str, ...]
    file: Path
    line_number: int  # 1-based

    def where(self) -> str:
        return f"{self.file}:{self.line_number}"


def user_splits_dir() -> Path:
    """Folder of installed split lists: ``$MGDEPTH_SPLITS`` or ``~/.cache/mgdepth/splits``."""
    return Path(os.environ.get("MGDEPTH_SPLITS", Path.home() / ".cache" / "mgdepth" / "splits")).expanduser()


def resolve_split_dir(split: str, splits_dir: str | Path | None = None) -> Path:
    """The folder of split ``split``: an existing folder path, or a name looked up in ``splits_dir`` (default
    the user splits folder) and then in the package's ``data/splits``."""
    as_path = Path(split).expanduser()
    if as_path.is_dir():
        return as_path
    candidates = [Path(splits_dir) if splits_dir else user_splits_dir(), PACKAGED_SPLITS]
    for root in candidates:
        if (root / split).is_dir():
            return root / split
    raise SplitError(
        f"split {split!r} not found: neither a folder nor a name under {' or '.join(map(str, candidates))}. "
        f"Install the official lists with `mgdepth data splits --from <monodepth2-or-manydepth>/splits` or "
        f"`mgdepth data splits --download`, or pass the path of a folder holding <train|val|test>_files.txt")


def split_file(split: str, subset: str, splits_dir: str | Path | None = None) -> Path:
    """``<split folder>/<subset>_files.txt`` (subset: train, val, test), or an error naming the path."""
    path = resolve_split_dir(split, splits_dir) / f"{subset}_files.txt"
    if not path.is_file():
        raise SplitError(f"split {split!r} has no {subset} list: {path} does not exist")
    return path


def read_split(path: str | Path, min_fields: int = 1) -> list[SplitLine]:
    """Non-empty lines of a split file, whitespace-separated, each with at least ``min_fields`` fields."""
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"split file {path} does not exist")
    lines = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        fields = tuple(text.split())
        if not fields:
            continue
        if len(fields) < min_fields:
            raise SplitError(f"{path}:{number}: expected at least {min_fields} fields, got {text!r}")
        lines.append(SplitLine(fields, path, number))
    if not lines:
        raise SplitError(f"split file {path} lists no frames")
    return lines


def install_splits_from(source: str | Path, out: str | Path | None = None,
                        names: tuple[str, ...] = tuple(SPLIT_FILES)) -> list[Path]:
    """Copy the split lists found under ``source/<name>/`` into ``out`` (default the user splits folder).

    Returns the installed files. Raises SplitError when ``source`` holds none of them.
    """
    source, out = Path(source).expanduser(), Path(out).expanduser() if out else user_splits_dir()
    installed = []
    for name in names:
        for file_name in SPLIT_FILES[name]:
            found = source / name / file_name
            if found.is_file():
                installed.append(_copy_atomic(found.read_bytes(), out / name / file_name))
    if not installed:
        raise SplitError(f"no split lists found under {source} (expected e.g. {source}/eigen/test_files.txt)")
    return installed


def download_splits(out: str | Path | None = None, names: tuple[str, ...] = tuple(SPLIT_FILES),
                    base_url: str = MANYDEPTH_SPLITS_URL, timeout_s: float = 60.0) -> list[Path]:
    """Fetch the split lists from nianticlabs/manydepth on GitHub into ``out`` (default the user splits folder)."""
    out = Path(out).expanduser() if out else user_splits_dir()
    installed = []
    for name in names:
        for file_name in SPLIT_FILES[name]:
            url = f"{base_url}/{name}/{file_name}"
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as response:
                    data = response.read()
            except (urllib.error.URLError, TimeoutError) as exc:
                raise SplitError(f"cannot download {url}: {exc}; use --from with a local checkout instead") from exc
            installed.append(_copy_atomic(data, out / name / file_name))
    return installed


def _copy_atomic(data: bytes, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, prefix=f".{target.name}.") as handle:
        handle.write(data)
    os.replace(handle.name, target)
    return target

