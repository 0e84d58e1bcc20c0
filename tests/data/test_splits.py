"""ensure_splits: deterministic carving by rows or by documents."""

from __future__ import annotations

import datasets
import pytest

from lmforge.data import ensure_splits
from lmforge.errors import DataError


def _rows(n: int) -> datasets.DatasetDict:
    return datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": [f"r{i}" for i in range(n)]})}
    )


def test_same_seed_same_split() -> None:
    a = ensure_splits(_rows(200), validation_ratio=0.1, test_ratio=0.05, seed=7)
    b = ensure_splits(_rows(200), validation_ratio=0.1, test_ratio=0.05, seed=7)
    c = ensure_splits(_rows(200), validation_ratio=0.1, test_ratio=0.05, seed=8)
    assert list(a) == ["train", "validation", "test"]
    assert a["validation"]["text"] == b["validation"]["text"]
    assert a["test"]["text"] == b["test"]["text"]
    assert a["validation"]["text"] != c["validation"]["text"]
    assert (a["train"].num_rows, a["validation"].num_rows, a["test"].num_rows) == (170, 20, 10)
    parts = [set(a[s]["text"]) for s in a]
    assert set.union(*parts) == {f"r{i}" for i in range(200)}
    assert sum(len(p) for p in parts) == 200  # disjoint


def test_existing_validation_untouched() -> None:
    dsd = _rows(10)
    dsd["validation"] = datasets.Dataset.from_dict({"text": ["v"]})
    out = ensure_splits(dsd)
    assert out["validation"]["text"] == ["v"] and out["train"].num_rows == 10


def test_split_by_documents() -> None:
    doc_ids = [d for d in range(40) for _ in range(3)]
    ds = datasets.Dataset.from_dict({"text": [str(i) for i in range(120)], "doc_id": doc_ids})
    out = ensure_splits(datasets.DatasetDict({"train": ds}), validation_ratio=0.1, seed=1)
    train_docs, val_docs = set(out["train"]["doc_id"]), set(out["validation"]["doc_id"])
    assert not train_docs & val_docs
    assert len(val_docs) == 4 and out["validation"].num_rows == 12


def test_few_documents_fall_back_to_rows() -> None:
    ds = datasets.Dataset.from_dict({"text": [str(i) for i in range(20)], "doc_id": [0] * 20})
    out = ensure_splits(datasets.DatasetDict({"train": ds}), validation_ratio=0.1)
    assert out["validation"].num_rows == 2 and out["train"].num_rows == 18


def test_too_few_rows() -> None:
    with pytest.raises(DataError, match="too few to carve"):
        ensure_splits(_rows(1))
