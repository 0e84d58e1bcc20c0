"""What to explain for each task: one small adapter per task, in one table.

An adapter knows, for its task only: how a raw record becomes model inputs (with the
positions that are features and the words they belong to), which output is explained (the
*target*: a class, one predicted entity, the predicted answer span), how that output is read
as one number per sequence from a batch of model outputs, and how features are taken away
(deleted, or replaced where positions must not move). Everything else in
:mod:`lmforge.explaining` is task-agnostic. The table :data:`ADAPTERS` is the one place this
knowledge lives, so it can move into the task objects later.

The task settings saved with a model are read only through :func:`setting` (a dict today,
typed settings with the same field names tomorrow).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lmforge.errors import ConfigError, DataError
from lmforge.explaining.words import Word, group_words


def setting(settings: Any, name: str, default: Any = None) -> Any:
    """One task setting from a model's saved settings (dict or attribute object)."""
    if isinstance(settings, dict):
        value = settings.get(name, default)
    else:
        value = getattr(settings, name, default)
    return default if value is None else value


def settings_of(predictor: Any) -> Any:
    """The typed task settings of a :class:`~lmforge.predictor.Predictor`."""
    return predictor.settings


@dataclass
class Example:
    """One encoded input, ready to perturb and explain.

    Attributes:
        record: The raw record.
        ids: Token ids with special tokens, shape (L,).
        type_ids: Segment ids (L,), or None when the tokenizer has none.
        features: Positions (into ``ids``) that are attributable tokens, shape (F,).
        tokens: Token strings of the feature positions (F,).
        words: Words (sub-words merged), each with its indices into ``features``.
        target: Target row for :meth:`Adapter.score` (class id, entity positions, span).
        prediction: What the model predicted, for reports (label / entity / answer, score).
    """

    record: dict[str, Any]
    ids: np.ndarray
    type_ids: np.ndarray | None
    features: np.ndarray
    tokens: list[str]
    words: list[Word]
    target: list[int] = field(default_factory=list)
    prediction: dict[str, Any] = field(default_factory=dict)


def _encode(tokenizer: Any, first: Any, second: Any = None, max_length: int = 128,
            split_words: bool = False, truncation: Any = True) -> Any:
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("explanations need a fast tokenizer (character offsets); save the "
                          "model with a tokenizers-backed tokenizer")
    return tokenizer(first, second, truncation=truncation, max_length=max_length,
                     return_offsets_mapping=True, is_split_into_words=split_words)


def _example(record: dict[str, Any], enc: Any, texts: list[str], tokenizer: Any,
             word_mode: str, given_words: list[str] | None = None) -> Example:
    """An :class:`Example` from one tokenizer output (sequence 0, no batch dimension)."""
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    types = np.asarray(enc["token_type_ids"], dtype=np.int64) if "token_type_ids" in enc \
        else None
    seq_ids = enc.sequence_ids(0)
    # A text of only characters the tokenizer drops (e.g. U+200B) has no feature: the example
    # keeps its prediction and gets empty scores (Explainer.explain skips it).
    features = np.asarray([i for i, s in enumerate(seq_ids) if s is not None], dtype=np.int64)
    tokens = tokenizer.convert_ids_to_tokens([int(ids[i]) for i in features])
    words = group_words(texts, [enc["offset_mapping"][i] for i in features],
                        [seq_ids[i] for i in features],
                        [enc.word_ids(0)[i] for i in features], word_mode, given_words)
    return Example(record, ids, types, features, list(tokens), words)


def _text(record: dict[str, Any], column: str) -> str:
    value = record.get(column)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"an input has an empty or missing {column!r} text; give a non-empty "
                        "text to explain")
    return value


