"""Config loading: defaults < YAML < overrides, type coercion, unknown keys, help text."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmforge.config import build_config, iter_options, parse_overrides, save_config
from lmforge.errors import ConfigError
from lmforge.pretraining.settings import PretrainJob
from lmforge.settings import TrainConfig


def test_precedence_yaml_then_overrides(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("train:\n  lr: 0.01\n  batch_size: 4\ndata:\n  path: a.txt\n")
    job = build_config(PretrainJob, cfg_file, ["train.lr=3e-4"])
    assert job.train.lr == pytest.approx(3e-4)  # override wins over YAML
    assert job.train.batch_size == 4  # YAML wins over default
    assert job.train.seed == TrainConfig().seed  # default kept
    assert job.data.path == "a.txt"


def test_types_are_coerced() -> None:
    job = build_config(PretrainJob, None, ["train.max_steps=10", "data.packing=false",
                                           "track.backends=jsonl,tensorboard",
                                           "model.pretrained=none", "train.epochs=2"])
    assert job.train.max_steps == 10 and isinstance(job.train.max_steps, int)
    assert job.data.packing is False
    assert job.track.backends == ["jsonl", "tensorboard"]
    assert job.model.pretrained is None
    assert isinstance(job.train.epochs, float)


@pytest.mark.parametrize(("override", "expected"), [
    ("train.lrr=1", "did you mean 'train.lr'"),
    ("trian.lr=1", "did you mean 'train'"),
    ("lr=1", "did you mean 'train.lr'"),
    ("train.precision=bf61", "did you mean 'bf16'"),
    ("train.batch_size=abc", "train.batch_size must be int"),
    ("train.batch_size=0", "train.batch_size must be >= 1"),
    ("data.packing=maybe", "data.packing must be true or false"),
    ("objective.name=mlmm", "did you mean 'mlm'"),
    ("train.lr", "not key=value"),
])
def test_bad_values_name_the_problem(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        build_config(PretrainJob, None, [override])


def test_yaml_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        build_config(PretrainJob, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(PretrainJob, bad)
    nested = tmp_path / "nested.yaml"
    nested.write_text("train:\n  optimizer:\n    lr: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.optimizer'"):
        build_config(PretrainJob, nested)


def test_saved_config_round_trips(tmp_path: Path) -> None:
    job = build_config(PretrainJob, None, ["train.lr=1e-3",
                                           "model.overrides={num_hidden_layers: 1}"])
    save_config(job, tmp_path / "config.yaml")
    again = build_config(PretrainJob, tmp_path / "config.yaml")
    assert again == job
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["lr"] == 1e-3


def test_every_option_has_help() -> None:
    options = list(iter_options(PretrainJob))
    assert len(options) > 40
    missing = [key for key, _, help_text in options if not help_text]
    assert missing == []


def test_parse_overrides_nests() -> None:
    assert parse_overrides(["a.b=1", "a.c=x", "d=true"]) == {"a": {"b": 1, "c": "x"}, "d": True}


def test_shipped_configs_validate() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    from lmforge.cli import COMMANDS

    files = sorted(root.glob("*.yaml"))
    assert files
    for f in files:
        # configs/<demo|main>-<command>.yaml names the command whose config it is.
        command = "tokenizer train" if "tokenizer" in f.name else f.stem.split("-")[-1]
        cls = COMMANDS[command].config if command in COMMANDS else PretrainJob
        build_config(cls, f)
