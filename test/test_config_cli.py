"""Config loading (YAML + overrides, clear errors) and the `mgdepth` command line."""

import subprocess
import sys
from dataclasses import dataclass

import pytest

from mgdepth_core import __version__
from mgdepth_core.config import ConfigError, load_config, option, save_config, to_dict


@dataclass
class _Inner:
    rate: float = option(1e-4, "learning rate")
    steps: list[int] = option([1, 2], "milestones")


@dataclass
class _Outer:
    name: str = option("run", "run name")
    inner: _Inner = option(_Inner(), "inner section")
    enabled: bool = option(False, "a switch")


def test_yaml_overrides_and_roundtrip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: kitti\ninner:\n  rate: 0.001\n")
    config = load_config(_Outer, path, ["inner.steps=[5, 10]", "enabled=true"])
    assert config.name == "kitti" and config.inner.rate == 0.001
    assert config.inner.steps == [5, 10] and config.enabled is True
    saved = tmp_path / "saved.yaml"
    save_config(config, saved)
    text = saved.read_text()
    assert "# learning rate" in text
    assert to_dict(load_config(_Outer, saved)) == to_dict(config)
    # Defaults are not shared between instances.
    a, b = _Outer(), _Outer()
    a.inner.steps.append(3)
    assert b.inner.steps == [1, 2]


def test_config_errors_name_the_problem(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  rat: 0.1\n")
    with pytest.raises(ConfigError, match="inner.rat"):
        load_config(_Outer, path)
    with pytest.raises(ConfigError, match="inner.rate"):
        load_config(_Outer, None, ["inner.rate=fast"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(_Outer, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(_Outer, None, ["inner.rate"])


def _mgdepth(*args):
    return subprocess.run([sys.executable, "-m", "mgdepth_core.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_version_and_help_list_the_verbs():
    version = _mgdepth("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"mgdepth {__version__}"
    help_text = _mgdepth("--help")
    assert help_text.returncode == 0
    from mgdepth_core.cli import _verbs
    verbs = list(_verbs())
    assert verbs, "no verbs discovered"
    for verb in verbs:
        assert verb in help_text.stdout
    bare = _mgdepth()
    assert bare.returncode == 2 and "usage" in bare.stdout
