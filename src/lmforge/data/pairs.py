"""Sentence-pair instances for next-sentence (BERT) and sentence-order (ALBERT) prediction.

Follows the idea of BERT's ``create_pretraining_data.py``: walk a document's sentences,
fill a chunk up to a target length, split it at a random sentence into A and B, and make
half the instances negatives. NSP negatives replace B with text from another document
(label 1); SOP negatives swap A and B (Lan et al., 2020, label 1). Label 0 always means
"B really follows A".
"""

from __future__ import annotations

import random
from typing import Any

# A segment is one sentence (one input row): (token ids, word_start flags).
Segment = tuple[list[int], list[int]]

SHORT_SEQ_PROB = 0.1  # BERT: sometimes use a shorter target so the model sees short inputs.


def _concat(segments: list[Segment]) -> Segment:
    ids: list[int] = []
    ws: list[int] = []
    for seg_ids, seg_ws in segments:
        ids.extend(seg_ids)
        ws.extend(seg_ws)
    return ids, ws


def _truncate_pair(a: Segment, b: Segment, max_tokens: int, rng: random.Random) -> None:
    """Trim the longer side, from the front or back at random, until both fit (in place)."""
    while len(a[0]) + len(b[0]) > max_tokens:
        side = a if len(a[0]) > len(b[0]) else b
        if rng.random() < 0.5:
            del side[0][0], side[1][0]
        else:
            side[0].pop()
            side[1].pop()
    for side in (a, b):
        if side[1]:
            side[1][0] = 1  # a front cut may leave a continuation piece first; it starts a word


def _split_segment(seg: Segment, rng: random.Random) -> tuple[Segment, Segment] | None:
    """Cut one long sentence in two, preferably at a word boundary (SOP with 1 sentence)."""
    ids, ws = seg
    if len(ids) < 2:
        return None
    cuts = [k for k in range(1, len(ids)) if ws[k]] or list(range(1, len(ids)))
    k = rng.choice(cuts)
    return (ids[:k], ws[:k]), (ids[k:], ws[k:])


def _random_other(
    docs: list[list[Segment]], doc_idx: int, target: int, rng: random.Random
) -> Segment | None:
    """Text from a random different document, from a random sentence, about ``target`` long."""
    others = [k for k in range(len(docs)) if k != doc_idx and docs[k]]
    if not others:
        return None
    doc = docs[rng.choice(others)]
    start = rng.randrange(len(doc))
    picked: list[Segment] = []
    length = 0
    for seg in doc[start:]:
        picked.append(seg)
        length += len(seg[0])
        if length >= target:
            break
    return _concat(picked)


def build_pair_instances(
    docs: list[list[Segment]],
    *,
    objective: str,
    max_length: int,
    cls_id: int,
    sep_id: int,
    rng: random.Random,
) -> dict[str, list[Any]]:
    """Make NSP or SOP instances from documents of tokenized sentences.

    Args:
        docs: Documents, each a list of sentences as ``(ids, word_start)``.
        objective: ``"nsp"`` or ``"sop"``.
        max_length: Length of ``[CLS] A [SEP] B [SEP]`` at most.
        cls_id: Id of the classification token.
        sep_id: Id of the separator token.
        rng: Seeded generator (the caller seeds it per map batch).

    Returns:
        Columns ``input_ids``, ``token_type_ids``, ``word_start``, ``next_sentence_label``.
    """
    out: dict[str, list[Any]] = {
        "input_ids": [],
        "token_type_ids": [],
        "word_start": [],
        "next_sentence_label": [],
    }
    max_tokens = max_length - 3  # room for [CLS], [SEP], [SEP]
    for doc_idx, doc in enumerate(docs):
        target = max_tokens
        if rng.random() < SHORT_SEQ_PROB:
            target = rng.randint(2, max(2, max_tokens))
        chunk: list[Segment] = []
        chunk_len = 0
        i = 0
        while i < len(doc):
            chunk.append(doc[i])
            chunk_len += len(doc[i][0])
            if i == len(doc) - 1 or chunk_len >= target:
                pair = _make_pair(chunk, docs, doc_idx, target, objective, rng)
                if pair is not None:
                    a, b, label, unused = pair
                    # NSP with a random B: the unused real sentences go back for the next chunk.
                    i -= unused
                    _truncate_pair(a, b, max_tokens, rng)
                    if a[0] and b[0]:
                        _emit(out, a, b, label, cls_id, sep_id)
                chunk, chunk_len = [], 0
            i += 1
    return out


def _make_pair(
    chunk: list[Segment],
    docs: list[list[Segment]],
    doc_idx: int,
    target: int,
    objective: str,
    rng: random.Random,
) -> tuple[Segment, Segment, int, int] | None:
    """Split a chunk into (A, B, label, sentences to give back) or None when impossible."""
    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
    a = _concat(chunk[:a_end])
    negative = rng.random() < 0.5
    if objective == "nsp" and negative:
        b = _random_other(docs, doc_idx, max(1, target - len(a[0])), rng)
        if b is not None:
            return a, (list(b[0]), list(b[1])), 1, len(chunk) - a_end
        negative = False  # only one document in this batch: fall back to a positive
    # Both segments come from the chunk. A one-sentence chunk is cut in two at a word
    # boundary; unlike BERT (which forces a random B there) this keeps NSP labels balanced
    # on corpora of short documents, and B still truly follows A.
    if len(chunk) >= 2:
        b = _concat(chunk[a_end:])
    else:
        halves = _split_segment(a, rng)
        if halves is None:
            return None
        a, b = halves
    if objective == "nsp":
        return a, b, 0, 0
    if negative:
        return b, a, 1, 0
    return a, b, 0, 0


def _emit(
    out: dict[str, list[Any]], a: Segment, b: Segment, label: int, cls_id: int, sep_id: int
) -> None:
    out["input_ids"].append([cls_id, *a[0], sep_id, *b[0], sep_id])
    # token_type_ids: 0 for "[CLS] A [SEP]", 1 for "B [SEP]".
    out["token_type_ids"].append([0] * (len(a[0]) + 2) + [1] * (len(b[0]) + 1))
    out["word_start"].append([1, *a[1], 1, *b[1], 1])
    out["next_sentence_label"].append(label)
