"""The official weights mgdepth can use: where they are published, how they are checked, where they land.

:data:`REGISTRY` maps a name to an :class:`OfficialWeights`. Manydepth's releases are zips of weights folders
(extracted under ``$XDG_CACHE_HOME/mgdepth/weights/<name>/``); Manydepth2's and GMFlow's are on Google Drive,
which no plain HTTP client can fetch, so they are downloaded in a browser and installed with ``--from``.
torchvision's files (URL, hash prefix, size) are read from the installed torchvision and land in the torch hub
cache (``torch.hub.get_dir()/checkpoints``), where torchvision and mgdepth look for them. Nothing here runs unless
``mgdepth weights get`` asks: the package never downloads on its own.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models import optical_flow

from mgdepth_core.download import DownloadError, download, part_path, place_verified
from mgdepth_core.models.flow import GMFLOW_CHECKPOINT
from mgdepth_core.models.instance_segmentation import SEGMENTERS
from mgdepth_core.models.resnet import IMAGENET_WEIGHTS

MIRROR_ENV = "MGDEPTH_WEIGHTS_MIRROR"
FOLDER_MARKER = "encoder.pth"  # every Manydepth / Manydepth2 weights folder holds it
MANYDEPTH_RELEASE = "https://storage.googleapis.com/niantic-lon-static/research/manydepth/models"
DRIVE_FOLDER = "https://drive.google.com/drive/folders"
WEIGHTS_FOLDER_USE = "weights folder: mgdepth infer/eval --weights, the depth node's weights parameter"


@dataclass(frozen=True)
class OfficialWeights:
    """One published checkpoint or weights folder."""

    name: str
    title: str
    url: str  # the official download URL; for Google Drive the page to open in a browser
    filename: str  # the file's name in the cache and on a mirror
    use: str  # where the printed path goes
    sha256: str = ""  # published digest or digest prefix; empty = none published (nothing to check against)
    size: str = ""  # published size; empty = not published
    folder: bool = False  # a zip holding a weights folder (extracted; the path is the folder with encoder.pth)
    torch_hub: bool = False  # lands in torch.hub.get_dir()/checkpoints instead of the mgdepth cache
    fetchable: bool = True  # False: Google Drive, downloaded in a browser and installed with --from


def _manydepth(name: str, title: str, zip_name: str) -> OfficialWeights:
    return OfficialWeights(name, title, f"{MANYDEPTH_RELEASE}/{zip_name}", zip_name, WEIGHTS_FOLDER_USE, folder=True)


def _drive_folder(name: str, title: str, folder_id: str, zip_name: str) -> OfficialWeights:
    return OfficialWeights(name, title, f"{DRIVE_FOLDER}/{folder_id}", zip_name, WEIGHTS_FOLDER_USE, folder=True,
                           fetchable=False)


def _torchvision(name: str, title: str, weights, use: str) -> OfficialWeights:
    filename = os.path.basename(weights.url)
    prefix = torch.hub.HASH_REGEX.search(filename)
    return OfficialWeights(name, f"{title} ({weights})", weights.url, filename, use,
                           sha256=prefix.group(1) if prefix else "",
                           size=f"{weights.meta['_file_size']} MB (torchvision metadata)", torch_hub=True)


REGISTRY: dict[str, OfficialWeights] = {entry.name: entry for entry in (
    _manydepth("manydepth-kitti-mr", "Manydepth, KITTI, 640×192 (with the teacher)", "KITTI_MR.zip"),
    _manydepth("manydepth-kitti-hr", "Manydepth, KITTI, 1024×320 (with the teacher)", "KITTI_HR.zip"),
    _manydepth("manydepth-cityscapes-mr", "Manydepth, Cityscapes, 512×192 (no teacher files)", "CityScapes_MR.zip"),
    _drive_folder("manydepth2-kitti-mr", "Manydepth2, KITTI, 640×192 (Google Drive folder)",
                  "1mUlairBiKRm8IWXV2O2a5_cGzQwBC3RC", "Manydepth2_KITTI_MR.zip"),
    _drive_folder("manydepth2-baseline-kitti-mr", "Manydepth trained by the Manydepth2 authors, KITTI, 640×192 "
                  "(Google Drive folder)", "1WM-At9UPNs1JSyHRyV_4MBuooQki9A7H", "Manydepth2_baseline_KITTI_MR.zip"),
    OfficialWeights("gmflow-sintel", "GMFlow, Sintel fine-tuned (Manydepth2's flow; Google Drive file of all GMFlow "
                    "models)", "https://drive.google.com/file/d/1d5C5cgHIxWGsFR1vYs5XrQbbUiZl9TX2/view",
                    GMFLOW_CHECKPOINT, "found there (model.flow: gmflow), or model.flow_weights", torch_hub=True,
                    fetchable=False),
    _torchvision("resnet18-imagenet", "ResNet-18 ImageNet", IMAGENET_WEIGHTS[18], "found there (model.pretrained)"),
    _torchvision("resnet50-imagenet", "ResNet-50 ImageNet", IMAGENET_WEIGHTS[50],
                 "found there (model.pretrained with num_layers: 50)"),
    _torchvision("maskrcnn-v2-coco", "Mask R-CNN v2 COCO", SEGMENTERS["maskrcnn_resnet50_fpn_v2"][1],
                 "found there (segmenter: maskrcnn_resnet50_fpn_v2), or segmenter_weights"),
    _torchvision("maskrcnn-coco", "Mask R-CNN COCO", SEGMENTERS["maskrcnn_resnet50_fpn"][1],
                 "found there (segmenter: maskrcnn_resnet50_fpn), or segmenter_weights"),
    _torchvision("raft-small", "RAFT small", optical_flow.Raft_Small_Weights.DEFAULT,
                 "found there (model.flow: raft_small), or model.flow_weights"),
    _torchvision("raft-large", "RAFT large", optical_flow.Raft_Large_Weights.DEFAULT,
                 "found there (model.flow: raft_large), or model.flow_weights"),
)}


def lookup(name: str) -> OfficialWeights:
    """The registry entry ``name``; an unknown name raises ValueError listing the known ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown weights {name!r}; known: {', '.join(REGISTRY)} (`mgdepth weights list` "
                         f"describes them)")
    return REGISTRY[name]


