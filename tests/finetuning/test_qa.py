"""Extractive QA: answer checks, windowed features, batching and span decoding."""

from __future__ import annotations

import logging
from typing import Any

import datasets
import numpy as np
import pytest
import torch

from lmforge.errors import ConfigError, DataError
from lmforge.finetuning.qa.data import (
    QACollator,
    answers_of,
    check_answers,
    postprocess_qa,
    prepare_qa_eval,
    prepare_qa_train,
)

FILLER = "the cat sat on the mat and the dog ran to the old garden . "
ANSWER = "Marie Curie"
ANSWER_SENTENCE = "the prize went to Marie Curie in Paris . "
CONTEXT = FILLER * 4 + ANSWER_SENTENCE + FILLER * 4
ANSWER_START = CONTEXT.index(ANSWER)
QUESTION = "  who got the prize ?"  # leading spaces are stripped
MAX_LENGTH, STRIDE = 32, 8


@pytest.fixture(scope="module")
def qa_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Tiny WordPiece trained on the fixture context and question."""
    from transformers import AutoTokenizer

    from lmforge.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("qa_tok")
    texts = [CONTEXT, QUESTION, "where is the cat ?"] * 10
    train_tokenizer(texts, out, kind="wordpiece", vocab_size=300, min_frequency=1)
    return AutoTokenizer.from_pretrained(out)


def _squad(ids: list[str], contexts: list[str], answers: list[tuple[list[str], list[int]]],
           question: str = QUESTION) -> datasets.Dataset:  # fmt: skip
    return datasets.Dataset.from_dict({
        "id": ids,
        "question": [question] * len(ids),
        "context": contexts,
        "answers": [{"text": t, "answer_start": s} for t, s in answers],
    })  # fmt: skip


@pytest.fixture()
def qa_ds() -> datasets.Dataset:
    """One answerable and one unanswerable example over the same long context."""
    return _squad(["ans", "none"], [CONTEXT, CONTEXT], [([ANSWER], [ANSWER_START]), ([], [])])


def test_check_answers_drops_misaligned(caplog: pytest.LogCaptureFixture) -> None:
    ds = _squad(
        ["good", "bad", "none", "mixed"],
        [CONTEXT] * 4,
        [
            ([ANSWER], [ANSWER_START]),
            ([ANSWER], [ANSWER_START + 1]),  # off by one, like ~2% of Quoref
            ([], []),
            (["Paris", "Paris"], [CONTEXT.index("Paris"), 3]),
        ],
    )
    with caplog.at_level(logging.WARNING, logger="lmforge.finetuning.qa"):
        cleaned, report = check_answers(ds)
    assert cleaned["id"] == ["good", "none", "mixed"]
    assert report == {
        "checked": 3, "misaligned_answers": 2, "dropped_examples": 1, "examples": ["bad", "mixed"],
    }  # fmt: skip
    mixed = cleaned[2]["answers"]
    assert mixed == {"text": ["Paris"], "answer_start": [CONTEXT.index("Paris")]}
    assert cleaned[1]["answers"]["text"] == []
    assert "dropped 1 examples" in caplog.text


def test_answers_of_follows_squad2() -> None:
    assert answers_of({"answers": {"text": ["a", " ", "b"], "answer_start": [0, 1, 2]}}) == [
        "a",
        "b",
    ]
    assert answers_of({"answers": {"text": [], "answer_start": []}}) == [""]


def _window_span(offsets: list[list[int]]) -> tuple[int, int]:
    ctx = [o for o in offsets if o[0] >= 0]
    return ctx[0][0], ctx[-1][1]


def test_train_windows_locate_the_answer(qa_tokenizer: Any, qa_ds: datasets.Dataset) -> None:
    train = prepare_qa_train(qa_ds, qa_tokenizer, max_length=MAX_LENGTH, doc_stride=STRIDE)
    evals = prepare_qa_eval(qa_ds, qa_tokenizer, max_length=MAX_LENGTH, doc_stride=STRIDE)
    assert set(train.column_names) == {
        "input_ids", "token_type_ids", "start_positions", "end_positions",
    }  # fmt: skip
    assert {"example_id", "offset_mapping"} <= set(evals.column_names)
    # Same windows either way; eval features add offsets to check positions against.
    assert train["input_ids"] == evals["input_ids"]
    assert train["start_positions"] == evals["start_positions"]
    assert all(len(ids) <= MAX_LENGTH for ids in train["input_ids"])

    answer_end = ANSWER_START + len(ANSWER)
    found = 0
    windows = [f for f in evals if f["example_id"] == "ans"]
    assert len(windows) >= 3
    for f in windows:
        lo, hi = _window_span(f["offset_mapping"])
        s, e = f["start_positions"], f["end_positions"]
        if lo <= ANSWER_START and answer_end <= hi:
            found += 1
            assert 0 < s <= e
            assert CONTEXT[f["offset_mapping"][s][0] : f["offset_mapping"][e][1]] == ANSWER
        else:
            assert (s, e) == (0, 0)  # CLS
    assert found >= 1
    unanswerable = [f for f in evals if f["example_id"] == "none"]
    assert unanswerable and all(
        f["start_positions"] == f["end_positions"] == 0 for f in unanswerable
    )
    # Questions come first and are left-stripped; non-context tokens carry [-1, -1].
    first = windows[0]
    assert first["offset_mapping"][0] == [-1, -1]
    assert qa_tokenizer.decode(first["input_ids"][1:5]) == QUESTION.strip()[:-2].strip()


def _gold_logits(features: datasets.Dataset, peak: float = 10.0, seed: int = 0) -> tuple[
    list[np.ndarray], list[np.ndarray]
]:  # fmt: skip
    """Small noise everywhere, ``peak`` at gold start/end of windows that hold the answer."""
    rng = np.random.default_rng(seed)
    starts, ends = [], []
    for f in features:
        n = len(f["input_ids"])
        s, e = rng.normal(0, 0.1, n), rng.normal(0, 0.1, n)  # (L,) each
        if f["start_positions"] > 0:
            s[f["start_positions"]] += peak
            e[f["end_positions"]] += peak
        starts.append(s)
        ends.append(e)
    return starts, ends


def _pad(rows: list[np.ndarray], width: int, value: float) -> np.ndarray:
    out = np.full((len(rows), width), value)  # (F, width)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def test_postprocess_recovers_answer(qa_tokenizer: Any, qa_ds: datasets.Dataset) -> None:
    feats = prepare_qa_eval(qa_ds, qa_tokenizer, max_length=MAX_LENGTH, doc_stride=STRIDE)
    starts, ends = _gold_logits(feats)
    preds = postprocess_qa(qa_ds, feats, starts, ends)
    assert preds["ans"]["text"] == ANSWER
    assert preds["ans"]["start"] == ANSWER_START
    assert preds["ans"]["score"] > 15
    # A padded 2-D array gives the same answer: padding beyond a window's tokens is ignored
    # even when it holds the largest values.
    padded = postprocess_qa(qa_ds, feats, _pad(starts, 40, 99.0), _pad(ends, 40, 99.0))
    assert padded["ans"] == preds["ans"]


def test_postprocess_top_k_lists_distinct_spans_best_first(
        qa_tokenizer: Any, qa_ds: datasets.Dataset) -> None:
    feats = prepare_qa_eval(qa_ds, qa_tokenizer, max_length=MAX_LENGTH, doc_stride=STRIDE)
    starts, ends = _gold_logits(feats)
    preds = postprocess_qa(qa_ds, feats, starts, ends, top_k=3)
    top = preds["ans"]["top_k"]
    assert len(top) == 3
    assert top[0] == {"text": ANSWER, "score": preds["ans"]["score"], "start": ANSWER_START}
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    assert len({(t["start"], t["text"]) for t in top}) == 3
    assert "top_k" not in postprocess_qa(qa_ds, feats, starts, ends)["ans"]


def test_postprocess_null_answer(qa_tokenizer: Any, qa_ds: datasets.Dataset) -> None:
    feats = prepare_qa_eval(qa_ds, qa_tokenizer, max_length=MAX_LENGTH, doc_stride=STRIDE)
    starts, ends = _gold_logits(feats)
    for s, e in zip(starts, ends, strict=True):
        s[0] += 15.0  # CLS: null score ~30 beats the span's ~20 in every window
        e[0] += 15.0
    assert postprocess_qa(qa_ds, feats, starts, ends)["ans"]["text"] == ANSWER
    preds = postprocess_qa(qa_ds, feats, starts, ends, allow_unanswerable=True)
    assert preds["ans"] == {"text": "", "score": pytest.approx(30.0, abs=1.0), "start": -1}
    lenient = postprocess_qa(qa_ds, feats, starts, ends, allow_unanswerable=True,
                             null_score_diff_threshold=20.0)  # fmt: skip
    assert lenient["ans"]["text"] == ANSWER


def test_postprocess_respects_max_answer_length(qa_tokenizer: Any, qa_ds: datasets.Dataset) -> None:
    feats = prepare_qa_eval(qa_ds, qa_tokenizer, max_length=MAX_LENGTH, doc_stride=STRIDE)
    starts, ends = _gold_logits(feats)
    k, long_end = None, None
    for i, f in enumerate(feats):
        s, e, offs = f["start_positions"], f["end_positions"], f["offset_mapping"]
        if s > 0 and e + 4 < len(offs) and offs[e + 4][0] >= 0:
            k, long_end = e - s + 1, e + 4
            ends[i][long_end] += 12.0  # a longer span now outscores the answer
            expected_long = CONTEXT[offs[s][0] : offs[long_end][1]]
            break
    assert k is not None, "fixture should leave room after the answer in some window"
    assert postprocess_qa(qa_ds, feats, starts, ends)["ans"]["text"] == expected_long
    short = postprocess_qa(qa_ds, feats, starts, ends, max_answer_length=k)
    assert short["ans"]["text"] == ANSWER


def test_collator_and_tiny_bert_forward(qa_tokenizer: Any, qa_ds: datasets.Dataset) -> None:
    from transformers import BertConfig, BertForQuestionAnswering

    feats = prepare_qa_eval(qa_ds, qa_tokenizer, max_length=MAX_LENGTH, doc_stride=STRIDE)
    rows = list(feats)
    batch = QACollator(qa_tokenizer)(rows, torch.Generator())
    assert set(batch) == {
        "input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions",
    }  # fmt: skip
    assert batch["input_ids"].shape == (len(rows), MAX_LENGTH)  # 32 is a multiple of 8
    assert batch["start_positions"].shape == (len(rows),)
    assert batch["attention_mask"].sum(1).tolist() == [len(r["input_ids"]) for r in rows]

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(qa_tokenizer), hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    model = BertForQuestionAnswering(config).eval()
    with torch.no_grad():
        out = model(**batch)
    assert torch.isfinite(out.loss)
    preds = postprocess_qa(qa_ds, feats, out.start_logits.numpy(), out.end_logits.numpy())
    assert set(preds) == {"ans", "none"}
    for p in preds.values():
        assert p["text"] == CONTEXT[p["start"] : p["start"] + len(p["text"])]


def test_eval_without_ids_or_answers(qa_tokenizer: Any) -> None:
    ds = datasets.Dataset.from_dict({"question": [QUESTION], "context": [CONTEXT]})
    feats = prepare_qa_eval(ds, qa_tokenizer, max_length=MAX_LENGTH, doc_stride=STRIDE)
    assert set(feats["example_id"]) == {"0"}
    assert "start_positions" not in feats.column_names
    starts = [np.zeros(len(ids)) for ids in feats["input_ids"]]
    assert set(postprocess_qa(ds, feats, starts, starts)) == {"0"}


def test_config_and_data_errors(qa_tokenizer: Any, qa_ds: datasets.Dataset) -> None:
    class SlowTokenizer:
        is_fast = False

    with pytest.raises(ConfigError, match="fast tokenizer"):
        prepare_qa_train(qa_ds, SlowTokenizer())
    long_question = _squad(["q"], [CONTEXT], [([], [])], question="who got the prize ? " * 6)
    with pytest.raises(ConfigError, match="question of example 'q' has .* doc_stride=8"):
        prepare_qa_train(long_question, qa_tokenizer, max_length=MAX_LENGTH, doc_stride=STRIDE)
    with pytest.raises(DataError, match="column 'answers' not found"):
        prepare_qa_train(qa_ds.remove_columns("answers"), qa_tokenizer)
