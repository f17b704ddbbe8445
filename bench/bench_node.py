"""End-to-end latency and throughput of the ROS 2 depth node, against the bare DepthEstimator in the same process.

    .venv/bin/python bench/bench_node.py [--method manydepth2] [--frames 8] [--width 640 --height 192]

Baseline: ``DepthEstimator.process`` on the same frames, called directly, and timed again inside the node for
each frame. Node latency: image published → depth received (rclpy / Fast DDS in one process, one frame in
flight). The ROS overhead is latency − process time of the same frame (and their ratio): decode, camera_info,
publishing depth, colourised depth, mask, cloud, odometry, markers, transport. Node throughput: frames published at
``--rate`` Hz for ``--seconds``; outputs per second and frames dropped (the newest frame wins). Publishing cost:
the node's time in publishing per frame with every output subscribed, then with only depth/image_rect (the node
computes no output nobody reads). Random-init
weights: speed does not depend on the weights. Writes bench/results/bench_node.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from results_io import RESULTS, write_results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=["manydepth2", "manydepth"], default="manydepth2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--frames", type=int, default=8, help="frames for the latency measurements")
    parser.add_argument("--rate", type=float, default=10.0, help="publish rate of the throughput run, Hz")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the throughput run")
    args = parser.parse_args()

    from mgdepth_core.data.synthetic import SyntheticSequence
    from mgdepth_ros.depth_node import DepthNode
    from mgdepth_ros.harness import (
        FramePlayer,
        OutputCollector,
        RecordingEstimator,
        RosSession,
        build_estimator,
        wait_until,
    )

    sequence = SyntheticSequence(seed=5, num_frames=args.frames + 2, height=args.height, width=args.width)
    frames = [sequence.frame(i) for i in range(args.frames + 2)]
    estimator = build_estimator(None, args.method, args.device, height=args.height, width=args.width)

    def direct_process_ms() -> list[float]:
        """The bare estimator on the frames, called directly; the first two frames are not timed."""
        timings = []
        estimator.reset()
        for index, frame in enumerate(frames):
            started = time.perf_counter()
            estimator.process(frame["image"], frame["K"], index * 0.1)
            if index >= 2:
                timings.append((time.perf_counter() - started) * 1e3)
        estimator.reset()
        return timings

    direct_process_ms()  # warm-up: the first calls on CPU are many times slower (oneDNN kernel selection)

    latency_ms, in_node_ms = [], []
    recorder = RecordingEstimator(estimator)
    with RosSession() as session:
        node = session.add(DepthNode(recorder, context=session.context))
        player = session.add(FramePlayer(session.context))
        collector = session.add(OutputCollector(session.context))
        if not wait_until(lambda: player.pub_image.get_subscription_count() > 0
                          and collector.count_publishers("depth/image_rect") > 0, timeout=20.0):
            raise RuntimeError("nodes did not discover each other")
        publish_ms: list[float] = []
        publish = node.outputs.publish

        def timed_publish(*args, **kwargs):
            started = time.perf_counter()
            publish(*args, **kwargs)
            publish_ms.append((time.perf_counter() - started) * 1e3)

        node.outputs.publish = timed_publish
        stamp = 0
        for index, frame in enumerate(frames):
            stamp += 100_000_000
            started = time.monotonic()
            player.publish_frame(frame["image"], frame["K"], stamp)
            if collector.wait_for("points", stamp, timeout=120.0) is None:
                raise RuntimeError(f"no output for frame {index}")
            if index >= 2:
                latency_ms.append((collector.arrival["depth/image_rect"][stamp] - started) * 1e3)
                in_node_ms.append(recorder.process_ms[-1])

        before = dict(node.totals)
        published, started = 0, time.monotonic()
        while time.monotonic() - started < args.seconds:
            stamp += int(1e9 / args.rate)
            player.publish_frame(frames[published % len(frames)]["image"], frames[0]["K"], stamp)
            published += 1
            time.sleep(max(0.0, started + published / args.rate - time.monotonic()))
        wait_until(lambda: node.totals["processed"] + node.totals["dropped"] - before.get("processed", 0)
                   - before.get("dropped", 0) >= node.totals["received"] - before.get("received", 0), timeout=60.0)
        run_seconds = time.monotonic() - started
        processed = node.totals["processed"] - before.get("processed", 0)
        dropped = node.totals["dropped"] - before.get("dropped", 0)
        received = node.totals["received"] - before.get("received", 0)
        publish_all_ms = list(publish_ms)

        # The same frames with only depth/image_rect subscribed: the node skips every other output.
        for subscription in list(collector.subscriptions):
            collector.destroy_subscription(subscription)
        depth_only = session.add(OutputCollector(session.context, "depth_only", topics=["depth/image_rect"]))
        if not wait_until(lambda: node.outputs.cloud.get_subscription_count() == 0
                          and depth_only.count_publishers("depth/image_rect") > 0, timeout=20.0):
            raise RuntimeError("the depth-only subscriber did not replace the full one")
        publish_ms.clear()
        for frame in frames:
            stamp += 100_000_000
            player.publish_frame(frame["image"], frame["K"], stamp)
            if depth_only.wait_for("depth/image_rect", stamp, timeout=120.0) is None:
                raise RuntimeError("no depth with the depth-only subscriber")
        publish_depth_only_ms = publish_ms[2:]

    process_ms = direct_process_ms()  # after the node run, so both see the same warmed-up, loaded machine
    results = {
        "method": args.method, "device": args.device, "input": f"{args.width}x{args.height}",
        "torch_threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None, "machine": platform.processor(),
        "estimator_process_ms": float(np.median(process_ms)),
        "estimator_process_in_node_ms": float(np.median(in_node_ms)),
        "node_latency_ms": float(np.median(latency_ms)),
        "ros_overhead_ms": float(np.median(np.array(latency_ms) - np.array(in_node_ms))),
        "ros_overhead_ratio": float(np.median(np.array(latency_ms) / np.array(in_node_ms))),
        "publish_ms_every_output_subscribed": float(np.median(publish_all_ms[2:len(frames)])),
        "publish_ms_depth_only_subscribed": float(np.median(publish_depth_only_ms)),
        "throughput": {"publish_rate_hz": args.rate, "published": published, "received": received,
                       "processed": processed, "dropped": dropped,
                       "output_rate_hz": processed / run_seconds,
                       "bare_estimator_rate_hz": 1e3 / float(np.median(process_ms))},
    }
    print(f"\nbench_node: {args.method} on {args.device}, input {args.width}×{args.height}, random-init weights")
    print(f"{'measure':<44}{'value':>12}")
    print(f"{'DepthEstimator.process, direct calls (ms)':<44}{results['estimator_process_ms']:>12.1f}")
    print(f"{'DepthEstimator.process inside the node (ms)':<44}{results['estimator_process_in_node_ms']:>12.1f}")
    print(f"{'node: image in -> depth out (median, ms)':<44}{results['node_latency_ms']:>12.1f}")
    print(f"{'ROS overhead per frame (ms)':<44}{results['ros_overhead_ms']:>12.1f}")
    print(f"{'ROS overhead ratio (latency / process)':<44}{results['ros_overhead_ratio']:>12.2f}")
    print(f"{'publishing per frame, every output read (ms)':<44}{results['publish_ms_every_output_subscribed']:>12.1f}")
    print(f"{'publishing per frame, only depth read (ms)':<44}{results['publish_ms_depth_only_subscribed']:>12.1f}")
    rate_label = f"node output rate at {args.rate:g} Hz input (Hz)"
    print(f"{rate_label:<44}{results['throughput']['output_rate_hz']:>12.2f}")
    print(f"{'bare estimator rate (Hz)':<44}{results['throughput']['bare_estimator_rate_hz']:>12.2f}")
    print(f"{'frames received / processed / dropped':<44}{f'{received} / {processed} / {dropped}':>12}")
    write_results(results, RESULTS / "bench_node.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