def cache_dir() -> Path:
    """mgdepth's weights cache: ``$XDG_CACHE_HOME/mgdepth/weights`` (default ``~/.cache/mgdepth/weights``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root).expanduser() / "mgdepth" / "weights"


def location(entry: OfficialWeights) -> Path:
    """Where ``entry`` lands: its file in the torch hub cache, its folder or file in the mgdepth cache."""
    if entry.torch_hub:
        return Path(torch.hub.get_dir()) / "checkpoints" / entry.filename
    return cache_dir() / (entry.name if entry.folder else entry.filename)


def installed_path(entry: OfficialWeights) -> Path | None:
    """The path to use when ``entry`` is in the cache (for a folder: the one holding encoder.pth), else None."""
    place = location(entry)
    if not entry.folder:
        return place if place.is_file() else None
    if not place.is_dir():
        return None
    folders = sorted(marker.parent for marker in place.rglob(FOLDER_MARKER))
    if len(folders) != 1:
        found = ", ".join(map(str, folders)) or "none"
        raise DownloadError(f"{place} should hold one weights folder (with {FOLDER_MARKER}), found: {found}. "
                            f"Pass the one you want as the weights path, or delete {place} and get it again")
    return folders[0]


def download_url(entry: OfficialWeights) -> str:
    """The official URL, or ``$MGDEPTH_WEIGHTS_MIRROR/<filename>`` when a mirror is set."""
    mirror = os.environ.get(MIRROR_ENV, "").rstrip("/")
    return f"{mirror}/{entry.filename}" if mirror else entry.url


def get(entry: OfficialWeights, source: str | Path | None = None, progress: bool = True) -> Path:
    """The path of ``entry`` in the cache, fetched (or installed from the file ``source``) when missing.

    A cache hit touches no network. A published checksum is verified before anything is put in place; a folder zip
    is extracted (its CRCs checked) and becomes visible in the cache only once complete.
    """
    found = installed_path(entry)
    if found is not None and source is None:
        return found
    if source is None and not entry.fetchable and not os.environ.get(MIRROR_ENV):
        raise DownloadError(f"{entry.name} is published on Google Drive, which needs a browser: open {entry.url}, "
                            f"download it, then run `mgdepth weights get {entry.name} --from <downloaded file>`")
    place = location(entry)
    fetched = place.parent / entry.filename if entry.folder else place
    if source is not None:
        _install_file(entry, Path(source).expanduser(), fetched)
    else:
        url = download_url(entry)
        print(f"downloading {entry.name} from {url}", file=sys.stderr)
        digest = download(url, fetched, entry.sha256, progress=progress)
        _report(entry, digest)
    if entry.folder:
        _extract_folder(fetched, place)
    path = installed_path(entry)
    assert path is not None, f"{entry.name} was installed but is not at {place}"
    return path


def _report(entry: OfficialWeights, digest: str) -> None:
    check = "matches the published SHA-256" if entry.sha256 else "no published SHA-256 to check against"
    print(f"{entry.name}: sha256 {digest} ({check})", file=sys.stderr)


def _install_file(entry: OfficialWeights, source: Path, target: Path) -> None:
    """Copy ``source`` (the file itself, or a zip holding ``entry.filename`` for a single-file entry) to
    ``target`` through a verified ``.part``."""
    if source.is_dir():
        raise ValueError(f"--from {source} is a folder: pass a weights folder directly as the weights path; "
                         f"--from takes the downloaded file")
    if not source.is_file():
        raise FileNotFoundError(f"--from {source}: no such file")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    if not entry.folder and source.name != entry.filename and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            members = [m for m in archive.namelist() if os.path.basename(m) == entry.filename]
            if not members:
                raise DownloadError(f"--from {source}: the zip holds no {entry.filename}")
            with archive.open(members[0]) as inner, open(part, "wb") as out:
                shutil.copyfileobj(inner, out)
    else:
        shutil.copyfile(source, part)
    _report(entry, place_verified(part, target, entry.sha256, str(source)))


def _extract_folder(archive_path: Path, place: Path) -> None:
    """Unzip a verified folder zip into ``place`` (replacing it) and delete the zip."""
    staging = Path(tempfile.mkdtemp(prefix=f".{place.name}.", dir=place.parent))
    try:
        with zipfile.ZipFile(archive_path) as archive:
            archive.extractall(staging)
        if not any(staging.rglob(FOLDER_MARKER)):
            raise DownloadError(f"{archive_path.name} holds no {FOLDER_MARKER}: not a Manydepth weights folder")
        if place.exists():
            shutil.rmtree(place)
        os.replace(staging, place)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive_path.name} is not a readable zip ({exc}); it was deleted, run again") from exc
    finally:
        archive_path.unlink()
        shutil.rmtree(staging, ignore_errors=True)
