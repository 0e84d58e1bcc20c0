"""`lmforge export`: merged HF folder, ONNX and int8 ONNX of tiny fine-tuned runs, all offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lmforge.cli import main
from lmforge.commands import export as export_command
from lmforge.deploy import export
from lmforge.deploy.onnx_model import find_onnx_folder, load_onnx_model
from lmforge.finetuning.saved import FinishedRun, load_finetuned
from tests.conftest import TUNED_OPTIMIZER
from tests.finetuning.conftest import save_word_encoder
from tests.finetuning.test_classification_e2e import FILLER, NEGATIVE, POSITIVE, _labeled_csv
from tests.finetuning.test_qa_e2e import CITIES, PEOPLE, QUESTION, _squad
from tests.finetuning.test_qa_e2e import FILLER as QA_FILLER

FAST = ["train.warmup_ratio=0", "train.scheduler=constant", "train.batch_size=16",
        "train.seed=2", "data.validation_ratio=0", "track.progress=false",
        "track.backends=[jsonl]", *TUNED_OPTIMIZER]
TEXTS = ["the film was quite", "a very lovely and sad story", "great", "the story was boring",
         "and the film was a really wonderful and very happy story"]


def _predict(tmp_path: Path, run: Path | str, name: str, **extra: str) -> list[dict[str, Any]]:
    """`lmforge predict` on TEXTS (or extra input=...), parsed jsonl rows."""
    inputs = tmp_path / f"{name}.txt"
    inputs.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / f"{name}.jsonl"
    args = {"input": str(inputs), "top_k": "3", **extra}
    assert main(["predict", f"run={run}", f"output={out}",
                 *(f"{k}={v}" for k, v in args.items())]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def _scores(row: dict[str, Any]) -> dict[str, float]:
    return {item["label"]: item["score"] for item in row["top_k"]}


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny classifier fine-tuned for a few steps; returns (run dir, labeled test file)."""
    root = tmp_path_factory.mktemp("cls")
    encoder = save_word_encoder(root / "encoder", POSITIVE + NEGATIVE + FILLER)
    train = _labeled_csv(root / "train.csv", 160, 0)
    test = _labeled_csv(root / "test.csv", 40, 2)
    run = root / "run"
    assert main(["finetune", f"data.path={train}", f"model.pretrained={encoder}",
                 "train.lr=5e-3", "train.max_steps=20", "train.log_every=20",
                 "train.max_grad_norm=0", *FAST, f"--output-dir={run}"]) == 0
    return run, test


@pytest.fixture(scope="module")
def cls_export(cls_run: tuple[Path, Path],
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """`lmforge export RUN format=all quantize=int8 data.path=test.csv`."""
    run, test = cls_run
    out = tmp_path_factory.mktemp("export") / "out"
    assert main(["export", str(run), "quantize=int8", f"data.path={test}",
                 f"--output-dir={out}"]) == 0
    return out, json.loads((out / "export_summary.json").read_text())


def test_hf_folder_matches_lmforge_predict_in_a_plain_pipeline(
        cls_run: tuple[Path, Path], cls_export: tuple[Path, dict[str, Any]],
        tmp_path: Path) -> None:
    from transformers import pipeline

    run, _ = cls_run
    out, summary = cls_export
    hf = out / "hf"
    assert summary["formats"]["hf"] == str(hf) and summary["merged_adapter"] is False
    for name in ("model.safetensors", "config.json", "tokenizer.json", "lmforge_task.json"):
        assert (hf / name).is_file(), name
    config = json.loads((hf / "config.json").read_text())
    assert config["id2label"] == {"0": "none", "1": "one", "2": "two"}
    assert config["label2id"] == {"none": 0, "one": 1, "two": 2}

    expected = _predict(tmp_path, run, "torch")
    classifier = pipeline("text-classification", model=str(hf), top_k=None, device="cpu")
    for row, ranked in zip(expected, classifier(TEXTS), strict=True):
        assert ranked[0]["label"] == row["label"]
        got = {item["label"]: item["score"] for item in ranked}
        for label, score in _scores(row).items():
            assert got[label] == pytest.approx(score, abs=1e-5)


def test_onnx_matches_pytorch_and_predict_runs_on_it(
        cls_run: tuple[Path, Path], cls_export: tuple[Path, dict[str, Any]],
        tmp_path: Path) -> None:
    import onnx

    run, _ = cls_run
    out, summary = cls_export
    assert summary["max_abs_diff"]["onnx"] < 1e-4
    assert summary["tolerance"] == 1e-4
    graph = onnx.load(str(out / "onnx" / "model.onnx"), load_external_data=False).graph
    # The fixture tokenizer makes no token_type_ids, so the graph takes none (QA covers them).
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in graph.output] == ["logits"]
    for value in graph.input:  # dynamic batch and sequence axes
        assert [d.dim_param for d in value.type.tensor_type.shape.dim] == ["batch", "sequence"]

    expected = _predict(tmp_path, run, "torch")
    onnx_rows = _predict(tmp_path, out / "onnx", "onnx", batch_size="2")
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in expected]
    for a, b in zip(onnx_rows, expected, strict=True):
        assert _scores(a) == pytest.approx(_scores(b), abs=1e-4)
    # The export root resolves to its fp32 ONNX folder for the server's loader.
    assert find_onnx_folder(out) == out / "onnx"
    model, _, task, settings = load_onnx_model(out, num_threads=1)
    assert settings.labels == ["none", "one", "two"] and task.name == "classification"
    assert model.session.get_session_options().intra_op_num_threads == 1


