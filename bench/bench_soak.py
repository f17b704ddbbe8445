"""Soak the ROS 2 depth node: the installed ``depth_node`` in its own process (rclpy, Fast DDS) fed thousands of
frames, valid and malformed, at camera rate and in bursts faster than inference, with parameter changes.

    .venv/bin/python bench/bench_soak.py [--frames 10000] [--rate 10] [--burst 20 --burst-every 100]
                                         [--results docs/results/soak.json]

Bad inputs (mgdepth_ros/soak.py, KINDS): wrong and unknown encodings, zero-size and odd-size (1×1 … 7×401) images,
size changes mid-stream, missing, late and NaN camera_info, stamps backwards and repeated, NaN/inf pixels in float
images, truncated data and short steps; in the compressed leg (a second node process, ``transport: compressed``)
garbage, empty and truncated CompressedImage data. Parameter changes (valid, wrong type, bad value, read-only at
run time, undeclared) go to the running node every ``--parameter-every`` inputs.

Reported per leg and in total: crashes (node process gone or exit code ≠ 0), outputs per valid input, the node's
own counters from /diagnostics (received, processed, dropped, lost in the subscription queue, duplicates, skipped,
failed) and whether they explain every input, RSS of the node process after warm-up and at the end (and the slope
over the second half), latency p50/p99 from the input stamp (wall clock at publishing) to depth received.
Random-init Manydepth at 64×192 (8 depth bins); robustness does not depend on the weights. Writes
bench/results/soak.json (``--results`` elsewhere).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from results_io import RESULTS, write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def accepted(leg: dict, which: bool | None) -> int:
    """Parameter changes of ``leg`` answered with ``which`` (True: accepted; None: all)."""
    return sum(reply["count"] for reply in leg["parameter_replies"] if which is None or reply["accepted"] == which)


def print_table(results: dict) -> None:
    legs = results["legs"]
    print(f"\nbench_soak: {results['total']['inputs']} inputs, {results['config']['rate_hz']:g} Hz with bursts of "
          f"{results['config']['burst_size']} every {results['config']['burst_every']}")
    rows = [
        ("inputs (in bursts)", lambda leg: f"{leg['inputs']} ({leg['inputs_in_bursts']})"),
        ("crashes / exit code", lambda leg: f"{leg['crashed']} / {leg['exit_code']}"),
        ("valid inputs with depth", lambda leg: f"{leg['valid_with_depth']} / {leg['valid_inputs']}"),
        ("outputs per valid input", lambda leg: f"{leg['outputs_per_valid_input']:.3f}"),
        ("dropped / lost (diagnostics)", lambda leg: f"{leg['node_totals']['dropped']} / "
                                                      f"{leg['node_totals']['lost']}"),
        ("skipped / failed / duplicates", lambda leg: f"{leg['node_totals']['skipped']} / "
                                                       f"{leg['node_totals']['failed']} / "
                                                       f"{leg['node_totals']['duplicates']}"),
        ("inputs not accounted for", lambda leg: str(leg["unaccounted"])),
        ("RSS after warm-up -> end (MB)", lambda leg: f"{leg['rss_mb_start']:.0f} -> {leg['rss_mb_end']:.0f}"),
        ("RSS max (MB)", lambda leg: f"{leg['rss_mb_max']:.0f}"),
        ("RSS slope, 2nd half (MB/1000)", lambda leg: f"{leg['rss_slope_second_half_mb_per_1000_inputs']:.2f}"),
        ("latency p50 / p99 (ms)", lambda leg: f"{leg['latency_ms_p50']:.0f} / {leg['latency_ms_p99']:.0f}"),
        ("parameter changes accepted", lambda leg: f"{accepted(leg, True)} / {accepted(leg, None)}"),
    ]
    print(f"{'measure':<34}" + "".join(f"{leg['transport']:>22}" for leg in legs))
    for label, cell in rows:
        print(f"{label:<34}" + "".join(f"{cell(leg):>22}" for leg in legs))
    print(f"{'kind: with depth / sent':<34}" + "".join(f"{'paced':>9}{'stream':>13}" for _ in legs))
    for kind in sorted({kind for leg in legs for kind in leg["by_kind"] | leg["paced"]}):
        cells = [leg[part].get(kind) for leg in legs for part in ("paced", "by_kind")]
        print(f"{kind:<34}" + "".join(f"{'{with_depth} / {sent}'.format(**c) if c else '':>{9 + 4 * (i % 2)}}"
                                      for i, c in enumerate(cells)))
    for leg in legs:
        if leg["paced_unexpected"]:
            print(f"{leg['transport']}: paced inputs handled against expectation: {leg['paced_unexpected']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000, help="inputs of both legs together")
    parser.add_argument("--rate", type=float, default=10.0, help="camera rate between bursts, Hz")
    parser.add_argument("--burst", type=int, default=20, help="inputs per burst, published back to back")
    parser.add_argument("--burst-every", type=int, default=100, help="inputs from one burst start to the next")
    parser.add_argument("--bad-fraction", type=float, default=0.25, help="share of malformed / unusual inputs")
    parser.add_argument("--compressed-fraction", type=float, default=0.2, help="share sent to the compressed leg")
    parser.add_argument("--parameter-every", type=int, default=100, help="inputs between parameter changes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

    from mgdepth_ros.soak import SoakConfig, run_soak

    config = SoakConfig(frames=args.frames, rate_hz=args.rate, burst_size=args.burst, burst_every=args.burst_every,
                        bad_fraction=args.bad_fraction, compressed_fraction=args.compressed_fraction,
                        parameter_every=args.parameter_every, seed=args.seed)
    started = time.time()
    results = run_soak(config, progress=lambda leg, sent: print(f"  {leg}: {sent} inputs sent", flush=True))
    results.update(command="python " + " ".join(sys.argv), machine=platform.processor() or platform.machine(),
                   cpus=os.cpu_count(), load_average_at_end=os.getloadavg(), wall_s=time.time() - started,
                   date=time.strftime("%Y-%m-%d"))
    print_table(results)
    write_results(results, args.results)
    return 0 if results["total"]["crashed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
