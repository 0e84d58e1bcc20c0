"""`lmforge finetune` / `evaluate` / `predict` for extractive QA on a tiny SQuAD-style file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from lmforge.cli import main
from tests.finetuning.conftest import save_word_encoder

PEOPLE = ["alice", "bob", "carol", "dave", "erin"]
CITIES = ["paris", "rome", "oslo", "lima", "cairo"]
FILLER = ["the", "weather", "was", "fine", "and", "it", "rained", "later", "."]
QUESTION = ["where", "does", "live", "?"]


def _squad(path: Path, rows: int, seed: int, misaligned: int = 0) -> Path:
    """One "PERSON lives in CITY ." fact among 1-6 filler sentences, in random order.

    The fact sits at a random offset, so answers start anywhere and the longer contexts span
    several windows. One fact per context: what a few steps can teach a random-init 2-layer
    encoder is span extraction (matching the asked person among several facts takes it
    hundreds of steps). The first ``misaligned`` rows get a wrong ``answer_start``
    (check_answers must skip them).
    """
    rng = random.Random(seed)
    lines = []
    for k in range(rows):
        person, city = rng.choice(PEOPLE), rng.choice(CITIES)
        parts = [" ".join(rng.sample(FILLER[:-1], 3)) + " ." for _ in range(rng.randint(1, 6))]
        parts.insert(rng.randint(0, len(parts)), f"{person} lives in {city} .")
        context = " ".join(parts)
        start = context.index(f"{person} lives in ") + len(f"{person} lives in ")
        if k < misaligned:
            start += 1  # context[start:] no longer begins with the answer
        lines.append(json.dumps({"id": f"q{seed}-{k}", "question": f"where does {person} live ?",
                                 "context": context,
                                 "answers": {"text": [city], "answer_start": [start]}}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT encoder with a fixed word-level vocabulary."""
    return save_word_encoder(tmp_path_factory.mktemp("encoder"),
                             PEOPLE + CITIES + FILLER + QUESTION + ["lives", "in"])


def test_qa_finetune_evaluate_predict(tmp_path: Path, encoder_dir: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _squad(data / "train.jsonl", 96, 0, misaligned=1)
    _squad(data / "dev.jsonl", 24, 1)
    test_file = _squad(data / "test.jsonl", 24, 2, misaligned=1)
    run = tmp_path / "run"
    # max_length 32 with doc_stride 8 cuts the longer contexts into several windows, so the
    # multi-window decoding path runs too.
    code = main(["finetune", f"--output-dir={run}", f"data.path={data}",
                 f"model.pretrained={encoder_dir}", "task.name=qa", "data.max_length=32",
                 "task.doc_stride=8", "train.lr=3e-3", "train.epochs=2",
                 "train.warmup_ratio=0", "train.scheduler=constant", "train.seed=0",
                 "train.batch_size=16", "train.eval_every=10", "train.log_every=10",
                 "track.progress=false"])
    assert code == 0
    assert "misaligned answers" in caplog.text  # the skipped training answer is warned about
    summary = json.loads((run / "summary.json").read_text())
    info = json.loads((run / "model" / "lmforge_task.json").read_text())
    assert info["train_answer_check"]["misaligned_answers"] == 1
    assert info["train_answer_check"]["examples"] == ["q0-0"]
    test = summary["test_metrics"]
    assert test["misaligned_answers"] == 1 and test["skipped_examples"] == 1
    # More windows than questions: the multi-window decoding path ran.
    assert summary["train_examples"] > 95
    # The model learned to extract the answer span (an untrained one scores about 0).
    assert test["exact_match"] >= 90 and test["f1"] >= 90
    for name in ("summary.json", "predictions.jsonl"):
        assert (run / "eval-test" / name).is_file(), name

    out = tmp_path / "eval"
    assert main(["evaluate", f"run={run}", f"data.path={test_file}", f"output_dir={out}"]) == 0
    report = json.loads((out / "summary.json").read_text())
    assert report["headline"]["f1"] == pytest.approx(test["f1"])
    assert report["metrics"]["total"] == 23  # 24 questions, one skipped as misaligned
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 23
    contexts = {json.loads(line)["id"]: json.loads(line)["context"]
                for line in test_file.read_text().splitlines()}
    for row in rows:  # every answer is a real span of its context at the reported offset
        assert isinstance(row["score"], float)
        if row["answer"]:
            assert contexts[row["id"]][row["start"]:].startswith(row["answer"])

    inputs = tmp_path / "in.jsonl"
    context = "the weather was fine . it rained later . bob lives in lima . and it was fine ."
    inputs.write_text(json.dumps({"question": "where does bob live ?",
                                  "context": context}) + "\n")
    preds = tmp_path / "preds.jsonl"
    assert main(["predict", f"run={run}", f"input={inputs}", f"output={preds}"]) == 0
    (row,) = [json.loads(line) for line in preds.read_text().splitlines()]
    assert set(row) == {"question", "answer", "score", "start"}
    assert row["answer"] == "lima" and context[row["start"]:].startswith("lima")
