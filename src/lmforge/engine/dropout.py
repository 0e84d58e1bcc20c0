"""Faster dropout on CPU: the same Bernoulli masks, drawn four to a 64-bit random number.

Why: on CPUs where PyTorch does not use MKL's Bernoulli generator (AMD, and builds without
MKL), ``torch.bernoulli_`` draws one random number per element through the generic per-element
path. On the 2-core EPYC this project is benchmarked on that was 16 % of a MiniLM-L6
fine-tuning step (``bench/step_breakdown.py``): BERT-style models call dropout 3 times per
layer, and inside SDPA the attention-probability dropout forces its math path with a Bernoulli
mask of shape (batch, heads, T, T).

How: one ``random_`` call fills int64 words (full 64-bit range) from the same global CPU
generator; each word is read as four int16 lanes, and an element is kept when its lane is at
least ``k - 32768`` with ``k = round(p * 65536)``. So every element is dropped independently
with probability ``p' = k / 65536`` (``|p' - p| <= 2**-17``, e.g. 0.100006 for 0.1) and kept
values are scaled by ``1 / (1 - p')``, which keeps the expectation exact. The mask
distribution is the one ``nn.Dropout`` samples; the random numbers are different, so a run
with this switched on is reproducible with itself, not bit-identical to one without.

Scope (``fast_dropout_scope(model)``, applied by the engine on CPU while training):
- every ``nn.Dropout`` module of the model is swapped for :class:`FastDropout` (restored on
  exit, so the model that is saved or returned is unchanged);
- a model that runs the ``sdpa`` attention of transformers' ``AttentionInterface`` is
  switched to ``lmforge_sdpa``: in training with attention dropout > 0 it computes
  ``softmax(q k^T * scale + mask)`` itself and applies the fast dropout; otherwise (eval,
  no dropout) it is exactly transformers' ``sdpa_attention_forward``. Restored on exit, so
  no checkpoint's config names it.
Other attention implementations (eager, flash) and functional ``F.dropout`` calls inside a
model are left as they are.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

log = logging.getLogger(__name__)

ATTENTION_NAME = "lmforge_sdpa"
_INT16_RANGE = 65536


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout of ``x`` with drop probability ``p`` (rounded to a multiple of 2**-16).

    Args:
        x: Any tensor (float32 / bfloat16 / float16), any shape.
        p: Drop probability in [0, 1).

    Returns:
        ``x`` with each element zeroed independently with probability ``p'`` and the others
        scaled by ``1 / (1 - p')``; differentiable (the mask is saved for backward as a bool
        tensor).
    """
    drawn = draw_keep_mask(x, p)
    if drawn is None:
        return x
    keep, scale = drawn
    return torch.where(keep, x * scale, 0.0)


def draw_keep_mask(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float] | None:
    """The keep mask of :func:`fast_dropout` for ``x``, and the scale of the kept values.

    Args:
        x: The tensor to drop from (its shape and device are used).
        p: Drop probability in [0, 1).

    Returns:
        ``(keep, scale)``: a bool tensor of ``x``'s shape, True with probability ``1 - p'``, and
        ``1 / (1 - p')``; None when ``p`` rounds to 0 (nothing is dropped).
    """
    k = round(p * _INT16_RANGE)
    if k <= 0:
        return None
    if k >= _INT16_RANGE:
        raise ValueError(f"dropout probability must be < 1, got {p}")
    n = x.numel()
    # (ceil(n / 4),) int64 words -> (4 * ceil(n / 4),) int16 lanes, uniform over [-32768, 32767].
    # random_(min, None) is PyTorch's full 64-bit range; plain random_() leaves the sign bit 0,
    # which would bias the top int16 lane of every word.
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, None)
    keep = words.view(torch.int16)[:n].view(x.shape) >= (k - _INT16_RANGE // 2)
    return keep, _INT16_RANGE / (_INT16_RANGE - k)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose training-mode mask comes from :func:`fast_dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - as nn.Dropout
        if not self.training or self.p == 0.0:
            return x
        return fast_dropout(x, self.p)


def _attention_with_fast_dropout(module: nn.Module, query: torch.Tensor, key: torch.Tensor,
                                 value: torch.Tensor, attention_mask: torch.Tensor | None,
                                 dropout: float = 0.0, scaling: float | None = None,
                                 is_causal: bool | None = None,
                                 **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, with the attention-probability dropout done here.

    Shapes: query (B, H, Tq, D), key / value (B, Hkv, Tk, D); the mask is what transformers
    builds for ``sdpa`` (bool, True = attend, or additive float), broadcastable to
    (B, H, Tq, Tk), or None. Returns the output as (B, Tq, H, D), like the SDPA function.
    """
    if not (module.training and dropout > 0.0) or kwargs.get("position_bias") is not None \
            or kwargs.get("softcap") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, is_causal=is_causal,
                                      **kwargs)
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scale  # (B, H, Tq, Tk)
    q_len, k_len = scores.shape[-2:]
    # The same rule as transformers' sdpa_attention_forward: causal only without a mask, and
    # a module that does not say is taken as causal.
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is None and causal and q_len > 1:
        # Upper-left aligned like SDPA's is_causal (only reached without a cache offset).
        attention_mask = torch.ones(q_len, k_len, dtype=torch.bool,
                                    device=scores.device).tril()
    if attention_mask is not None:
        mask = attention_mask[..., :k_len]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool \
            else scores + mask
    probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(fast_dropout(probs, dropout), value)  # (B, H, Tq, D)
    return out.transpose(1, 2).contiguous(), None


def register_attention() -> None:
    """Register ``lmforge_sdpa`` with transformers' attention and mask interfaces (idempotent)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    if ATTENTION_NAME not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(ATTENTION_NAME, _attention_with_fast_dropout)
    if ATTENTION_NAME not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(ATTENTION_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def _swap_dropouts(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    swapped = []
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout and child.p > 0.0:
                fast = FastDropout(child.p)
                fast.train(child.training)
                setattr(parent, name, fast)
                swapped.append((parent, name, child))
    return swapped


def _switch_attention(model: nn.Module) -> list[tuple[Any, str]]:
    """Point every ``sdpa`` config in ``model`` at ``lmforge_sdpa``; return what to restore."""
    switched = []
    seen: set[int] = set()
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is None or id(config) in seen or not hasattr(config, "_attn_implementation"):
            continue
        seen.add(id(config))
        if config._attn_implementation == "sdpa":
            config._attn_implementation_internal = ATTENTION_NAME
            switched.append((config, "sdpa"))
    return switched


@contextlib.contextmanager
def fast_dropout_scope(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Use :func:`fast_dropout` for ``model``'s dropout while the block runs; undo it after.

    Args:
        model: The model to train (unwrapped or wrapped; its modules are walked).
        enabled: False makes this a no-op (the block runs with the model as it is).

    Yields:
        How many dropout sites were switched (modules plus attention configs).
    """
    if not enabled:
        yield 0
        return
    register_attention()
    swapped = _swap_dropouts(model)
    switched = _switch_attention(model)
    log.debug("fast dropout: %d dropout modules, %d attention configs", len(swapped),
              len(switched))
    try:
        yield len(swapped) + len(switched)
    finally:
        for parent, name, original in swapped:
            original.train(getattr(parent, name).training)
            setattr(parent, name, original)
        for config, implementation in switched:
            config._attn_implementation_internal = implementation
