"""Tokenize a text corpus for a self-supervised LM objective, with an on-disk cache.

Objectives and output columns (lists of ints, not padded; the collators pad per batch):

* ``mlm``: ``input_ids`` (``[CLS] ... [SEP]`` blocks of ``max_length``), ``word_start``.
* ``clm``: ``input_ids`` (documents joined by EOS, cut into ``max_length`` blocks).
* ``nsp`` / ``sop``: ``input_ids`` (``[CLS] A [SEP] B [SEP]``), ``token_type_ids``,
  ``word_start``, ``next_sentence_label`` (0 = B follows A, 1 = random B / swapped order).

Tokenization runs as batched ``datasets.map`` calls, so the corpus never has to fit in memory,
and the result is saved under ``cache_dir/<key>``, where the key hashes everything that
changes the output; the next run with the same inputs memory-maps it instead of re-tokenizing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from lmforge.data.pairs import Segment, build_pair_instances
from lmforge.data.words import WordEncoder
from lmforge.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

# Bump when the output of prepare_lm_dataset changes for the same inputs (invalidates caches).
CACHE_VERSION = 1
OBJECTIVES = ("mlm", "clm", "nsp", "sop")
PSEUDO_DOC_ROWS = 16  # nsp/sop without doc_id: this many consecutive rows form a document
MAP_BATCH_SIZE = 1000

_IDS = datasets.List(datasets.Value("int32"))
_FLAGS = datasets.List(datasets.Value("int8"))
_FEATURES = {
    "mlm": datasets.Features({"input_ids": _IDS, "word_start": _FLAGS}),
    "clm": datasets.Features({"input_ids": _IDS}),
    "pair": datasets.Features(
        {
            "input_ids": _IDS,
            "token_type_ids": _FLAGS,
            "word_start": _FLAGS,
            "next_sentence_label": datasets.Value("int8"),
        }
    ),
}


def min_tail_length(max_length: int) -> int:
    """Shortest final partial block that is kept (shorter tails are dropped)."""
    return max(4, max_length // 4)


def prepare_lm_dataset(
    ds: datasets.Dataset,
    tokenizer: Any,
    *,
    objective: str,
    text_column: str = "text",
    max_length: int = 128,
    packing: bool = True,
    whole_word_mask: bool = False,
    chinese_word_segmenter: str | None = None,
    cache_dir: str | Path | None = None,
    num_proc: int | None = None,
    seed: int = 42,
    split_name: str = "train",
) -> datasets.Dataset:
    """Tokenize ``ds[text_column]`` for ``objective``, reusing a cached result when possible.

    Args:
        ds: Raw split (e.g. from :func:`lmforge.data.load_raw`). A ``doc_id`` column marks
            document boundaries (CLM inserts EOS there, NSP/SOP pair within documents). An
            ``IterableDataset`` is mapped lazily and never cached.
        tokenizer: A transformers tokenizer; fast ones give word boundaries.
        objective: ``"mlm"``, ``"clm"``, ``"nsp"`` or ``"sop"``.
        text_column: Column with the text (a list of strings is joined with spaces).
        max_length: Tokens per example, special tokens included.
        packing: Concatenate rows and cut fixed-length blocks (mlm/clm); False keeps one
            truncated example per row. NSP/SOP always fill pairs up to ``max_length``.
        whole_word_mask: Recorded in the cache key; ``word_start`` is produced for every
            non-CLM objective anyway because it is cheap.
        chinese_word_segmenter: None or ``"jieba"`` for Chinese whole-word boundaries.
        cache_dir: Folder of cached results; None disables the lmforge cache.
        num_proc: Worker processes for ``map`` (results can differ at shard boundaries).
        seed: Seeds the NSP/SOP pairing and negatives.
        split_name: Used in log and error messages only.

    Returns:
        The tokenized dataset (memory-mapped from ``cache_dir`` when given).

    Raises:
        DataError: The text column is missing or no example survives tokenization.
        ConfigError: Unknown objective or a tokenizer without the needed special tokens.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective '{objective}'; use one of: {', '.join(OBJECTIVES)}")
    if max_length < 8:
        raise ConfigError(f"data.max_length must be at least 8, got {max_length}")
    _check_text_column(ds, text_column, split_name)
    builder = _Builder(
        tokenizer,
        objective=objective,
        text_column=text_column,
        max_length=max_length,
        packing=packing,
        segmenter=chinese_word_segmenter,
        seed=seed,
    )
    if isinstance(ds, datasets.IterableDataset):
        return ds.map(
            builder, batched=True, batch_size=MAP_BATCH_SIZE, with_indices=True,
            remove_columns=list(ds.column_names or []), features=builder.features,
        )  # fmt: skip

    key = cache_key(
        ds, tokenizer, objective=objective, text_column=text_column, max_length=max_length,
        packing=packing, whole_word_mask=whole_word_mask, segmenter=chinese_word_segmenter,
        seed=seed,
    )  # fmt: skip
    map_kwargs: dict[str, Any] = {
        "batched": True,
        "batch_size": MAP_BATCH_SIZE,
        "with_indices": True,
        "remove_columns": ds.column_names,
        "features": builder.features,
        "num_proc": num_proc,
        # Our key already covers the inputs; passing it spares datasets from hashing the
        # tokenizer and lets its own map cache hit when cache_dir is None.
        "new_fingerprint": key[:32],
        "desc": f"tokenizing {split_name} for {objective}",
    }
    if cache_dir is None:
        out = ds.map(builder, **map_kwargs)
        _check_nonempty(out, split_name)
        return out

    final = Path(cache_dir) / f"{objective}-{key[:32]}"
    if (final / "dataset_info.json").exists():
        logger.info("using cached tokenized data at %s", final)
        return datasets.load_from_disk(str(final))

    work = Path(cache_dir) / f".tmp-{key[:16]}-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        # Map into the temp folder (not next to the source's Arrow files), save, then rename:
        # a crash mid-way never leaves a half-written cache entry under the final name.
        out = ds.map(builder, cache_file_name=str(work / "map.arrow"), **map_kwargs)
        _check_nonempty(out, split_name)
        out.save_to_disk(str(work / "saved"))
        del out
        try:
            os.rename(work / "saved", final)
        except OSError:
            if not (final / "dataset_info.json").exists():
                raise
            # Another process finished the same key first; its copy is identical.
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("saved tokenized %s data to %s", split_name, final)
    return datasets.load_from_disk(str(final))


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of everything in the tokenizer that affects token ids."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    specials = {
        name: getattr(tokenizer, f"{name}_token_id", None)
        for name in ("cls", "sep", "bos", "eos", "pad", "mask", "unk")
    }
    h.update(json.dumps(specials, sort_keys=True).encode())
    return h.hexdigest()


