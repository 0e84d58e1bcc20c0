"""The strategy hooks on small modules: EWC's penalty, LwF's distillation, A-GEM's projection."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from lmforge.continual.buffer import ReplayBuffer
from lmforge.continual.hooks import AgemHook, EwcHook, LwfHook


def test_ewc_penalty_is_the_fisher_weighted_distance() -> None:
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 3.0]]))
    fisher = {"weight": torch.tensor([[2.0, 0.5]])}
    anchor = {"weight": torch.tensor([[0.0, 1.0]])}
    hook = EwcHook(model, fisher, anchor, weight=10.0)
    # (10 / 2) * (2 * 1^2 + 0.5 * 2^2) = 20
    assert float(hook.penalty().detach()) == pytest.approx(20.0)
    loss = hook.extra_loss(torch.tensor(1.0), {}, {}, None)
    loss.backward()
    # d/dw = lambda * F * (w - w*) = 10 * [2 * 1, 0.5 * 2]
    assert model.weight.grad.tolist() == [[20.0, 10.0]]


class _Logits(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, input_ids: torch.Tensor) -> Any:
        return SimpleNamespace(logits=input_ids.float() @ self.weight)


def _engine() -> Any:
    return SimpleNamespace(accelerator=SimpleNamespace(autocast=contextlib.nullcontext))


def test_lwf_term_vanishes_for_the_same_model_and_grows_when_outputs_move() -> None:
    model = _Logits(torch.randn(3, 4))
    previous = LwfHook.frozen_copy(model)
    hook = LwfHook(previous, [[0, 1], [2, 3]], alpha=1.0, temperature=2.0)
    batch = {"input_ids": torch.randn(5, 3), "labels": torch.zeros(5)}
    same = hook.extra_loss(torch.tensor(0.0), batch, {"logits": model(batch["input_ids"]).logits},
                           _engine())
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.weight.add_(torch.randn(3, 4))
    moved = hook.extra_loss(torch.tensor(0.0), batch,
                            {"logits": model(batch["input_ids"]).logits}, _engine())
    assert float(moved) > 0.01
    assert all(not p.requires_grad for p in previous.parameters())


class _Quadratic(nn.Module):
    """loss = target . w (a linear loss: its gradient is the row's target vector)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))

    def forward(self, target: torch.Tensor, **_: Any) -> dict[str, Any]:
        return {"loss": (target.float().mean(0) * self.w).sum(), "n": target.shape[0]}


class _Stream:
    def __init__(self, rows: list[list[float]]) -> None:
        self.experiences = [SimpleNamespace(train=[{"target": r} for r in rows])]


def _agem_engine(model: nn.Module) -> Any:
    def forward_loss(batch: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        out = model(**batch)
        return out["loss"], out

    return SimpleNamespace(model=model, cfg=SimpleNamespace(grad_accum=1, seed=0),
                           state=SimpleNamespace(global_step=0),
                           accelerator=SimpleNamespace(process_index=0, device="cpu",
                                                       backward=lambda loss: loss.backward()),
                           forward_loss=forward_loss)


@pytest.mark.parametrize(("grad", "expected"), [
    ([-1.0, 1.0], [0.0, 1.0]),   # against the memory gradient [1, 0]: the conflict is removed
    ([1.0, 1.0], [1.0, 1.0]),    # agrees with it: unchanged
])
def test_agem_projects_only_conflicting_gradients(grad: list[float],
                                                  expected: list[float]) -> None:
    model = _Quadratic()
    buffer = ReplayBuffer(1, "per_experience", 0)
    buffer.add_experience(0, 1)
    collate = lambda rows: {"target": torch.tensor([r["target"] for r in rows])}  # noqa: E731
    hook = AgemHook(buffer, _Stream([[1.0, 0.0]]), collate, count=1)
    engine = _agem_engine(model)
    model.w.grad = torch.tensor(grad)
    hook.after_backward({}, engine)
    assert model.w.grad.tolist() == pytest.approx(expected)
    # After projection g . g_ref >= 0.
    assert float(model.w.grad @ torch.tensor([1.0, 0.0])) >= 0