def test_int8_reports_sizes_diffs_and_metrics_against_fp32(
        cls_run: tuple[Path, Path], cls_export: tuple[Path, dict[str, Any]],
        tmp_path: Path) -> None:
    run, test_file = cls_run
    out, summary = cls_export
    assert summary == json.loads((out / "summary.json").read_text())
    sizes = summary["size_mb"]
    assert sizes["onnx-int8"] < 0.6 * sizes["onnx"]  # int8 weights: ~4x smaller matrices
    diffs = summary["max_abs_diff"]
    assert diffs["onnx"] < diffs["onnx-int8"] < 1.0  # lossy, but not broken
    assert summary["examples"] == 40
    pt, fp32, int8 = (summary[f"metrics_{k}"] for k in ("pytorch", "onnx", "onnx_int8"))
    assert fp32["accuracy"] == pt["accuracy"]
    assert 0.0 <= int8["accuracy"] <= 1.0
    delta = summary["delta_points_onnx_int8"]["accuracy"]
    assert delta == pytest.approx(100 * (int8["accuracy"] - pt["accuracy"]), abs=1e-3)
    assert summary["delta_points_onnx"]["accuracy"] == 0.0
    for backend in ("pytorch", "onnx", "onnx-int8"):  # a full task report per backend
        assert (out / "eval" / backend / "predictions.jsonl").is_file(), backend
    rows = _predict(tmp_path, out / "onnx-int8", "int8")
    assert len(rows) == len(TEXTS) and all(r["label"] in ("none", "one", "two") for r in rows)
    # Each backend's accuracy is its own predictions' (recomputed here on the 40 test rows
    # with the exported folders), and the model learned: above the best constant answer.
    lines = [line.rsplit(",", 1) for line in test_file.read_text().splitlines()[1:]]
    records, truth = [{"text": t} for t, _ in lines], [y for _, y in lines]
    loaded = load_finetuned(str(run))
    predicted = {"pytorch": loaded.task.predict(loaded.model, loaded.tokenizer,
                                                loaded.settings, records)}
    for backend in ("onnx", "onnx-int8"):
        model, tokenizer, task, settings = load_onnx_model(out / backend)
        predicted[backend] = task.predict(model, tokenizer, settings, records)
    accuracy = {k: sum(r["label"] == y for r, y in zip(v, truth, strict=True)) / len(truth)
                for k, v in predicted.items()}
    assert [pt["accuracy"], fp32["accuracy"], int8["accuracy"]] == pytest.approx(
        [accuracy["pytorch"], accuracy["onnx"], accuracy["onnx-int8"]])
    constant = max(truth.count(y) for y in set(truth)) / len(truth)
    assert pt["accuracy"] >= constant + 0.2, (pt["accuracy"], constant)
    # int8 changes the scores a little and the decisions hardly at all.
    agree = sum(a["label"] == b["label"] for a, b in zip(predicted["onnx-int8"],
                                                          predicted["pytorch"], strict=True))
    assert agree >= 0.9 * len(truth)


