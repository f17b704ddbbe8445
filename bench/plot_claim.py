"""Report docs/results/claim.json: held-out abs_rel of the student against training steps, per method and flow,
static and moving-object pixels side by side (the line is the median over training seeds, the band min–max), and
the table of the last point each run reached: median and worst over seeds, moving-object abs_rel against
Manydepth's (the aim: ≤ 0.8×) and static abs_rel against Manydepth's (the aim: ≤ 1.02×).

    python bench/plot_claim.py docs/results/claim.json   # writes docs/results/claim.png and claim_summary.json
    python bench/plot_claim.py docs/results/claim.json --at-step 600   # every run at step 600
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
        axis.set_ylabel("abs_rel (median-scaled, log scale)")
        axis.set_yscale("log")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


SUMMARY_KEYS = ("static_abs_rel", "static_a1", "moving_abs_rel", "moving_a1", "moving_car_abs_rel",
                "moving_person_abs_rel")


def record_at_step(record: dict, step: int) -> dict | None:
    """``record`` as if its run had stopped at ``step`` (its curve point there; None if it never reached it).
    Curve points written before a1 was recorded on them carry abs_rel only."""
    curve = [point for point in record["curve"] if point["step"] <= step]
    if record.get("steps_reached", record["steps"]) == step:
        return {**record, "steps": step, "curve": curve}
    point = next((p["student"] for p in curve if p["step"] == step), None)
    if point is None:
        return None
    return {**{key: value for key, value in record.items() if key not in SUMMARY_KEYS},
            **{key: point.get(key) for key in SUMMARY_KEYS}, "steps": step, "steps_reached": step, "curve": curve}


def records_at_step(records: list[dict], step: int) -> list[dict]:
    """Every run that reached ``step``, seen there (:func:`record_at_step`); of two runs of one method, flow,
    seed and size the one with the larger budget."""
    chosen: dict[tuple, dict] = {}
    for record in sorted(records, key=lambda record: record["steps"]):
        view = record_at_step(record, step)
        if view is not None:
            chosen[(record["method"], record["flow"], record["seed"], record["height"], record["width"])] = view
    return list(chosen.values())


def summarise_claim(records: list[dict], at_step: int | None = None) -> list[dict]:
    """One row per (method, flow, size, budget): every seed's last point (or, with ``at_step``, every run's
    point at that step whatever its budget), median and worst over seeds (worst = highest abs_rel, lowest a1),
    and the medians relative to Manydepth's at the same size and budget."""
    if at_step is not None:
        records = records_at_step(records, at_step)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        groups[(record["method"], record["flow"], record["height"], record["width"], record["steps"])].append(record)
    rows = []
    for (method, flow, height, width, budget), runs in sorted(groups.items()):
        row = {"method": method, "flow": flow, "height": height, "width": width, "steps": budget,
               "seeds": [run["seed"] for run in runs], "seeds_with_a1": [run["seed"] for run in runs
                                                                        if run.get("static_a1") is not None],
               "steps_reached": [run.get("steps_reached", run["steps"]) for run in runs]}
        for key in SUMMARY_KEYS:
            values = [run.get(key) for run in runs if run.get(key) is not None]
            worst = (min if key.endswith("a1") else max)(values) if values else None
            row[key] = {"median": float(np.median(values)) if values else None, "worst": worst}
        rows.append(row)
    for row in rows:
        baseline = next((other for other in rows if other["method"] == "manydepth" and other["steps"] == row["steps"]
                         and (other["height"], other["width"]) == (row["height"], row["width"])), None)
        for key in ("static_abs_rel", "moving_abs_rel"):
            mine, theirs = row[key]["median"], baseline[key]["median"] if baseline else None
            row[f"{key}_vs_manydepth"] = mine / theirs if mine is not None and theirs else None
    return rows


def print_summary(rows: list[dict]) -> None:
    def cell(value):
        return "n/a" if value is None else f"{value:.3f}"
    print(f"{'method':<34}{'flow':<8}{'steps':>7}{'reached':>16}  {'static abs_rel':>16}{'a1':>13}"
          f"{'moving abs_rel':>16}{'a1':>13}{'cars':>8}{'people':>8}{'×MD static':>11}{'×MD moving':>11}")
    for row in rows:
        pairs = [f"{cell(row[k]['median'])}/{cell(row[k]['worst'])}" for k in SUMMARY_KEYS[:4]]
        print(f"{row['method']:<34}{row['flow']:<8}{row['steps']:>7}{str(row['steps_reached']):>16}  "
              f"{pairs[0]:>16}{pairs[1]:>13}{pairs[2]:>16}{pairs[3]:>13}"
              f"{cell(row['moving_car_abs_rel']['median']):>8}{cell(row['moving_person_abs_rel']['median']):>8}"
              f"{cell(row['static_abs_rel_vs_manydepth']):>11}{cell(row['moving_abs_rel_vs_manydepth']):>11}")
    print("cells: median/worst over training seeds at each run's last evaluated step (or --at-step); a1 over the "
          "seeds whose point has it (seeds_with_a1 in the JSON); cars and people: median "
          "moving abs_rel on moving cars (motion along the epipolar lines) and crossing people")


def report_claim(records: list[dict], path: Path, at_step: int | None = None, command: str = "") -> list[Path]:
    """Write the plot (``path`` .png) and the summary (``path``'s stem + _summary.json); returns both paths."""
    rows = summarise_claim(records, at_step)
    summary = path.with_name(path.stem + "_summary.json")
    temporary = summary.with_suffix(".tmp")
    temporary.write_text(json.dumps({"command": command, "at_step": at_step, "rows": rows}, indent=2) + "\n")
    temporary.replace(summary)
    plotted = records if at_step is None else records_at_step(records, at_step)
    return [plot_claim(plotted, path.with_suffix(".png")), summary]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("claim_json", type=Path, help="claim records (bench_manydepth2.py --claim-json)")
    parser.add_argument("--at-step", type=int, default=None,
                        help="compare every run at this step (from its curve) instead of at its last point, so "
                             "runs of different budgets meet at a common one")
    parser.add_argument("--output", type=Path, default=None,
                        help="where the plot (.png) and the summary (<stem>_summary.json) go; default beside the "
                             "claim JSON under its name")
    args = parser.parse_args()
    records = json.loads(args.claim_json.read_text())
    print_summary(summarise_claim(records, args.at_step))
    output = args.output or args.claim_json
    for written in report_claim(records, output, args.at_step, " ".join(["python", *sys.argv])):
        print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
