"""``mgdepth infer``: per-frame .npy/.png outputs equal to the estimator's, resuming, intrinsics errors."""

import json

import cv2
import numpy as np
import pytest
import torch

from mgdepth_core.cli import main
from mgdepth_core.data.synthetic import SyntheticSequence
from mgdepth_core.inference import DepthEstimator
from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.models.weights import save_weights

H, W = 64, 192


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    torch.manual_seed(0)
    model = build_model(ModelConfig(method="manydepth", height=H, width=W, pretrained=False, num_depth_bins=8))
    save_weights(model, root / "weights")
    sequence = SyntheticSequence(seed=2, num_frames=3, height=H * 2, width=W * 2)
    (root / "images").mkdir()
    images = []
    for index in range(3):
        image = sequence.frame(index)["image"]
        cv2.imwrite(str(root / "images" / f"{index:04d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append(image)
    K = sequence.K
    (root / "K.json").write_text(json.dumps({"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]}))
    return root, images, K


def run_infer(root, *extra):
    return main(["infer", "--weights", str(root / "weights"), "--images", str(root / "images" / "*.png"),
                 "--intrinsics", str(root / "K.json"), "--out", str(root / "out"), "--device", "cpu",
                 "--min-translation", "0", *extra])


def test_outputs_equal_the_estimator_and_resume(setup):
    root, images, K = setup
    assert run_infer(root) == 0
    estimator = DepthEstimator.from_weights(root / "weights", device="cpu", min_translation=0.0)
    expected = [estimator.process(image, K).depth for image in images]
    for index in range(3):
        depth = np.load(root / "out" / f"{index:04d}_depth.npy")
        assert depth.shape == (H, W)
        np.testing.assert_allclose(depth, expected[index], atol=1e-5)
        assert cv2.imread(str(root / "out" / f"{index:04d}_depth.png")).shape == (H, W, 3)
    stored = json.loads((root / "out" / "intrinsics.json").read_text())
    np.testing.assert_allclose(stored["K"], K * np.array([[0.5], [0.5], [1]]))
    # Resume: only the missing frame is recomputed, with the previous frame as its lookup (multi-frame depth).
    (root / "out" / "0002_depth.npy").unlink()
    png_before = (root / "out" / "0001_depth.png").stat().st_mtime_ns
    assert run_infer(root) == 0
    np.testing.assert_allclose(np.load(root / "out" / "0002_depth.npy"), expected[2], atol=1e-5)
    assert (root / "out" / "0001_depth.png").stat().st_mtime_ns == png_before


def test_missing_intrinsics_is_an_error(setup, caplog):
    root, _, _ = setup
    code = main(["infer", "--weights", str(root / "weights"), "--images", str(root / "images"),
                 "--out", str(root / "out2"), "--device", "cpu"])
    assert code == 2 and "--intrinsics" in caplog.text
