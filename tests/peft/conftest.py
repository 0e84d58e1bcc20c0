"""Tiny PEFT fine-tuning runs shared by the tests of this folder.

Every run: a 2-layer BERT (hidden 64) with a fixed word vocabulary, 8 optimizer steps,
constant LR, fp32, evaluation and a checkpoint every 4 steps. Trained runs are cached per
method for the whole session, so the round-trip, merge, plain-peft and resume tests share
them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lmforge.cli import main
from tests.finetuning.conftest import save_word_encoder
from tests.finetuning.test_classification_e2e import FILLER, NEGATIVE, POSITIVE, _labeled_csv

# Higher learning rates for the methods with few parameters, as in their papers.
LR = {"none": "5e-3", "lora": "1e-2", "ia3": "3e-2", "prompt": "3e-2", "ptuning": "1e-2",
      "houlsby": "1e-2", "pfeiffer": "1e-2", "bitfit": "1e-2"}


def common_args(run: Path, data: Path, model: Path, steps: int = 8) -> list[str]:
    """Flags every tiny run uses (deterministic, fast, checkpoints every 4 steps)."""
    return ["finetune", f"--output-dir={run}", f"data.path={data}", f"model.pretrained={model}",
            f"train.max_steps={steps}", "train.batch_size=16", "train.warmup_ratio=0",
            "train.scheduler=constant", "train.eval_every=4", "train.save_every=4",
            "train.keep_last=3", "train.precision=fp32", "train.seed=3", "train.num_threads=1",
            "track.backends=jsonl", "track.progress=false"]


@pytest.fixture(scope="package", autouse=True)
def _no_plots() -> Iterator[None]:
    """Skip the report's matplotlib plots in this package's runs (seconds per run;
    tests/finetuning covers the plots).

    Package scope: the patch is undone after the last test of tests/peft, so tests collected
    after this folder (``pytest tests/peft tests/finetuning``) write their plots again.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lmforge.evaluation.plots.write_classification_plots",
                      lambda *args, **kwargs: {})
        yield


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT encoder with a fixed word-level vocabulary."""
    return save_word_encoder(tmp_path_factory.mktemp("peft-encoder"),
                             POSITIVE + NEGATIVE + FILLER)


@pytest.fixture(scope="session")
def cls_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three-class sentences (train 96 rows, dev 24)."""
    data = tmp_path_factory.mktemp("peft-data")
    _labeled_csv(data / "train.csv", 96, 0)
    _labeled_csv(data / "dev.csv", 24, 1)
    return data


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, encoder_dir: Path,
            cls_data: Path) -> Callable[[str], Path]:
    """``trained(method)`` -> the run directory of a classification run, trained once."""
    cache: dict[str, Path] = {}

    def get(method: str) -> Path:
        if method not in cache:
            run = tmp_path_factory.mktemp(f"run-{method}") / "run"
            code = main([*common_args(run, cls_data, encoder_dir), f"peft.method={method}",
                         f"train.lr={LR[method]}", "peft.num_virtual_tokens=4",
                         "peft.reduction_factor=8"])
            assert code == 0
            cache[method] = run
        return cache[method]

    return get


def summary_of(run: Path) -> dict:
    """The run's summary.json."""
    return json.loads((run / "summary.json").read_text())
