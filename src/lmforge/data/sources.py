"""Load raw corpora (files, folders, builtin corpora, hub datasets) as ``datasets`` objects.

Everything is read through the ``datasets`` library so that the result is Arrow-backed and
memory-mapped: a corpus larger than RAM is written to the datasets cache once and then paged
in on demand. Plain-text and CoNLL files are read line by line with a generator for the same
reason.
"""

from __future__ import annotations

import codecs
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from lmforge.data.builtin import load_builtin
from lmforge.errors import DataError

logger = logging.getLogger(__name__)

FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "txt", "conll")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
    ".txt": "txt",
    ".text": "txt",
    ".conll": "conll",
}
# Stems of files in a folder that name a split; "dev" is the GLUE/CoNLL spelling of validation.
_SPLIT_STEMS = {"train": "train", "dev": "validation", "validation": "validation", "test": "test"}

AnyDatasetDict = datasets.DatasetDict | datasets.IterableDatasetDict


def load_raw(
    path: str,
    *,
    format: str | None = None,  # noqa: A002 - the config key is data.format
    columns: Sequence[str] | None = None,
    rename: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
    split_files: Mapping[str, str] | None = None,
    streaming: bool = False,
    trust_remote_code: bool = False,
) -> AnyDatasetDict:
    """Load a corpus from a file, a folder, a builtin name or the hub.

    Args:
        path: A data file, a folder of split files (``train.*``, ``dev.*``/``validation.*``,
            ``test.*``, or a single file used as train), a builtin corpus name (see
            :mod:`lmforge.data.builtin`) or a hub dataset id (tried only when ``path`` does
            not exist locally).
        format: One of ``csv, tsv, json, jsonl, parquet, txt, conll``; inferred from the
            extension when None. ``.txt`` files are plain text unless ``format="conll"``.
        columns: Keep only these columns (old or renamed names).
        rename: Map of old column name to new column name.
        encoding: Text encoding of csv/tsv/json/jsonl/txt/conll files (e.g. ``"latin-1"``).
        split_files: Explicit ``{split: file}`` map; relative files resolve against ``path``
            when it is a folder. Overrides folder discovery.
        streaming: Return an ``IterableDatasetDict`` that reads lazily.
        trust_remote_code: Kept for config compatibility; datasets>=4 no longer runs
            loading scripts, so it only logs a warning.

    Returns:
        A ``DatasetDict`` (or ``IterableDatasetDict`` when streaming) keyed by split name.

    Raises:
        DataError: A file or column is missing, a file is empty, or the hub is unreachable.
    """
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown data format '{format}'; use one of: {', '.join(FORMATS)}")
    if trust_remote_code:
        logger.warning("trust_remote_code is ignored: datasets>=4 does not run loading scripts")

    files = _resolve_split_files(path, split_files)
    if files is not None and "__saved__" in files:
        dsd = _load_saved(files["__saved__"], streaming=streaming)
        sources = {split: f"{path} ({split})" for split in dsd}
    elif files is None:
        dsd = _load_builtin_or_hub(path, streaming=streaming)
        sources = {split: path for split in dsd}
    else:
        loaded: dict[str, Any] = {}
        for split, file in files.items():
            fmt = format or _infer_format(file)
            loaded[split] = _load_file(file, fmt, encoding=encoding, streaming=streaming)
        dsd = datasets.IterableDatasetDict(loaded) if streaming else datasets.DatasetDict(loaded)
        sources = {split: Path(file).name for split, file in files.items()}
    return _select_and_rename(dsd, sources, columns=columns, rename=rename)


def _resolve_split_files(path: str, split_files: Mapping[str, str] | None) -> dict[str, str] | None:
    """Map splits to existing local files, or return None when ``path`` is not local."""
    p = Path(path).expanduser()
    if split_files:
        base = p if p.is_dir() else Path(".")
        out = {}
        for split, file in split_files.items():
            f = Path(file).expanduser()
            f = f if f.is_absolute() else base / f
            if not f.is_file():
                raise DataError(
                    f"data file for split '{split}' not found: {f}; fix data.split_files"
                )
            out[split] = str(f)
        return out
    if p.is_file():
        return {"train": str(p)}
    if p.is_dir():
        return _discover_splits(p)
    if _looks_like_local_path(path):
        raise DataError(f"data file not found: {path}; check data.path")
    return None


def _discover_splits(folder: Path) -> dict[str, str]:
    """Find ``train.*``/``dev.*``/``validation.*``/``test.*`` in a folder (or its only file)."""
    if (folder / "dataset_dict.json").exists() or (folder / "state.json").exists():
        # A folder written by save_to_disk: caller loads it with load_from_disk.
        return {"__saved__": str(folder)}
    candidates = sorted(
        f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in _EXTENSIONS
    )
    found: dict[str, str] = {}
    for f in candidates:
        split = _SPLIT_STEMS.get(f.stem.lower())
        if split is None:
            continue
        if split in found:
            raise DataError(
                f"two files for split '{split}' in {folder}: {Path(found[split]).name}, "
                f"{f.name}; set data.split_files"
            )
        found[split] = str(f)
    if found:
        order = ["train", "validation", "test"]
        return {split: found[split] for split in sorted(found, key=order.index)}
    if len(candidates) == 1:
        return {"train": str(candidates[0])}
    names = ", ".join(f.name for f in candidates) or "no data files"
    raise DataError(
        f"cannot tell the splits in {folder} ({names}); name files train.*/dev.*/test.* "
        "or set data.split_files"
    )


