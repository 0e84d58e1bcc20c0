"""The search space: parsing, did-you-mean, conditions, checks against the config."""

from __future__ import annotations

import optuna
import pytest

from lmforge.config import to_dict
from lmforge.errors import ConfigError
from lmforge.finetuning.settings import FinetuneJob
from lmforge.tuning.space import check_against, grid_space, parse_space, sample

SPACE = {
    "train.lr": {"log_uniform": ["1e-5", 3e-4]},  # YAML reads 1e-5 as a string
    "train.batch_size": [16, 32],
    "train.epochs": {"int": [1, 4], "step": 1},
    "peft.method": ["none", "lora"],
    "peft.r": {"int": [4, 16], "when": {"peft.method": "lora"}},
}


def test_parse_and_sample_with_a_condition() -> None:
    params = parse_space(SPACE)
    assert [p.kind for p in params] == ["log_uniform", "choice", "int", "choice", "int"]
    assert params[0].low == 1e-5
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {"none": 0, "lora": 0}
    for _ in range(12):
        values = sample(params, study.ask())
        seen[values["peft.method"]] += 1
        # peft.r exists exactly when the condition holds.
        assert ("peft.r" in values) == (values["peft.method"] == "lora")
        assert 1e-5 <= values["train.lr"] <= 3e-4 and values["train.batch_size"] in (16, 32)
    assert seen["none"] and seen["lora"]


@pytest.mark.parametrize(("space", "message"), [
    ({}, "search space is empty"),
    ({"train.lrr": {"uniform": [0, 1]}}, "did you mean 'train.lr'"),
    ({"lr": [1e-4]}, "did you mean 'train.lr'"),
    ({"train.lr": {"uniform": [1e-3, 1e-5]}}, "low 0.001 > high 1e-05"),
    ({"train.lr": {"log_uniform": [0, 1e-3]}}, "log ranges need low > 0"),
    ({"train.lr": 1e-4}, "is a fixed value"),
    ({"train.lr": []}, "has no choices"),
    ({"train.lr": {"unifrom": [0, 1]}}, "did you mean 'uniform'"),
    ({"peft.r": {"int": [4, 8], "when": {"peft.method": "lora"}}}, "not searched before"),
    ({"peft.method": ["none", "bitfit"], "peft.r": {"int": [4, 8], "when": {"peft.method":
                                                                          "lora"}}},
     "the condition never holds"),
    ({"train.metric_for_best": ["eval_loss"]}, "set by the tuner"),
])
def test_bad_spaces_fail_with_one_line(space: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_space(space)
    assert "\n" not in str(err.value)


def test_values_the_config_rejects_fail_before_any_trial() -> None:
    base = to_dict(FinetuneJob())
    base.pop("output_dir")
    check_against(parse_space(SPACE), base)  # all bounds valid
    with pytest.raises(ConfigError, match=r"train.batch_size=0 is not a valid value"):
        check_against(parse_space({"train.batch_size": [0, 16]}), base)
    with pytest.raises(ConfigError, match=r"train.warmup_ratio=1.5"):
        check_against(parse_space({"train.warmup_ratio": {"uniform": [0.0, 1.5]}}), base)


def test_grid_needs_discrete_unconditional_values() -> None:
    grid = grid_space(parse_space({"train.batch_size": [8, 16],
                                   "train.warmup_ratio": {"uniform": [0.0, 0.2], "step": 0.1},
                                   "train.epochs": {"int": [1, 2]}}))
    assert grid == {"train.batch_size": [8, 16], "train.warmup_ratio": [0.0, 0.1, 0.2],
                    "train.epochs": [1, 2]}
    with pytest.raises(ConfigError, match="needs discrete values"):
        grid_space(parse_space({"train.lr": {"log_uniform": [1e-5, 1e-3]}}))
    with pytest.raises(ConfigError, match="conditional"):
        grid_space(parse_space(SPACE))
