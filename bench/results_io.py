"""Where benchmarks put their figures: one JSON file each under bench/results/, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(result: dict, path: Path) -> Path:
    """Write ``result`` as indented JSON to ``path`` (temporary file + rename), print and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(result, indent=2, default=float) + "\n")
    os.replace(temporary, path)
    print(f"wrote {path}")
    return path
