"""Tiny trained models for the explanation tests (offline, CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.cli import main
from lmforge.predictor import Predictor, load_predictor
from tests.conftest import TUNED_OPTIMIZER
from tests.finetuning.conftest import save_word_encoder
from tests.serving.conftest import FILLER, NEGATIVE, NER_WORDS, POSITIVE, make_run, sentences


@pytest.fixture(scope="session")
def sentiment_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier that learned which words are positive / negative (one per sentence)."""
    root = tmp_path_factory.mktemp("explain-cls")
    encoder = save_word_encoder(root / "encoder", POSITIVE + NEGATIVE + FILLER)
    data = root / "data"
    data.mkdir()
    rows = "\n".join(f"{t},{label}" for t, label in sentences(96, 0))
    (data / "train.csv").write_text("text,label\n" + rows + "\n")
    run = root / "run"
    assert main(["finetune", f"--output-dir={run}", f"data.path={data}",
                 f"model.pretrained={encoder}", "train.max_steps=30", "train.batch_size=16",
                 "train.lr=3e-3", "train.warmup_ratio=0", "data.validation_ratio=0",
                 "track.progress=false", "track.backends=[jsonl]", *TUNED_OPTIMIZER]) == 0
    return run


@pytest.fixture(scope="session")
def sentiment(sentiment_run: Path) -> Predictor:
    """The loaded classifier."""
    return load_predictor(str(sentiment_run), precision="fp32")


@pytest.fixture(scope="session")
def pair_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained-head) sentence-pair classifier."""
    root = tmp_path_factory.mktemp("explain-pair")
    encoder = save_word_encoder(root / "encoder", POSITIVE + NEGATIVE + FILLER)
    rows = [{"text": "good film", "other": "a bad story", "label": "yes"},
            {"text": "bad", "other": "good", "label": "no"}]
    return make_run(root / "run", "classification", encoder, rows, text_pair_column="other")


@pytest.fixture(scope="session")
def ner_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained-head) NER run with PER / LOC tags."""
    root = tmp_path_factory.mktemp("explain-ner")
    encoder = save_word_encoder(root / "encoder", NER_WORDS)
    rows = [{"tokens": ["mr", "smith", "in", "paris"], "tags": ["O", "B-PER", "O", "B-LOC"]}]
    return make_run(root / "run", "token_classification", encoder, rows)


@pytest.fixture(scope="session")
def qa_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained-head) extractive QA run."""
    root = tmp_path_factory.mktemp("explain-qa")
    encoder = save_word_encoder(root / "encoder", NER_WORDS + ["where", "does", "live", "?"])
    rows = [{"id": "0", "question": "where does smith live ?", "context": "smith in paris",
             "answers": {"text": ["paris"], "answer_start": [9]}}]
    return make_run(root / "run", "qa", encoder, rows, doc_stride=32)
