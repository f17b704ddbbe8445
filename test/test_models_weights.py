"""Weights folders: round trip, official layout without mgdepth.yaml, clear errors for wrong files."""

import pytest
import torch

from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.models.weights import NETWORK_FILES, WeightsError, load_weights, save_weights

H, W = 64, 128


def small_model(**overrides):
    torch.manual_seed(0)
    fields = dict(method="manydepth", height=H, width=W, pretrained=False, num_depth_bins=8) | overrides
    model = build_model(ModelConfig(**fields)).eval()
    model.min_depth_bin.fill_(0.8)
    model.max_depth_bin.fill_(9.5)
    return model


def outputs(model):
    torch.manual_seed(2)
    image, lookup = torch.rand(1, 3, H, W), torch.rand(1, 3, H, W)
    K = torch.tensor([[[100.0, 0, W / 2], [0, 100, H / 2], [0, 0, 1]]])
    T = torch.eye(4)[None]
    T[0, 0, 3] = 0.1
    with torch.no_grad():
        return (model.multi_frame_forward(image, lookup, T, K)[("disp", 0)], model.teacher_forward(image)[("disp", 0)],
                model.relative_pose(image, lookup, True))


def test_round_trip_restores_outputs_config_and_bins(tmp_path):
    model = small_model(depth_binning="inverse")
    save_weights(model, tmp_path / "w")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == sorted(
        [f"{n}.pth" for n in NETWORK_FILES] + ["mgdepth.yaml"])
    encoder = torch.load(tmp_path / "w" / "encoder.pth", weights_only=True)
    assert encoder["height"] == H and encoder["width"] == W and encoder["min_depth_bin"] == pytest.approx(0.8)
    loaded = load_weights(tmp_path / "w")
    assert loaded.config.depth_binning == "inverse" and not loaded.training
    assert float(loaded.max_depth_bin) == pytest.approx(9.5)
    for a, b in zip(outputs(model), outputs(loaded)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_official_layout_is_read_off_the_tensors(tmp_path):
    model = small_model(num_layers=50)
    save_weights(model, tmp_path)
    (tmp_path / "mgdepth.yaml").unlink()
    encoder = torch.load(tmp_path / "encoder.pth", weights_only=True)
    encoder["backprojector.pix_coords"] = torch.zeros(8, 3, 16 * 32)  # the original stores its grids
    encoder["min_depth_bin"] = torch.tensor(0.8)  # some releases hold 0-d tensors
    torch.save(encoder, tmp_path / "encoder.pth")
    loaded = load_weights(tmp_path)
    config = loaded.config
    assert (config.method, config.num_layers, config.teacher_num_layers) == ("manydepth", 50, 18)
    assert config.num_depth_bins == 8
    assert (config.height, config.width) == (H, W)
    for a, b in zip(outputs(model), outputs(loaded)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_wrong_architecture_names_file_and_tensor(tmp_path):
    save_weights(small_model(), tmp_path)
    with pytest.raises(WeightsError, match=r"encoder\.pth: tensor 'reduce_conv\.0\.weight' has shape "
                                           r"\(64, 72, 3, 3\), the model expects \(64, 160, 3, 3\)"):
        load_weights(tmp_path, config=ModelConfig(method="manydepth", height=H, width=W, pretrained=False))
    with pytest.raises(WeightsError, match="missing tensor"):
        load_weights(tmp_path, config=ModelConfig(method="manydepth", num_layers=50, num_depth_bins=8,
                                                   pretrained=False))


def test_missing_and_corrupt_files_are_named(tmp_path):
    save_weights(small_model(), tmp_path)
    (tmp_path / "pose.pth").unlink()
    with pytest.raises(FileNotFoundError, match="lacks pose.pth"):
        load_weights(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_weights(tmp_path / "nowhere")
    save_weights(small_model(), tmp_path)
    (tmp_path / "depth.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="depth.pth: not a readable"):
        load_weights(tmp_path)


def test_folder_without_teacher_loads_and_says_so(tmp_path):
    save_weights(small_model(), tmp_path)
    (tmp_path / "mono_encoder.pth").unlink()
    (tmp_path / "mono_depth.pth").unlink()
    assert load_weights(tmp_path).has_teacher is False
