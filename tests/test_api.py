"""The Python API: ``lmforge.finetune`` / ``lmforge.load`` and many runs in one process."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge.api import resolve_job
from lmforge.finetuning.settings import FinetuneJob
from tests.finetuning.conftest import save_word_encoder

POSITIVE = ["good", "great", "happy", "lovely", "wonderful"]
NEGATIVE = ["bad", "awful", "sad", "terrible", "boring"]
FILLER = ["the", "film", "was", "really", "quite", "a", "story", "and", "very"]


def _sentiment_tsv(path: Path, rows: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = ["text\tlabel"]
    for _ in range(rows):
        label = rng.choice(["pos", "neg"])
        words = rng.sample(FILLER, 4)
        words.insert(rng.randrange(5), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        lines.append(f"{' '.join(words)}\t{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def sentiment_task(root: Path, **splits: int) -> tuple[Path, Path]:
    """(encoder folder, data folder) of the tiny sentiment task under ``root``: one file per
    split with that many rows (``train=96, dev=32``), seeded 0, 1, 2, ... in the order given,
    and a word encoder over the task's vocabulary."""
    data = root / "data"
    data.mkdir()
    for seed, (split, rows) in enumerate(splits.items()):
        _sentiment_tsv(data / f"{split}.tsv", rows, seed)
    return save_word_encoder(root / "encoder", POSITIVE + NEGATIVE + FILLER), data


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return sentiment_task(tmp_path_factory.mktemp("api"), train=96, dev=32)


def _finetune(encoder: Path, data: Path, out: Path, precision: str,
              *extra: str) -> lmforge.RunResult:
    return lmforge.finetune(
        {"data": {"path": str(data)}, "model": {"pretrained": str(encoder)}},
        f"train.precision={precision}", *extra,
        train={"max_steps": 12, "batch_size": 16, "lr": 5e-3, "warmup_ratio": 0.0,
               "num_threads": 1, "eval_every": 6},
        track={"backends": ["jsonl"], "progress": False}, output_dir=str(out))


@pytest.mark.parametrize("order", [("bf16", "fp32"), ("fp32", "bf16"), ("bf16", "bf16")])
def test_two_finetunings_in_one_process_any_precision_order(
        order: tuple[str, str], setup: tuple[Path, Path], tmp_path: Path) -> None:
    encoder, data = setup
    threads = torch.get_num_threads()
    results = [_finetune(encoder, data, tmp_path / f"run{i}", precision)
               for i, precision in enumerate(order)]
    for result, precision in zip(results, order, strict=True):
        assert result.summary["precision"] == precision
        assert result.summary["steps"] == 12
        assert (result.run_dir / "model" / "model.safetensors").is_file()
        assert 0.0 <= result.metrics["accuracy"] <= 1.0
    # The runs set one thread each; the process gets its own setting back.
    assert torch.get_num_threads() == threads


def test_finetune_result_and_load_predict(setup: tuple[Path, Path], tmp_path: Path) -> None:
    encoder, data = setup
    # Seed 0 leaves the random-init encoder's loss plateau early (see save_word_encoder).
    result = _finetune(encoder, data, tmp_path / "run", "fp32", "train.max_steps=40",
                       "train.seed=0", "train.max_grad_norm=0")
    assert result.command == "finetune"
    assert result.run_dir == tmp_path / "run"
    assert result.metrics == pytest.approx(
        {k: v for k, v in result.summary["validation_metrics"].items()
         if isinstance(v, float | int)})
    assert result.metrics["accuracy"] >= 0.9  # one sentiment word decides the label
    clf = lmforge.load(result.run_dir)
    rows = clf.predict(["the film was good", "a boring story"])
    assert [r["label"] for r in rows] == ["pos", "neg"]
    assert clf.labels == ["neg", "pos"]
    # One bare string, and a record with the task's text column, give the same row.
    assert clf.predict("the film was good") == clf.predict([{"text": "the film was good"}])
    assert clf.predict("the film was good", top_k=2)[0]["top_k"][1]["label"] == "neg"


def test_config_forms_resolve_alike(tmp_path: Path) -> None:
    yaml_file = tmp_path / "ft.yaml"
    yaml_file.write_text("train:\n  lr: 0.001\n  epochs: 2\n")
    from_yaml = resolve_job("finetune", yaml_file, ("train.epochs=3",))
    from_dict = resolve_job("finetune", {"train": {"lr": 0.001}}, (), {"train": {"epochs": 3}})
    from_dataclass = resolve_job("finetune", from_dict)
    assert isinstance(from_yaml, FinetuneJob)
    assert from_yaml == from_dict == from_dataclass
    assert from_yaml.train.lr == 0.001 and from_yaml.train.epochs == 3.0
    # Sections keep their command defaults (fine-tuning's warmup) when only one key is given.
    assert from_yaml.train.warmup_ratio == FinetuneJob().train.warmup_ratio


def test_api_errors_are_lmforge_errors() -> None:
    with pytest.raises(lmforge.ConfigError, match="did you mean 'train.lr'"):
        lmforge.finetune(train={"lrr": 1.0})
    with pytest.raises(lmforge.ConfigError, match="config must be"):
        lmforge.finetune(42)
    with pytest.raises(lmforge.ConfigError, match="set the model to load"):
        lmforge.load("")


def test_hooks_reach_the_engine(setup: tuple[Path, Path], tmp_path: Path) -> None:
    from lmforge.engine.hooks import StepHook

    class Record(StepHook):
        def __init__(self) -> None:
            self.evaluations: list[tuple[int, float]] = []

        def on_evaluate(self, engine: object, metrics: dict[str, float]) -> None:
            self.evaluations.append((engine.state.global_step, metrics["eval_accuracy"]))

    record = Record()
    encoder, data = setup
    result = lmforge.finetune({"data": {"path": str(data)}, "model": {"pretrained": str(encoder)}},
                              "train.max_steps=4", "train.eval_every=2", "train.precision=fp32",
                              "track.backends=jsonl", "track.progress=false", hooks=[record],
                              output_dir=str(tmp_path / "run"))
    assert [step for step, _ in record.evaluations] == [2, 4]
    # The report is of the best checkpoint, which is one of the evaluations the hook saw.
    assert any(acc == pytest.approx(result.metrics["accuracy"]) for _, acc in record.evaluations)
