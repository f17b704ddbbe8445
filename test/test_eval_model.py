"""`mgdepth eval --weights`: a saved model run over a split through DepthEstimator (t−1 then t per line)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from mgdepth_core.cli import main as cli_main
from mgdepth_core.eval.export_gt import export_ground_truth
from mgdepth_core.models import ModelConfig, build_model
from mgdepth_core.models.weights import save_weights

DRIVE = "2011_09_26/2011_09_26_drive_0060_sync"


def _split(tmp_path: Path, frames: list[int]) -> Path:
    folder = tmp_path / "splits" / "eigen"
    folder.mkdir(parents=True)
    (folder / "test_files.txt").write_text("".join(f"{DRIVE} {f:010d} l\n" for f in frames))
    return folder


def test_eval_cli_runs_a_saved_model_over_the_split(shared_data, tmp_path, capsys):
    torch.manual_seed(0)
    model = build_model(ModelConfig(method="manydepth", height=64, width=192, pretrained=False))
    save_weights(model, tmp_path / "weights")
    split = _split(tmp_path, [0, 9])
    export_ground_truth(shared_data / "kitti_raw", str(split), out=tmp_path / "gt.npz", progress=False)
    code = cli_main(["eval", "--weights", str(tmp_path / "weights"), "--data", str(shared_data / "kitti_raw"),
                     "--split", str(split), "--gt", str(tmp_path / "gt.npz"), "--device", "cpu",
                     "--save-predictions", str(tmp_path / "pred.npz"), "--csv", str(tmp_path / "eval.csv")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "1 frames had no previous frame" in printed and "abs_rel" in printed
    with np.load(tmp_path / "pred.npz") as archive:
        depth = archive["depth"]
    assert depth.shape == (2, 64, 192) and np.all(np.isfinite(depth)) and depth.min() > 0
    rows = list(csv.DictReader((tmp_path / "eval.csv").read_text().splitlines()))
    assert [r["label"] for r in rows] == [f"{DRIVE} 0000000000 l", f"{DRIVE} 0000000009 l"]
