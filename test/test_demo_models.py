"""The demo's model cache (mgdepth_core.demo_models): a miss trains and publishes a checksummed folder, a hit loads
it without training, a corrupt or half-written entry is rebuilt and never loaded, the key follows the config and the
package version, and a Manydepth2 weights folder carries its flow network."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from mgdepth_core import demo_models
from mgdepth_core.demo_models import MARKER, DemoModelsConfig, ModelBuilder, check_complete, model_key
from mgdepth_core.models.weights import load_weights

TINY = DemoModelsConfig(flow_steps=1, depth_steps=1, automask_warmup_steps=0, flow_batch_size=1, batch_size=1,
                        num_depth_bins=8,
                        synthetic_sequences=1, synthetic_frames=4)


def quiet(_text: str) -> None:
    pass


@pytest.fixture(scope="module")
def manydepth2_cache(tmp_path_factory):
    """Flow network + Manydepth2, one training step each, in a fresh cache."""
    root = tmp_path_factory.mktemp("cache")
    models = ModelBuilder(replace(TINY, methods=["manydepth2"]), root, log=quiet).build()
    return root, models


@pytest.mark.slow
def test_miss_trains_and_publishes_checksummed_models(manydepth2_cache):
    root, models = manydepth2_cache
    assert set(models) == {"flow", "manydepth2"} and all(model.built for model in models.values())
    for model in models.values():
        assert check_complete(model.folder) is None
        record = json.loads((model.folder / MARKER).read_text())
        assert record["steps"] == 1 and record["initialisation"].startswith("random")
        assert not model.folder.with_name(model.folder.name + ".building").exists()
    assert sorted(p.name for p in root.iterdir()) == sorted(m.folder.name for m in models.values())


@pytest.mark.slow
def test_manydepth2_weights_carry_their_flow_network(manydepth2_cache):
    _, models = manydepth2_cache
    weights = models["manydepth2"].path
    assert (weights / "flow.pth").is_file()
    assert "flow_weights: flow.pth" in (weights / "mgdepth.yaml").read_text()  # relative: the folder can move
    model = load_weights(weights)
    trained = torch.load(models["flow"].path, weights_only=True)
    assert model.flow.has_weights
    for key, value in model.flow.net.state_dict().items():
        assert torch.equal(value, trained[key]), key


@pytest.mark.slow
def test_hit_loads_without_training(manydepth2_cache, monkeypatch):
    root, first = manydepth2_cache

    def no_training(*args, **kwargs):
        raise AssertionError("a complete cache entry was trained again")

    monkeypatch.setattr(ModelBuilder, "_train", no_training)
    again = ModelBuilder(replace(TINY, methods=["manydepth2"]), root, log=quiet).build()
    assert {name: (m.path, m.built) for name, m in again.items()} == {name: (m.path, False)
                                                                      for name, m in first.items()}


@pytest.mark.slow
def test_corrupt_or_unfinished_entries_are_rebuilt(tmp_path):
    config = replace(TINY, methods=["manydepth"])
    messages: list[str] = []
    model = ModelBuilder(config, tmp_path, log=messages.append).build()["manydepth"]
    encoder = model.path / "encoder.pth"
    encoder.write_bytes(encoder.read_bytes()[:-100])  # a truncated file
    assert "checksum" in check_complete(model.folder)
    rebuilt = ModelBuilder(config, tmp_path, log=messages.append).build()["manydepth"]
    assert rebuilt.built and check_complete(rebuilt.folder) is None
    assert any("not usable" in m and "checksum" in m for m in messages)
    load_weights(rebuilt.path)  # loads: the truncated file was replaced

    (rebuilt.folder / MARKER).unlink()  # a build killed before its marker
    assert "complete.json" in check_complete(rebuilt.folder)
    assert ModelBuilder(config, tmp_path, log=quiet).build()["manydepth"].built
    (rebuilt.path / "extra.pth").write_bytes(b"x")  # a file the marker does not list
    assert "files differ" in check_complete(rebuilt.folder)
    assert ModelBuilder(config, tmp_path, retrain=True, log=quiet).build()["manydepth"].built  # --retrain


def test_key_follows_config_and_version(monkeypatch):
    flow = demo_models.flow_config(TINY)
    assert model_key("flow", flow) == model_key("flow", demo_models.flow_config(replace(TINY)))
    assert model_key("flow", flow) != model_key("flow", demo_models.flow_config(replace(TINY, flow_steps=2)))
    keys = [step.key for step in ModelBuilder(TINY, log=quiet).plan]
    changed_flow = [step.key for step in ModelBuilder(replace(TINY, flow_steps=2), log=quiet).plan]
    assert changed_flow[0] != keys[0] and changed_flow[1] != keys[1]  # Manydepth2 depends on its flow network
    assert changed_flow[2] == keys[2]  # Manydepth does not
    monkeypatch.setattr(demo_models, "__version__", "99.0.0")
    assert [step.key for step in ModelBuilder(TINY, log=quiet).plan] != keys


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="demo methods"):
        ModelBuilder(replace(TINY, methods=["monodepth2"]), log=quiet)


def test_cache_root_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert demo_models.cache_root() == tmp_path / "mgdepth" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert demo_models.cache_root().parts[-3:] == (".cache", "mgdepth", "models")
