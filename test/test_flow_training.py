"""Flow training (``mgdepth train-flow``): the synthetic set's exact flow, RAFT's sequence loss, checkpoints that
load weights-only and resume to the same weights as an uninterrupted run, the CLI's errors."""

from __future__ import annotations

import pytest
import torch

from mgdepth_core.cli import main as cli_main
from mgdepth_core.data.synthetic import SyntheticDynamicDataset
from mgdepth_core.geometry import pixel_grid, sample
from mgdepth_core.models.flow import FlowEstimator
from mgdepth_core.train.flow_training import STATE_FILE, WEIGHTS_FILE, FlowTrainConfig, FlowTrainer, sequence_loss


@pytest.mark.parametrize("flip", [False, True])
def test_exact_flow_carries_each_pixel_to_where_it_was_in_the_previous_frame(flip):
    """Sampling the previous frame at p + flow(p) reproduces the current frame (away from occlusions), also for
    flipped samples, whose flow is mirrored; a zero flow does not."""
    dataset = SyntheticDynamicDataset([3], 6, 96, 320, [0, -1], augment=flip, flip_probability=1.0,
                                      jitter_probability=0.0, with_flow=True)
    item = dataset[2]
    current, previous, flow = item["color"][0][None], item["color"][-1][None], item["flow_gt"][-1][None]
    assert flow.shape == (1, 2, 96, 320)
    grid = pixel_grid(96, 320)[:2][None]
    warped = sample(previous, grid + flow)
    error = (warped - current).abs().mean(1)
    unwarped = (previous - current).abs().mean(1)
    assert error.median() < 0.02 and error.mean() < 0.4 * unwarped.mean()


def test_sequence_loss_weights_every_refinement_by_gamma():
    target = torch.zeros(1, 2, 4, 4)
    predictions = [torch.full((1, 2, 4, 4), 3.0), torch.full((1, 2, 4, 4), 2.0), torch.full((1, 2, 4, 4), 1.0)]
    assert sequence_loss(predictions, target, 0.8).item() == pytest.approx(0.64 * 3 + 0.8 * 2 + 1)


TINY = dict(height=64, width=96, synthetic_sequences=1, synthetic_frames=5, batch_size=1, num_flow_updates=2,
            save_every_steps=2, threads=1)


def test_training_writes_loadable_weights_and_resumes_to_the_uninterrupted_result(tmp_path):
    straight = FlowTrainer(FlowTrainConfig(max_steps=4, **TINY), tmp_path / "straight")
    weights = straight.train()
    state = torch.load(tmp_path / "straight" / STATE_FILE, weights_only=True)  # no pickled code needed
    assert state["step"] == 4 and state["backend"] == "raft_small"

    class KilledError(Exception):
        pass

    class DiesAtStep3(FlowTrainer):  # a crash after the checkpoint of step 2, before step 3 completes
        def batch(self, step: int) -> dict:
            if step == 2:
                raise KilledError
            return super().batch(step)

    with pytest.raises(KilledError):
        DiesAtStep3(FlowTrainConfig(max_steps=4, **TINY), tmp_path / "split").train()
    resumed = FlowTrainer(FlowTrainConfig(max_steps=4, **TINY), tmp_path / "split", resume=True)
    assert resumed.step == 2
    resumed.train()
    for key, value in straight.net.state_dict().items():
        assert torch.allclose(value, resumed.net.state_dict()[key], atol=1e-6), key

    # the weights file is what model.flow_weights / FlowEstimator(weights=...) load, strictly
    estimator = FlowEstimator("raft_small", weights, num_flow_updates=2)
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        expected = straight.estimator.flow_predictions(image, image.flip(-1))[-1]
    assert estimator.has_weights and torch.allclose(estimator(image, image.flip(-1)), expected, atol=1e-5)


def test_cli_refuses_to_overwrite_or_to_resume_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli_main(["train-flow", "--run-dir", str(run_dir), "--resume"]) == 1
    assert "holds no flow checkpoint" in capsys.readouterr().err
    overrides = [item for key, value in TINY.items() for item in ("--set", f"{key}={value}")]
    assert cli_main(["train-flow", "--run-dir", str(run_dir), "--max-steps", "1", *overrides]) == 0
    assert (run_dir / WEIGHTS_FILE).is_file()
    assert cli_main(["train-flow", "--run-dir", str(run_dir), "--max-steps", "2", *overrides]) == 1
    assert "already holds a flow checkpoint" in capsys.readouterr().err
    assert cli_main(["train-flow", "--run-dir", str(run_dir), "--resume", "--max-steps", "2"]) == 0
    assert torch.load(run_dir / STATE_FILE, weights_only=True)["step"] == 2
