"""Extractive question answering (SQuAD 1.1 / 2.0 style): features, batching, span decoding.

Follows transformers' ``run_qa.py``: the question comes first, a long context is cut into
overlapping windows of ``max_length`` tokens (``doc_stride`` tokens of overlap), and the
model predicts start/end token positions. Training windows that do not contain the answer,
and unanswerable questions, point both positions at the CLS token. At evaluation, the
n-best spans over all windows of an example are scored ``start_logit + end_logit`` and
mapped back to the context through character offsets.

Data columns (SQuAD format): ``id``, ``question``, ``context`` and ``answers`` =
``{"text": [str, ...], "answer_start": [int, ...]}``; an empty ``text`` list marks an
unanswerable question (SQuAD 2.0).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np

from lmforge.data.collators import ColumnCollator
from lmforge.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

MAP_BATCH_SIZE = 1000
NOT_CONTEXT = (-1, -1)
"""``offset_mapping`` entry of tokens outside the context (question, specials): Arrow lists
cannot mix ``None`` with pairs cleanly, so ``run_qa``'s ``None`` becomes ``[-1, -1]``."""
_MODEL_COLUMNS = ("input_ids", "token_type_ids", "start_positions", "end_positions")
_REPORT_IDS = 5
_ANSWERS_FEATURE = {
    "text": datasets.List(datasets.Value("string")),
    "answer_start": datasets.List(datasets.Value("int64")),
}


def _answer_lists(value: Any) -> tuple[list[str], list[int]]:
    """``(texts, starts)`` from a SQuAD answers dict (or a list of ``{text, answer_start}``)."""
    if value is None:
        return [], []
    if isinstance(value, Mapping):
        texts, starts = list(value.get("text") or []), list(value.get("answer_start") or [])
    else:
        texts = [a["text"] for a in value]
        starts = [a["answer_start"] for a in value]
    if len(texts) != len(starts):
        raise DataError(
            f"answers have {len(texts)} texts but {len(starts)} answer_start values; "
            "give one start per answer text"
        )
    return texts, [int(s) for s in starts]


def answers_of(example: Mapping[str, Any], answers_column: str = "answers") -> list[str]:
    """Reference answer texts of one example, for metrics.

    Follows the SQuAD 2.0 evaluation script: blank answers are dropped and an unanswerable
    example has the single reference ``""`` (so predicting ``""`` scores as correct).
    """
    texts, _ = _answer_lists(example.get(answers_column))
    return [t for t in texts if t.strip()] or [""]


