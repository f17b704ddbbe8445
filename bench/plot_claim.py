"""Plot docs/results/claim.json: held-out abs_rel of the student against training steps, per method and flow,
static and moving-object pixels side by side; the line is the median over training seeds, the band min–max.

    python bench/plot_claim.py docs/results/claim.json        # writes docs/results/claim.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def plot_claim(records: list[dict], path: Path) -> Path:
    """One PNG with two panels (static, moving) from the records' ``curve`` entries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        groups[(record["method"], record["flow"], record["height"], record["width"], record["steps"])].append(record)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for (method, flow, height, width, budget), runs in sorted(groups.items()):
        label = (f"{method} (flow: {flow}), {width}×{height}, {budget}-step runs, {len(runs)} "
                 f"seed{'s' * (len(runs) > 1)}")
        for axis, key in zip(axes, ("static_abs_rel", "moving_abs_rel")):
            steps = sorted({point["step"] for run in runs for point in run["curve"]})
            values = np.array([[next((p["student"][key] for p in run["curve"] if p["step"] == step), np.nan)
                                for step in steps] for run in runs], dtype=float)
            line = axis.plot(steps, np.nanmedian(values, 0), marker="o", label=label)[0]
            if len(runs) > 1:
                axis.fill_between(steps, np.nanmin(values, 0), np.nanmax(values, 0), alpha=0.2,
                                  color=line.get_color())
    for axis, title in zip(axes, ("static pixels", "moving-object pixels")):
        axis.set_title(f"student abs_rel on held-out seeds, {title}")
        axis.set_xlabel("training steps (from random weights)")
        axis.set_ylabel("abs_rel (median-scaled)")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("claim_json", type=Path, help="claim records (bench_manydepth2.py --claim-json)")
    parser.add_argument("--output", type=Path, default=None, help="PNG path (default: next to the JSON)")
    args = parser.parse_args()
    output = args.output or args.claim_json.with_suffix(".png")
    print(f"wrote {plot_claim(json.loads(args.claim_json.read_text()), output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
