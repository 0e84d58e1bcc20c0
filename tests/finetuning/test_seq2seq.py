"""Seq2seq fine-tuning: data preparation, collation, tiny T5/BART training and generation."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math  # noqa: E402
from pathlib import Path  # noqa: E402

import datasets  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lmforge.errors import ConfigError, DataError  # noqa: E402
from lmforge.finetuning.seq2seq.data import (  # noqa: E402
    GenerationSettings,
    Seq2SeqCollator,
    generate_texts,
    prepare_seq2seq,
)

PAIRS = [
    ("the cat sees the river.", "cat river"),
    ("a dog likes a letter and the long road.", "dog letter"),
    ("my friend answers the strange question.", "friend question"),
    ("the old king greets the sea every morning.", "king sea"),
]
TEXTS = [s for pair in PAIRS for s in pair] + ["summarize: translate: hello world"]


def _tokenizer_dir(root: Path, kind: str, vocab: int) -> Path:
    from lmforge.tokenizer import train_tokenizer

    train_tokenizer(TEXTS * 3, root / kind, kind=kind, vocab_size=vocab, min_frequency=1)
    return root / kind


@pytest.fixture(scope="module")
def unigram_tok(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    path = _tokenizer_dir(tmp_path_factory.mktemp("s2s"), "unigram", 100)
    return AutoTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="module")
def bpe_tok(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    path = _tokenizer_dir(tmp_path_factory.mktemp("s2s"), "bpe", 320)
    return AutoTokenizer.from_pretrained(str(path))


@pytest.fixture()
def pairs_ds() -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"source": [s for s, _ in PAIRS], "target": [t for _, t in PAIRS], "id": [0, 1, 2, 3]}
    )


def _t5(tok):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tok), d_model=32, d_ff=64, num_layers=1, num_heads=2,
                      d_kv=16, decoder_start_token_id=tok.pad_token_id,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return T5ForConditionalGeneration(config)


def _bart(tok):
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    config = BartConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id,
                        forced_eos_token_id=tok.eos_token_id)
    return BartForConditionalGeneration(config)


def test_prepare_columns_labels_end_with_eos(unigram_tok, pairs_ds) -> None:
    out = prepare_seq2seq(pairs_ds, unigram_tok)
    assert out.column_names == ["input_ids", "attention_mask", "labels"]
    assert len(out) == len(PAIRS)
    for row in out:
        assert row["labels"][-1] == unigram_tok.eos_token_id
        assert len(row["attention_mask"]) == len(row["input_ids"])
    plain = prepare_seq2seq(pairs_ds, unigram_tok)[0]["input_ids"]
    prefixed = prepare_seq2seq(pairs_ds, unigram_tok, source_prefix="summarize: ")[0]["input_ids"]
    assert len(prefixed) > len(plain)


def test_eos_appended_when_tokenizer_adds_none(bpe_tok, pairs_ds) -> None:
    # Byte-level BPE adds no special tokens, so the EOS must be appended by prepare_seq2seq.
    out = prepare_seq2seq(pairs_ds, bpe_tok, max_target_length=3)
    for row in out:
        assert row["labels"][-1] == bpe_tok.eos_token_id
        assert len(row["labels"]) <= 3
    short = prepare_seq2seq(pairs_ds, bpe_tok)[0]["labels"]
    assert bpe_tok.decode(short[:-1]) == PAIRS[0][1]


def test_truncation_lengths(unigram_tok, pairs_ds) -> None:
    out = prepare_seq2seq(pairs_ds, unigram_tok, max_source_length=6, max_target_length=4)
    assert max(len(r["input_ids"]) for r in out) == 6
    assert max(len(r["labels"]) for r in out) == 4
    assert all(r["labels"][-1] == unigram_tok.eos_token_id for r in out)


def test_missing_column_and_empty_target(unigram_tok, pairs_ds) -> None:
    with pytest.raises(DataError, match="'summary' not found.*source, target, id"):
        prepare_seq2seq(pairs_ds, unigram_tok, target_column="summary")
    bad = datasets.Dataset.from_dict({"source": ["a", "b"], "target": ["x", "  "]})
    with pytest.raises(DataError, match="row 1 .*empty 'target'"):
        prepare_seq2seq(bad, unigram_tok)
    # A translation pair with an empty source is as unusable as one with an empty target.
    no_source = datasets.Dataset.from_dict({"source": ["a", ""], "target": ["x", "y"]})
    with pytest.raises(DataError, match="row 1 .*empty 'source'"):
        prepare_seq2seq(no_source, unigram_tok)


def test_collator_pads_labels_and_shifts_for_t5(unigram_tok, pairs_ds) -> None:
    rows = list(prepare_seq2seq(pairs_ds, unigram_tok))
    model = _t5(unigram_tok)
    batch = Seq2SeqCollator(unigram_tok, model=model)(rows)
    labels, dec = batch["labels"], batch["decoder_input_ids"]  # (B, T)
    assert batch["input_ids"].shape[1] % 8 == 0 and labels.shape[1] % 8 == 0
    assert labels.shape == dec.shape
    for i, row in enumerate(rows):
        n = len(row["labels"])
        assert labels[i, :n].tolist() == row["labels"]
        assert (labels[i, n:] == -100).all()
        assert batch["attention_mask"][i].sum() == len(row["input_ids"])
    # Shifted right behind decoder_start_token_id (T5: pad), -100 turned into pad.
    assert (dec[:, 0] == model.config.decoder_start_token_id).all()
    expected = labels[:, :-1].masked_fill(labels[:, :-1] == -100, unigram_tok.pad_token_id)
    assert torch.equal(dec[:, 1:], expected)
    plain = Seq2SeqCollator(unigram_tok)(rows)
    assert "decoder_input_ids" not in plain and torch.equal(plain["labels"], labels)


@pytest.mark.parametrize("build", [_t5, _bart], ids=["t5", "bart"])
def test_tiny_model_trains(build, unigram_tok, pairs_ds) -> None:
    model = build(unigram_tok)
    batch = Seq2SeqCollator(unigram_tok, model=model)(list(prepare_seq2seq(pairs_ds, unigram_tok)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread only contends (10x slower)
    try:
        # Enough to memorise the four pairs with room to spare (6 steps only start it; at 60,
        # T5 wrote back all four in most runs but missed one in a full-suite run).
        for _ in range(100):
            loss = model(**batch).loss
            assert math.isfinite(loss.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < losses[0]
    # Memorised: the loss fell by far more than a start (t5 and bart by well over 5x), and
    # greedy generation (decoder start, shifted labels, EOS) writes back every target.
    assert losses[-1] < losses[0] / 5, losses
    sources, targets = zip(*PAIRS, strict=True)
    out = generate_texts(model, unigram_tok, list(sources), GenerationSettings(max_new_tokens=12))
    assert out == list(targets)


def test_generate_texts_one_output_per_source(unigram_tok) -> None:
    model = _t5(unigram_tok)
    model.train()
    sources = [s for s, _ in PAIRS[:3]]
    out = generate_texts(model, unigram_tok, sources, GenerationSettings(max_new_tokens=4),
                         batch_size=2, source_prefix="summarize: ")
    assert len(out) == 3 and all(isinstance(t, str) and t == t.strip() for t in out)
    assert model.training  # restored after generating
    beams = GenerationSettings(max_new_tokens=3, num_beams=2, no_repeat_ngram_size=2)
    assert len(generate_texts(model, unigram_tok, sources, beams)) == 3
    assert generate_texts(model, unigram_tok, [], beams) == []


def test_generate_texts_rejects_decoder_only(bpe_tok) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=len(bpe_tok)))
    with pytest.raises(ConfigError, match="encoder-decoder"):
        generate_texts(model, bpe_tok, ["hello"])


@pytest.mark.parametrize(
    "kwargs",
    [{"max_new_tokens": 0}, {"num_beams": 0}, {"temperature": 0.0}, {"top_p": 0.0},
     {"top_p": 1.5}, {"top_k": -1}, {"repetition_penalty": 0.0}, {"no_repeat_ngram_size": -2}],
)
def test_generation_settings_validation(kwargs) -> None:
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        GenerationSettings(**kwargs)


def test_generation_settings_kwargs() -> None:
    greedy = GenerationSettings(temperature=0.7).to_generate_kwargs()
    assert greedy == {"max_new_tokens": 128, "num_beams": 1, "do_sample": False}
    sampled = GenerationSettings(do_sample=True, temperature=0.7, top_p=0.9, top_k=10,
                                 num_beams=2, length_penalty=0.5, repetition_penalty=1.2,
                                 no_repeat_ngram_size=3).to_generate_kwargs()
    assert sampled == {"max_new_tokens": 128, "num_beams": 2, "do_sample": True,
                       "temperature": 0.7, "top_p": 0.9, "top_k": 10, "length_penalty": 0.5,
                       "repetition_penalty": 1.2, "no_repeat_ngram_size": 3}
