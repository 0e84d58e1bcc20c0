"""`lmforge finetune` / `evaluate` / `predict` for token classification (NER) on tiny data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from lmforge.cli import main
from tests.finetuning.conftest import save_word_encoder

NAMES = ["Smith", "Jones", "Brown", "Taylor", "Wilson"]
CITIES = ["Paris", "London", "Berlin", "Madrid", "Rome"]
FILLER = ["we", "met", "today", "and", "then", "went", "home", "it", "was", "nice"]


def _conll(path: Path, rows: int, seed: int) -> Path:
    """Sentences where the word after "Mr" is PER and "in CITY" (or "New CITY") is LOC."""
    rng = random.Random(seed)
    blocks = []
    for _ in range(rows):
        words = [(w, "O") for w in rng.sample(FILLER, 3)]
        if rng.random() < 0.8:
            at = rng.randrange(len(words) + 1)
            words[at:at] = [("Mr", "O"), (rng.choice(NAMES), "B-PER")]
        if rng.random() < 0.8:
            city = [("New", "B-LOC"), (rng.choice(CITIES), "I-LOC")] if rng.random() < 0.3 \
                else [(rng.choice(CITIES), "B-LOC")]
            words += [("in", "O"), *city]
        blocks.append("\n".join(f"{w} {t}" for w, t in words))
    path.write_text("\n\n".join(blocks) + "\n")
    return path


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT encoder with a fixed word-level vocabulary."""
    return save_word_encoder(tmp_path_factory.mktemp("encoder"),
                             NAMES + CITIES + FILLER + ["mr", "in", "new"])


def test_ner_finetune_evaluate_predict(tmp_path: Path, encoder_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _conll(data / "train.conll", 160, 0)
    _conll(data / "dev.conll", 30, 1)
    test_file = _conll(data / "test.conll", 30, 2)
    run = tmp_path / "run"
    code = main(["finetune", f"--output-dir={run}", f"data.path={data}",
                 f"model.pretrained={encoder_dir}", "task.name=token_classification",
                 "train.lr=5e-3", "train.epochs=4", "train.warmup_ratio=0",
                 "train.scheduler=constant", "train.max_grad_norm=0", "train.seed=0",
                 "train.batch_size=16", "train.eval_every=20", "train.log_every=20",
                 "track.progress=false"])
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    # collect_labels(complete=True): every prefix per type, "O" first, grouped by type.
    assert summary["labels"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    test = summary["test_metrics"]
    assert set(test) == {"precision", "recall", "f1", "accuracy"}
    assert all(0.0 <= v <= 1.0 for v in test.values())
    # Words tagged "O" in the test split: the all-"O" baseline the model must beat.
    tags = [line.split()[-1] for line in test_file.read_text().splitlines() if line.strip()]
    assert test["accuracy"] > tags.count("O") / len(tags)
    assert test["f1"] > 0.5  # the toy rule is learned to F1 1.0 at this seed; keep slack
    for name in ("summary.json", "predictions.jsonl"):
        assert (run / "eval-test" / name).is_file(), name

    out = tmp_path / "eval"
    capsys.readouterr()
    assert main(["evaluate", f"run={run}", f"data.path={test_file}", f"output_dir={out}"]) == 0
    assert "PER" in capsys.readouterr().out  # the per-type table is printed
    report = json.loads((out / "summary.json").read_text())
    assert report["headline"]["f1"] == pytest.approx(test["f1"])
    assert set(report["metrics"]["per_type"]) <= {"PER", "LOC"}
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    assert all(len(r["tokens"]) == len(r["tags"]) == len(r["predicted"]) for r in rows)

    inputs = tmp_path / "in.txt"
    inputs.write_text("we met Mr Jones in Paris\nit was nice\n")
    preds = tmp_path / "preds.jsonl"
    assert main(["predict", f"run={run}", f"input={inputs}", f"output={preds}"]) == 0
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert rows[0]["tokens"] == ["we", "met", "Mr", "Jones", "in", "Paris"]
    assert len(rows[0]["tags"]) == 6 and len(rows[1]["tags"]) == 3
    text = " ".join(rows[0]["tokens"])
    for ent in rows[0]["entities"] + rows[1]["entities"]:
        assert ent["type"] in {"PER", "LOC"}
    for ent in rows[0]["entities"]:
        assert text[ent["start"]:ent["end"]] == ent["text"]
