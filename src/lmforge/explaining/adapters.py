"""What to explain for a task: the adapter interface and the helpers adapters share.

An adapter knows, for its task only: how a raw record becomes model inputs (with the
positions that are features and the words they belong to), which output is explained (the
*target*: a class, one predicted entity, the predicted answer span), how that output is read
as one number per sequence from a batch of model outputs, and how features are taken away
(deleted, or replaced where positions must not move). Everything else in
:mod:`lmforge.explaining` is task-agnostic.

The concrete adapters live with their tasks (each task package's ``explain.py``) and a task
declares its own (``Task.explain_adapter()``): this package sits below the fine-tuning
tasks, so it never imports them or names one; :func:`get_adapter` asks the task object it is
given.

The task settings saved with a model are read only through :func:`setting` (a dict or the
typed settings, which have the same field names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

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


def encode_inputs(tokenizer: Any, first: Any, second: Any = None, max_length: int = 128,
                  split_words: bool = False, truncation: Any = True) -> Any:
    """Tokenize one input with character offsets (which words are built from).

    Raises:
        ConfigError: The tokenizer is not a fast one (no offsets).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("explanations need a fast tokenizer (character offsets); save the "
                          "model with a tokenizers-backed tokenizer")
    return tokenizer(first, second, truncation=truncation, max_length=max_length,
                     return_offsets_mapping=True, is_split_into_words=split_words)


def make_example(record: dict[str, Any], enc: Any, texts: list[str], tokenizer: Any,
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


def required_text(record: dict[str, Any], column: str) -> str:
    """The non-blank text of ``column`` in ``record``.

    Raises:
        DataError: The text is missing or blank (nothing to attribute).
    """
    value = record.get(column)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"an input has an empty or missing {column!r} text; give a non-empty "
                        "text to explain")
    return value


class Adapter(Protocol):
    """What :mod:`lmforge.explaining` asks of a task's adapter (built as ``cls(settings)``).

    Attributes:
        perturbation: How features are taken away: ``delete`` where the read-out does not
            depend on token positions, ``replace`` (with the fill token) where it does.
        labels: Label names (empty where the task has none).
    """

    perturbation: str
    labels: list[str]

    def encode(self, tokenizer: Any, record: dict[str, Any], word_mode: str) -> Example:
        """One raw record as an :class:`Example` (features, tokens, words)."""
        ...

    def resolve_targets(self, examples: list[Example], outputs: list[Any],
                        target: str | None, entity: int = 0) -> None:
        """Set each example's ``target`` and ``prediction`` from its model outputs."""
        ...

    def logits(self, out: Any) -> Any:
        """The per-sequence outputs targets are picked from (a tensor or a tuple of them)."""
        ...

    def score(self, out: Any, target: torch.Tensor) -> torch.Tensor:
        """The explained number per sequence, (B,), from a batch's outputs and targets."""
        ...

    def readout_positions(self, ex: Example) -> list[int]:
        """Token positions where the explained output is read (attention rollout rows)."""
        ...


def get_adapter(task: Any, settings: Any) -> Adapter:
    """The explanation adapter the task object ``task`` declares, built for ``settings``.

    Args:
        task: A fine-tuning task object (a predictor's ``task``); only its ``name`` and
            ``explain_adapter()`` are used, so this package needs no registry.
        settings: The task settings saved with the model.

    Raises:
        ConfigError: The task declares no adapter (its models cannot be explained). The
            message does not list the tasks that can: only the registry, above this package,
            knows them.
    """
    adapter_class = task.explain_adapter()
    if adapter_class is None:
        raise ConfigError("explanations support only tasks with an explain adapter, not "
                          f"{task.name!r} models; explain a run whose model labels its input "
                          "or marks spans in it (not a text generator)")
    return adapter_class(settings)
