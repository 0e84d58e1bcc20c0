"""Adversarial and consistency training as engine hooks (``train.adversarial=...``).

All embedding methods solve the min-max problem of Madry et al. (2018) in the word-embedding
space (Miyato et al. 2017) of an encoder:

    min_theta  E_(x,y) [ max_{||delta|| <= eps}  L(f_theta(E(x) + delta), y) ]

``delta`` has the shape of the word-embedding output (B, T, H); it is added by a forward
hook on the model's input-embedding module, so it works whether the embeddings are trained
or frozen (PEFT), and for every encoder task (the hook does not care what the head is). Norms
are per example, the Frobenius norm over its non-padding tokens.

- FGM: one normalised gradient step, delta = eps * g / ||g||; loss = L(x) + L(x + delta).
- PGD: K steps delta_t = Proj_eps(delta_{t-1} + alpha * g_t / ||g_t||); only the last one
  contributes parameter gradients; loss = L(x) + L(x + delta_K).
- FreeLB (Zhu et al. 2020): random start delta_0 ~ U(-1, 1) * init_mag / sqrt(T H); the
  parameter gradients of all K ascent steps are averaged, (1/K) sum_t grad L(x + delta_t),
  and the same dropout mask is used in every step (their section 3.3). No clean pass: the
  engine's own pass is the first ascent step, so FreeLB costs K passes, not K + 1.
- R-Drop (Liang et al. 2021): each batch is run twice with different dropout masks (as one
  doubled batch) and the two output distributions are pulled together,
  L = (CE_1 + CE_2) / 2 + (alpha / 2) * (KL(p1 || p2) + KL(p2 || p1)) / 2.
  Chosen over SMART (Jiang et al. 2020) because it needs one extra pass instead of an inner
  ascent loop and no teacher copy of the model, i.e. no state beyond the model to checkpoint:
  resume, DDP and PEFT work unchanged.

Under gradient accumulation every extra pass is scaled by 1 / grad_accum like the engine's
own; under DDP the extra passes go through the wrapped model, and PGD's inner steps (which
only need d loss / d delta) run under ``no_sync``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.engine.hooks import StepHook
from lmforge.errors import ConfigError, NonFiniteLossError

if TYPE_CHECKING:  # pragma: no cover
    from lmforge.engine.loop import Engine

_EMBEDDING_NAMES = ("word_embeddings", "embed_tokens", "wte", "shared")


def find_word_embeddings(module: nn.Module) -> nn.Module:
    """The input (word) embedding module of a task objective, its model or a PEFT wrapper."""
    for candidate in (module, getattr(module, "model", None)):
        getter = getattr(candidate, "get_input_embeddings", None)
        if callable(getter):
            try:
                found = getter()
            except (NotImplementedError, AttributeError):
                found = None
            if isinstance(found, nn.Module):
                return found
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Embedding) and name.split(".")[-1] in _EMBEDDING_NAMES:
            return sub
    raise ConfigError("train.adversarial needs a model with an input-embedding module "
                      "(get_input_embeddings); this model has none")


def _per_example_norm(x: torch.Tensor) -> torch.Tensor:
    """(B, T, H) -> (B, 1, 1) Frobenius norms, floored to avoid division by zero."""
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)


def project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Scale each example's delta back onto the L2 ball of radius ``epsilon`` where outside."""
    norms = _per_example_norm(delta)
    return delta * torch.clamp(epsilon / norms, max=1.0)


