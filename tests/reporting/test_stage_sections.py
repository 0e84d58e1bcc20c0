"""What continual, tune, attack and explain runs add to their reports (folders as written)."""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.commands.report import build_page
from tests.reporting.conftest import EVIL, tiny_png


def _run(folder: Path, command: str, summary: dict, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("seed: 1\n")
    (folder / "summary.json").write_text(json.dumps({"command": command, **summary}))
    for name, text in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_continual_shows_the_accuracy_matrix_and_stream_metrics(tmp_path: Path) -> None:
    run = _run(tmp_path / "stream", "continual", {
        "experiences": ["sst2", EVIL], "accuracy_matrix": [[0.91, 0.52], [0.85, 0.88]],
        "initial_accuracy": [0.5, 0.49], "average_accuracy": 0.865, "bwt": -0.06})
    tiny_png(run / "accuracy_matrix.png")
    page = build_page([run])
    assert "Accuracy matrix" in page and "initial model" in page and "0.91" in page
    assert "-0.06" in page and "0.865" in page and EVIL not in page
    assert page.count("data:image/png") == 1


def test_tune_shows_the_best_trial_the_trials_and_the_study_plots(tmp_path: Path) -> None:
    trials = ("trial,state,eval_accuracy,train.lr,run_dir\n3,complete,0.9,0.001,x\n"
              "1,pruned,0.6,0.1,y\n")
    run = _run(tmp_path / "study", "tune", {
        "best": {"trial": 3, "values": {"eval_accuracy": 0.9}, "params": {"train.lr": 0.001}}},
        {"trials.csv": trials})
    (run / "plots").mkdir()
    tiny_png(run / "plots" / "importances.png")
    page = build_page([run])
    assert "Best trial" in page and "param: train.lr" in page and "Trials (2, best first)" in page
    assert page.index(">complete<") < page.index(">pruned<") and "importances" in page


def test_attack_shows_accuracy_under_attack_and_examples(tmp_path: Path) -> None:
    example = {"original": "a good film", "perturbed": "a g00d film", "label": "pos",
               "original_prediction": "pos", "perturbed_prediction": "neg"}
    run = _run(tmp_path / "attack", "attack", {"attacks": {"char": {
        "original_accuracy": 0.9, "accuracy_under_attack": 0.3, "attack_success_rate": 0.67}}},
        {"attack-char/adversarial.jsonl": json.dumps(example) + "\n",
         "report.html": "<html>the attack's own page</html>"})
    page = build_page([run])
    assert "accuracy_under_attack" in page and "0.3" in page and "a g00d film" in page


def test_explain_draws_the_attributions(tmp_path: Path) -> None:
    row = {"prediction": {"label": "pos"}, "words": ["a", "great", EVIL],
           "methods": {"ig": {"word_scores": [0.0, 0.9, -0.3]}}}
    run = _run(tmp_path / "explain", "explain", {
        "cost": {"ig": {"seconds_per_example": 0.2}},
        "faithfulness": {"ig": {"comprehensiveness": 0.4}}},
        {"explanations.jsonl": json.dumps(row) + "\n"})
    page = build_page([run])
    assert "rgba(214,39,40,0.80)" in page  # the strongest word, in full colour
    assert "rgba(31,119,180" in page and EVIL not in page  # a negative score; escaped
    assert "comprehensiveness" in page and "seconds_per_example" in page
