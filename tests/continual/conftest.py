"""A tiny three-experience stream: each experience's label is decided by one keyword."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.finetuning.conftest import save_word_encoder

KEYWORDS = {
    "mood": {"pos": ["good", "great", "happy"], "neg": ["bad", "awful", "sad"]},
    "topic": {"sport": ["ball", "goal", "team"], "tech": ["chip", "code", "robot"]},
    "size": {"big": ["huge", "giant", "vast"], "small": ["tiny", "little", "mini"]},
}
FILLER = ["the", "a", "was", "really", "quite", "story", "and", "very", "it", "today"]


def write_split(path: Path, name: str, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = ["text\tlabel"]
    labels = list(KEYWORDS[name])
    for _ in range(rows):
        label = rng.choice(labels)
        words = rng.sample(FILLER, 4)
        words.insert(rng.randrange(5), rng.choice(KEYWORDS[name][label]))
        lines.append(f"{' '.join(words)}\t{label}")
    path.mkdir(parents=True, exist_ok=True)
    (path / ("train.tsv" if seed < 100 else "dev.tsv")).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def tiny_stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("continual")
    words = [w for groups in KEYWORDS.values() for ws in groups.values() for w in ws]
    encoder = save_word_encoder(root / "encoder", words + FILLER)
    data = {}
    for k, name in enumerate(KEYWORDS):
        write_split(root / name, name, 64, k)
        write_split(root / name, name, 24, 100 + k)
        data[name] = root / name
    return encoder, data


def stream_config(encoder: Path, data: dict[str, Path], out: Path, **over: Any) -> dict:
    """A stream config dict over the tiny experiences (task-incremental by default)."""
    names = over.pop("names", list(data))
    cfg = {
        "scenario": "task",
        "model": {"pretrained": str(encoder)},
        "experiences": [{"name": n, "task_id": n, "data": {"path": str(data[n])}}
                        for n in names],
        "train": {"max_steps": 6, "batch_size": 16, "lr": 5e-3, "warmup_ratio": 0.0,
                  "num_threads": 1, "seed": 0, "precision": "fp32"},
        "track": {"backends": ["jsonl"], "progress": False},
        "output_dir": str(out),
    }
    for key, value in over.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return cfg