class ClassificationAdapter:
    """Sequence classification (single texts and pairs): explain one class's probability."""

    perturbation = "delete"  # the [CLS] read-out does not depend on token positions

    def __init__(self, settings: Any) -> None:
        self.labels: list[str] = list(setting(settings, "labels", []))
        self.text_column: str = setting(settings, "text_column", "text")
        self.pair_column: str | None = setting(settings, "text_pair_column")
        self.multi_label: bool = bool(setting(settings, "multi_label", False))
        self.max_length: int = int(setting(settings, "max_length", 128))

    def encode(self, tokenizer: Any, record: dict[str, Any], word_mode: str) -> Example:
        """Tokenize the text (and its pair) into an :class:`Example`."""
        texts = [_text(record, self.text_column)]
        if self.pair_column:
            texts.append(_text(record, self.pair_column))
        enc = _encode(tokenizer, *texts, max_length=self.max_length)
        return _example(record, enc, texts, tokenizer, word_mode)

    def resolve_targets(self, examples: list[Example], outputs: list[Any],
                        target: str | None, entity: int = 0) -> None:
        """Set each example's target class: ``target`` when given, else the predicted one."""
        if target is not None and target not in self.labels:
            raise ConfigError(f"target={target!r} is not a label of this model; labels: "
                              f"{self.labels}")
        for ex, logits in zip(examples, outputs, strict=True):
            probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)
            best = int(probs.argmax())
            cls = self.labels.index(target) if target is not None else best
            ex.target = [cls]
            ex.prediction = {"label": self.labels[best], "score": float(probs[best]),
                             "target": self.labels[cls], "target_score": float(probs[cls])}

    def logits(self, out: Any) -> torch.Tensor:
        """The per-sequence output used to pick targets: (B, C) logits."""
        return out.logits

    def score(self, out: Any, target: torch.Tensor) -> torch.Tensor:
        """Probability of the target class: (B,) from logits (B, C) and target (B, 1)."""
        logits = out.logits.float()
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)
        return probs.gather(1, target[:, :1]).squeeze(1)

    def readout_positions(self, ex: Example) -> list[int]:
        """Where the head reads (attention rollout rows): the first token ([CLS])."""
        return [0]


class TokenClassificationAdapter:
    """NER: explain one predicted entity (mean probability of its words' tags)."""

    perturbation = "replace"  # the entity's positions must not move

    def __init__(self, settings: Any) -> None:
        self.labels: list[str] = list(setting(settings, "labels", []))
        self.tokens_column: str = setting(settings, "tokens_column", "tokens")
        self.text_column: str = setting(settings, "text_column", "text")
        self.max_length: int = int(setting(settings, "max_length", 128))

    def encode(self, tokenizer: Any, record: dict[str, Any], word_mode: str) -> Example:
        """Words (a tokens list, or a text split on whitespace) into an :class:`Example`."""
        if isinstance(record.get(self.tokens_column), list) and record[self.tokens_column]:
            words = [str(w) for w in record[self.tokens_column]]
        else:
            words = _text(record, self.text_column).split()
        enc = _encode(tokenizer, words, max_length=self.max_length, split_words=True)
        return _example(record, enc, [" ".join(words)], tokenizer, "given", words)

    def resolve_targets(self, examples: list[Example], outputs: list[Any],
                        target: str | None, entity: int = 0) -> None:
        """Pick the ``entity``-th predicted entity (of type ``target`` when given)."""
        from lmforge.finetuning.token_classification.data import entities_from_tags

        types = sorted({t.split("-", 1)[1] for t in self.labels if "-" in t})
        if target is not None and target not in types:
            raise ConfigError(f"target={target!r} is not an entity type of this model; "
                              f"types: {types}")
        for ex, logits in zip(examples, outputs, strict=True):
            probs = torch.softmax(logits.float(), -1)  # (L, C)
            words = [w.text for w in ex.words]
            firsts = [int(ex.features[w.indices[0]]) for w in ex.words]
            tags = [self.labels[int(probs[p].argmax())] for p in firsts]
            found = [e for e in entities_from_tags(words, tags)
                     if target is None or e["type"] == target]
            if entity >= len(found):
                raise DataError(f"no entity #{entity} predicted in {' '.join(words)!r} "
                                f"({len(found)} found); pick another input or entity")
            chosen = found[entity]
            span = range(chosen["start_word"], chosen["end_word"])
            pairs = [(firsts[w], self.labels.index(tags[w])) for w in span]
            ex.target = [v for pair in pairs for v in pair]
            score = float(np.mean([float(probs[p, c]) for p, c in pairs]))
            ex.prediction = {"entity": chosen["text"], "type": chosen["type"],
                             "start_word": chosen["start_word"],
                             "end_word": chosen["end_word"], "score": score,
                             "target": chosen["type"], "target_score": score}

    def logits(self, out: Any) -> torch.Tensor:
        """(B, L, C) tag logits."""
        return out.logits

    def score(self, out: Any, target: torch.Tensor) -> torch.Tensor:
        """Mean probability of the entity's tags; target (B, 2K) = (position, tag) pairs,
        padded with -1."""
        probs = torch.softmax(out.logits.float(), -1)  # (B, L, C)
        pos, tag = target[:, 0::2], target[:, 1::2]  # (B, K) each
        valid = pos >= 0
        rows = torch.arange(probs.shape[0], device=probs.device).unsqueeze(1)
        picked = probs[rows, pos.clamp(min=0), tag.clamp(min=0)] * valid  # (B, K)
        return picked.sum(1) / valid.sum(1).clamp(min=1)

    def readout_positions(self, ex: Example) -> list[int]:
        """The entity's first sub-word positions."""
        return [int(p) for p in ex.target[0::2]]


