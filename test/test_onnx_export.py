"""ONNX export and the onnxruntime backend: the dense (exportable) cost volume equals the sparse one, and
``mgdepth export`` graphs run by ``DepthEstimator(backend="onnxruntime")`` give torch's depth and motion for
Manydepth and Manydepth2-NF (random tiny models, 64×192, 12 depth bins)."""

import json

import numpy as np
import pytest
import torch

from mgdepth_core.cli import main
from mgdepth_core.data.synthetic import SyntheticSequence
from mgdepth_core.geometry import intrinsics_at_scale
from mgdepth_core.inference import DepthEstimator, _resolve_device
from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.models.cost_volume import _dense_cost, _sparse_cost, depth_bin_values
from mgdepth_core.models.weights import save_weights

H, W = 64, 192
# Relative depth tolerance torch vs onnxruntime: float32 graphs differ only in operation order (~1e-6 seen);
# 1e-3 also absorbs a rare argmin tie in the cost volume broken differently.
DEPTH_RTOL = 1e-3


def test_dense_cost_volume_equals_the_sparse_one():
    torch.manual_seed(0)
    current, lookup = torch.randn(2, 8, 16, 48), torch.randn(2, 8, 16, 48)
    K = intrinsics_at_scale(torch.tensor([[[0.58 * W, 0, 0.5 * W], [0, 1.92 * H, 0.5 * H], [0, 0, 1]]]), 2)
    T = torch.eye(4).repeat(2, 1, 1)
    T[0, :3, 3] = torch.tensor([0.2, -0.05, 0.3])
    T[1] = 0  # missing lookup frame: an empty volume in both
    bins = depth_bin_values(0.5, 5.0, 10)
    dense = _dense_cost(current, lookup, T, K.repeat(2, 1, 1), bins)
    sparse = _sparse_cost(current, lookup, T, K.repeat(2, 1, 1), bins, chunk_elements=1 << 22)
    assert (sparse[0] > 0).float().mean() > 0.3 and not sparse[1].any()
    torch.testing.assert_close(dense, sparse, atol=1e-5, rtol=1e-5)


def test_onnxruntime_backend_runs_on_the_cpu():
    assert _resolve_device("auto", "onnxruntime").type == "cpu"
    with pytest.raises(ValueError, match="CPUExecutionProvider"):
        _resolve_device("cuda", "onnxruntime")


def calibrate_batch_norms(model: torch.nn.Module) -> None:
    """Batch-norm statistics of two random frames through every network. At random initialisation they are the
    identity, so a deep HRNet's logits reach ~1e6: the disparity saturates and float32 rounding alone flips pixels
    between min and max depth. Calibrated, the random network is well-conditioned, as trained ones are."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    image, lookup = torch.rand(2, 1, 3, H, W)
    K = torch.tensor([[[0.58 * W, 0, 0.5 * W], [0, 1.92 * H, 0.5 * H], [0, 0, 1]]])
    T = torch.eye(4)[None]
    T[0, 2, 3] = 0.3
    model.train()
    with torch.no_grad():
        model.teacher_forward(image)
        model.pose_network(torch.cat([lookup, image], 1))
        model.multi_frame_forward(image, lookup, T, K)
    model.eval()


@pytest.mark.parametrize("method", ["manydepth", "manydepth2"])
def test_onnxruntime_backend_matches_torch(method, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install '.[onnx]')")
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install '.[onnx]')")
    torch.manual_seed(0)
    model = build_model(ModelConfig(method=method, height=H, width=W, pretrained=False, flow="none",
                                    num_depth_bins=12, min_depth_bin=0.5, max_depth_bin=5.0))
    calibrate_batch_norms(model)
    weights, exported = save_weights(model, tmp_path / "weights"), tmp_path / "onnx"
    assert main(["export", "--format", "onnx", "--weights", str(weights), "--output", str(exported)]) == 0
    manifest = json.loads((exported / "manifest.json").read_text())
    assert (manifest["method"], manifest["height"], manifest["width"], manifest["opset"]) == (method, H, W, 17)
    assert set(manifest["graphs"]) == {"pose", "teacher", "matching", "student"}
    assert manifest["graphs"]["student"]["inputs"]["T_lookup_current"] == [1, 4, 4]
    assert manifest["graphs"]["student"]["outputs"]["disp"] == [1, 1, H, W]
    assert "student.onnx" in capsys.readouterr().out
    student = onnx.load(str(exported / "student.onnx"))
    onnx.checker.check_model(student)
    assert {entry.version for entry in student.opset_import if entry.domain in ("", "ai.onnx")} == {17}

    sequence = SyntheticSequence(seed=3, num_frames=3, height=H, width=W)
    runs = {}
    for backend in ("torch", "onnxruntime"):
        estimator = DepthEstimator.from_weights(weights, device="cpu", backend=backend, onnx_dir=str(exported),
                                                min_translation=0.0)
        motion = np.eye(4)
        motion[:3, 3] = [0.05, 0.0, -0.3]
        known = [None, motion, None]  # teacher, student with a given motion, student with the pose net's
        runs[backend] = [estimator.process(sequence.frame(i)["image"], sequence.K, stamp=0.1 * i,
                                           known_motion=known[i]) for i in range(3)]
    for reference, result in zip(runs["torch"], runs["onnxruntime"]):
        assert result.multi_frame == reference.multi_frame
        scale = np.nanmax(np.abs(reference.depth))
        assert np.nanmax(np.abs(result.depth - reference.depth)) <= DEPTH_RTOL * scale
        if reference.T_prev_current is not None:
            np.testing.assert_allclose(result.T_prev_current, reference.T_prev_current, atol=1e-5)
    assert [result.multi_frame for result in runs["torch"]] == [False, True, True]
