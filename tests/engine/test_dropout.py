"""Fast CPU dropout: the mask distribution, gradients, and the model it leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

from lmforge.engine.dropout import (
    ATTENTION_NAME,
    FastDropout,
    _attention_with_fast_dropout,
    fast_dropout,
    fast_dropout_scope,
)

from .test_engine import engine


def test_each_element_is_dropped_with_probability_p_and_the_mean_is_kept() -> None:
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    for p in (0.1, 0.5):
        y = fast_dropout(x, p)
        dropped = (y == 0).float()
        # 400,000 Bernoulli draws: standard error ~0.0008 at p=0.5.
        assert float(dropped.mean()) == pytest.approx(p, abs=0.004)
        assert float(y.mean()) == pytest.approx(1.0, abs=0.01)
        # Each int16 lane of the 64-bit words is used: every 4th column alike.
        lanes = dropped.view(-1, 4).mean(0)
        assert torch.allclose(lanes, torch.full((4,), p), atol=0.008), lanes
        kept = y[y != 0]
        assert torch.allclose(kept, torch.full_like(kept, float(kept[0])))


def test_gradient_flows_only_through_kept_elements() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = fast_dropout(x, 0.2)
    y.sum().backward()
    kept = y.detach() != 0
    scale = 65536 / (65536 - round(0.2 * 65536))
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], scale))
    assert float(x.grad[~kept].abs().sum()) == 0.0


def test_bf16_input_and_zero_probability() -> None:
    x = torch.randn(8, 16, dtype=torch.bfloat16)
    assert fast_dropout(x, 0.1).dtype == torch.bfloat16
    assert fast_dropout(x, 0.0) is x
    with pytest.raises(ValueError):
        fast_dropout(x, 1.0)


def test_same_seed_same_mask() -> None:
    torch.manual_seed(5)
    a = fast_dropout(torch.ones(1000), 0.3)
    torch.manual_seed(5)
    b = fast_dropout(torch.ones(1000), 0.3)
    assert torch.equal(a, b)


def _tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, num_labels=2))


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 100, (3, 9), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_scope_swaps_and_restores_and_eval_outputs_are_unchanged(tmp_path: Path) -> None:
    model = _tiny_bert().eval()
    batch = _batch()
    with torch.no_grad():
        reference = model(**batch).logits
    with fast_dropout_scope(model) as sites:
        assert sites == sum(isinstance(m, nn.Dropout) for m in model.modules()) + 1
        assert model.config._attn_implementation == ATTENTION_NAME
        assert all(type(m) is FastDropout for m in model.modules() if isinstance(m, nn.Dropout))
        with torch.no_grad():
            inside = model(**batch).logits
        model.save_pretrained(tmp_path)  # a checkpoint written mid-training
    assert torch.allclose(reference, inside, atol=1e-6)
    assert model.config._attn_implementation == "sdpa"
    assert not any(type(m) is FastDropout for m in model.modules())
    assert ATTENTION_NAME not in (tmp_path / "config.json").read_text()


def test_training_with_zero_dropout_matches_the_model_without_the_scope() -> None:
    """With every p = 0 the attention path must be the plain attention: same loss and grads."""
    model = _tiny_bert().train()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    batch = {**_batch(), "labels": torch.tensor([0, 1, 1])}
    reference = model(**batch).loss
    reference.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with fast_dropout_scope(model):
        loss = model(**batch).loss
        loss.backward()
    assert float(loss.detach()) == pytest.approx(float(reference.detach()), rel=1e-6)
    for before, param in zip(grads, model.parameters(), strict=True):
        assert torch.allclose(before, param.grad, atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_without_dropout_equals_the_explicit_softmax(causal: bool) -> None:
    """The training path (dropout > 0) is checked at p -> 0 against softmax(q k^T / sqrt(d)) v."""
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 4, 6, 8) for _ in range(3))
    module = nn.Module().train()
    module.is_causal = causal
    mask = None if causal else torch.ones(2, 1, 6, 6, dtype=torch.bool).tril(1)
    out, _ = _attention_with_fast_dropout(module, q, k, v, mask, dropout=1e-9)
    scores = q @ k.transpose(2, 3) / 8 ** 0.5
    keep = torch.ones(6, 6, dtype=torch.bool).tril() if causal else mask
    expected = (scores.masked_fill(~keep, float("-inf")).softmax(-1) @ v).transpose(1, 2)
    assert torch.allclose(out, expected, atol=1e-5)


def test_causal_lm_trains_in_scope() -> None:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4))
    model.train()
    ids = torch.randint(0, 100, (2, 7))
    with fast_dropout_scope(model):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    assert torch.isfinite(loss)
    assert model.config._attn_implementation == "sdpa"


def test_engine_runs_with_and_without_it_and_each_is_reproducible(tmp_path: Path) -> None:
    results = {}
    for name, fast in (("a", True), ("b", True), ("c", False)):
        eng = engine(tmp_path / name, fast_dropout=fast)
        results[name] = eng.train()
        assert type(eng.unwrapped.dropout) is nn.Dropout  # restored after training
    assert results["a"].metrics == results["b"].metrics  # same seed, same masks
    assert results["a"].state.global_step == results["c"].state.global_step == 20
    first = engine(tmp_path / "d").evaluate()["eval_loss"]
    assert results["a"].metrics["eval_loss"] < first
    assert results["c"].metrics["eval_loss"] < first


@pytest.mark.parametrize("module_says", [None, False, True])
def test_attention_follows_transformers_sdpa_on_causality(module_says: bool | None) -> None:
    """Without a mask, causality comes from the module as in sdpa_attention_forward."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(4)
    q, k, v = (torch.randn(1, 2, 5, 8) for _ in range(3))
    module = nn.Module().train()
    if module_says is not None:
        module.is_causal = module_says
    ours, _ = _attention_with_fast_dropout(module, q, k, v, None, dropout=1e-9)
    reference, _ = sdpa_attention_forward(module, q, k, v, None, dropout=0.0)
    assert torch.allclose(ours, reference, atol=1e-5)
