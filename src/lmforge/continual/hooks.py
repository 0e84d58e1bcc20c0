"""Continual-learning strategies as engine hooks (:class:`~lmforge.engine.hooks.StepHook`).

None of them copies the training loop; each plugs into one hook point:

- :class:`ReplayHook` (``transform_batch``): mix memory rows into every batch;
- :class:`EwcHook` (``extra_loss``): online EWC's quadratic penalty (Kirkpatrick et al. 2017;
  Schwarz et al. 2018)  L + (lambda / 2) sum_i F_i (theta_i - theta*_i)^2;
- :class:`LwfHook` (``extra_loss``): Learning without Forgetting (Li & Hoiem 2016),
  L + alpha T^2 KL(softmax(z_old / T) || softmax(z / T)) over the old tasks' outputs;
- :class:`AgemHook` (``after_backward``): A-GEM (Chaudhry et al. 2019): when the step's
  gradient g points against the memory gradient g_ref (g . g_ref < 0), project it:
  g <- g - (g . g_ref / g_ref . g_ref) g_ref.

:func:`estimate_fisher` computes an experience's Fisher diagonal with the engine's own
forward / backward (its precision, device and process group).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.continual.buffer import ReplayBuffer, concat_batches, memory_batch
from lmforge.data.sampling import make_batches
from lmforge.engine.hooks import StepHook
from lmforge.engine.loop import _seed_for, collate

_STEP_SALT = 7919  # keeps the memory samples apart from the engine's batch seeds


class _Counted(StepHook):
    """Counts micro-batches within an optimizer step (for per-micro-batch seeds)."""

    def __init__(self) -> None:
        self.micro = 0

    def on_train_begin(self, engine: Any) -> None:
        self.micro = 0

    def on_step_end(self, engine: Any, metrics: dict[str, float]) -> None:
        self.micro = 0

    def _generator(self, engine: Any, salt: int) -> torch.Generator:
        seed = _seed_for(engine.cfg.seed, engine.state.global_step, self.micro,
                         salt + engine.accelerator.process_index)
        return torch.Generator().manual_seed(seed)


class ReplayHook(_Counted):
    """Append ``count`` memory rows to every training micro-batch.

    Args:
        buffer: The memory (earlier experiences only).
        stream: The stream whose training rows the buffer indexes.
        collator: The task's batch maker.
        pad_token_id: The tokenizer's padding id.
        count: Memory rows per micro-batch.
    """

    def __init__(self, buffer: ReplayBuffer, stream: Any, collator: Any, pad_token_id: int,
                 count: int) -> None:
        super().__init__()
        self.buffer, self.stream, self.collator = buffer, stream, collator
        self.pad_token_id, self.count = pad_token_id, count

    def transform_batch(self, batch: dict[str, torch.Tensor], engine: Any) -> dict[str, Any]:
        """The batch followed by ``count`` memory rows (seeded by step and micro-batch)."""
        entries = self.buffer.sample(self.count, self._generator(engine, _STEP_SALT))
        self.micro += 1
        if not entries:
            return batch
        memory = memory_batch(self.stream, entries, self.collator, engine.accelerator.device)
        return concat_batches(batch, memory, self.pad_token_id)


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters of ``model`` that train, by name."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def calibrated_lambda(fisher: dict[str, torch.Tensor], end: dict[str, torch.Tensor],
                      start: dict[str, torch.Tensor], penalty: float) -> float:
    """lambda such that the penalty at the experience's own weight change is ``penalty``.

    With D = theta_end - theta_start the step the experience just learned took:
    (lambda / 2) sum_i F_i D_i^2 = penalty, so lambda = 2 penalty / sum_i F_i D_i^2. A new
    experience may then move the weights about as far as the last one did in directions the
    Fisher calls unimportant, and pays ``penalty`` nats for the same move along important
    ones. This follows the Fisher's scale (batch size, loss, fit) and the step size (lr,
    steps), which a fixed lambda does not. 0 when nothing moved (no Fisher-weighted change).
    """
    moved = sum(float((f * (end[n] - start[n]) ** 2).sum()) for n, f in fisher.items()
                if n in start and n in end)
    return 2.0 * penalty / moved if moved > 0 else 0.0


class EwcHook(StepHook):
    """Online EWC: a quadratic pull towards the previous weights, weighted by the Fisher.

    Args:
        model: The trained module (the engine's unwrapped model).
        fisher: Running Fisher diagonal per parameter name.
        anchor: theta*: the weights after the previous experience.
        weight: lambda.
    """

    def __init__(self, model: nn.Module, fisher: dict[str, torch.Tensor],
                 anchor: dict[str, torch.Tensor], weight: float) -> None:
        params = trainable_parameters(model)
        self.terms = [(params[n], fisher[n], anchor[n]) for n in fisher if n in params]
        self.weight = weight
        self.penalty_sum = self.loss_sum = 0.0

    def share(self) -> float | None:
        """Mean penalty over mean task loss during the training (None before a step)."""
        return self.penalty_sum / self.loss_sum if self.loss_sum > 0 else None

    def penalty(self) -> torch.Tensor:
        """(lambda / 2) sum_i F_i (theta_i - theta*_i)^2."""
        total = sum(((p.float() - a) ** 2 * f).sum() for p, f, a in self.terms)
        return 0.5 * self.weight * total

    def extra_loss(self, loss: torch.Tensor, batch: dict[str, Any], outputs: dict[str, Any],
                   engine: Any) -> torch.Tensor:
        """The task loss plus the penalty."""
        if not self.terms or self.weight == 0:
            return loss
        penalty = self.penalty()
        self.penalty_sum += float(penalty.detach())
        self.loss_sum += float(loss.detach())
        return loss + penalty


def estimate_fisher(engine: Any, dataset: Any, batches: int, seed: int) -> dict[str, torch.Tensor]:
    """Fisher diagonal F_i = mean over mini-batches of (dL/dtheta_i)^2 (empirical Fisher).

    Uses the engine's ``forward_loss`` and backward on ``batches`` seeded batches of
    ``dataset`` (the experience just learned), at the weights training ended with.
    """
    model = engine.unwrapped
    params = trainable_parameters(model)
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    plan = make_batches(len(dataset), engine.cfg.batch_size, shuffle=True, seed=seed, epoch=0,
                        drop_last=False)[:batches]
    engine.model.eval()  # no dropout: the Fisher of the function the model computes
    engine.optimizer.zero_grad(set_to_none=True)
    for index, rows in enumerate(plan):
        batch = collate(dataset, rows, engine.collator, _seed_for(seed, 0, index),
                        engine.accelerator.device)
        loss, _ = engine.forward_loss(batch)
        engine.accelerator.backward(loss)
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach().float() ** 2
        engine.optimizer.zero_grad(set_to_none=True)
    for value in fisher.values():
        value /= max(len(plan), 1)
    return fisher


class LwfHook(StepHook):
    """Distil the previous model's outputs on the old tasks' classes into the new model.

    Args:
        previous: A frozen copy of the model before this experience.
        groups: Class index groups to preserve (each old task's head, or the old classes).
        alpha: Weight of the distillation term.
        temperature: T.
    """

    def __init__(self, previous: nn.Module, groups: list[list[int]], alpha: float,
                 temperature: float) -> None:
        self.previous = previous
        self.groups, self.alpha, self.temperature = groups, alpha, temperature

    @staticmethod
    def frozen_copy(model: nn.Module) -> nn.Module:
        """An eval-mode, gradient-free copy of ``model``."""
        previous = copy.deepcopy(model).eval()
        for p in previous.parameters():
            p.requires_grad_(False)
        return previous

    def extra_loss(self, loss: torch.Tensor, batch: dict[str, Any], outputs: dict[str, Any],
                   engine: Any) -> torch.Tensor:
        """loss + alpha * mean over groups of T^2 KL(p_old^T || p_new^T)."""
        if not self.groups or self.alpha == 0:
            return loss
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "task_ids")}
        with torch.no_grad(), engine.accelerator.autocast():
            old = self.previous(**inputs).logits.float()
        new = outputs["logits"]
        t = self.temperature
        terms = []
        for group in self.groups:
            index = torch.as_tensor(group, device=new.device)
            target = F.softmax(old.index_select(1, index) / t, dim=-1)
            log_new = F.log_softmax(new.index_select(1, index) / t, dim=-1)
            terms.append(F.kl_div(log_new, target, reduction="batchmean") * t * t)
        return loss + self.alpha * torch.stack(terms).mean()


class AgemHook(_Counted):
    """Project each step's gradient so the loss on the memory does not increase (A-GEM).

    Args:
        buffer: The episodic memory (earlier experiences).
        stream: The stream whose rows the buffer indexes.
        collator: The task's batch maker.
        count: Memory rows per reference gradient.
    """

    def __init__(self, buffer: ReplayBuffer, stream: Any, collator: Any, count: int) -> None:
        super().__init__()
        self.buffer, self.stream, self.collator, self.count = buffer, stream, collator, count
        self.projected = 0
        self.steps = 0

    def after_backward(self, batch: dict[str, Any], engine: Any) -> None:
        """On the last micro-batch of a step, replace g by its projection when g . g_ref < 0."""
        self.micro += 1
        if self.micro % engine.cfg.grad_accum or not len(self.buffer):
            return
        entries = self.buffer.sample(self.count, self._generator(engine, 2 * _STEP_SALT))
        params = [p for p in engine.model.parameters() if p.requires_grad]
        grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                 for p in params]
        for p in params:
            p.grad = None
        memory = memory_batch(self.stream, entries, self.collator, engine.accelerator.device)
        loss, _ = engine.forward_loss(memory)
        engine.accelerator.backward(loss)
        refs = [p.grad.detach() if p.grad is not None else torch.zeros_like(p) for p in params]
        dot = sum((g.float() * r.float()).sum() for g, r in zip(grads, refs, strict=True))
        ref_sq = sum((r.float() ** 2).sum() for r in refs)
        self.steps += 1
        if dot < 0 and ref_sq > 0:
            scale = dot / ref_sq
            grads = [g - (scale * r).to(g.dtype) for g, r in zip(grads, refs, strict=True)]
            self.projected += 1
        for p, g in zip(params, grads, strict=True):
            p.grad = g
