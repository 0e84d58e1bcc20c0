"""HTML pieces of a run report: escaped text, tables, embedded pictures, collapsible blocks.

Every string a run provides (config values, label names, example texts, file names) goes
through :func:`esc` before it reaches the page, so a run cannot inject markup or script into
the report a colleague opens. The pieces return HTML strings that are safe to concatenate;
a stage's report section is built from them and never formats run data into markup itself.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PICTURE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
                 ".jpeg": "image/jpeg"}
"""Picture files a report embeds (as data URIs: the page stays one self-contained file)."""

MAX_CELL_CHARS = 240
"""Longer cell values are cut (with an ellipsis): a long generated text must not make one
row of an examples table a screenful."""


@dataclass(frozen=True)
class Section:
    """One titled part of a report, contributed by the stage that made the run.

    Attributes:
        title: The heading (plain text; escaped when rendered).
        body: Safe HTML, built with the helpers of this module.
    """

    title: str
    body: str


def esc(value: Any) -> str:
    """``value`` as escaped HTML text (quotes too: safe inside attributes)."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A compact, readable form of a metric or config value (not yet escaped)."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "null"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:g}"
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS - 1] + "…"


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]],
          numeric: bool = True, css: str = "") -> str:
    """An HTML table; cells are formatted with :func:`fmt` and escaped.

    Args:
        header: Column titles.
        rows: One sequence of cell values per row.
        numeric: Right-align number cells.
        css: Extra class names of the table.
    """
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for value in row:
            number = numeric and isinstance(value, (int, float)) and not isinstance(value, bool)
            cells.append(f"<td class=\"num\">{esc(fmt(value))}</td>" if number
                         else f"<td>{esc(fmt(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    cls = f" class=\"{esc(css)}\"" if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv_table(values: Mapping[str, Any]) -> str:
    """A two-column table of ``key: value`` pairs."""
    return table(("key", "value"), values.items(), css="kv")


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The real-number entries of a flat mapping (bools are not numbers here)."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def picture(path: Path, alt: str) -> str:
    """An ``<img>`` holding the picture file itself as a data URI ("" for other files)."""
    kind = PICTURE_TYPES.get(path.suffix.lower())
    if kind is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src=\"data:{kind};base64,{data}\" alt=\"{esc(alt)}\">"
            f"<figcaption>{esc(alt)}</figcaption></figure>")


def pictures(paths: Iterable[Path]) -> str:
    """The pictures among ``paths``, side by side (captioned with their file names)."""
    figures = [picture(p, p.stem.replace("_", " ")) for p in sorted(paths)]
    figures = [f for f in figures if f]
    return f"<div class=\"pictures\">{''.join(figures)}</div>" if figures else ""


def details(title: str, body: str, open_: bool = False) -> str:
    """A collapsible block (``<details>``) titled ``title``."""
    flag = " open" if open_ else ""
    return f"<details{flag}><summary>{esc(title)}</summary>{body}</details>"


def pre(text: str) -> str:
    """Preformatted, escaped text (a config file, a markdown table)."""
    return f"<pre>{esc(text)}</pre>"


def note(text: str) -> str:
    """A short explanatory line."""
    return f"<p class=\"note\">{esc(text)}</p>"


def read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (bad lines skipped: a killed run's last line)."""
    rows: list[dict[str, Any]] = []
    if not path.is_file():
        return rows
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    return rows


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file ({} when it is missing or not an object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def examples_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Example predictions as a table whose columns are the rows' keys (first seen first)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return table(columns, ([row.get(c, "") for c in columns] for row in rows),
                 css="examples")
