"""The engine on a toy model: hooks, NaN handling, checkpoints, accumulation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from torch import nn

from lmforge.engine import checkpoint as ckpt
from lmforge.engine.hooks import StepHook
from lmforge.engine.loop import Engine
from lmforge.errors import NonFiniteLossError
from lmforge.settings import TrainConfig


class Regression(nn.Module):
    """y = w x + b with dropout, returning the engine's output dict."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        pred = self.linear(self.dropout(x)).squeeze(-1)
        return {"loss": ((pred - y) ** 2).mean(), "n": y.numel()}


def collate(examples: list[dict[str, Any]], generator: torch.Generator) -> dict[str, Any]:
    x = torch.tensor([e["x"] for e in examples])
    noise = torch.randn(len(examples), generator=generator) * 0.01
    return {"x": x, "y": torch.tensor([e["y"] for e in examples]) + noise}


def toy_data(n: int = 64) -> datasets.Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.3
    return datasets.Dataset.from_dict({"x": x.tolist(), "y": y.tolist()})


def engine(tmp_path: Path, hooks: tuple[StepHook, ...] = (), **cfg: Any) -> Engine:
    torch.manual_seed(0)
    settings = {"batch_size": 8, "lr": 0.05, "max_steps": 20, "log_every": 1, "eval_every": 5,
                "warmup_ratio": 0.0, **cfg}
    return Engine(Regression(), TrainConfig(**settings), toy_data(), collate, tmp_path,
                  eval_dataset=toy_data(16), hooks=hooks, show_progress=False)


def test_trains_and_calls_hooks_in_order(tmp_path: Path) -> None:
    calls: list[str] = []

    class Recorder(StepHook):
        def on_train_begin(self, engine: Engine) -> None:
            calls.append("begin")

        def transform_batch(self, batch: dict, engine: Engine) -> dict:
            calls.append("batch")
            return batch

        def extra_loss(self, loss: torch.Tensor, batch: dict, outputs: dict,
                       engine: Engine) -> torch.Tensor:
            calls.append("loss")
            return loss + 0.0 * outputs["loss"]

        def after_backward(self, batch: dict, engine: Engine) -> None:
            calls.append("backward")

        def on_step_end(self, engine: Engine, metrics: dict) -> None:
            calls.append("step")

        def on_evaluate(self, engine: Engine, metrics: dict) -> None:
            calls.append("eval")

        def on_train_end(self, engine: Engine) -> None:
            calls.append("end")

    eng = engine(tmp_path, hooks=(Recorder(),), grad_accum=2, max_steps=4, eval_every=2)
    first = eng.evaluate()["eval_loss"]
    result = eng.train()
    assert result.state.global_step == 4
    assert result.metrics["eval_loss"] < first
    assert calls[0] == "begin" and calls[-1] == "end"
    assert calls[1:5] == ["batch", "loss", "backward", "batch"]  # two micro-batches per step
    assert calls.count("step") == 4 and calls.count("eval") == 2
    assert result.state.batch_in_epoch == 0 or result.state.batch_in_epoch == 8


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path: Path) -> None:
    class Poison(StepHook):
        def extra_loss(self, loss: torch.Tensor, batch: dict, outputs: dict,
                       engine: Engine) -> torch.Tensor:
            return loss * float("nan") if engine.state.global_step >= 7 else loss

    eng = engine(tmp_path, hooks=(Poison(),), save_every=5)
    with pytest.raises(NonFiniteLossError, match="loss became nan at step 8.*last good"):
        eng.train()
    assert [p.name for p in ckpt.checkpoint_dirs(tmp_path / "checkpoints")] == ["step-00000005"]


def test_nan_loss_before_any_checkpoint_says_so(tmp_path: Path) -> None:
    class Poison(StepHook):
        def extra_loss(self, loss: torch.Tensor, batch: dict, outputs: dict,
                       engine: Engine) -> torch.Tensor:
            return loss * float("nan") if engine.state.global_step >= 2 else loss

    eng = engine(tmp_path, hooks=(Poison(),), save_every=5)
    with pytest.raises(NonFiniteLossError, match="at step 3; no checkpoint had been written "
                                                 "yet") as info:
        eng.train()
    assert "last good" not in str(info.value)
    assert not (tmp_path / "checkpoints").exists()


def test_the_best_step_has_a_checkpoint_when_saves_and_evaluations_do_not_line_up(
        tmp_path: Path) -> None:
    # Evaluations every 2 steps, saves every 7: each new best is saved as well, so the
    # best weights that finetune restores at the end exist (they did not: a traceback).
    # "Best" is the highest loss here, so the best step is an early one, not the last.
    eng = engine(tmp_path, max_steps=12, eval_every=2, save_every=7, keep_last=1,
                 metric_for_best="eval_loss", greater_is_better=True)
    eng.train()
    best = eng.state.best_step
    assert best is not None and best % 7 != 0 and best != 12
    assert (tmp_path / "checkpoints" / f"step-{best:08d}" / "model.safetensors").is_file()


def test_checkpoint_round_trip_prune_and_best(tmp_path: Path) -> None:
    eng = engine(tmp_path, save_every=5, eval_every=5, keep_last=1)
    eng.train()
    dirs = [p.name for p in ckpt.checkpoint_dirs(tmp_path / "checkpoints")]
    best = eng.state.best_step
    assert dirs[-1] == "step-00000020"
    assert len(dirs) <= 2 and f"step-{best:08d}" in dirs
    state = json.loads((tmp_path / "checkpoints" / dirs[-1] / "state.json").read_text())
    assert state["global_step"] == 20
    # A half-written checkpoint (killed mid-save) is ignored when looking for the latest.
    (tmp_path / "checkpoints" / ".tmp-step-00000025").mkdir()
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "step-00000020"
    # Loading restores weights exactly.
    other = engine(tmp_path / "other")
    loaded = ckpt.load_checkpoint(tmp_path / "checkpoints" / dirs[-1], other.unwrapped,
                                  other.optimizer, other.scheduler, 0)
    assert loaded.global_step == 20
    for a, b in zip(eng.unwrapped.parameters(), other.unwrapped.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_in_process_matches_uninterrupted(tmp_path: Path) -> None:
    full = engine(tmp_path / "full")
    full_result = full.train()
    part = engine(tmp_path / "part", max_steps=20, save_every=10)
    part.total_steps = 10  # stop half-way, as if killed right after the step-10 checkpoint
    part.train()
    resumed = engine(tmp_path / "part", save_every=10)
    result = resumed.train(resume=True)
    assert result.state.global_step == 20
    for a, b in zip(full.unwrapped.parameters(), resumed.unwrapped.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert result.metrics["eval_loss"] == pytest.approx(full_result.metrics["eval_loss"],
                                                        rel=1e-5)
