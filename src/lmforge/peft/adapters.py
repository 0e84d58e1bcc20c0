"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020), which ``peft`` lacks.

An adapter is a small residual MLP applied to a sub-layer's output h (B, T, d)::

    h -> h + W_up f(W_down h),   W_down: d -> d / reduction_factor,   W_up: back to d

placed inside the sub-layer's residual branch, before the residual add and LayerNorm. Houlsby
puts one after the attention output projection and one after the feed-forward output
projection; Pfeiffer keeps only the feed-forward one. ``W_up`` starts at zero, so the adapted
model computes exactly the pretrained function at step 0.

Implementation: the sub-layer's output projection (``BertSelfOutput.dense``,
``BertOutput.dense`` and their equivalents per architecture in :data:`ADAPTER_SITES`) is
wrapped by :class:`AdapterLinear`, so ``dense(x)`` becomes ``adapter(dense(x))``. In BERT the
dropout of ``*Output`` then follows the adapter instead of preceding it, which changes nothing
at inference.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

from lmforge.errors import ConfigError

_BERT_LIKE = (r"\.layer\.\d+\.attention\.output\.dense$", r"\.layer\.\d+\.output\.dense$")
# model_type -> (attention output projection, feed-forward output projection), as regexes
# searched in "." + module name.
ADAPTER_SITES: dict[str, tuple[str, str]] = {
    "bert": _BERT_LIKE, "roberta": _BERT_LIKE, "xlm-roberta": _BERT_LIKE,
    "electra": _BERT_LIKE, "camembert": _BERT_LIKE,
    "distilbert": (r"\.attention\.out_lin$", r"\.ffn\.lin2$"),
    "gpt2": (r"\.attn\.c_proj$", r"\.mlp\.c_proj$"),
    "llama": (r"\.self_attn\.o_proj$", r"\.mlp\.down_proj$"),
    "mistral": (r"\.self_attn\.o_proj$", r"\.mlp\.down_proj$"),
    "qwen2": (r"\.self_attn\.o_proj$", r"\.mlp\.down_proj$"),
    "t5": (r"\.(?:SelfAttention|EncDecAttention)\.o$", r"\.DenseReluDense\.wo$"),
    "mt5": (r"\.(?:SelfAttention|EncDecAttention)\.o$", r"\.DenseReluDense\.wo$"),
    "bart": (r"\.(?:self_attn|encoder_attn)\.out_proj$", r"\.fc2$"),
}

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh,
}


class BottleneckAdapter(nn.Module):
    """``h + W_up f(W_down h)`` with ``W_up`` zero-initialised (identity at the start).

    Args:
        hidden: Model width d.
        bottleneck: Inner width m (d / reduction_factor); 2 d m + d + m parameters.
        non_linearity: Name in :data:`ACTIVATIONS`.
    """

    def __init__(self, hidden: int, bottleneck: int, non_linearity: str = "relu") -> None:
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.act = ACTIVATIONS[non_linearity]()
        self.up = nn.Linear(bottleneck, hidden)
        # Near-identity start (Houlsby et al. 2019, section 2.1): small W_down, zero W_up.
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (..., d)."""
        return h + self.up(self.act(self.down(h)))


class AdapterLinear(nn.Module):
    """A frozen output projection followed by a trainable :class:`BottleneckAdapter`.

    Args:
        base: The projection (``nn.Linear`` or GPT-2's ``Conv1D``).
        adapter: The adapter applied to its output.
    """

    def __init__(self, base: nn.Module, adapter: BottleneckAdapter) -> None:
        super().__init__()
        self.base = base
        self.adapter = adapter

    @property
    def weight(self) -> torch.Tensor:
        """The projection's weight (model code reads it, e.g. T5 checks ``wo.weight.dtype``)."""
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d)."""
        return self.adapter(self.base(x))


def _out_features(module: nn.Module) -> int | None:
    # nn.Linear has out_features; transformers' Conv1D (GPT-2) has nf.
    return getattr(module, "out_features", None) or getattr(module, "nf", None)


def add_adapters(model: nn.Module, model_type: str, sites: str, reduction_factor: int,
                 non_linearity: str = "relu") -> list[str]:
    """Wrap each sub-layer output projection of ``model`` with a bottleneck adapter, in place.

    Args:
        model: A ``transformers`` model of a type in :data:`ADAPTER_SITES`.
        model_type: ``model.config.model_type``.
        sites: ``"houlsby"`` (attention and feed-forward) or ``"pfeiffer"`` (feed-forward).
        reduction_factor: Bottleneck width = hidden size // reduction_factor.
        non_linearity: Activation inside the bottleneck.

    Returns:
        Names of the wrapped modules.
    """
    if model_type not in ADAPTER_SITES:
        raise ConfigError(f"peft.method={sites} has no adapter placement for model type "
                          f"{model_type!r} (known: {', '.join(sorted(ADAPTER_SITES))}); use "
                          "peft.method=lora")
    attention, ffn = ADAPTER_SITES[model_type]
    pattern = re.compile(f"(?:{attention})|(?:{ffn})" if sites == "houlsby" else ffn)
    targets = [(name, module) for name, module in model.named_modules()
               if pattern.search(f".{name}") and _out_features(module)]
    if not targets:
        raise ConfigError(f"peft.method={sites}: no projection of a {model_type} model matched "
                          "the adapter sites; use peft.method=lora")
    for name, module in targets:
        hidden = int(_out_features(module))
        adapter = BottleneckAdapter(hidden, max(1, hidden // reduction_factor), non_linearity)
        weight = next(module.parameters())
        adapter.to(device=weight.device, dtype=weight.dtype)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, AdapterLinear(module, adapter))
    return [name for name, _ in targets]


def has_adapters(model: nn.Module) -> bool:
    """True if ``model`` holds any :class:`AdapterLinear`."""
    return any(isinstance(m, AdapterLinear) for m in model.modules())
