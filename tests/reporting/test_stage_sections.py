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


def test_pretrain_shows_before_after_and_later_evaluations(tmp_path: Path) -> None:
    run = _run(tmp_path / "pretrain", "pretrain", {
        "objective": "clm", "parameters": 1234, "steps": 40,
        "initial_eval": {"eval_loss": 3.9, "eval_perplexity": 49.4},
        "final_eval": {"eval_loss": 3.1, "eval_perplexity": 22.2}},
        {"eval-test/summary.json": json.dumps({
            "command": "evaluate", "split": "test", "examples": 17, "precision": "fp32",
            "eval_perplexity": 23.5, "eval_token_accuracy": 0.41}),
         "eval-other/summary.json": json.dumps({"headline": {"accuracy": 0.9}})})
    page = build_page([run])
    assert "Held-out metrics before and after training" in page and "49.4" in page
    assert "22.2" in page and "Evaluations (lmforge evaluate)" in page
    assert "23.5" in page and "eval_token_accuracy" in page and ">test<" in page
    assert ">other<" not in page  # not written by lmforge evaluate


def test_prompt_shows_scores_per_template_and_confident_mistakes(tmp_path: Path) -> None:
    predictions = [{"text": "a calm mistake", "label": "pos", "predicted": "neg",
                    "probs": [0.6, 0.4]},
                   {"text": EVIL, "label": "pos", "predicted": "neg", "probs": [0.95, 0.05]},
                   {"text": "right", "label": "pos", "predicted": "pos", "probs": [0.1, 0.9]}]
    run = _run(tmp_path / "prompt", "prompt", {
        "mode": "icl", "model": "smollm2", "labels": ["neg", "pos"], "calibrate": True,
        "templates": {"review": {"accuracy": 0.71, "macro_f1": 0.7,
                                 "calibrated_accuracy": 0.83, "calibrated_macro_f1": 0.82}},
        "ensemble": {"accuracy": 0.72, "macro_f1": 0.71},
        "majority": {"label": "pos", "accuracy": 0.51, "macro_f1": 0.34}},
        {"predictions.jsonl": "".join(json.dumps(p) + "\n" for p in predictions)})
    page = build_page([run])
    assert "Scores per prompt" in page and "calibrated_accuracy" in page and "0.83" in page
    assert "majority class of train (pos)" in page and "ensemble (mean p)" in page
    assert EVIL not in page and "a calm mistake" in page
    # The most confident mistake (0.95, the escaped script text) comes first.
    assert page.index("&lt;script&gt;") < page.index("a calm mistake") < page.index(">right<")


def test_prompt_fewshot_shows_both_methods_per_seed(tmp_path: Path) -> None:
    run = _run(tmp_path / "fewshot", "prompt", {
        "mode": "fewshot", "labels": ["neg", "pos"], "seeds": [1, 2],
        "prompt": {"accuracy_mean": 0.81, "accuracy_std": 0.02},
        "baseline": {"accuracy_mean": 0.62, "accuracy_std": 0.05},
        "runs": [{"seed": 1, "prompt": {"accuracy": 0.83, "macro_f1": 0.8},
                  "baseline": {"accuracy": 0.57, "macro_f1": 0.5}}]})
    page = build_page([run])
    assert "Few-shot: prompt-based vs plain fine-tuning" in page and "0.81" in page
    assert "Per seed" in page and "0.57" in page and "baseline accuracy" in page
