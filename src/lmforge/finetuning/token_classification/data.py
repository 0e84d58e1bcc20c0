"""Token classification (NER): label sets, sub-word label alignment, batching, decoding.

Words arrive pre-split (CoNLL ``tokens``/``tags`` columns) and the tokenizer may split one
word into several sub-words. Training labels follow the BERT recipe (Devlin et al., 2019):
the first sub-word of a word carries the word's label and the other sub-words are ignored
(-100), unless ``label_all_subwords`` is set. Predictions are read back from the first
sub-word of each word, so every original word gets exactly one tag, including words that
were cut off by ``max_length`` (they are predicted as ``"O"``, and counted, so that
word-level metrics stay comparable with the full data).

Tagging schemes: ``BIO`` (``O``, ``B-X``, ``I-X``) and ``BIOES`` (also ``E-X``, ``S-X``).
Chunks are read the lenient conlleval way: an ``I-X`` after ``O`` or after another type
starts a new chunk instead of being an error, so IOB1 data works too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import datasets

from lmforge.data.collators import ColumnCollator
from lmforge.errors import ConfigError, DataError
from lmforge.evaluation.ner import convert_scheme

logger = logging.getLogger(__name__)

SCHEMES: dict[str, tuple[str, ...]] = {"BIO": ("B", "I"), "BIOES": ("B", "I", "E", "S")}
IGNORE_INDEX = -100
"""Label of positions the loss skips (specials, continuation sub-words, padding)."""
NO_WORD = -1
"""``word_ids`` value of tokens that are not the first sub-word of a word."""
MAP_BATCH_SIZE = 1000
_PREFIX_ORDER = {"B": 0, "I": 1, "E": 2, "S": 3}
# The collator pads only what the model consumes; word_ids/num_words stay in the dataset.
_MODEL_COLUMNS = ("input_ids", "token_type_ids", "labels")


def _check_scheme(scheme: str) -> tuple[str, ...]:
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown tagging scheme '{scheme}'; use one of: {', '.join(SCHEMES)}")
    return SCHEMES[scheme]


def _split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``; no validation."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def _iter_tag_lists(source: Any, tags_column: str) -> Iterable[Sequence[str]]:
    """Yield tag lists from a Dataset, DatasetDict, list of those, or list of tag lists."""
    if isinstance(source, datasets.DatasetDict):
        for split in source.values():
            yield from _iter_tag_lists(split, tags_column)
    elif isinstance(source, datasets.Dataset):
        if tags_column not in source.column_names:
            raise DataError(
                f"tags column '{tags_column}' not found (columns: "
                f"{', '.join(source.column_names)}); set tags_column"
            )
        for batch in source.select_columns([tags_column]).iter(batch_size=MAP_BATCH_SIZE):
            yield from batch[tags_column]
    elif isinstance(source, Sequence) and source and all(isinstance(t, str) for t in source):
        yield source  # one flat tag list (a str itself lands here too and fails validation)
    else:
        for item in source:
            if isinstance(item, datasets.Dataset | datasets.DatasetDict):
                yield from _iter_tag_lists(item, tags_column)
            else:
                yield item


def collect_labels(
    datasets_or_tag_lists: Any,
    scheme: str = "BIO",
    *,
    tags_column: str = "tags",
    complete: bool = False,
) -> list[str]:
    """All tags seen, validated against ``scheme`` and sorted: ``O``, then type, then prefix.

    Args:
        datasets_or_tag_lists: A ``Dataset``/``DatasetDict`` (or a list of them) with a
            ``tags_column`` of tag lists, or an iterable of tag lists. Pass every split so
            that a tag seen only in validation still gets an id.
        scheme: ``"BIO"`` or ``"BIOES"``; ``I-X`` after ``O`` is accepted (conlleval).
        tags_column: Column holding the tag lists when datasets are given.
        complete: Add every prefix of the scheme for each entity type seen (e.g. ``I-MISC``
            even if only ``B-MISC`` occurs), so a model can predict all of them.

    Returns:
        Sorted labels, e.g. ``["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]``. ``"O"`` is always
        included (it is what truncated words decode to).

    Raises:
        DataError: A tag does not fit the scheme.
        ConfigError: Unknown scheme.
    """
    prefixes = _check_scheme(scheme)
    seen: set[str] = {"O"}
    for tags in _iter_tag_lists(datasets_or_tag_lists, tags_column):
        seen.update(tags)
    for tag in seen:
        prefix, kind = _split_tag(tag)
        if prefix != "O" and (prefix not in prefixes or not kind):
            raise DataError(
                f"tag '{tag}' does not fit the {scheme} scheme (O or "
                f"{'/'.join(p + '-TYPE' for p in prefixes)}); fix the data or set the scheme"
            )
    if complete:
        kinds = {_split_tag(t)[1] for t in seen if t != "O"}
        seen.update(f"{p}-{k}" for k in kinds for p in prefixes)
    # "O" first; then group by type so B-X, I-X (, E-X, S-X) sit next to each other.
    return sorted(
        seen, key=lambda t: (t != "O", _split_tag(t)[1], _PREFIX_ORDER.get(_split_tag(t)[0], 9))
    )


def _chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entity chunks ``(type, start, end_exclusive)`` read like conlleval (BIO/IOB1/BIOES)."""
    chunks: list[tuple[str, int, int]] = []
    start, cur_type, prev_prefix = -1, "", "O"
    for i, tag in enumerate(tags):
        prefix, kind = _split_tag(tag)
        # A chunk ends before this tag when the previous one closed it (E/S), this one opens
        # a new chunk (B/S/O), or the type changes.
        if start >= 0 and (
            prev_prefix in ("E", "S") or prefix in ("B", "S", "O") or kind != cur_type
        ):
            chunks.append((cur_type, start, i))
            start = -1
        if prefix != "O" and start < 0:
            start, cur_type = i, kind  # B/S, or a lenient I/E that opens a chunk
        prev_prefix = prefix
    if start >= 0:
        chunks.append((cur_type, start, len(tags)))
    return chunks


def convert_tags(tags: Sequence[str], to_scheme: str) -> list[str]:
    """Rewrite one tag sequence in ``to_scheme`` (e.g. BIO data for a BIOES model).

    An ``I-X`` that opens a chunk is read as its start (conlleval leniency), so IOB1 input
    converts too. The conversion itself is :func:`lmforge.evaluation.ner.convert_scheme`.

    Args:
        tags: Tags of one sentence in BIO, IOB1 or BIOES.
        to_scheme: ``"BIO"`` or ``"BIOES"``.

    Returns:
        The same chunks written in ``to_scheme``.
    """
    _check_scheme(to_scheme)
    # Through BIOES, so IOB1 input (I-X opening a chunk) also comes out as proper IOB2.
    return convert_scheme(convert_scheme(list(tags), to="BIOES"), to=to_scheme)


def entities_from_tags(words: Sequence[str], tags: Sequence[str]) -> list[dict[str, Any]]:
    """Entity spans of one sentence (BIO, IOB1 or BIOES tags).

    Args:
        words: The sentence's words.
        tags: One tag per word.

    Returns:
        ``[{"type": "PER", "start_word": 0, "end_word": 2, "text": "John Smith"}, ...]``;
        ``end_word`` is exclusive (``words[start_word:end_word]``), ``text`` joins with spaces.
    """
    if len(words) != len(tags):
        raise DataError(f"{len(words)} words but {len(tags)} tags; give one tag per word")
    return [
        {"type": kind, "start_word": s, "end_word": e, "text": " ".join(words[s:e])}
        for kind, s, e in _chunks(tags)
    ]


class _Aligner:
    """Batched ``map`` function: words and tags in, aligned sub-word features out."""

    def __init__(
        self,
        tokenizer: Any,
        label2id: Mapping[str, int],
        tokens_column: str,
        tags_column: str | None,
        max_length: int,
        label_all_subwords: bool,
    ) -> None:
        self.tokenizer = tokenizer
        self.label2id = dict(label2id)
        self.valid_ids = set(self.label2id.values())
        self.tokens_column = tokens_column
        self.tags_column = tags_column
        self.max_length = max_length
        self.label_all_subwords = label_all_subwords
        # Continuation pieces of a B-X word are inside the entity, so they get I-X when the
        # model has that label (HF run_ner convention); other labels are copied as they are.
        self.continuation = {
            i: self.label2id.get("I-" + tag[2:], i) if tag.startswith("B-") else i
            for tag, i in self.label2id.items()
        }

    def _label_id(self, tag: Any) -> int:
        if isinstance(tag, int) and tag in self.valid_ids:
            return tag  # ClassLabel-encoded data: already an id
        if tag not in self.label2id:
            raise DataError(
                f"label '{tag}' is not one of the model's labels {list(self.label2id)}; "
                "build label2id with collect_labels over all splits"
            )
        return self.label2id[tag]

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        words_batch = batch[self.tokens_column]
        tags_batch = batch[self.tags_column] if self.tags_column else None
        enc = self.tokenizer(
            [list(w) for w in words_batch], is_split_into_words=True, truncation=True,
            max_length=self.max_length,
        )  # fmt: skip
        out: dict[str, list[Any]] = {"input_ids": enc["input_ids"]}
        if "token_type_ids" in enc:
            out["token_type_ids"] = enc["token_type_ids"]
        out["word_ids"], out["num_words"] = [], []
        if tags_batch is not None:
            out["labels"] = []
        for i, words in enumerate(words_batch):
            token_words = enc.word_ids(i)  # (L,) word index per token, None for specials
            first: list[int] = []
            prev = None
            for w in token_words:
                first.append(w if w is not None and w != prev else NO_WORD)
                prev = w
            out["word_ids"].append(first)
            out["num_words"].append(len(words))
            if tags_batch is None:
                continue
            tags = tags_batch[i]
            if len(tags) != len(words):
                raise DataError(
                    f"a row has {len(words)} words but {len(tags)} tags; give one tag per word"
                )
            ids = [self._label_id(t) for t in tags]
            labels = []
            for w, f in zip(token_words, first, strict=True):
                if w is None:
                    labels.append(IGNORE_INDEX)
                elif f != NO_WORD:
                    labels.append(ids[w])
                else:
                    labels.append(self.continuation[ids[w]] if self.label_all_subwords
                                  else IGNORE_INDEX)  # fmt: skip
            out["labels"].append(labels)
        return out


def prepare_token_classification(
    ds: datasets.Dataset,
    tokenizer: Any,
    label2id: Mapping[str, int],
    *,
    tokens_column: str = "tokens",
    tags_column: str | None = "tags",
    max_length: int = 128,
    label_all_subwords: bool = False,
    split_name: str = "train",
) -> datasets.Dataset:
    """Tokenize pre-split words and align word tags to sub-words.

    Rows stay one-to-one with ``ds`` (no windowing): a sentence longer than ``max_length``
    tokens is truncated, and its lost words decode to ``"O"`` (a warning gives the count).

    Args:
        ds: Split with a ``tokens_column`` of word lists and a ``tags_column`` of tag lists
            (tags may be strings or ClassLabel ids).
        tokenizer: A fast tokenizer (word alignment needs ``word_ids``).
        label2id: Tag to class id, e.g. from :func:`collect_labels`.
        tokens_column: Column of word lists.
        tags_column: Column of tag lists; None for unlabeled (prediction) input, which
            then gets no ``labels`` column.
        max_length: Tokens per example, special tokens included.
        label_all_subwords: Label continuation sub-words too (``B-X`` becomes ``I-X``)
            instead of -100.
        split_name: Used in log messages only.

    Returns:
        Columns ``input_ids`` (list[int]), ``token_type_ids`` (if the tokenizer makes them),
        ``labels`` (list[int], -100 where ignored), ``word_ids`` (list[int]: the word index
        at the first sub-word of each word, -1 elsewhere) and ``num_words`` (int: words in
        the original row). Original columns are removed.

    Raises:
        DataError: A column is missing, a tag is unknown, or words and tags differ in length.
        ConfigError: The tokenizer is not fast or ``max_length`` is too small.
    """
    columns = list(ds.column_names or [])
    if tokens_column not in columns:
        raise DataError(
            f"column '{tokens_column}' not found in split '{split_name}' "
            f"(columns: {', '.join(columns)}); set tokens_column"
        )
    if tags_column is not None and tags_column not in columns:
        raise DataError(
            f"column '{tags_column}' not found in split '{split_name}' "
            f"(columns: {', '.join(columns)}); set tags_column"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("token classification needs a fast tokenizer (word_ids); load one")
    if max_length < 4:
        raise ConfigError(f"max_length must be at least 4, got {max_length}")
    aligner = _Aligner(
        tokenizer, label2id, tokens_column, tags_column, max_length, label_all_subwords
    )
    out = ds.map(
        aligner, batched=True, batch_size=MAP_BATCH_SIZE, remove_columns=columns,
        desc=f"aligning {split_name} tags",
    )  # fmt: skip
    _warn_lost_words(out, split_name, max_length)
    return out


def _warn_lost_words(ds: datasets.Dataset, split_name: str, max_length: int) -> None:
    """Warn about words without a first sub-word, counted from the output columns.

    Counted from the mapped data rather than inside ``map`` so the count is right even when
    ``map`` was served from datasets' cache. A word is "truncated" when it comes after the
    last kept word of a row that fills ``max_length``; other missing words tokenized to
    nothing (e.g. a lone control character).
    """
    cut = cut_rows = empty = words = 0
    for batch in ds.select_columns(["word_ids", "num_words"]).iter(batch_size=MAP_BATCH_SIZE):
        for wids, n in zip(batch["word_ids"], batch["num_words"], strict=True):
            kept = [w for w in wids if w != NO_WORD]
            words += n
            tail = n - (max(kept) + 1 if kept else 0) if len(wids) >= max_length else 0
            cut += tail
            cut_rows += tail > 0
            empty += n - len(kept) - tail
    if cut:
        logger.warning(
            "%d of %d words in %d rows of split '%s' were cut by max_length=%d; they are "
            "predicted as 'O' (raise max_length to keep them)",
            cut, words, cut_rows, split_name, max_length,
        )  # fmt: skip
    if empty:
        logger.warning(
            "%d words of split '%s' produced no token and are predicted as 'O'",
            empty, split_name,
        )  # fmt: skip


class TokenClassificationCollator(ColumnCollator):
    """Pad ``input_ids``/``token_type_ids``/``labels`` (-100) and build ``attention_mask``.

    Other columns (``word_ids``, ``num_words``) are dropped: they stay in the dataset for
    decoding.

    Args:
        tokenizer: Supplies the pad id.
        pad_to_multiple_of: Round the padded length up to a multiple of this.
    """

    columns = _MODEL_COLUMNS


def decode_word_predictions(
    pred_ids: Sequence[Sequence[int]],
    word_ids_per_example: Sequence[Sequence[int]],
    id2label: Mapping[int, str] | Sequence[str],
    num_words_per_example: Sequence[int],
) -> list[list[str]]:
    """One tag per original word, read at each word's first sub-word.

    Args:
        pred_ids: Per example, the argmax class id per token (may be longer than the
            example's ``word_ids`` because of batch padding; extra positions are ignored).
        word_ids_per_example: The ``word_ids`` column of the prepared dataset.
        id2label: Class id to tag (a model config's ``id2label`` or a list of labels).
        num_words_per_example: The ``num_words`` column.

    Returns:
        Per example, ``num_words`` tags; words without a token (truncated) are ``"O"``.
    """
    if not len(pred_ids) == len(word_ids_per_example) == len(num_words_per_example):
        raise DataError(
            f"got {len(pred_ids)} predictions, {len(word_ids_per_example)} word_ids rows and "
            f"{len(num_words_per_example)} num_words; pass one of each per example"
        )
    out: list[list[str]] = []
    for preds, wids, n in zip(pred_ids, word_ids_per_example, num_words_per_example, strict=True):
        tags = ["O"] * int(n)
        for pos, w in enumerate(wids):
            if w != NO_WORD:
                tags[w] = _lookup(id2label, int(preds[pos]))
        out.append(tags)
    return out


def _lookup(id2label: Mapping[Any, str] | Sequence[str], idx: int) -> str:
    # Configs reloaded from JSON may key id2label by strings ("0") instead of ints.
    if isinstance(id2label, Mapping) and idx not in id2label:
        return id2label[str(idx)]
    return id2label[idx]
