"""Shared fixtures: a tiny real-looking corpus and tokenizers trained on it, all offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import random  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SUBJECTS = ["the cat", "a dog", "my friend", "the teacher", "our neighbour", "the old king",
            "a young student", "the brave knight", "her brother", "the quiet child"]
VERBS = ["sees", "likes", "follows", "remembers", "answers", "greets", "understands", "helps"]
OBJECTS = ["the river", "a letter", "the castle", "every morning", "the long road",
           "a strange question", "the market", "a happy song", "the garden", "the sea"]
CHINESE = ["我们喜欢自然语言处理", "今天天气很好", "北京大学的学生在学习机器学习",
           "自然语言处理是人工智能的一个方向", "我爱北京天安门"]


def make_corpus(path: Path, documents: int = 40, sentences: int = 8, seed: int = 0,
                chinese: bool = False) -> Path:
    """Write a plain-text corpus: documents of simple sentences separated by blank lines."""
    rng = random.Random(seed)
    lines: list[str] = []
    for _ in range(documents):
        for _ in range(sentences):
            words = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."
            lines.append(words.capitalize())
            if chinese:
                lines.append(rng.choice(CHINESE))
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~320-sentence English corpus in 40 documents."""
    return make_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


@pytest.fixture(scope="session")
def zh_corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same corpus with Chinese sentences mixed in (for Chinese whole-word masking)."""
    return make_corpus(tmp_path_factory.mktemp("zh") / "zh.txt", chinese=True)


def _train(corpus: Path, out: Path, kind: str, vocab: int) -> Path:
    from lmforge.tokenizer import train_tokenizer

    texts = [t for t in corpus.read_text(encoding="utf-8").splitlines() if t.strip()]
    train_tokenizer(texts, out, kind=kind, vocab_size=vocab, min_frequency=1)
    return out


@pytest.fixture(scope="session")
def wordpiece_dir(corpus_file: Path, zh_corpus_file: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WordPiece tokenizer folder trained on both fixture corpora."""
    root = tmp_path_factory.mktemp("wp")
    both = root / "both.txt"
    both.write_text(corpus_file.read_text() + "\n" + zh_corpus_file.read_text(), encoding="utf-8")
    return _train(both, root / "tokenizer", "wordpiece", 300)


@pytest.fixture(scope="session")
def bpe_dir(corpus_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer folder trained on the English fixture corpus."""
    return _train(corpus_file, tmp_path_factory.mktemp("bpe") / "tokenizer", "bpe", 400)


def pytest_report_header() -> str:
    """Say which precision ``train.precision=auto`` resolves to in this session."""
    import torch

    from lmforge.engine.precision import AUTO_PRECISION_ENV, cpu_supports_bf16, resolve_precision

    forced = os.environ.get(AUTO_PRECISION_ENV)
    return (f"lmforge: precision auto -> {resolve_precision('auto', torch.device('cpu'))} "
            f"(CPU bf16 units: {'yes' if cpu_supports_bf16() else 'no'}; "
            f"{AUTO_PRECISION_ENV}={forced or 'unset'})")


TUNED_OPTIMIZER = ["train.adam_beta2=0.98", "train.adam_eps=1e-6", "train.group_by_length=false"]
"""The optimiser settings the tiny fine-tuning fixtures were tuned with (their seeds leave
the random-init encoders' loss plateau quickly with them); ``lmforge finetune``'s defaults
are now beta2 0.999 / eps 1e-8 / length grouping, under which some of those seeds stay on
the plateau for the few steps a test runs."""


TINY_TRAIN = ["train.batch_size=8", "train.log_every=1", "train.eval_max_batches=2",
              "data.max_length=32", "model.size=tiny", "track.progress=false",
              "train.lr=2e-3", "train.warmup_ratio=0"]
"""Overrides that keep an end-to-end run to a few seconds."""
