"""prepare_lm_dataset: packing, word starts, Chinese wwm, NSP/SOP pairs, caching."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import jieba
import pytest

from lmforge.data import prepare_lm_dataset
from lmforge.data.lm import min_tail_length
from lmforge.errors import DataError
from tests.data.conftest import CHINESE, make_sentences


def _ds(texts: list[str], doc_ids: list[int] | None = None) -> datasets.Dataset:
    cols: dict[str, Any] = {"text": texts}
    if doc_ids is not None:
        cols["doc_id"] = doc_ids
    return datasets.Dataset.from_dict(cols)


def _contains(seq: list[int], sub: list[int]) -> bool:
    n = len(sub)
    return any(seq[i : i + n] == sub for i in range(len(seq) - n + 1))


def test_mlm_packing_blocks(wordpiece_tokenizer: Any) -> None:
    tok = wordpiece_tokenizer
    out = prepare_lm_dataset(_ds(make_sentences(200)), tok, objective="mlm", max_length=32)
    assert out.column_names == ["input_ids", "word_start"]
    lengths = [len(x) for x in out["input_ids"]]
    assert all(n == 32 for n in lengths[:-1])
    assert min_tail_length(32) <= lengths[-1] <= 32
    for ids, ws in zip(out["input_ids"], out["word_start"], strict=True):
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert len(ws) == len(ids) and ws[0] == ws[-1] == 1


def test_mlm_without_packing(wordpiece_tokenizer: Any) -> None:
    texts = make_sentences(20)
    out = prepare_lm_dataset(
        _ds(texts), wordpiece_tokenizer, objective="mlm", max_length=10, packing=False
    )
    assert out.num_rows == 20
    assert max(len(x) for x in out["input_ids"]) == 10


def test_word_start_marks_subword_pieces(wordpiece_tokenizer: Any) -> None:
    tok = wordpiece_tokenizer
    text = "catdog unbelievable tablemat runningly"  # words unseen in training
    out = prepare_lm_dataset(_ds([text]), tok, objective="mlm", max_length=64, packing=False)
    tokens = tok.convert_ids_to_tokens(out[0]["input_ids"])
    ws = out[0]["word_start"]
    assert any(t.startswith("##") for t in tokens)  # the tiny vocab really splits words
    for t, w in zip(tokens, ws, strict=True):
        assert w == (0 if t.startswith("##") else 1), (t, w)


def test_jieba_whole_word_boundaries(wordpiece_tokenizer: Any) -> None:
    tok = wordpiece_tokenizer
    text = CHINESE[2]  # 北京大学的学生在学习机器学习
    out = prepare_lm_dataset(
        _ds([text]), tok, objective="mlm", max_length=64, packing=False,
        chinese_word_segmenter="jieba",
    )  # fmt: skip
    ids, ws = out[0]["input_ids"][1:-1], out[0]["word_start"][1:-1]
    assert tok.convert_ids_to_tokens(ids) == list(text)  # BERT isolates each CJK char
    expected = [int(i == 0) for word in jieba.lcut(text) for i in range(len(word))]
    assert ws == expected
    assert 0 in ws  # some jieba word spans several characters
    plain = prepare_lm_dataset(_ds([text]), tok, objective="mlm", max_length=64, packing=False)
    assert set(plain[0]["word_start"]) == {1}  # without jieba every character is a word


def _pair_docs(n_docs: int, per_doc: int = 4) -> datasets.Dataset:
    sents = make_sentences(n_docs * per_doc, seed=3)
    return _ds(sents, [i // per_doc for i in range(len(sents))])


def _split_pair(ids: list[int], tt: list[int], sep: int) -> tuple[list[int], list[int]]:
    first_sep = ids.index(sep)
    assert tt == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    return ids[1:first_sep], ids[first_sep + 1 : -1]


@pytest.mark.parametrize("objective", ["nsp", "sop"])
def test_pair_objectives(wordpiece_tokenizer: Any, objective: str) -> None:
    tok = wordpiece_tokenizer
    ds = _pair_docs(150)
    out = prepare_lm_dataset(ds, tok, objective=objective, max_length=128, seed=5)
    assert out.column_names == ["input_ids", "token_type_ids", "word_start", "next_sentence_label"]
    labels = out["next_sentence_label"]
    assert 0.35 < sum(labels) / len(labels) < 0.65
    # Each document is < 125 tokens, so no pair is truncated and A/B map back to the text.
    streams = {}
    for row in ds:
        streams.setdefault(row["doc_id"], []).extend(
            tok(row["text"], add_special_tokens=False)["input_ids"]
        )
    assert max(len(s) for s in streams.values()) < 125
    docs = list(streams.values())
    for ex in out:
        ids = ex["input_ids"]
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert len(ex["word_start"]) == len(ids) <= 128
        a, b = _split_pair(ids, ex["token_type_ids"], tok.sep_token_id)
        if ex["next_sentence_label"] == 0:
            assert any(_contains(d, a + b) for d in docs)
        elif objective == "sop":  # the negative is the swapped pair
            assert any(_contains(d, b + a) for d in docs)
        else:  # nsp negative: B comes from another document than A
            home = [k for k, d in enumerate(docs) if _contains(d, a)]
            assert home
            assert not any(_contains(docs[k], a + b) for k in home)


def test_pairs_deterministic(wordpiece_tokenizer: Any) -> None:
    ds = _pair_docs(30)
    a = prepare_lm_dataset(ds, wordpiece_tokenizer, objective="nsp", max_length=64, seed=1)
    b = prepare_lm_dataset(ds, wordpiece_tokenizer, objective="nsp", max_length=64, seed=1)
    c = prepare_lm_dataset(ds, wordpiece_tokenizer, objective="nsp", max_length=64, seed=2)
    assert a["input_ids"] == b["input_ids"]
    assert a["input_ids"] != c["input_ids"]


def test_clm_blocks_with_eos(bpe_tokenizer: Any) -> None:
    tok = bpe_tokenizer
    eos = tok.eos_token_id
    texts = make_sentences(60)
    out = prepare_lm_dataset(_ds(texts), tok, objective="clm", max_length=24)
    assert out.column_names == ["input_ids"]
    stream = [t for block in out["input_ids"] for t in block]
    assert all(len(b) == 24 for b in out["input_ids"][:-1])
    assert stream.count(eos) >= 50  # one EOS per document (minus a dropped tail)
    single = prepare_lm_dataset(_ds(texts), tok, objective="clm", max_length=8, packing=False)
    assert single.num_rows == 60
    assert all(row[-1] == eos and len(row) <= 8 for row in single["input_ids"])


def test_clm_keeps_newlines_within_documents(bpe_tokenizer: Any) -> None:
    tok = bpe_tokenizer
    out = prepare_lm_dataset(
        _ds(["the cat", "sat on", "the dog"], [0, 0, 1]), tok, objective="clm", max_length=8
    )
    text = tok.decode([t for b in out["input_ids"] for t in b])
    # Lines of a document keep their newline; documents end with EOS (the short tail of
    # this batch is dropped, so the text ends early).
    assert text.startswith("the cat\nsat on<|endoftext|>the")


def test_text_column_as_token_list(wordpiece_tokenizer: Any) -> None:
    ds = datasets.Dataset.from_dict({"tokens": [["the", "cat"], ["sat", "on", "the", "mat"]]})
    out = prepare_lm_dataset(
        ds, wordpiece_tokenizer, objective="mlm", text_column="tokens", max_length=16
    )
    assert wordpiece_tokenizer.decode(out[0]["input_ids"][1:-1]) == "the cat sat on the mat"


def test_missing_text_column(wordpiece_tokenizer: Any) -> None:
    with pytest.raises(DataError, match=r"column 'txt' not found .*\(columns: text\); set data"):
        prepare_lm_dataset(_ds(["a"]), wordpiece_tokenizer, objective="mlm", text_column="txt")


def test_no_usable_text(wordpiece_tokenizer: Any) -> None:
    with pytest.raises(DataError, match="no usable text after tokenization"):
        prepare_lm_dataset(_ds(["", "  "]), wordpiece_tokenizer, objective="mlm")


def test_cache_skips_second_tokenization(
    wordpiece_tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = wordpiece_tokenizer
    ds = _ds(make_sentences(50))
    first = prepare_lm_dataset(ds, tok, objective="mlm", max_length=16, cache_dir=tmp_path)
    cached = [d for d in tmp_path.iterdir() if not d.name.startswith(".")]
    assert len(cached) == 1 and not any(d.name.startswith(".tmp") for d in tmp_path.iterdir())

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("tokenizer called although the cache should hit")

    monkeypatch.setattr(type(tok), "__call__", boom)
    second = prepare_lm_dataset(ds, tok, objective="mlm", max_length=16, cache_dir=tmp_path)
    assert second["input_ids"] == first["input_ids"]
    assert all(Path(f["filename"]).is_relative_to(tmp_path) for f in second.cache_files)
    # A different option is a different key: it must tokenize (and so hit the patched call).
    with pytest.raises(AssertionError, match="cache should hit"):
        prepare_lm_dataset(ds, tok, objective="mlm", max_length=24, cache_dir=tmp_path)


_NUM_PROC_SCRIPT = """
import sys
import datasets
from transformers import PreTrainedTokenizerFast
from lmforge.data import prepare_lm_dataset

datasets.disable_progress_bars()
tok = PreTrainedTokenizerFast.from_pretrained(sys.argv[1])
ds = datasets.Dataset.from_dict({"text": [sys.argv[2]] * 40})
out = prepare_lm_dataset(
    ds, tok, objective="mlm", max_length=32, chinese_word_segmenter="jieba",
    num_proc=2, cache_dir=sys.argv[3],
)
assert out.num_rows > 0 and 0 in out[0]["word_start"]
print("ok")
"""


def test_num_proc_with_jieba(wordpiece_tokenizer: Any, tmp_path: Path) -> None:
    """map(num_proc=2) with jieba finishes (a pickled jieba lock once deadlocked workers)."""
    wordpiece_tokenizer.save_pretrained(tmp_path / "tok")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["HF_DATASETS_CACHE"] = str(tmp_path / "hf")
    args = [sys.executable, "-c", _NUM_PROC_SCRIPT, str(tmp_path / "tok"), CHINESE[0]]
    proc = subprocess.Popen(
        [*args, str(tmp_path / "cache")], env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the pool workers too
        proc.communicate()
        pytest.fail("prepare_lm_dataset(num_proc=2) hung")
    assert proc.returncode == 0 and out.strip().endswith("ok"), out[-2000:]
