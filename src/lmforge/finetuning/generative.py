"""Pieces shared by the generative tasks (seq2seq and chat SFT): loss wrapper, reducer, I/O.

Both tasks train token cross-entropy on ``labels`` (-100 = not trained). The loss is a mean
over trained tokens, so the engine's ``n`` is the number of trained tokens and the summed
negative log-likelihood (``count_nll_sum``) gives an exact corpus perplexity.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig

from lmforge.finetuning.classification_task import model_kwargs

log = logging.getLogger(__name__)

IGNORE = -100
# Config attributes that hold dropout probabilities in the common generative architectures:
# T5/mT5 (dropout_rate), BART/mBART/Marian (dropout, attention_dropout), GPT-2 (*_pdrop),
# Llama/Qwen (attention_dropout), BERT-style (hidden_dropout_prob, ...).
_DROPOUT_KEYS = ("dropout_rate", "dropout", "attention_dropout", "resid_pdrop", "embd_pdrop",
                 "attn_pdrop", "hidden_dropout_prob", "attention_probs_dropout_prob",
                 "hidden_dropout", "activation_dropout")


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


class TokenLossObjective(nn.Module):
    """Token cross-entropy on ``labels`` for an encoder-decoder or a causal LM.

    Args:
        model: The ``transformers`` model (saved as is).
        shift: Causal LMs predict token t+1 at position t, so logits[:, :-1] are compared with
            labels[:, 1:]; encoder-decoders already align decoder outputs with labels.
        label_smoothing: Smoothing of the training loss; the reported NLL is unsmoothed.
    """

    def __init__(self, model: nn.Module, shift: bool, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.shift = shift
        self.label_smoothing = label_smoothing

    def forward(self, labels: torch.Tensor, **inputs: torch.Tensor) -> dict[str, Any]:
        """Loss (mean over trained tokens), ``n`` trained tokens and NLL / accuracy counts."""
        if not self.shift and "decoder_input_ids" not in inputs:
            # (B, T) decoder inputs = labels shifted right (the collator had no model)
            inputs["decoder_input_ids"] = self.model.prepare_decoder_input_ids_from_labels(
                labels=labels)
        logits = self.model(**inputs).logits  # (B, T, V)
        if self.shift:
            logits, labels = logits[:, :-1], labels[:, 1:]  # (B, T-1, V), (B, T-1)
        flat_logits = logits.reshape(-1, logits.shape[-1]).float()  # (B*T, V)
        flat_labels = labels.reshape(-1)  # (B*T,)
        valid = flat_labels != IGNORE
        n = int(valid.sum())
        nll = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE, reduction="sum")
        if n == 0:
            # A batch with no trained token (possible after truncation): zero loss, not NaN.
            loss = flat_logits.sum() * 0.0
        elif self.label_smoothing > 0:
            loss = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE,
                                   label_smoothing=self.label_smoothing)
        else:
            loss = nll / n
        correct = (flat_logits.argmax(-1)[valid] == flat_labels[valid]).sum()
        return {"loss": loss, "n": n, "count_nll_sum": nll.detach(), "count_tokens": n,
                "count_correct": correct}


def token_reducer(sums: dict[str, float]) -> dict[str, float]:
    """``eval_loss``, ``eval_perplexity`` and ``eval_token_accuracy`` from summed counts."""
    n = max(sums.get("n", 0.0), 1.0)
    tokens = max(sums.get("count_tokens", 0.0), 1.0)
    mean_nll = sums.get("count_nll_sum", sums.get("loss_sum", 0.0)) / tokens
    return {"eval_loss": sums.get("loss_sum", 0.0) / n,
            # exp capped so an untrained model reports a huge number, not an overflow
            "eval_perplexity": math.exp(min(mean_nll, 50.0)),
            "eval_token_accuracy": sums.get("count_correct", 0.0) / tokens,
            "eval_tokens": sums.get("count_tokens", 0.0)}


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line (UTF-8, non-ASCII kept readable)."""
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def format_table(headline: dict[str, Any]) -> str:
    """Plain-text ``key: value`` lines for the console."""
    return "\n".join(f"{k:>18}: {v:.4f}" if isinstance(v, float) else f"{k:>18}: {v}"
                     for k, v in headline.items())


class GenerativeTaskBase:
    """What the seq2seq and chat SFT tasks share: token-level metrics, nothing to finalize."""

    def reducer(self, sums: dict[str, float]) -> dict[str, float]:
        """Loss, perplexity and token accuracy on the trained (target / reply) tokens."""
        return token_reducer(sums)

    def finalize(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
                 validation: Any, accelerator: Any) -> None:
        """Nothing to tune after training."""

    @staticmethod
    def token_metrics(model: nn.Module, encoded: Any, collator: Any, accelerator: Any,
                      batch_size: int, shift: bool) -> dict[str, float]:
        """Loss / perplexity / token accuracy of ``model`` on an encoded split (for reports)."""
        from lmforge.engine.loop import evaluate_model

        return evaluate_model(TokenLossObjective(model, shift=shift), encoded, collator,
                              accelerator, batch_size=batch_size, reducer=token_reducer)
