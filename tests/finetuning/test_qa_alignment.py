"""QA answer alignment at window edges, where run_qa's labelling walks out of the context."""

from __future__ import annotations

from typing import Any

import datasets
import pytest

from lmforge.finetuning.qa.data import prepare_qa_eval

FILLER = "the cat sat on the mat and the dog ran to the old garden . "
CONTEXT = FILLER * 3 + "the prize went to Marie Curie in Paris . " + FILLER * 3 + "Curie"
QUESTION = "who got the prize ?"
MAX_LENGTH, STRIDE = 32, 8


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Tiny WordPiece trained on the context and question."""
    from transformers import AutoTokenizer

    from lmforge.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("qa_edge_tok")
    train_tokenizer([CONTEXT, QUESTION] * 10, out, kind="wordpiece", vocab_size=300,
                    min_frequency=1)
    return AutoTokenizer.from_pretrained(out)


def _edge_answers(tokenizer: Any) -> list[tuple[int, int, str, int]]:
    """(window, token index, answer text, answer_start) for the first and last context token
    of every window: answers that sit exactly on a window edge."""
    enc = tokenizer(QUESTION, CONTEXT, truncation="only_second", max_length=MAX_LENGTH,
                    stride=STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True)
    edges = []
    for w in range(len(enc["input_ids"])):
        context_tokens = [k for k, s in enumerate(enc.sequence_ids(w)) if s == 1]
        for k in (context_tokens[0], context_tokens[-1]):
            a, b = enc["offset_mapping"][w][k]
            edges.append((w, k, CONTEXT[a:b], a))
    return edges


def test_answers_on_window_edges_are_labelled_inside_the_context(tokenizer: Any) -> None:
    edges = _edge_answers(tokenizer)
    assert len(edges) >= 8  # several windows, both edges of each
    ds = datasets.Dataset.from_dict({
        "id": [str(i) for i in range(len(edges))], "question": [QUESTION] * len(edges),
        "context": [CONTEXT] * len(edges),
        "answers": [{"text": [t], "answer_start": [a]} for _, _, t, a in edges]})
    feats = prepare_qa_eval(ds, tokenizer, max_length=MAX_LENGTH, doc_stride=STRIDE)
    windows = len(feats) // len(edges)
    for i, (w, k, text, a) in enumerate(edges):
        f = feats[i * windows + w]
        assert f["example_id"] == str(i)
        # run_qa walks the start past a last-context-token answer into [SEP] (start > end);
        # lmforge stops at the window's context edge.
        assert (f["start_positions"], f["end_positions"]) == (k, k), (w, text)
        offsets = f["offset_mapping"]
        assert CONTEXT[offsets[k][0]:offsets[k][1]] == text and offsets[k][0] == a
    # Every labelled window of every example holds a well-formed span of context tokens.
    for f in feats:
        s, e = f["start_positions"], f["end_positions"]
        assert (s, e) == (0, 0) or (0 < s <= e and f["offset_mapping"][e][0] >= 0)
