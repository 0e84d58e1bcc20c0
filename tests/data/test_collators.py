"""MlmCollator / ClmCollator: masking statistics, explicit randomness, padding."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from lmforge.data import ClmCollator, MlmCollator, pad_batch


def _examples(tok: Any, n: int, length: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """Rows of random ordinary tokens wrapped in [CLS] ... [SEP], with varied lengths."""
    rng = random.Random(seed)
    special = set(tok.all_special_ids)
    vocab = [i for i in range(len(tok)) if i not in special]
    rows = []
    for _ in range(n):
        body = [rng.choice(vocab) for _ in range(rng.randint(length // 2, length - 2))]
        ws = [1 if rng.random() < 0.6 else 0 for _ in body]
        rows.append(
            {"input_ids": [tok.cls_token_id, *body, tok.sep_token_id], "word_start": [1, *ws, 1]}
        )
    return rows


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_pad_batch_shapes() -> None:
    batch = pad_batch(
        [{"input_ids": [5, 6, 7], "token_type_ids": [0, 0, 1], "next_sentence_label": 1},
         {"input_ids": [5], "token_type_ids": [0], "next_sentence_label": 0}],
        pad_token_id=0,
    )  # fmt: skip
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].sum().item() == 4
    assert batch["input_ids"][1].tolist() == [5] + [0] * 7
    assert batch["next_sentence_label"].tolist() == [1, 0]


def test_mlm_rates_and_80_10_10(wordpiece_tokenizer: Any) -> None:
    tok = wordpiece_tokenizer
    examples = _examples(tok, 256, 128)
    batch = MlmCollator(tok)(examples, generator=_gen(0))
    original = pad_batch(examples, tok.pad_token_id)["input_ids"]
    labels = batch["labels"]
    chosen = labels != -100
    valid = batch["attention_mask"].bool() & ~torch.isin(
        original, torch.tensor(tok.all_special_ids)
    )
    rate = chosen.sum().item() / valid.sum().item()
    assert 0.14 < rate < 0.16
    assert torch.equal(labels[chosen], original[chosen])
    n = chosen.sum().item()
    masked = (batch["input_ids"] == tok.mask_token_id) & chosen
    unchanged = (batch["input_ids"] == original) & chosen
    randomized = chosen & ~masked & ~unchanged
    assert abs(masked.sum().item() / n - 0.8) < 0.03
    assert abs(randomized.sum().item() / n - 0.1) < 0.03
    assert abs(unchanged.sum().item() / n - 0.1) < 0.03
    # Random replacements never produce special tokens.
    assert not torch.isin(batch["input_ids"][randomized], torch.tensor(tok.all_special_ids)).any()
    # Specials and padding are never chosen; unchosen tokens are untouched.
    assert not chosen[~valid].any()
    assert torch.equal(batch["input_ids"][~chosen], original[~chosen])


def test_same_generator_same_masks(wordpiece_tokenizer: Any) -> None:
    collator = MlmCollator(wordpiece_tokenizer)
    examples = _examples(wordpiece_tokenizer, 8, 32)
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    a = collator(examples, generator=_gen(42))
    b = collator(examples, generator=_gen(42))
    c = collator(examples, generator=_gen(43))
    assert torch.equal(torch.get_rng_state(), global_state)  # the global RNG is never used
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["labels"], c["labels"])


def test_whole_word_masking(wordpiece_tokenizer: Any) -> None:
    tok = wordpiece_tokenizer
    examples = _examples(tok, 64, 64, seed=1)
    batch = MlmCollator(tok, whole_word_mask=True)(examples, generator=_gen(0))
    chosen = batch["labels"] != -100
    assert chosen.any()
    for i, ex in enumerate(examples):
        ws = ex["word_start"]
        words: list[list[int]] = []
        for j in range(1, len(ws) - 1):  # skip [CLS] and [SEP]
            if ws[j] or not words:
                words.append([])
            words[-1].append(j)
        for word in words:
            flags = {bool(chosen[i, j]) for j in word}
            assert len(flags) == 1, f"word {word} of row {i} partially masked"


def test_at_least_one_mask_and_passthrough(wordpiece_tokenizer: Any) -> None:
    tok = wordpiece_tokenizer
    ex = {
        "input_ids": [tok.cls_token_id, 10, 11, tok.sep_token_id, 12, tok.sep_token_id],
        "token_type_ids": [0, 0, 0, 0, 1, 1],
        "word_start": [1, 1, 0, 1, 1, 1],
        "next_sentence_label": 1,
    }
    for wwm in (False, True):
        collator = MlmCollator(tok, mlm_probability=1e-6, whole_word_mask=wwm)
        batch = collator([ex], generator=_gen(0))
        chosen = (batch["labels"] != -100)[0].tolist()
        assert sum(chosen) >= 1
        assert not any(chosen[j] for j in (0, 3, 5))  # specials
        if wwm and (chosen[1] or chosen[2]):
            assert chosen[1] and chosen[2]  # "10 ##11" is one word
        assert batch["token_type_ids"][0, :6].tolist() == ex["token_type_ids"]
        assert batch["next_sentence_label"].tolist() == [1]
        assert "word_start" not in batch


def test_clm_collator(bpe_tokenizer: Any) -> None:
    tok = bpe_tokenizer  # no pad token: pads with EOS, labels from the attention mask
    eos = tok.eos_token_id
    batch = ClmCollator(tok)([{"input_ids": [7, 8, eos]}, {"input_ids": [9]}])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["labels"][0].tolist() == [7, 8, eos] + [-100] * 5
    assert batch["labels"][1].tolist() == [9] + [-100] * 7
    assert batch["input_ids"][1, 1].item() == eos


def test_invalid_probabilities(wordpiece_tokenizer: Any) -> None:
    from lmforge.errors import ConfigError

    with pytest.raises(ConfigError):
        MlmCollator(wordpiece_tokenizer, mask_replace_prob=0.9, random_replace_prob=0.2)
