"""Tests for lmforge.tokenizer.train_tokenizer: training, saving, AutoTokenizer round trip."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from lmforge.errors import ConfigError, DataError
from lmforge.tokenizer import METADATA_FILE, is_cjk_char, special_tokens_for, train_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_SUBJECTS = ["the cat", "a dog", "my friend", "the teacher", "our model", "a small bird"]
_VERBS = ["reads", "writes", "likes", "sees", "finds", "builds", "wants", "needs"]
_OBJECTS = ["a book", "the letter", "some water", "many apples", "the red car", "good music"]
_ADVERBS = ["today", "yesterday", "quickly", "slowly", "every morning", "at night", "again"]
_CHINESE = [
    "我爱北京天安门",
    "北京是中国的首都",
    "我爱学习语言模型",
    "今天天气很好",
    "我们在北京学习",
]


def _corpus(n: int = 400, chinese: bool = True) -> list[str]:
    rng = random.Random(0)
    texts = [
        f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
        f"{rng.choice(_ADVERBS)}."
        for _ in range(n)
    ]
    if chinese:
        texts += _CHINESE * 6
    return texts


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train each kind once per module; training is ~10 ms but AutoTokenizer loads add up."""
    dirs = {}
    for kind in ("wordpiece", "bpe", "unigram"):
        out = tmp_path_factory.mktemp(kind)
        train_tokenizer(_corpus(), out, kind=kind, vocab_size=500, model_max_length=128)
        dirs[kind] = out
    return dirs


def _load(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_autotokenizer_loads_fast_tokenizer_with_specials(trained: dict[str, Path], kind: str):
    tok = _load(trained[kind])
    assert tok.is_fast
    assert tok.model_max_length == 128
    assert len(tok) <= 500
    specials = special_tokens_for(kind)
    # Specials occupy ids 0..n-1 in declaration order.
    assert tok.convert_tokens_to_ids(list(specials)) == list(range(len(specials)))
    assert tok.pad_token_id is not None
    assert tok.mask_token_id is not None
    assert tok.unk_token_id is not None
    config = json.loads((trained[kind] / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "TokenizersBackend"
    meta = json.loads((trained[kind] / METADATA_FILE).read_text())
    assert meta["kind"] == kind
    assert meta["vocab_size"] == 500
    assert meta["special_tokens"] == list(specials)


def test_wordpiece_special_layout_and_pairs(trained: dict[str, Path]):
    tok = _load(trained["wordpiece"])
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id) == (0, 1, 2)
    assert (tok.sep_token_id, tok.mask_token_id) == (3, 4)
    enc = tok("The cat reads", "a book")
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]"
    assert tokens.count("[SEP]") == 2
    first_sep = tokens.index("[SEP]")
    assert enc["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)


def test_wordpiece_splits_chinese_per_character_and_round_trips(trained: dict[str, Path]):
    tok = _load(trained["wordpiece"])
    tokens = tok.tokenize("我爱北京天安门")
    assert tokens == list("我爱北京天安门")
    ids = tok("The cat reads a book today.")["input_ids"]
    # Default wordpiece lowercases (uncased BERT).
    assert tok.decode(ids, skip_special_tokens=True) == "the cat reads a book today."
    ids = tok("我爱北京天安门")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "我爱北京天安门"


def test_bpe_is_byte_level_lossless_and_adds_no_specials(trained: dict[str, Path]):
    tok = _load(trained["bpe"])
    assert tok.bos_token == tok.eos_token == tok.unk_token == "<|endoftext|>"
    assert (tok.pad_token, tok.mask_token) == ("<pad>", "<mask>")
    for text in ["The cat reads a book today.", "我爱北京天安门", "Zebra ünïcödé 🤖 unseen!"]:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids  # byte fallback: nothing is unknown
        assert tok.decode(ids) == text
    # CJK isolation: no token spans two ideographs.
    for token in tok.convert_ids_to_tokens(tok("我爱北京天安门")["input_ids"]):
        decoded = tok.convert_tokens_to_string([token])
        assert sum(is_cjk_char(c) for c in decoded) <= 1


def test_unigram_wraps_with_bos_eos_and_round_trips(trained: dict[str, Path]):
    tok = _load(trained["unigram"])
    enc = tok("The cat reads a book today.")["input_ids"]
    assert enc[0] == tok.bos_token_id == tok.cls_token_id
    assert enc[-1] == tok.eos_token_id == tok.sep_token_id
    assert tok.decode(enc, skip_special_tokens=True) == "The cat reads a book today."
    enc = tok("我爱北京天安门")["input_ids"]
    assert tok.decode(enc, skip_special_tokens=True) == "我爱北京天安门"


def test_lowercase_flag_overrides_default(tmp_path: Path):
    tok = train_tokenizer(
        _corpus(chinese=False), tmp_path, kind="wordpiece", vocab_size=300, lowercase=False
    )
    assert "The" in tok.tokenize("The cat")


def test_generator_input_and_blank_lines_are_accepted(tmp_path: Path):
    texts = (t for t in ["", "   "] + _corpus(chinese=False))
    tok = train_tokenizer(texts, tmp_path / "nested" / "dir", kind="bpe", vocab_size=400)
    assert (tmp_path / "nested" / "dir" / "tokenizer.json").is_file()
    assert tok.decode(tok("a dog")["input_ids"]) == "a dog"


@pytest.mark.parametrize("texts", [[], ["", "  \n", "\t"]])
def test_empty_corpus_raises_data_error(tmp_path: Path, texts: list[str]):
    with pytest.raises(DataError, match="no usable text") as info:
        train_tokenizer(texts, tmp_path)
    assert "fix:" in str(info.value)
    assert "\n" not in str(info.value)


def test_bare_string_corpus_raises_data_error(tmp_path: Path):
    with pytest.raises(DataError, match="single string"):
        train_tokenizer("just one text", tmp_path)


def test_non_string_item_raises_data_error(tmp_path: Path):
    # Raised from inside the Rust trainer's iteration; the DataError must survive the trip.
    with pytest.raises(DataError, match="NoneType"):
        train_tokenizer(["hello world"] * 5 + [None], tmp_path, kind="bpe", vocab_size=400)


def test_bad_kind_lists_valid_kinds(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        train_tokenizer(["hello world"], tmp_path, kind="sentencepiece")
    message = str(info.value)
    assert "'sentencepiece'" in message
    for kind in ("wordpiece", "bpe", "unigram"):
        assert kind in message


@pytest.mark.parametrize(("kind", "vocab_size"), [("wordpiece", 20), ("bpe", 300)])
def test_too_small_vocab_raises_config_error(tmp_path: Path, kind: str, vocab_size: int):
    with pytest.raises(ConfigError, match="vocab_size"):
        train_tokenizer(["hello world"], tmp_path, kind=kind, vocab_size=vocab_size)


def _many_chars_corpus() -> list[str]:
    # 300 distinct ideographs: more than a 100-token vocabulary can hold.
    chars = [chr(0x4E00 + i) for i in range(300)]
    return ["".join(chars[i : i + 30]) for i in range(0, 300, 10)] * 3


def test_wordpiece_caps_alphabet_at_vocab_size(tmp_path: Path):
    tok = train_tokenizer(_many_chars_corpus(), tmp_path, kind="wordpiece", vocab_size=100)
    assert len(tok) <= 100
    assert tok.unk_token in tok.tokenize("".join(chr(0x4E00 + i) for i in range(300)))


def test_unigram_vocab_smaller_than_alphabet_raises_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="distinct characters"):
        train_tokenizer(_many_chars_corpus(), tmp_path, kind="unigram", vocab_size=100)
