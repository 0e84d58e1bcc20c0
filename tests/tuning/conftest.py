"""A tiny sentiment task for tuning and pipeline tests (tiny word-level encoder, 96 rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_api import sentiment_task


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(encoder folder, data folder with train.tsv / dev.tsv / test.tsv)."""
    return sentiment_task(tmp_path_factory.mktemp("tiny-task"), train=96, dev=32, test=32)


def finetune_config(encoder: Path, data: Path, **train: Any) -> dict[str, Any]:
    """A fine-tuning config that trains in about a second (seed 0 leaves the plateau early)."""
    return {"data": {"path": str(data)}, "model": {"pretrained": str(encoder)},
            "train": {"max_steps": 12, "batch_size": 16, "lr": 5e-3, "warmup_ratio": 0.0,
                      "num_threads": 1, "precision": "fp32", "seed": 0, "max_grad_norm": 0.0,
                      **train},
            "track": {"backends": ["jsonl"], "progress": False}}


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as YAML to ``path``."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