def _check_columns(ds: Any, needed: Sequence[str], split_name: str) -> list[str]:
    columns = list(ds.column_names or [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(
            f"column '{missing[0]}' not found in split '{split_name}' "
            f"(columns: {', '.join(columns)}); set the matching *_column option"
        )
    return columns


def check_answers(
    ds: datasets.Dataset,
    *,
    context_column: str = "context",
    answers_column: str = "answers",
    id_column: str = "id",
    split_name: str = "train",
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Drop answers whose ``answer_start`` does not point at their text in the context.

    An example keeps its aligned answers; one whose answers are all misaligned is removed.
    Unanswerable examples (no answers) are kept.

    Args:
        ds: Split with the context and answers columns.
        context_column: Column with the context passage.
        answers_column: Column with ``{"text": [...], "answer_start": [...]}``.
        id_column: Column used to name examples in the report (row index if absent).
        split_name: Used in log messages only.

    Returns:
        ``(cleaned, report)``; ``report`` = ``{"checked": examples with answers,
        "misaligned_answers": k, "dropped_examples": m, "examples": [first few ids with a
        misaligned answer]}``.
    """
    columns = _check_columns(ds, [context_column, answers_column], split_name)
    n_col, good_col = "__lmforge_answers", "__lmforge_aligned"

    def clean(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        answers, n_answers, n_good = [], [], []
        for context, value in zip(batch[context_column], batch[answers_column], strict=True):
            texts, starts = _answer_lists(value)
            good = [
                (t, s) for t, s in zip(texts, starts, strict=True)
                if s >= 0 and context[s : s + len(t)] == t
            ]  # fmt: skip
            answers.append({"text": [t for t, _ in good], "answer_start": [s for _, s in good]})
            n_answers.append(len(texts))
            n_good.append(len(good))
        return {answers_column: answers, n_col: n_answers, good_col: n_good}

    # Explicit features: a batch whose answers are all empty would otherwise infer null types.
    features = ds.features.copy()
    features[answers_column] = _ANSWERS_FEATURE
    features[n_col] = features[good_col] = datasets.Value("int32")
    marked = ds.map(clean, batched=True, batch_size=MAP_BATCH_SIZE, features=features,
                    desc="checking answers")  # fmt: skip
    # Two int columns: reading them whole is cheap even for large splits.
    n_answers, n_good = marked[n_col], marked[good_col]
    bad_rows = [i for i, (n, g) in enumerate(zip(n_answers, n_good, strict=True)) if g < n]
    first_bad = bad_rows[:_REPORT_IDS]
    ids = marked.select(first_bad)[id_column] if id_column in columns else first_bad
    keep = [i for i, (n, g) in enumerate(zip(n_answers, n_good, strict=True)) if g or not n]
    cleaned = marked.select(keep) if len(keep) < len(marked) else marked
    cleaned = cleaned.remove_columns([n_col, good_col])
    checked = sum(1 for n in n_answers if n)
    report = {
        "checked": checked,
        "misaligned_answers": sum(n_answers) - sum(n_good),
        "dropped_examples": len(marked) - len(keep),
        "examples": [str(i) for i in ids],
    }
    if report["misaligned_answers"]:
        logger.warning(
            "split '%s': %d of %d answered examples had %d misaligned answers "
            "(context[answer_start:] != text); dropped %d examples, e.g. %s",
            split_name, len(bad_rows), checked, report["misaligned_answers"],
            report["dropped_examples"], ", ".join(report["examples"]),
        )  # fmt: skip
    return cleaned, report


class _Featurizer:
    """Batched ``map`` function: examples in, one feature per context window out."""

    def __init__(self, tokenizer: Any, max_length: int, doc_stride: int, columns: dict[str, str],
                 eval_mode: bool) -> None:  # fmt: skip
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.doc_stride = doc_stride
        self.columns = columns
        self.eval_mode = eval_mode
        cls_id = getattr(tokenizer, "cls_token_id", None)
        self.cls_id = None if cls_id is None else int(cls_id)
        self.specials = tokenizer.num_special_tokens_to_add(pair=True)

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        c = self.columns
        # Leading spaces in questions waste tokens and can push the context out of the window.
        questions = [q.lstrip() for q in batch[c["question"]]]
        ids = batch[c["id"]] if c["id"] in batch else [str(i) for i in indices]
        self._check_room(questions, ids)
        enc = self.tokenizer(
            questions, batch[c["context"]], truncation="only_second", max_length=self.max_length,
            stride=self.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
        )  # fmt: skip
        answers = batch.get(c["answers"])
        out: dict[str, list[Any]] = {"input_ids": enc["input_ids"]}
        if "token_type_ids" in enc:
            out["token_type_ids"] = enc["token_type_ids"]
        if answers is not None:
            out["start_positions"], out["end_positions"] = [], []
        if self.eval_mode:
            out["example_id"], out["offset_mapping"] = [], []
        for i, offsets in enumerate(enc["offset_mapping"]):
            sample = enc["overflow_to_sample_mapping"][i]
            seq_ids = enc.sequence_ids(i)  # (L,) 0 question, 1 context, None special
            if answers is not None:
                start, end = self._positions(enc["input_ids"][i], offsets, seq_ids,
                                             answers[sample])  # fmt: skip
                out["start_positions"].append(start)
                out["end_positions"].append(end)
            if self.eval_mode:
                out["example_id"].append(str(ids[sample]))
                out["offset_mapping"].append([
                    list(o) if s == 1 else list(NOT_CONTEXT)
                    for o, s in zip(offsets, seq_ids, strict=True)
                ])  # fmt: skip
        return out

    def _check_room(self, questions: list[str], ids: Sequence[Any]) -> None:
        """Fail clearly where tokenizers would panic: no more context room than the stride."""
        lengths = self.tokenizer(questions, add_special_tokens=False, return_length=True)["length"]
        room = self.max_length - self.specials - max(lengths, default=0)
        if room <= self.doc_stride:
            worst = ids[lengths.index(max(lengths))]
            raise ConfigError(
                f"question of example '{worst}' has {max(lengths)} tokens, leaving {room} "
                f"context tokens per window (need > doc_stride={self.doc_stride}); raise "
                "max_length or lower doc_stride"
            )

    def _positions(self, input_ids: list[int], offsets: list[tuple[int, int]],
                   seq_ids: list[int | None], answers: Any) -> tuple[int, int]:  # fmt: skip
        """Token ``(start, end)`` of the first answer in this window, else CLS twice."""
        cls = input_ids.index(self.cls_id) if self.cls_id in input_ids else 0
        texts, starts = _answer_lists(answers)
        if not texts or not texts[0]:
            return cls, cls  # unanswerable
        start_char, end_char = starts[0], starts[0] + len(texts[0])
        ctx = [k for k, s in enumerate(seq_ids) if s == 1]
        if not ctx:
            return cls, cls
        first, last = ctx[0], ctx[-1]
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            return cls, cls  # the answer is (at least partly) outside this window
        # Walk inward from the window's context edges to the tokens covering the answer.
        tok_start = first
        while tok_start <= last and offsets[tok_start][0] <= start_char:
            tok_start += 1
        tok_end = last
        while tok_end >= first and offsets[tok_end][1] >= end_char:
            tok_end -= 1
        return tok_start - 1, tok_end + 1


def _prepare(
    ds: datasets.Dataset,
    tokenizer: Any,
    max_length: int,
    doc_stride: int,
    columns: dict[str, str],
    eval_mode: bool,
    split_name: str,
) -> datasets.Dataset:
    """Validate the inputs, then window every example (shared by train and eval)."""
    needed = [columns["question"], columns["context"]] + ([] if eval_mode else [columns["answers"]])
    existing = _check_columns(ds, needed, split_name)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("extractive QA needs a fast tokenizer (offset mapping); load one")
    if getattr(tokenizer, "padding_side", "right") != "right":
        raise ConfigError("extractive QA expects padding_side='right'; set it on the tokenizer")
    if not 0 <= doc_stride < max_length:
        raise ConfigError(
            f"doc_stride ({doc_stride}) must be >= 0 and below max_length ({max_length}); "
            "lower doc_stride"
        )
    out = ds.map(
        _Featurizer(tokenizer, max_length, doc_stride, columns, eval_mode),
        batched=True, batch_size=MAP_BATCH_SIZE, with_indices=True, remove_columns=existing,
        desc=f"windowing {split_name} contexts",
    )  # fmt: skip
    logger.info("split '%s': %d examples -> %d features", split_name, len(ds), len(out))
    return out


def prepare_qa_train(
    ds: datasets.Dataset,
    tokenizer: Any,
    *,
    max_length: int = 384,
    doc_stride: int = 128,
    question_column: str = "question",
    context_column: str = "context",
    answers_column: str = "answers",
    split_name: str = "train",
) -> datasets.Dataset:
    """Tokenize question + context into training windows with answer token positions.

    Args:
        ds: Split with question, context and answers columns (run :func:`check_answers`
            first: a misaligned ``answer_start`` yields a wrong target span).
        tokenizer: Fast tokenizer (offsets), padding side right.
        max_length: Tokens per window, question and specials included.
        doc_stride: Tokens shared by consecutive windows of one context.
        question_column: Column with the question.
        context_column: Column with the context.
        answers_column: Column with SQuAD answers; only the first answer is the target.
        split_name: Used in log and error messages only.

    Returns:
        One row per window: ``input_ids``, ``token_type_ids`` (if the tokenizer makes
        them), ``start_positions``, ``end_positions`` (ints; the CLS index when the
        answer is not inside the window or the example is unanswerable).
    """
    columns = {"question": question_column, "context": context_column,
               "answers": answers_column, "id": "id"}  # fmt: skip
    return _prepare(ds, tokenizer, max_length, doc_stride, columns, False, split_name)


def prepare_qa_eval(
    ds: datasets.Dataset,
    tokenizer: Any,
    *,
    max_length: int = 384,
    doc_stride: int = 128,
    question_column: str = "question",
    context_column: str = "context",
    answers_column: str = "answers",
    id_column: str = "id",
    split_name: str = "validation",
) -> datasets.Dataset:
    """Tokenize evaluation windows, keeping what :func:`postprocess_qa` needs.

    Args:
        ds: Split with question and context (answers optional).
        tokenizer, max_length, doc_stride, question_column, context_column: As in
            :func:`prepare_qa_train`.
        answers_column: When present, ``start_positions``/``end_positions`` are added too,
            so an evaluation loss can be computed.
        id_column: Column naming each example; absent, the row index (as a string) is used
            and :func:`postprocess_qa` must be given the same dataset.
        split_name: Used in log and error messages only.

    Returns:
        One row per window: ``input_ids``, ``token_type_ids`` (if any), ``example_id``
        (str), ``offset_mapping`` (per token ``[char_start, char_end]`` into the context,
        ``[-1, -1]`` for question and special tokens), and optionally the positions.
    """
    columns = {"question": question_column, "context": context_column,
               "answers": answers_column, "id": id_column}  # fmt: skip
    return _prepare(ds, tokenizer, max_length, doc_stride, columns, True, split_name)


class QACollator(ColumnCollator):
    """Pad ``input_ids``/``token_type_ids``, stack ``start/end_positions``, add the mask.

    ``example_id`` and ``offset_mapping`` are dropped: they stay in the features dataset
    for :func:`postprocess_qa`.

    Args:
        tokenizer: Supplies the pad id.
        pad_to_multiple_of: Round the padded length up to a multiple of this.
    """

    columns = _MODEL_COLUMNS


def _rows(data: Any, columns: Sequence[str]) -> dict[str, list[Any]]:
    """Columns of a Dataset, a dict of columns, or a list of row dicts, as lists."""
    if isinstance(data, datasets.Dataset):
        return {c: data[c] for c in columns if c in data.column_names}
    if isinstance(data, Mapping):
        return {c: list(data[c]) for c in columns if c in data}
    return {c: [row[c] for row in data] for c in columns if data and c in data[0]}


def postprocess_qa(
    examples: Any,
    features: Any,
    all_start_logits: Any,
    all_end_logits: Any,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    allow_unanswerable: bool = False,
    null_score_diff_threshold: float = 0.0,
    id_column: str = "id",
    context_column: str = "context",
    top_k: int = 1,
) -> dict[str, dict[str, Any]]:
    """Pick the best answer span of each example over all its windows.

    Args:
        examples: The raw split (Dataset, dict of columns, or list of rows) with contexts.
        features: The output of :func:`prepare_qa_eval` (``example_id``, ``offset_mapping``).
        all_start_logits: One row of start logits per feature: a 2-D array (B, L), possibly
            padded, or a list of 1-D arrays of varying length.
        all_end_logits: Same for end logits.
        n_best: Start and end candidates tried per window, and spans kept per example.
        max_answer_length: Longest span in tokens.
        allow_unanswerable: SQuAD 2.0: predict ``""`` when the null score (CLS start + end,
            its minimum over the windows, as in ``run_qa``) beats the best span by more
            than ``null_score_diff_threshold``.
        null_score_diff_threshold: See ``allow_unanswerable``.
        id_column: Example id column (row index as a string if absent, like
            :func:`prepare_qa_eval`).
        context_column: Context column.
        top_k: When > 1, also return the ``top_k`` best distinct spans as ``"top_k"``.

    Returns:
        ``{example_id: {"text": str, "score": float, "start": char offset or -1}}``; an
        example with no valid span gets ``""`` with the null score.
    """
    ex = _rows(examples, [id_column, context_column])
    if context_column not in ex:
        raise DataError(f"examples lack the '{context_column}' column; set context_column")
    contexts = ex[context_column]
    ids = [str(i) for i in ex.get(id_column, range(len(contexts)))]
    feat = _rows(features, ["example_id", "offset_mapping"])
    if "offset_mapping" not in feat:
        raise DataError("features lack offset_mapping; build them with prepare_qa_eval")
    if not len(feat["example_id"]) == len(all_start_logits) == len(all_end_logits):
        raise DataError(
            f"{len(feat['example_id'])} features but {len(all_start_logits)} start and "
            f"{len(all_end_logits)} end logit rows; predict every feature in order"
        )
    by_example: dict[str, list[int]] = {}
    for k, eid in enumerate(feat["example_id"]):
        by_example.setdefault(str(eid), []).append(k)

    predictions: dict[str, dict[str, Any]] = {}
    for eid, context in zip(ids, contexts, strict=True):
        best: dict[str, Any] | None = None
        spans: dict[tuple[int, int], float] = {}  # (start char, end char) -> best score
        null_score: float | None = None
        for k in by_example.get(eid, []):
            offsets = feat["offset_mapping"][k]
            n_tok = len(offsets)
            # Drop batch padding beyond this feature's tokens: (L_pad,) -> (n_tok,)
            start = np.asarray(all_start_logits[k], dtype=np.float64)[:n_tok]
            end = np.asarray(all_end_logits[k], dtype=np.float64)[:n_tok]
            feature_null = float(start[0] + end[0])  # CLS sits at index 0 (run_qa)
            if null_score is None or feature_null < null_score:
                null_score = feature_null
            top_starts = np.argsort(start)[::-1][:n_best]
            top_ends = np.argsort(end)[::-1][:n_best]
            for s in top_starts:
                if offsets[s][0] < 0:
                    continue  # not a context token
                for e in top_ends:
                    if offsets[e][0] < 0 or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = float(start[s] + end[e])
                    if top_k > 1:
                        key = (int(offsets[s][0]), int(offsets[e][1]))
                        spans[key] = max(score, spans.get(key, float("-inf")))
                    if best is None or score > best["score"]:
                        best = {"score": score, "start": int(offsets[s][0]),
                                "end": int(offsets[e][1])}  # fmt: skip
        null = float("-inf") if null_score is None else null_score
        null_wins = best is not None and null - best["score"] > null_score_diff_threshold
        if best is None or (allow_unanswerable and null_wins):
            predictions[eid] = {"text": "", "score": null, "start": -1}
        else:
            text = context[best["start"] : best["end"]]
            predictions[eid] = {"text": text, "score": best["score"], "start": best["start"]}
        if top_k > 1:
            ranked = sorted(spans.items(), key=lambda kv: -kv[1])[:top_k]
            predictions[eid]["top_k"] = [
                {"text": context[a:b], "score": score, "start": a} for (a, b), score in ranked]
    return predictions
