"""Real dialogue data for the SFT benchmarks, written as lmforge ``messages`` JSONL files.

English: the BYU chit-chat corpus (``pip install --no-deps chitchat-dataset``, MIT; 7,168
two-person conversations). Each conversation's consecutive messages by one person form a
turn; the first speaker becomes ``user``, the other ``assistant``, alternating. Conversations
with fewer than ``min_turns`` turns are skipped (many in the corpus have one speaker only).
The split is by conversation id (a stable hash), so train and dev never share a conversation.

Chinese: the ``chatterbot-corpus`` package (BSD; ``pip install --no-deps chatterbot-corpus``),
its ``chinese/*.yml`` files: short question -> answer exchanges (one user and one assistant
turn, or longer alternating lists).

The package files are read in place; nothing is copied into this repository.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any


def _package_dir(package: str, pip_name: str) -> Path:
    """The installed package's folder, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"this benchmark needs {pip_name}: pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def _bucket(key: str) -> float:
    """A stable number in [0, 1) for ``key`` (the split does not depend on Python's hash)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 16**8


def chitchat_conversations(min_turns: int = 4, max_turns: int = 8) -> list[dict[str, Any]]:
    """All usable chit-chat conversations as ``{"id", "messages"}``, sorted by id."""
    data = json.loads((_package_dir("chitchat_dataset", "chitchat-dataset")
                       / "dataset.json").read_text(encoding="utf-8"))
    out = []
    for conv_id in sorted(data):
        turns = [" ".join(m["text"].strip() for m in turn if m["text"].strip())
                 for turn in data[conv_id]["messages"]]
        turns = [t for t in turns if t][:max_turns]
        if len(turns) < min_turns:
            continue
        if len(turns) % 2:  # end on an assistant turn, so the last reply is trained
            turns = turns[:-1]
        out.append({"id": conv_id, "messages": [
            {"role": "user" if i % 2 == 0 else "assistant", "content": text}
            for i, text in enumerate(turns)]})
    return out


def chatterbot_chinese() -> list[dict[str, Any]]:
    """The Chinese chatterbot-corpus exchanges as ``{"id", "messages"}``."""
    import yaml

    folder = _package_dir("chatterbot_corpus", "chatterbot-corpus") / "data" / "chinese"
    out = []
    for path in sorted(folder.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for k, pair in enumerate(doc.get("conversations") or []):
            texts = [str(t).strip() for t in pair if str(t).strip()]
            if len(texts) % 2:
                texts = texts[:-1]
            if len(texts) < 2:
                continue
            out.append({"id": f"{path.stem}-{k}", "messages": [
                {"role": "user" if i % 2 == 0 else "assistant", "content": t}
                for i, t in enumerate(texts)]})
    return out


def write_splits(conversations: list[dict[str, Any]], out_dir: Path, dev_share: float,
                 max_train: int | None = None, max_dev: int | None = None) -> dict[str, int]:
    """Write ``train.jsonl`` / ``dev.jsonl`` (split by a hash of the id); return the counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    train = [c for c in conversations if _bucket(c["id"]) >= dev_share]
    dev = [c for c in conversations if _bucket(c["id"]) < dev_share]
    train, dev = train[:max_train], dev[:max_dev]
    for name, rows in (("train", train), ("dev", dev)):
        with (out_dir / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps({"messages": row["messages"]}, ensure_ascii=False) + "\n")
    return {"train": len(train), "dev": len(dev)}
