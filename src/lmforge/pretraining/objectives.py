"""Pretraining objectives as thin training wrappers around a ``transformers`` model.

Each wrapper's forward returns ``{"loss", "n", "count_*"}`` for the engine. The wrapped
model is what gets saved, so checkpoints stay plain ``transformers`` models.

Masked LM (Devlin et al. 2019): with ``M`` the masked positions,

    L_mlm = -(1/|M|) * sum_{i in M} log p(x_i | x_{\\M})

The output projection (hidden -> vocabulary) only runs on the masked ~15% of positions
("sparse prediction", as in NVIDIA's and MosaicML's BERT recipes): the full (B, T, V) logits
of the stock ``BertForMaskedLM`` forward are never built, which saves most of the head's
compute and memory when V is large. NSP / SOP add a binary cross-entropy on the pooled
[CLS] vector (Devlin et al. 2019; ALBERT, Lan et al. 2020):

    L = L_mlm + L_sentence

Causal LM (Radford et al. 2018): L_clm = -(1/T) * sum_t log p(x_t | x_<t).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertForMaskedLM, BertForPreTraining, PreTrainedModel

IGNORE = -100
MASKED_BUCKET = 64
"""The masked positions of a batch are padded up to a multiple of this with ignored ones, so the
(M, V) logits and their gradients take a few sizes, not a new one every step: glibc's heap
reuses freed blocks of a size it has seen, while ever-new sizes fragment it and the resident
memory grows step after step (measured in BENCHMARKS.md, MLM memory)."""


def bucketed_positions(selected: torch.Tensor, bucket: int = MASKED_BUCKET) -> torch.Tensor:
    """Flat indices of the selected (masked) positions, then of unselected ones up to a
    multiple of ``bucket`` (at most every position of the batch).

    Args:
        selected: (B, T) bool, True at masked positions.
        bucket: The count is rounded up to a multiple of this.

    Returns:
        (M',) int64 indices into the flattened (B * T) batch: the M masked ones first, in
        order, then M' - M unmasked ones whose targets the caller ignores.
    """
    flat = selected.reshape(-1)
    masked = flat.nonzero().squeeze(1)  # (M,)
    extra = min(-(-masked.numel() // bucket) * bucket, flat.numel()) - masked.numel()
    if extra <= 0:
        return masked
    filler = (~flat).nonzero().squeeze(1)[:extra]
    return torch.cat([masked, filler])


class MaskedLMObjective(nn.Module):
    """Masked LM (+ optional NSP/SOP) loss with sparse prediction for BERT models.

    Other masked-LM architectures fall back to their own forward (full logits).

    Args:
        model: A ``BertForMaskedLM`` / ``BertForPreTraining`` or any ``AutoModelForMaskedLM``.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                next_sentence_label: torch.Tensor | None = None) -> dict[str, Any]:
        """Compute the loss on a batch.

        Args:
            input_ids: (B, T) masked token ids.
            attention_mask: (B, T) 1 for real tokens.
            labels: (B, T) original ids at masked positions, -100 elsewhere.
            token_type_ids: (B, T) segment ids for sentence pairs.
            next_sentence_label: (B,) 0 = B follows A / right order, 1 = not.
        """
        selected = labels != IGNORE  # (B, T) bool
        model = self.model
        sentence_logits = None
        if isinstance(model, (BertForMaskedLM, BertForPreTraining)):
            encoded = model.bert(input_ids=input_ids, attention_mask=attention_mask,
                                 token_type_ids=token_type_ids)
            positions = bucketed_positions(selected, MASKED_BUCKET)  # (M',): masked, then pad
            targets = labels.reshape(-1)[positions]  # (M',), IGNORE beyond the masked
            states = encoded.last_hidden_state
            hidden = states.reshape(-1, states.shape[-1])[positions]  # (M', H)
            if isinstance(model, BertForPreTraining):
                logits = model.cls.predictions(hidden)  # (M', V)
                if next_sentence_label is not None:
                    sentence_logits = model.cls.seq_relationship(encoded.pooler_output)  # (B, 2)
            else:
                logits = model.cls(hidden)  # (M', V)
        else:
            kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            out = model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            logits = out.logits[selected]  # (M, V)
            targets = labels[selected]  # (M,)
        masked = int(selected.sum())
        mlm_loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE)
        result: dict[str, Any] = {
            "n": masked,
            "count_mlm_loss_sum": mlm_loss.detach() * masked,
            "count_masked": masked,
        }
        if not self.training:  # only evaluation reads it; the argmax over V was 5.8 % of a step
            result["count_correct"] = (logits[:masked].argmax(-1) == targets[:masked]).sum()
        loss = mlm_loss
        if sentence_logits is not None and next_sentence_label is not None:
            sentence_loss = F.cross_entropy(sentence_logits.float(), next_sentence_label.view(-1))
            loss = loss + sentence_loss
            result["count_pairs"] = next_sentence_label.numel()
            result["count_pairs_correct"] = (sentence_logits.argmax(-1) ==
                                             next_sentence_label.view(-1)).sum()
        result["loss"] = loss
        return result


class CausalLMObjective(nn.Module):
    """Next-token prediction loss; labels are shifted inside the ``transformers`` model."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor, **_: Any) -> dict[str, Any]:
        """Compute the loss on a batch of (B, T) ids; ``labels`` has -100 at padding."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        shifted = labels[:, 1:]  # (B, T-1): the targets the model predicts
        valid = shifted != IGNORE
        n = int(valid.sum())
        result = {"loss": out.loss, "n": n, "count_mlm_loss_sum": out.loss.detach() * n,
                  "count_masked": n}
        if not self.training:  # only evaluation reads it (an argmax over the vocabulary)
            predictions = out.logits[:, :-1].argmax(-1)  # (B, T-1)
            result["count_correct"] = (predictions[valid] == shifted[valid]).sum()
        return result


def lm_eval_reducer(sums: dict[str, float]) -> dict[str, float]:
    """Turn summed evaluation counts into loss, perplexity and token accuracy.

    ``eval_perplexity`` is exp of the token-level LM loss only (not the NSP/SOP term).
    """
    n = max(sums.get("n", 0.0), 1.0)
    lm_loss = sums.get("count_mlm_loss_sum", sums.get("loss_sum", 0.0)) / n
    metrics = {
        "eval_loss": sums.get("loss_sum", 0.0) / n,
        "eval_lm_loss": lm_loss,
        "eval_perplexity": math.exp(min(lm_loss, 50.0)),
        "eval_token_accuracy": sums.get("count_correct", 0.0) / max(sums.get("count_masked",
                                                                             0.0), 1.0),
        "eval_tokens": sums.get("count_masked", 0.0),
    }
    if sums.get("count_pairs"):
        metrics["eval_sentence_accuracy"] = sums["count_pairs_correct"] / sums["count_pairs"]
    return metrics


def wrap_for_objective(model: PreTrainedModel, objective: str) -> nn.Module:
    """Return the training wrapper for ``mlm`` or ``clm``."""
    return CausalLMObjective(model) if objective == "clm" else MaskedLMObjective(model)