def _looks_like_local_path(path: str) -> bool:
    """True when a missing ``path`` is clearly a file path rather than a hub id."""
    if path.startswith((".", "/", "~")) or "\\" in path or path.count("/") > 1:
        return True
    return Path(path).suffix.lower() in _EXTENSIONS


def _infer_format(file: str) -> str:
    suffix = Path(file).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise DataError(
            f"cannot infer the format of {Path(file).name}; set data.format to one of "
            f"{', '.join(FORMATS)}"
        )
    return _EXTENSIONS[suffix]


def _load_file(file: str, fmt: str, *, encoding: str, streaming: bool) -> Any:
    """Load one file as a single ``Dataset`` (or ``IterableDataset``)."""
    if Path(file).is_dir():
        raise DataError(f"{file} is a folder, not a data file; point data.path at a file")
    if os.path.getsize(file) == 0:
        raise DataError(f"{Path(file).name} is empty; point data.path at a file with rows")
    if fmt in ("txt", "conll"):
        gen = _txt_rows if fmt == "txt" else _conll_rows
        st = os.stat(file)
        # size+mtime in gen_kwargs make the datasets cache fingerprint change with the file.
        kwargs = {"file": file, "encoding": encoding, "stamp": (st.st_size, st.st_mtime_ns)}
        features = _TXT_FEATURES if fmt == "txt" else _CONLL_FEATURES
        try:
            if streaming:
                ds = datasets.IterableDataset.from_generator(
                    gen, features=features, gen_kwargs=kwargs
                )
            else:
                ds = datasets.Dataset.from_generator(gen, features=features, gen_kwargs=kwargs)
        except UnicodeDecodeError as e:
            raise DataError(
                f"{Path(file).name} is not valid {encoding} ({e.reason}); set data.encoding"
            ) from e
        except ValueError as e:
            if "corresponds to no data" in str(e):  # the generator yielded no row
                raise DataError(
                    f"{Path(file).name} is empty (0 rows); point data.path at a file with rows"
                ) from e
            raise
        except datasets.exceptions.DatasetGenerationError as e:
            cause = e.__cause__ or e.__context__
            if isinstance(cause, UnicodeDecodeError):
                raise DataError(
                    f"{Path(file).name} is not valid {encoding}; set data.encoding"
                ) from e
            raise
    else:
        ds = _load_table_file(file, fmt, encoding=encoding, streaming=streaming)
    if not streaming and ds.num_rows == 0:
        raise DataError(f"{Path(file).name} is empty (0 rows); point data.path at a file with rows")
    return ds


def _load_table_file(file: str, fmt: str, *, encoding: str, streaming: bool) -> Any:
    """Load csv/tsv/json/parquet through the packaged ``datasets`` builders."""
    builder = {"tsv": "csv", "jsonl": "json"}.get(fmt, fmt)
    kwargs: dict[str, Any] = {}
    if fmt in ("csv", "tsv"):
        kwargs["encoding"] = encoding
        # keep_default_na=False: a review that says "NA" or "null" is text, not a missing value.
        kwargs["keep_default_na"] = False
        if fmt == "tsv":
            kwargs["sep"] = "\t"
    elif fmt in ("json", "jsonl"):
        # datasets hands a file whose encoding is spelled "utf-8" to pyarrow undecoded, and
        # pyarrow keeps invalid bytes in its strings (a traceback when a row is read): any other
        # spelling of the name makes datasets decode each chunk strictly first, so a
        # non-UTF-8 file fails here, as a DataError. Other encodings are decoded the same way.
        try:
            utf8 = codecs.lookup(encoding).name == "utf-8"
        except LookupError:
            raise DataError(f"unknown data.encoding {encoding!r}; e.g. utf-8, latin-1, "
                            "gbk") from None
        kwargs["encoding"] = "utf_8" if utf8 else encoding
    try:
        return datasets.load_dataset(
            builder, data_files={"train": file}, split="train", streaming=streaming, **kwargs
        )
    except ValueError as e:
        if "corresponds to no data" in str(e):
            raise DataError(
                f"{Path(file).name} is empty (0 rows); point data.path at a file with rows"
            ) from e
        if isinstance(e, UnicodeDecodeError):  # json / jsonl, decoded by datasets (see above)
            raise DataError(
                f"{Path(file).name} is not valid {encoding} ({e.reason}); set data.encoding"
            ) from e
        raise DataError(f"cannot read {Path(file).name} as {fmt}: {_first_line(e)}") from e
    except datasets.exceptions.DatasetGenerationError as e:
        cause = e.__cause__ or e.__context__ or e
        hint = "set data.encoding" if isinstance(cause, UnicodeDecodeError) else "check data.format"
        raise DataError(
            f"cannot read {Path(file).name} as {fmt} ({_first_line(cause)}); {hint}"
        ) from e


