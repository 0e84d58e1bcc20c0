"""Run folders as lmforge commands leave them, written directly (no training: milliseconds)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import yaml

EVIL = "<script>alert('x')</script>"
"""A label / text a run might hold: it must reach the page escaped, never as markup."""


def tiny_png(path: Path, rgb: tuple[int, int, int] = (31, 119, 180), size: int = 8) -> Path:
    """A valid ``size`` x ``size`` one-colour PNG (stands in for a task's plot)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size,
                                                                        8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def make_run(folder: Path, steps: int = 40, lr: float = 1e-3, seed: int = 0,
             labels: tuple[str, ...] = ("neg", "pos", EVIL), **summary: Any) -> Path:
    """A finished classification fine-tuning run: config, metrics, summary, lineage, eval."""
    folder.mkdir(parents=True)
    config = {"task": {"name": "classification", "text_column": "text"},
              "train": {"lr": lr, "seed": seed, "max_steps": steps},
              "data": {"path": "data/"}, "output_dir": str(folder)}
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with open(folder / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for step in range(1, steps + 1):
            fh.write(json.dumps({"step": step, "train_loss": 2.0 / step + seed * 0.01,
                                 "lr": lr * (1 - step / steps), "time": 1.0}) + "\n")
            if step % 10 == 0:
                fh.write(json.dumps({"step": step, "eval_loss": 1.5 / step,
                                     "eval_accuracy": min(1.0, 0.5 + step / 100)}) + "\n")
    validation = {"accuracy": 0.75 + seed / 100, "f1_macro": 0.7}
    (folder / "summary.json").write_text(json.dumps({
        "command": "finetune", "run_dir": str(folder), "task": "classification",
        "labels": list(labels), "steps": steps, "validation_metrics": validation,
        **summary}), encoding="utf-8")
    (folder / "lineage.json").write_text(json.dumps({
        "run_id": f"finetune-{seed}", "command": "finetune", "config_hash": "ab" * 32,
        "parents": [{"key": "model.pretrained", "path": "runs/pretrain-1",
                     "command": "pretrain", "run_id": "pretrain-1"}],
        "data": {"data.path": "cd" * 32}, "code": {"lmforge": "0.1.0"},
        "packages": {"torch": "2.x"}, "finished": "2026-01-01T00:00:00"}), encoding="utf-8")
    evaluated = folder / "eval-validation"
    evaluated.mkdir()
    per_class = {name: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
                 for name in labels}
    (evaluated / "summary.json").write_text(json.dumps({
        "headline": validation, "metrics": {"labels": list(labels), "per_class": per_class,
                                            "confusion_matrix": [[2, 0, 0], [0, 1, 1],
                                                                 [0, 1, 1]]}}), encoding="utf-8")
    rows = [{"text": "right and sure", "label": "pos", "predicted": "pos",
             "scores": {"neg": 0.01, "pos": 0.99, EVIL: 0.0}},
            {"text": "a mild mistake", "label": "neg", "predicted": "pos",
             "scores": {"neg": 0.4, "pos": 0.6, EVIL: 0.0}},
            {"text": f"the worst mistake {EVIL}", "label": "pos", "predicted": "neg",
             "scores": {"neg": 0.95, "pos": 0.05, EVIL: 0.0}}]
    (evaluated / "predictions.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tiny_png(evaluated / "confusion_matrix.png")
    tiny_png(evaluated / "roc.png", (214, 39, 40))
    return folder