class EmbeddingPerturbation:
    """Adds ``delta`` (B, T, H) to the output of the word-embedding module while armed."""

    def __init__(self, module: nn.Module) -> None:
        self.delta: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._add)

    def _add(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> Any:
        delta = self.delta
        if delta is None or not torch.is_tensor(output) or output.shape != delta.shape:
            return None
        return output + delta.to(output.dtype)

    def remove(self) -> None:
        """Detach the forward hook."""
        self.handle.remove()


class AdversarialTraining(StepHook):
    """FGM / PGD / FreeLB / R-Drop as one engine hook (see the module docstring).

    Args:
        method: ``fgm``, ``pgd``, ``freelb`` or ``rdrop``.
        epsilon: Norm bound (PGD, FreeLB) or step size (FGM).
        alpha: Ascent step size (PGD, FreeLB).
        steps: Ascent steps K (PGD, FreeLB).
        init_mag: FreeLB's random-start magnitude.
        rdrop_alpha: R-Drop's KL weight.
        multi_label: R-Drop compares Bernoulli (sigmoid) outputs instead of softmax ones.
    """

    def __init__(self, method: str, epsilon: float = 0.3, alpha: float = 0.1, steps: int = 2,
                 init_mag: float = 0.1, rdrop_alpha: float = 1.0,
                 multi_label: bool = False) -> None:
        if method not in ("fgm", "pgd", "freelb", "rdrop"):
            raise ConfigError(f"unknown adversarial method {method!r}; choose fgm, pgd, "
                              "freelb or rdrop")
        self.method, self.epsilon, self.alpha, self.steps = method, epsilon, alpha, steps
        self.init_mag, self.rdrop_alpha, self.multi_label = init_mag, rdrop_alpha, multi_label
        self.perturbation: EmbeddingPerturbation | None = None
        self._capture: Any = None
        self._captured: Any = None
        self._mask: torch.Tensor | None = None
        self._rng: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._micro = 0  # micro-batch index within the optimizer step (FreeLB's seeds)
        self._hidden = 0
        self.extra_forward = self.extra_backward = self.micro_batches = self.optimizer_steps = 0

    # ----------------------------------------------------------------- engine hooks
    def on_train_begin(self, engine: Engine) -> None:
        """Attach the embedding (or output) hook to the unwrapped model."""
        model = engine.unwrapped
        if self.method == "rdrop":
            target = getattr(model, "model", model)
            self._capture = target.register_forward_hook(self._keep_output)
        elif self.perturbation is None:
            embedding = find_word_embeddings(model)
            self._hidden = int(embedding.weight.shape[-1])
            self.perturbation = EmbeddingPerturbation(embedding)

    def on_train_end(self, engine: Engine) -> None:
        """Detach the hooks (the saved model is untouched)."""
        if self.perturbation is not None:
            self.perturbation.remove()
            self.perturbation = None
        if self._capture is not None:
            self._capture.remove()
            self._capture = None

    def transform_batch(self, batch: dict[str, torch.Tensor], engine: Engine) -> dict[str, Any]:
        """Arm the first pass: delta = 0 (FGM, PGD) or the random start (FreeLB); R-Drop
        doubles the batch."""
        self.micro_batches += 1
        if self.method == "rdrop":
            self._captured = []
            self.extra_forward += 1
            self.extra_backward += 1
            return {k: torch.cat([v, v]) if torch.is_tensor(v) and v.dim() >= 1 else v
                    for k, v in batch.items()}
        assert self.perturbation is not None, "on_train_begin was not called"
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else mask
        self._mask = mask.unsqueeze(-1).float()  # (B, T, 1)
        shape = (*ids.shape, self._hidden)
        if self.method == "freelb":
            self._rng = (torch.get_rng_state(),
                         torch.cuda.get_rng_state(ids.device) if ids.is_cuda else None)
            delta = self._random_start(shape, engine, ids.device)
        else:
            delta = torch.zeros(shape, device=ids.device)
        self.perturbation.delta = delta.requires_grad_(True)
        return batch

    def extra_loss(self, loss: torch.Tensor, batch: dict[str, Any], outputs: dict[str, Any],
                   engine: Engine) -> torch.Tensor:
        """FreeLB: the engine's pass is ascent step 1 of K, so its gradient counts 1/K.
        R-Drop: add the symmetric KL of the two halves of the doubled batch."""
        if self.method == "freelb":
            # Same value (the logged loss stays comparable), 1/K of the gradient.
            return loss.detach() + (loss - loss.detach()) / self.steps
        if self.method == "rdrop":
            captured, self._captured = self._captured, None
            if not captured:
                raise ConfigError("rdrop: the model's outputs were not seen; use it with an "
                                  "encoder task (classification, NER, extractive QA)")
            mask = batch.get("attention_mask")
            kl = self._symmetric_kl(captured[-1], mask)
            return loss + 0.5 * self.rdrop_alpha * kl
        return loss

    def after_backward(self, batch: dict[str, Any], engine: Engine) -> None:
        """The adversarial passes (the engine's backward has filled delta.grad)."""
        if self.method == "rdrop":
            return
        assert self.perturbation is not None and self._mask is not None
        try:
            if self.method == "fgm":
                self._fgm(batch, engine)
            elif self.method == "pgd":
                self._pgd(batch, engine)
            else:
                self._freelb(batch, engine)
        finally:
            self.perturbation.delta = None
            self._mask = None

    def on_step_end(self, engine: Engine, metrics: dict[str, float]) -> None:
        """Count optimizer steps (for the passes-per-step report)."""
        self.optimizer_steps += 1
        self._micro = 0

    # ----------------------------------------------------------------- methods
    def _fgm(self, batch: dict[str, Any], engine: Engine) -> None:
        grad = self._delta_grad()
        self._set_delta(self.epsilon * grad / _per_example_norm(grad), grad=False)
        self._backward(engine, batch, 1.0)

    def _pgd(self, batch: dict[str, Any], engine: Engine) -> None:
        grad = self._delta_grad()
        delta = torch.zeros_like(grad)
        for step in range(1, self.steps + 1):
            delta = project(delta + self.alpha * grad / _per_example_norm(grad),
                            self.epsilon) * self._mask
            last = step == self.steps
            current = self._set_delta(delta, grad=not last)
            if last:
                self._backward(engine, batch, 1.0)
            else:
                # Only d loss / d delta is needed: no parameter gradients, no DDP reduction.
                with engine.accelerator.no_sync(engine.model):
                    loss, _ = engine.forward_loss(batch)
                    self._check(loss, engine)
                    grad = torch.autograd.grad(loss, current)[0].detach()
                self.extra_forward += 1
                self.extra_backward += 1

    def _freelb(self, batch: dict[str, Any], engine: Engine) -> None:
        for _ in range(1, self.steps):
            grad = self._delta_grad()
            assert self.perturbation is not None and self.perturbation.delta is not None
            delta = self.perturbation.delta.detach() + self.alpha * grad / _per_example_norm(grad)
            self._set_delta(project(delta, self.epsilon) * self._mask, grad=True)
            self._restore_rng()
            self._backward(engine, batch, 1.0 / self.steps)

    # ----------------------------------------------------------------- helpers
    def _random_start(self, shape: tuple[int, ...], engine: Engine,
                      device: torch.device) -> torch.Tensor:
        """FreeLB's start: U(-1, 1) on real tokens, scaled by init_mag / sqrt(tokens * H)."""
        if self.init_mag == 0:
            return torch.zeros(shape, device=device)
        # Seeded from the run's seed and position, not the global RNG: dropout draws stay
        # exactly those of the run, and a resumed run draws the same starts.
        seed = (engine.cfg.seed * 1_000_003 + engine.state.global_step * 10_007 +
                self._micro * 31 + engine.accelerator.process_index * 7 + 5) % (2**63 - 1)
        self._micro += 1
        gen = torch.Generator().manual_seed(seed)
        assert self._mask is not None
        mask = self._mask.to(device)
        noise = (torch.rand(shape, generator=gen) * 2 - 1).to(device) * mask
        tokens = mask.flatten(1).sum(1).clamp_min(1).view(-1, 1, 1)
        return noise * self.init_mag / torch.sqrt(tokens * shape[-1])

    def _delta_grad(self) -> torch.Tensor:
        assert self.perturbation is not None and self.perturbation.delta is not None
        grad = self.perturbation.delta.grad
        if grad is None:
            raise ConfigError("train.adversarial: the word embeddings got no gradient; the "
                              "model must read input_ids through its input-embedding module")
        assert self._mask is not None
        return grad.detach() * self._mask

    def _set_delta(self, delta: torch.Tensor, grad: bool) -> torch.Tensor:
        assert self.perturbation is not None
        current = delta.detach().requires_grad_(grad)
        self.perturbation.delta = current
        return current

    def _backward(self, engine: Engine, batch: dict[str, Any], weight: float) -> None:
        loss, _ = engine.forward_loss(batch)
        self._check(loss, engine)
        engine.accelerator.backward(loss * weight / engine.cfg.grad_accum)
        self.extra_forward += 1
        self.extra_backward += 1

    def _restore_rng(self) -> None:
        """FreeLB: replay the random state of the first pass, so dropout masks match."""
        if self._rng is None:
            return
        cpu, cuda = self._rng
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)

    @staticmethod
    def _check(loss: torch.Tensor, engine: Engine) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the adversarial loss became {loss.item()} at step "
                f"{engine.state.global_step + 1}; lower adv.epsilon / adv.alpha or train.lr")

    def _keep_output(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self._captured is not None:
            self._captured.append(output)

    def _symmetric_kl(self, output: Any, mask: torch.Tensor | None) -> torch.Tensor:
        """Mean symmetric KL between the two halves of each logits field of ``output``."""
        terms = []
        for key in ("logits", "start_logits", "end_logits"):
            logits = output.get(key) if hasattr(output, "get") else getattr(output, key, None)
            if logits is None:
                continue
            first, second = logits.float().chunk(2)
            if self.multi_label and logits.dim() == 2:
                kl = _bernoulli_kl(first, second) + _bernoulli_kl(second, first)
                terms.append(0.5 * kl.sum(-1).mean())
                continue
            lp, lq = F.log_softmax(first, -1), F.log_softmax(second, -1)
            kl = 0.5 * ((lp.exp() * (lp - lq)).sum(-1) + (lq.exp() * (lq - lp)).sum(-1))
            if kl.dim() == 2 and mask is not None:  # token level (B, T): real tokens only
                valid = mask.chunk(2)[0].float()
                terms.append((kl * valid).sum() / valid.sum().clamp_min(1))
            else:
                terms.append(kl.mean())
        if not terms:
            raise ConfigError("rdrop needs a model whose outputs have logits")
        return torch.stack(terms).mean()

    def report(self) -> dict[str, Any]:
        """Extra forward / backward passes per optimizer step and per micro-batch."""
        steps, micro = max(self.optimizer_steps, 1), max(self.micro_batches, 1)
        return {"method": self.method,
                "extra_forward_per_step": round(self.extra_forward / steps, 3),
                "extra_backward_per_step": round(self.extra_backward / steps, 3),
                "extra_forward_per_micro_batch": round(self.extra_forward / micro, 3),
                "extra_backward_per_micro_batch": round(self.extra_backward / micro, 3),
                **({"note": "R-Drop runs the batch twice as one doubled batch"}
                   if self.method == "rdrop" else {})}


def _bernoulli_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(sigmoid(p)) || Bernoulli(sigmoid(q))) elementwise."""
    p = torch.sigmoid(p_logits)
    return p * (F.logsigmoid(p_logits) - F.logsigmoid(q_logits)) + \
        (1 - p) * (F.logsigmoid(-p_logits) - F.logsigmoid(-q_logits))


def adversarial_hook(job: Any, tasks: Mapping[str, Any]) -> AdversarialTraining | None:
    """The hook for ``job.train.adversarial`` (None for ``none``); checks the task.

    ``tasks`` is every registered task by name (this module sits below the task registry).

    Raises:
        ConfigError: The task generates text (the perturbation targets encoder tasks, whose
            model reads the whole input through one embedding module in one pass).
    """
    method = job.train.adversarial
    if method == "none":
        return None
    if tasks[job.task.name].generative:
        encoders = [name for name, task in tasks.items() if not task.generative]
        raise ConfigError(f"train.adversarial={method} works with the encoder tasks "
                          f"{', '.join(encoders)}, not task.name={job.task.name}")
    adv = job.adv
    return AdversarialTraining(method, adv.epsilon, adv.alpha, adv.steps, adv.init_mag,
                               adv.rdrop_alpha, multi_label=job.task.sigmoid_outputs())


__all__ = ["AdversarialTraining", "EmbeddingPerturbation", "adversarial_hook",
           "find_word_embeddings", "project"]
