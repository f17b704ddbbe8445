"""Per-stage wall time of the networks' work on a frame, for the speed profile (``bench/bench_speed.py``).

The models and the estimator mark their stages with :func:`stage`; the marks cost one list check unless a
:class:`StageTimer` is active. Times are exclusive: a stage nested in another (the cost volume inside the
encoder) is subtracted from its parent. On CUDA the device is synchronised at every mark while a timer runs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch

STAGES = ("pose", "flow", "teacher", "static_reference", "cost_volume", "encoder", "decoder")
_ACTIVE: list[StageTimer] = []


class StageTimer:
    """Collects exclusive milliseconds per stage name while active (``with StageTimer(device) as timer``)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.ms: dict[str, float] = defaultdict(float)
        self._children: list[float] = []  # per open stage: time spent in its nested stages, seconds

    def __enter__(self) -> StageTimer:
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.remove(self)

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


@contextmanager
def stage(name: str):
    """Time the enclosed work as stage ``name`` in the active :class:`StageTimer` (nothing when none is)."""
    if not _ACTIVE:
        yield
        return
    timer = _ACTIVE[-1]
    timer._children.append(0.0)
    start = timer.now()
    try:
        yield
    finally:
        elapsed = timer.now() - start
        nested = timer._children.pop()
        timer.ms[name] += (elapsed - nested) * 1000
        if timer._children:
            timer._children[-1] += elapsed
