"""Sparse masked-LM prediction: the same loss, accuracy counts and gradients as the stock
full-logit ``BertForMaskedLM`` loss, with the masked positions padded to a bucket."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from lmforge.pretraining.objectives import IGNORE, MaskedLMObjective, bucketed_positions


def test_bucketed_positions_masked_first_then_padding() -> None:
    selected = torch.zeros(2, 5, dtype=torch.bool)
    selected[0, 1] = selected[1, 3] = True
    positions = bucketed_positions(selected, bucket=4)
    assert positions[:2].tolist() == [1, 8]  # the masked ones, in order
    assert len(positions) == 4 and not selected.reshape(-1)[positions[2:]].any()
    assert len(bucketed_positions(selected, bucket=64)) == 10  # capped at B * T
    full = torch.ones(1, 4, dtype=torch.bool)
    assert bucketed_positions(full, bucket=4).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("bucket", [1, 16])
def test_sparse_loss_equals_full_logits_loss(bucket: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import lmforge.pretraining.objectives as objectives

    monkeypatch.setattr(objectives, "MASKED_BUCKET", bucket)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = BertForMaskedLM(config)
    ids = torch.randint(5, 50, (3, 12))
    labels = torch.full_like(ids, IGNORE)
    labels[torch.rand(3, 12) < 0.3] = 7
    labels[0, 0] = 9  # at least one masked position
    mask = torch.ones_like(ids)
    objective = MaskedLMObjective(model)  # training mode, like a module the engine trains
    out = objective(input_ids=ids, attention_mask=mask, labels=labels)
    out["loss"].backward()
    sparse_grad = model.bert.embeddings.word_embeddings.weight.grad.clone()
    model.zero_grad()
    full = model(input_ids=ids, attention_mask=mask, labels=labels)
    full.loss.backward()
    selected = labels != IGNORE
    assert out["n"] == out["count_masked"] == int(selected.sum())
    assert torch.allclose(out["loss"], full.loss, atol=1e-6)
    correct = (full.logits[selected].argmax(-1) == labels[selected]).sum()
    assert "count_correct" not in out  # only evaluation pays for the argmax over the vocabulary
    with torch.no_grad():
        evaluated = objective.eval()(input_ids=ids, attention_mask=mask, labels=labels)
    assert int(evaluated["count_correct"]) == int(correct)
    assert torch.allclose(sparse_grad, model.bert.embeddings.word_embeddings.weight.grad,
                          atol=1e-6)