_STRINGS = datasets.List(datasets.Value("string"))
_TXT_FEATURES = datasets.Features(
    {"text": datasets.Value("string"), "doc_id": datasets.Value("int64")}
)
_CONLL_FEATURES = datasets.Features({"tokens": _STRINGS, "tags": _STRINGS})


def _txt_rows(file: str, encoding: str, stamp: Any = None) -> Iterator[dict[str, Any]]:
    """Yield non-empty lines; ``doc_id`` increments at each run of blank lines.

    Documents matter for next-sentence / sentence-order prediction, which pair sentences from
    the same document, so blank lines are kept as boundaries rather than rows.
    """
    doc_id, in_gap = 0, False
    with open(file, encoding=encoding) as f:
        for line in f:
            text = line.rstrip("\r\n")
            if not text.strip():
                in_gap = True
                continue
            if in_gap:
                doc_id += 1
                in_gap = False
            yield {"text": text, "doc_id": doc_id}


def _conll_rows(file: str, encoding: str, stamp: Any = None) -> Iterator[dict[str, Any]]:
    """Yield one sentence per blank-line-separated block: first field is the token, last the tag."""
    tokens: list[str] = []
    tags: list[str] = []
    with open(file, encoding=encoding) as f:
        for line in f:
            fields = line.split()
            if not fields:
                if tokens:
                    yield {"tokens": tokens, "tags": tags}
                    tokens, tags = [], []
                continue
            if fields[0] == "-DOCSTART-":
                continue
            tokens.append(fields[0])
            # A bare token line has no tag; "O" keeps tokens and tags aligned.
            tags.append(fields[-1] if len(fields) > 1 else "O")
    if tokens:
        yield {"tokens": tokens, "tags": tags}


def _load_builtin_or_hub(path: str, *, streaming: bool) -> AnyDatasetDict:
    """Load a builtin corpus by name, else try the hub (only if online)."""
    builtin = load_builtin(path, streaming=streaming)
    if builtin is not None:
        return builtin
    offline = datasets.config.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "0").upper() in {
        "1",
        "ON",
        "YES",
        "TRUE",
    }
    if offline:
        raise DataError(
            f"'{path}' does not exist locally and the hub is unreachable (HF_HUB_OFFLINE is set); "
            "check data.path"
        )
    try:
        dsd = datasets.load_dataset(path, streaming=streaming)
    except Exception as e:  # the hub raises many types (ConnectionError, HfHubHTTPError, ...)
        raise DataError(
            f"'{path}' does not exist locally and the hub could not load it "
            f"({type(e).__name__}: {_first_line(e)}); check data.path"
        ) from e
    if not isinstance(dsd, datasets.DatasetDict | datasets.IterableDatasetDict):
        dsd = (datasets.IterableDatasetDict if streaming else datasets.DatasetDict)({"train": dsd})
    return dsd


def _load_saved(folder: str, *, streaming: bool) -> AnyDatasetDict:
    """Load a folder written by ``save_to_disk`` (memory-mapped)."""
    loaded = datasets.load_from_disk(folder)
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    if streaming:
        return datasets.IterableDatasetDict(
            {split: ds.to_iterable_dataset() for split, ds in loaded.items()}
        )
    return loaded


def _column_names(ds: Any) -> list[str]:
    names = ds.column_names
    if names is None:
        # A streaming dataset whose features are not resolved yet: peek at one row.
        first = next(iter(ds), None)
        names = list(first) if first is not None else []
    return list(names)


def _select_and_rename(
    dsd: AnyDatasetDict,
    sources: Mapping[str, str],
    *,
    columns: Sequence[str] | None,
    rename: Mapping[str, str] | None,
) -> AnyDatasetDict:
    """Apply ``rename`` then keep ``columns`` (given as old or new names), per split."""
    if not columns and not rename:
        return dsd
    rename = dict(rename or {})
    out = {}
    for split, ds in dsd.items():
        available = _column_names(ds)
        where = sources.get(split, split)
        for old in rename:
            if old not in available:
                raise DataError(
                    f"column '{old}' not found in {where} (columns: {', '.join(available)}); "
                    "fix data.rename"
                )
        if rename:
            ds = ds.rename_columns(rename)
        if columns:
            wanted = [rename.get(c, c) for c in columns]
            renamed = [rename.get(c, c) for c in available]
            for c in wanted:
                if c not in renamed:
                    raise DataError(
                        f"column '{c}' not found in {where} (columns: {', '.join(renamed)}); "
                        "fix data.columns"
                    )
            ds = ds.select_columns(list(dict.fromkeys(wanted)))
        out[split] = ds
    return type(dsd)(out)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= 160 else line[:157] + "..."
