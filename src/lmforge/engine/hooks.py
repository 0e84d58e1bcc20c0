"""Hook points of the training engine.

Later stages plug into the one loop instead of copying it. The engine calls, per optimizer
step::

    on_train_begin(engine)                       once, after resume
    for each micro-batch:
        batch = transform_batch(batch, engine)   e.g. mix in replay examples
        out = model(**batch)                      out["loss"]: scalar tensor
        loss = extra_loss(loss, batch, out, engine)  e.g. EWC / distillation terms
        backward(loss / grad_accum)
        after_backward(batch, engine)            e.g. FGM / PGD adversarial steps, which may
                                                  call engine.forward_loss(batch) and backward
    clip, optimizer.step, scheduler.step
    on_step_end(engine, metrics)                 metrics of this step (loss, lr, ...)
    on_evaluate(engine, metrics)                 after each evaluation
    on_train_end(engine)

Each method has a no-op default, so a hook overrides only what it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from lmforge.engine.loop import Engine


class StepHook:
    """Base class for engine hooks; every method is optional."""

    def on_train_begin(self, engine: Engine) -> None:
        """Called once before the first step (after a resume restored state)."""

    def transform_batch(self, batch: dict[str, torch.Tensor], engine: Engine) -> dict[str, Any]:
        """Return the batch to train on (default: unchanged)."""
        return batch

    def extra_loss(self, loss: torch.Tensor, batch: dict[str, Any], outputs: dict[str, Any],
                   engine: Engine) -> torch.Tensor:
        """Return the loss to back-propagate (default: unchanged)."""
        return loss

    def after_backward(self, batch: dict[str, Any], engine: Engine) -> None:
        """Called after each micro-batch's backward, before the optimizer step."""

    def on_step_end(self, engine: Engine, metrics: dict[str, float]) -> None:
        """Called after each optimizer step with that step's metrics."""

    def on_evaluate(self, engine: Engine, metrics: dict[str, float]) -> None:
        """Called after each evaluation with its metrics."""

    def on_train_end(self, engine: Engine) -> None:
        """Called once when training finishes normally."""


class EarlyStopping(StepHook):
    """Stop when ``metric`` has not improved for ``patience`` evaluations.

    The best checkpoint is kept by the engine (``train.metric_for_best``); this hook only
    decides when to stop.

    Args:
        metric: Name of the evaluation metric, e.g. ``eval_macro_f1``.
        patience: Evaluations without improvement before stopping.
        greater_is_better: Direction of improvement.
        min_delta: Smallest change that counts as an improvement.
    """

    def __init__(self, metric: str, patience: int, greater_is_better: bool,
                 min_delta: float = 0.0) -> None:
        self.metric, self.patience = metric, patience
        self.greater_is_better, self.min_delta = greater_is_better, min_delta
        self.best: float | None = None
        self.bad_evaluations = 0

    def on_train_begin(self, engine: Engine) -> None:
        """A resumed run starts from the best value already recorded in its checkpoint."""
        if self.best is None and engine.state.best_metric is not None:
            self.best = engine.state.best_metric

    def on_evaluate(self, engine: Engine, metrics: dict[str, float]) -> None:
        """Count evaluations without improvement and request a stop at ``patience``."""
        value = metrics.get(self.metric)
        if value is None:
            return
        improved = self.best is None or (
            value > self.best + self.min_delta if self.greater_is_better
            else value < self.best - self.min_delta)
        if improved:
            self.best, self.bad_evaluations = value, 0
        else:
            self.bad_evaluations += 1
            if self.bad_evaluations >= self.patience:
                engine.should_stop = True
