"""Precision choice, the bf16 switch, and the process-wide state a run restores."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lmforge.engine.precision import AUTO_PRECISION_ENV, make_accelerator, resolve_precision
from lmforge.engine.scope import run_scope
from lmforge.errors import ConfigError

CPU = torch.device("cpu")


@pytest.mark.parametrize("forced", ["bf16", "fp32"])
def test_switch_makes_auto_resolve_to_the_forced_precision(
        forced: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTO_PRECISION_ENV, forced)
    assert resolve_precision("auto", CPU) == forced
    # Explicit choices are the user's and are not changed by the switch.
    other = "fp32" if forced == "bf16" else "bf16"
    assert resolve_precision(other, CPU) == other


def test_bad_switch_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTO_PRECISION_ENV, "fp8")
    with pytest.raises(ConfigError, match="bf16 or fp32"):
        resolve_precision("auto", CPU)


@pytest.mark.parametrize("order", [("bf16", "fp32"), ("fp32", "bf16"), ("bf16", "bf16")])
def test_accelerators_of_any_precision_follow_each_other(order: tuple[str, str]) -> None:
    for precision in order:
        accelerator, resolved = make_accelerator(precision)
        assert resolved == precision
        assert accelerator.mixed_precision == {"fp32": "no"}.get(precision, precision)
        with accelerator.autocast():
            out = torch.nn.Linear(4, 4)(torch.ones(2, 4))
        assert out.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)


def test_run_scope_restores_process_state() -> None:
    from accelerate.state import AcceleratorState

    outer, _ = make_accelerator("fp32")
    threads = torch.get_num_threads()
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    with run_scope():
        make_accelerator("bf16")
        assert AcceleratorState().mixed_precision == "bf16"
        torch.set_num_threads(1)
        torch.manual_seed(123)
        random.seed(123)
        np.random.seed(123)
    # The caller's accelerator, threads and random streams are as they were.
    assert AcceleratorState().mixed_precision == "no" == outer.mixed_precision
    assert torch.get_num_threads() == threads
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