def cache_key(ds: datasets.Dataset, tokenizer: Any, **options: Any) -> str:
    """sha256 over the dataset fingerprint, the tokenizer and the tokenization options."""
    payload = {
        "version": CACHE_VERSION,
        "dataset": ds._fingerprint,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        **options,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _check_text_column(ds: Any, text_column: str, split_name: str) -> None:
    columns = list(ds.column_names or [])
    if text_column not in columns:
        raise DataError(
            f"column '{text_column}' not found in split '{split_name}' "
            f"(columns: {', '.join(columns)}); set data.text_column"
        )


def _check_nonempty(ds: datasets.Dataset, split_name: str) -> None:
    if ds.num_rows == 0:
        raise DataError(
            f"no usable text after tokenization of split '{split_name}' (0 examples); "
            "lower data.max_length or check data.text_column"
        )


def _special_id(tokenizer: Any, names: Sequence[str], objective: str) -> int:
    for name in names:
        value = getattr(tokenizer, f"{name}_token_id", None)
        if value is not None:
            return int(value)
    raise ConfigError(
        f"objective '{objective}' needs a tokenizer with a {' or '.join(names)} token; "
        "train or load a tokenizer that defines it"
    )


class _Builder:
    """The batched ``map`` function: raw rows in, tokenized examples out (picklable)."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        objective: str,
        text_column: str,
        max_length: int,
        packing: bool,
        segmenter: str | None,
        seed: int,
    ) -> None:
        self.encode = WordEncoder(tokenizer, segmenter)
        self.objective = objective
        self.text_column = text_column
        self.max_length = max_length
        self.packing = packing
        self.seed = seed
        if objective == "clm":
            self.eos = _special_id(tokenizer, ("eos", "sep"), objective)
            self.features = _FEATURES["clm"]
        else:
            self.cls = _special_id(tokenizer, ("cls", "bos"), objective)
            self.sep = _special_id(tokenizer, ("sep", "eos"), objective)
            self.features = _FEATURES["mlm" if objective == "mlm" else "pair"]

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        texts = [_as_text(t) for t in batch[self.text_column]]
        doc_ids = batch.get("doc_id")
        if self.objective == "clm":
            return self._clm(texts, doc_ids)
        if self.objective == "mlm":
            return self._mlm(texts, doc_ids)
        return self._pairs(texts, doc_ids, indices[0] if indices else 0)

    def _mlm(self, texts: list[str], doc_ids: list[int] | None) -> dict[str, list[Any]]:
        ids, starts = self.encode(texts)
        body = self.max_length - 2  # room for [CLS] and [SEP]
        out: dict[str, list[Any]] = {"input_ids": [], "word_start": []}
        if not self.packing:
            for row_ids, row_ws in zip(ids, starts, strict=True):
                if row_ids:
                    self._add_block(out, row_ids[:body], row_ws[:body])
            return out
        # group_texts (run_mlm.py): one token stream per map batch, cut into blocks. A [SEP]
        # marks a document change (RoBERTa's FULL-SENTENCES packing).
        stream: list[int] = []
        stream_ws: list[int] = []
        for i, (row_ids, row_ws) in enumerate(zip(ids, starts, strict=True)):
            if doc_ids is not None and i > 0 and doc_ids[i] != doc_ids[i - 1] and stream:
                stream.append(self.sep)
                stream_ws.append(1)
            stream.extend(row_ids)
            stream_ws.extend(row_ws)
        for start in range(0, len(stream), body):
            chunk, chunk_ws = stream[start : start + body], stream_ws[start : start + body]
            if chunk and chunk[0] == self.sep:  # no block starts "[CLS] [SEP]"
                chunk, chunk_ws = chunk[1:], chunk_ws[1:]
            if len(chunk) < body and len(chunk) + 2 < min_tail_length(self.max_length):
                continue
            if chunk:
                self._add_block(out, chunk, chunk_ws)
        return out

    def _add_block(self, out: dict[str, list[Any]], chunk: list[int], chunk_ws: list[int]) -> None:
        # A block may start mid-word; that first piece still starts a maskable "word".
        out["input_ids"].append([self.cls, *chunk, self.sep])
        out["word_start"].append([1, 1, *chunk_ws[1:], 1])

    def _clm(self, texts: list[str], doc_ids: list[int] | None) -> dict[str, list[Any]]:
        n = len(texts)
        ends = [doc_ids is None or i == n - 1 or doc_ids[i + 1] != doc_ids[i] for i in range(n)]
        if doc_ids is not None:
            # Rows of a txt document are its lines; keep the newline between them so a
            # byte-level model learns line structure (it is only dropped at an EOS).
            texts = [t if end else t + "\n" for t, end in zip(texts, ends, strict=True)]
        ids, _ = self.encode(texts)
        out: dict[str, list[Any]] = {"input_ids": []}
        if not self.packing:
            for row in ids:
                if row:
                    out["input_ids"].append([*row[: self.max_length - 1], self.eos])
            return out
        stream: list[int] = []
        for row, end in zip(ids, ends, strict=True):
            stream.extend(row)
            if end and row:
                stream.append(self.eos)
        # The last document of a map batch may continue in the next batch; it gets an EOS
        # here as well (at most one stray EOS per MAP_BATCH_SIZE rows).
        for start in range(0, len(stream), self.max_length):
            block = stream[start : start + self.max_length]
            if len(block) == self.max_length or len(block) >= min_tail_length(self.max_length):
                out["input_ids"].append(block)
        return out

    def _pairs(self, texts: list[str], doc_ids: list[int] | None, first: int) -> dict[str, Any]:
        ids, starts = self.encode(texts)
        docs: list[list[Segment]] = []
        for i, (row_ids, row_ws) in enumerate(zip(ids, starts, strict=True)):
            if doc_ids is not None:
                new_doc = i == 0 or doc_ids[i] != doc_ids[i - 1]
            else:
                new_doc = (first + i) % PSEUDO_DOC_ROWS == 0 or i == 0
            if new_doc:
                docs.append([])
            if row_ids:
                docs[-1].append((row_ids, row_ws))
        # Seeded by (seed, first row index): the same batch always gets the same pairs,
        # whatever order or process datasets runs the batches in.
        rng = random.Random(self.seed * 1_000_003 + first)
        return build_pair_instances(
            [d for d in docs if d],
            objective=self.objective,
            max_length=self.max_length,
            cls_id=self.cls,
            sep_id=self.sep,
            rng=rng,
        )


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # e.g. the "tokens" column of a CoNLL file
        return " ".join(str(v) for v in value)
    return str(value)
