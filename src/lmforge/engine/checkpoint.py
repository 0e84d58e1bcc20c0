"""Resumable checkpoints, written atomically.

Layout of one checkpoint (``<run>/checkpoints/step-00000120/``)::

    model.safetensors      weights (shared / tied tensors handled by safetensors.torch)
    optimizer.pt           optimizer state_dict (tensors and numbers only)
    scheduler.pt           LR scheduler state_dict
    rng-rank<R>.pt         torch / numpy / python RNG state of each process
    state.json             step, epoch, position in the epoch, tokens seen, best metric

Under FSDP (:mod:`lmforge.engine.sharding`) ``model.safetensors`` is the same full file,
gathered on rank 0, and the optimizer state is accelerate's: ``optimizer_0/`` (one shard per
rank) or ``optimizer.bin`` (full), per ``fsdp_state_dict_type``.

Everything is first written to ``.tmp-step-…`` and then renamed, so a run killed mid-save
leaves either the previous checkpoint or the new one, never half of one. Loading uses
``torch.load(weights_only=True)``: no arbitrary unpickling.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from lmforge.runs import CHECKPOINT_PREFIX as PREFIX


@dataclass
class TrainState:
    """Position of a training run; saved in every checkpoint."""

    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of the current epoch already consumed (this rank)
    tokens_seen: int = 0
    best_metric: float | None = None
    best_step: int | None = None


def rng_state() -> dict[str, Any]:
    """Capture the RNG state of torch, numpy and python as weights_only-loadable values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
            and (p / "state.json").is_file()]
    return sorted(dirs, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


def tmp_dir_for(root: Path, step: int) -> Path:
    """The temporary folder a checkpoint of ``step`` is written into before the rename."""
    return root / f".tmp-{PREFIX}{step:08d}"


def write_rank_rng(tmp: Path, rank: int) -> None:
    """Each process writes its own RNG state into the checkpoint being assembled."""
    torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")


def write_checkpoint(root: Path, tmp: Path, model: torch.nn.Module | None,
                     optimizer: torch.optim.Optimizer | None, scheduler: Any,
                     state: TrainState) -> Path:
    """Write weights, optimizer, scheduler and state into ``tmp``, then rename it into place.

    Args:
        root: The ``checkpoints`` folder.
        tmp: The temporary folder from :func:`tmp_dir_for` (RNG files already inside).
        model: The unwrapped model (None: its weights are in ``tmp`` already, as FSDP
            writes them).
        optimizer: The optimizer (None: its state is in ``tmp`` already).
        scheduler: The LR scheduler.
        state: The run position.

    Returns:
        The final checkpoint folder.
    """
    if model is not None:
        save_model(model, str(tmp / "model.safetensors"))
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2))
    for f in tmp.rglob("*"):  # rglob: FSDP's sharded optimizer state is a folder
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    final = root / f"{PREFIX}{state.global_step:08d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    return final


def load_checkpoint(path: Path, model: torch.nn.Module | None,
                    optimizer: torch.optim.Optimizer | None, scheduler: Any,
                    rank: int) -> TrainState:
    """Restore a checkpoint written by :func:`write_checkpoint` into live objects.

    A None ``model`` / ``optimizer`` is left to the caller (FSDP restores its shards).
    """
    if model is not None:
        load_model(model, str(path / "model.safetensors"))
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng_file = path / f"rng-rank{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=True))
    return TrainState(**json.loads((path / "state.json").read_text()))


def prune(root: Path, keep_last: int, best_step: int | None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints, always keeping the best one."""
    dirs = checkpoint_dirs(root)
    keep = {p for p in dirs[-keep_last:]}
    for p in dirs:
        if p not in keep and (best_step is None or p.name != f"{PREFIX}{best_step:08d}"):
            shutil.rmtree(p, ignore_errors=True)
    for stale in root.glob(f".tmp-{PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
