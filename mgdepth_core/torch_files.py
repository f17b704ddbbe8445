"""Reading ``.pt``/``.pth`` files without running code from them.

Every ``torch.load`` in mgdepth goes through :func:`load_weights_only`: PyTorch's weights-only unpickler accepts
tensors and plain Python values (dict, list, tuple, str, int, float, bool, None) and refuses anything that would
import and call code, so a crafted file cannot execute on load.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch


class TorchFileError(ValueError):
    """A ``.pt``/``.pth`` file that cannot be read; the message names the file."""


class UnsafeTorchFileError(TorchFileError):
    """A file that holds pickled Python objects beyond tensors and plain values (loading it could run code)."""


def load_weights_only(path: str | Path, what: str = "PyTorch file") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; failures raise a :class:`TorchFileError` naming ``path``
    and ``what`` it should have been (a missing file still raises FileNotFoundError)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = next((line.strip() for line in str(error).splitlines() if "Unsupported" in line or "GLOBAL" in line),
                      str(error).splitlines()[0] if str(error) else "").split(". ")[0]
        if "GLOBAL" not in detail:  # an opcode the weights-only unpickler lacks: garbage or an exotic pickle
            raise TorchFileError(f"{path}: not a readable {what} (corrupt, or not saved by torch.save? {detail})"
                                 ) from error
        raise UnsafeTorchFileError(
            f"{path}: refused to load this {what}: it holds pickled Python objects beyond tensors and plain values, "
            f"and loading those would run code from the file ({detail})") from error
    except Exception as error:  # torch raises RuntimeError, KeyError, EOFError … for truncated or foreign files
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TorchFileError(f"{path}: not a readable {what} (truncated or corrupt? {first_line})") from error


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, fsync, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