class QuestionAnsweringAdapter:
    """Extractive QA: explain the probability of the predicted span (start x end)."""

    perturbation = "replace"  # start / end positions must not move

    def __init__(self, settings: Any) -> None:
        self.question_column: str = setting(settings, "question_column", "question")
        self.context_column: str = setting(settings, "context_column", "context")
        self.max_length: int = int(setting(settings, "max_length", 384))
        self.max_answer_length: int = int(setting(settings, "max_answer_length", 30))
        self.labels: list[str] = []

    def encode(self, tokenizer: Any, record: dict[str, Any], word_mode: str) -> Example:
        """Question and context (the first window: the context is cut at ``max_length``)."""
        texts = [_text(record, self.question_column), _text(record, self.context_column)]
        enc = _encode(tokenizer, *texts, max_length=self.max_length, truncation="only_second")
        return _example(record, enc, texts, tokenizer, word_mode)

    def resolve_targets(self, examples: list[Example], outputs: list[Any],
                        target: str | None, entity: int = 0) -> None:
        """The best span inside the context (start <= end < start + max_answer_length)."""
        if target is not None:
            raise ConfigError("target= is for classification labels and NER entity types; "
                              "QA explains the predicted answer span")
        for ex, (start, end) in zip(examples, outputs, strict=True):
            context = [int(p) for p, w in zip(ex.features, self._segments(ex), strict=True)
                       if w == 1]
            if not context:
                raise DataError("the context has no token left (a long question cut it away, "
                                "or the tokenizer dropped every character); shorten the "
                                "question or give a context with words")
            s_log, e_log = start.float(), end.float()
            best, span = -float("inf"), (context[0], context[0])
            for i, s in enumerate(context):
                for e in context[i:i + self.max_answer_length]:
                    value = float(s_log[s] + e_log[e])
                    if value > best:
                        best, span = value, (s, e)
            ex.target = list(span)
            p = float(torch.softmax(s_log, -1)[span[0]] * torch.softmax(e_log, -1)[span[1]])
            offsets = [w for w in ex.words if w.segment == 1]
            answer = _span_text(ex, span, offsets, self.context_column)
            ex.prediction = {"answer": answer, "score": p, "target": "answer span",
                             "target_score": p}

    @staticmethod
    def _segments(ex: Example) -> list[int]:
        seg = [0] * len(ex.features)
        for w in ex.words:
            for i in w.indices:
                seg[i] = w.segment
        return seg

    def logits(self, out: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(start (B, L), end (B, L)) logits."""
        return out.start_logits, out.end_logits

    def score(self, out: Any, target: torch.Tensor) -> torch.Tensor:
        """p_start(s) * p_end(e) for target (B, 2) = (s, e)."""
        ps = torch.softmax(out.start_logits.float(), -1)
        pe = torch.softmax(out.end_logits.float(), -1)
        return ps.gather(1, target[:, :1]).squeeze(1) * pe.gather(1, target[:, 1:2]).squeeze(1)

    def readout_positions(self, ex: Example) -> list[int]:
        """The start and end positions."""
        return [int(ex.target[0]), int(ex.target[1])]


def _span_text(ex: Example, span: tuple[int, int], words: list[Word], column: str) -> str:
    """The context substring covered by token positions ``span`` (inclusive)."""
    chars = [c for w in words for i, c in zip(w.indices, w.token_offsets, strict=True)
             if span[0] <= int(ex.features[i]) <= span[1]]
    if not chars:
        return ""
    return str(ex.record[column])[min(c[0] for c in chars):max(c[1] for c in chars)]


# Task name -> adapter class. The methods each task supports are in methods.METHODS.
ADAPTERS: dict[str, type] = {
    "classification": ClassificationAdapter,
    "token_classification": TokenClassificationAdapter,
    "qa": QuestionAnsweringAdapter,
}


def get_adapter(task_name: str, settings: Any) -> Any:
    """The adapter of ``task_name`` (a one-line error for tasks without explanations)."""
    if task_name not in ADAPTERS:
        raise ConfigError(f"explanations support {sorted(ADAPTERS)} models, not "
                          f"{task_name!r}; explain a classification, NER or QA run")
    return ADAPTERS[task_name](settings)
