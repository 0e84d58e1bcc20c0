"""Fixtures for the data-layer tests: tiny tokenizers trained on the fly, offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import random  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import datasets  # noqa: E402
import pytest  # noqa: E402
from tokenizers import (  # noqa: E402
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# fmt: off
WORDS = [
    "the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "table", "quickly", "slowly",
    "unbelievable", "tokenization", "international", "understanding", "reconsider",
    "transformers", "preprocessing", "happily", "running", "jumped", "wonderful", "beautiful",
    "extraordinary", "misunderstanding",
]
# fmt: on
CHINESE = [
    "我们喜欢自然语言处理",
    "今天天气很好",
    "北京大学的学生在学习机器学习",
    "自然语言处理是人工智能的一个方向",
    "我爱北京天安门",
]


def make_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` pseudo-English sentences of 4 to 11 words, deterministic."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 11))) + " ." for _ in range(n)]


@pytest.fixture(autouse=True, scope="session")
def _hermetic_datasets_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep datasets' cache (load_dataset / from_generator output) inside a temp folder."""
    old = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = Path(tmp_path_factory.mktemp("hf_datasets_cache"))
    datasets.disable_progress_bars()
    yield
    datasets.config.HF_DATASETS_CACHE = old


@pytest.fixture(scope="session")
def wordpiece_tokenizer() -> PreTrainedTokenizerFast:
    """A ~250-token uncased WordPiece tokenizer: long words split into ``##`` pieces."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=250, special_tokens=SPECIALS)
    tok.train_from_iterator(make_sentences(300) + CHINESE * 20, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


@pytest.fixture(scope="session")
def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 style) with only an EOS special and no pad token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(make_sentences(300), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
