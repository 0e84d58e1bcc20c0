"""Loading a pretrained checkpoint for a task: shared by every task's ``load_model``."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn
from transformers import AutoConfig

from lmforge.errors import ConfigError

log = logging.getLogger(__name__)

# Config attributes that hold dropout probabilities in the common generative architectures:
# T5/mT5 (dropout_rate), BART/mBART/Marian (dropout, attention_dropout), GPT-2 (*_pdrop),
# Llama/Qwen (attention_dropout), BERT-style (hidden_dropout_prob, ...).
_DROPOUT_KEYS = ("dropout_rate", "dropout", "attention_dropout", "resid_pdrop", "embd_pdrop",
                 "attn_pdrop", "hidden_dropout_prob", "attention_probs_dropout_prob",
                 "hidden_dropout", "activation_dropout")


def load_pretrained(auto_class: Any, source: str, kwargs: dict[str, Any],
                    what: str) -> tuple[nn.Module, bool]:
    """``auto_class.from_pretrained`` with a one-line error; returns (model, new weights?)."""
    try:
        model, info = auto_class.from_pretrained(source, output_loading_info=True, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot load {source!r} for {what} ({first}); use a folder with "
                          "config.json and safetensors") from None
    return model, bool(info.get("missing_keys") or info.get("mismatched_keys"))


def model_kwargs(model_cfg: Any) -> dict[str, Any]:
    """from_pretrained options shared by every task (safety, attention, dropout)."""
    if model_cfg is None:
        return {}
    kwargs: dict[str, Any] = {"trust_remote_code": model_cfg.trust_remote_code,
                              "attn_implementation": model_cfg.attn_implementation}
    if model_cfg.dropout is not None:
        kwargs.update(hidden_dropout_prob=model_cfg.dropout,
                      attention_probs_dropout_prob=model_cfg.dropout)
    return kwargs


def generative_model_kwargs(source: str, model_cfg: Any) -> dict[str, Any]:
    """``from_pretrained`` options with ``model.dropout`` mapped onto the model's own keys.

    :func:`model_kwargs` writes BERT's dropout names, which T5 / BART / GPT-2 configs do not
    read; here the override goes to whichever dropout attributes the checkpoint's config has.
    """
    kwargs = model_kwargs(model_cfg)
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        kwargs.pop(key, None)
    dropout = getattr(model_cfg, "dropout", None)
    if dropout is None:
        return kwargs
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=kwargs.get(
            "trust_remote_code", False))
    except (OSError, ValueError):
        return kwargs  # load_pretrained reports the unreadable source with a clear message
    keys = [k for k in _DROPOUT_KEYS if isinstance(getattr(config, k, None), float | int)
            and not isinstance(getattr(config, k), bool)]
    if not keys:
        log.warning("model.dropout=%s ignored: %s has no known dropout setting",
                    dropout, type(config).__name__)
    kwargs.update(dict.fromkeys(keys, dropout))
    return kwargs