def test_lora_model_is_merged_and_predicts_the_same(
        cls_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import pipeline

    run, _ = cls_run
    loaded = load_finetuned(str(run))
    model_dir, task, settings, tokenizer, base = (loaded.model_dir, loaded.task,
                                                  loaded.settings, loaded.tokenizer, loaded.model)
    records = [{"text": t} for t in TEXTS]
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        plain = base(**batch).logits
    lora = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8,
                                           target_modules=["query", "value", "dense"])).eval()
    torch.manual_seed(0)
    for name, param in lora.named_parameters():  # B = 0 at init: make the adapter matter
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    before = task.predict(lora, tokenizer, settings, records, top_k=3)
    with torch.no_grad():
        assert (lora(**batch).logits - plain).abs().max() > 0.1
    monkeypatch.setattr(export_command, "load_finetuned",
                        lambda _: FinishedRun(model_dir, task, settings, tokenizer, lora))
    # merge=false keeps the adapter folder (before the merged export, which mutates `lora`).
    unmerged = tmp_path / "unmerged"
    assert main(["export", str(run), "format=hf", "merge=false",
                 f"--output-dir={unmerged}"]) == 0
    assert (unmerged / "hf" / "adapter_config.json").is_file()
    assert not (unmerged / "hf" / "config.json").exists()
    out = tmp_path / "out"
    assert main(["export", str(run), "format=hf", f"--output-dir={out}"]) == 0
    summary = json.loads((out / "export_summary.json").read_text())
    assert summary["merged_adapter"] is True and list(summary["formats"]) == ["hf"]
    assert not (out / "hf" / "adapter_config.json").exists()  # plain weights, no peft needed
    classifier = pipeline("text-classification", model=str(out / "hf"), top_k=None,
                          device="cpu")
    for row, ranked in zip(before, classifier(TEXTS), strict=True):
        assert ranked[0]["label"] == row["label"]
        got = {item["label"]: item["score"] for item in ranked}
        assert got == pytest.approx(_scores(row), abs=1e-5)


def test_qa_onnx_export_matches_pytorch(tmp_path: Path) -> None:
    import onnx
    from transformers import AutoTokenizer

    encoder = save_word_encoder(tmp_path / "encoder",
                                PEOPLE + CITIES + QA_FILLER + QUESTION + ["lives", "in"])
    # Segment ids for (question, context) as BERT's own tokenizer makes them, so the graph
    # gets a token_type_ids input.
    AutoTokenizer.from_pretrained(encoder, model_input_names=[
        "input_ids", "token_type_ids", "attention_mask"]).save_pretrained(encoder)
    train = _squad(tmp_path / "train.jsonl", 32, 0)
    test = _squad(tmp_path / "test.jsonl", 12, 2)
    run = tmp_path / "run"
    # max_length 32 / doc_stride 8: long contexts span several windows.
    assert main(["finetune", f"data.path={train}", f"model.pretrained={encoder}",
                 "task.name=qa", "data.max_length=32", "task.doc_stride=8", "train.lr=3e-3",
                 "train.max_steps=3", "train.log_every=3", *FAST,
                 f"--output-dir={run}"]) == 0
    out = tmp_path / "out"
    assert main(["export", str(run), "format=onnx", f"data.path={test}",
                 f"--output-dir={out}"]) == 0
    summary = json.loads((out / "export_summary.json").read_text())
    assert list(summary["formats"]) == ["onnx"]
    assert summary["max_abs_diff"]["onnx"] < 1e-4
    graph = onnx.load(str(out / "onnx" / "model.onnx"), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["start_logits", "end_logits"]
    for key in ("exact_match", "f1"):
        assert summary["metrics_onnx"][key] == summary["metrics_pytorch"][key]
    loaded = load_finetuned(str(run))
    task, settings, tokenizer, model = loaded.task, loaded.settings, loaded.tokenizer, \
        loaded.model
    onnx_model, onnx_tokenizer, onnx_task, onnx_settings = load_onnx_model(out / "onnx")
    records = [json.loads(line) for line in test.read_text().splitlines()][:6]
    expected = task.predict(model, tokenizer, settings, records)
    got = onnx_task.predict(onnx_model, onnx_tokenizer, onnx_settings, records)
    assert [r["answer"] for r in got] == [r["answer"] for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-4)


@pytest.mark.parametrize(("task", "args", "message"), [
    ("sft", ["format=onnx"], "export it with format=hf"),
    ("seq2seq", ["quantize=int8"], "export it with format=hf"),
    ("classification", ["format=hf", "quantize=int8"], "use format=onnx or format=all"),
    (None, [], "does not exist"),
])
def test_unsupported_requests_are_one_line_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], task: str | None, args: list[str],
        message: str) -> None:
    run = tmp_path / "run"
    if task is not None:  # only the task file is read before the request is refused
        (run / "model").mkdir(parents=True)
        (run / "model" / "lmforge_task.json").write_text(json.dumps({"task": task}))
    code = main(["export", str(run), *args, f"--output-dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_onnx_beyond_tolerance_fails_and_leaves_no_export(
        cls_run: tuple[Path, Path], cls_export: tuple[Path, dict[str, Any]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    run, _ = cls_run
    exported = cls_export[0] / "onnx" / "model.onnx"
    # Reuse the fixture's graph (no second export) and pretend it drifted from PyTorch.
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: shutil.copy(exported, a[4]))
    monkeypatch.setattr(export, "max_abs_diff", lambda *a, **k: 0.5)
    out = tmp_path / "out"
    assert main(["export", str(run), "format=onnx", f"--output-dir={out}"]) == 2
    # The last stderr line is the error (transformers' loading bar comes before it).
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "differ from PyTorch by 0.5 > tolerance=0.0001" in err
    assert not (out / "onnx").exists()
