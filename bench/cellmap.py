"""The cell map of a BENCHMARKS.md table: which raw value each shown number is, and how shown.

A table is mapped by an HTML comment block (invisible when rendered) between its ``Source:``
line and the table::

    <!-- cells
    rows: rows.lmforge | rows.hf_trainer
    steps: steps int
    tokens/s: {row}.tokens_per_s int
    val masked acc.: {row}.val_accuracy f4
    MFU (bf16 peak): {row}.mfu pct1
    speed-up: ratio({row}.tokens_per_s, rows.hf_trainer.tokens_per_s) f2
    [2] speed-up: -
    -->

Lines of the block:

* ``rows: P1 | P2 | ...``: the prefix that ``{row}`` stands for in each body row, in order
  (several ``rows:`` lines continue the list; ``-`` for a row without one). A prefix
  ``FILE.json:`` stands for a whole source file (one file per row): ``{row}.key`` is then
  ``FILE.json:key``.
* ``COLUMN: SPEC``: every body cell of the column whose header reads COLUMN (exactly, as in
  the table; ``: SPEC`` for a column with an empty header). ``[N] COLUMN: SPEC`` maps the
  cell of body row N (1-based) only and wins over the column line.
* SPEC is ``-`` (the numbers of these cells are not results: names, settings in a label),
  ``?`` (not mapped yet: only the old pooled check applies) or one ``VALUE FORMAT`` per
  number of the cell, separated by ``;`` (``58.3 ± 3.1`` is ``{row}.mean pct1; {row}.std
  pct1``).

A VALUE is a path into a source file, a number, or a named function of values:

* Path: ``FILE.json:key.key.0.key``, where FILE is the file name of one of the table's
  sources (without ``FILE.json:`` the first source; a markdown source ``FILE.md:`` is read
  as ``tables`` and ``numbers``, see :func:`markdown_data`). A segment is a dict key (in double
  quotes if it holds a dot), a list index, or ``[field=text]`` (``[f=a&g="b c"]``): the
  one element of a list of dicts whose ``field`` reads ``text``; ``[len]`` as the last
  segment is the number of elements of the list (or keys of the dict) before it.
* Functions (:data:`FUNCTIONS`): ``ratio(a, b)`` = a / b, ``diff(a, b)`` = a - b,
  ``change(a, b)`` = a / b - 1, ``sum(...)``, ``mean(...)``, ``mul(a, b)``, ``min(...)``,
  ``max(...)``, ``neg(a)``, ``abs(a)``.

A FORMAT says how the value is shown: ``int`` (rounded to a whole number), ``fN`` (N
decimals), ``pctN`` (100 x the value, N decimals), ``xN`` (a ratio, N decimals), ``eN``
(scientific, N decimals in the mantissa), ``rN`` (rounded to N decimals and shown as Python
prints it: 0.9 for 0.9, 0.45 for 0.449; for files that store rounded values); ``*K`` or
``/K`` after it scales the value first (``f1*1000``: seconds shown as milliseconds). A shown
number matches when it has exactly the format's decimals and is the scaled value as Python
rounds it (``f"{v:.Nf}"``; at a tie such as 2090.5 only 2090 passes, not 2091).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BLOCK_RE = re.compile(r"<!--\s*cells\b(?P<body>.*?)-->", re.DOTALL)
CELL_LINE_RE = re.compile(r"^(?:\[(?P<row>\d+)\]\s*)?(?P<column>.*?):\s+(?P<spec>\S.*)$")
FORMAT_RE = re.compile(r"^(?P<kind>int|f|pct|x|e|r)(?P<decimals>\d?)"
                       r"(?:(?P<op>[*/])(?P<scale>[0-9.eE+-]+))?$")
TOKEN_RE = re.compile(r'\s*(?:(?P<punct>[(),])|(?P<word>(?:[^\s(),"]|"[^"]*")+))')
SEGMENT_RE = re.compile(r'"(?P<quoted>[^"]*)"|\[(?P<filter>[^\]]+)\]|(?P<plain>[^.\["]+)')

FUNCTIONS: dict[str, Callable[..., float]] = {
    "ratio": lambda a, b: a / b,
    "diff": lambda a, b: a - b,
    "change": lambda a, b: a / b - 1,
    "mul": lambda a, b: a * b,
    "sum": lambda *a: math.fsum(a),
    "mean": lambda *a: math.fsum(a) / len(a),
    "min": min,
    "max": max,
    "neg": lambda a: -a,
    "abs": abs,
}


class MapError(ValueError):
    """A cell map that cannot be read or evaluated (a bad line, path or format)."""


@dataclass(frozen=True)
class Format:
    """How a raw value is shown: scale, decimals, scientific or not."""

    text: str
    decimals: int
    scale: float = 1.0
    scientific: bool = False
    stored: bool = False  # rN: round(value, N) as Python prints it (0.9, not 0.90)

    def shown(self, raw: float) -> str:
        """The raw value as this format shows it (for messages)."""
        value = raw * self.scale
        if self.scientific:
            return f"{value:.{self.decimals}e}"
        if self.stored:
            return repr(round(value, self.decimals))
        return f"{value:,.{self.decimals}f}"

    def matches(self, text: str, value: float, step: float, raw: float) -> bool:
        """True if a shown number (its text, value and rounding step) shows ``raw``."""
        if self.scientific != ("e" in text.lower()):
            return False
        want = raw * self.scale
        if not math.isfinite(want):
            return False
        if self.stored:
            return step >= 10.0 ** -self.decimals * (1 - 1e-9) and math.isclose(
                value, round(want, self.decimals), rel_tol=1e-12, abs_tol=1e-12)
        if self.scientific:
            exponent = math.floor(math.log10(abs(value))) if value else 0
            if not math.isclose(step, 10.0 ** (exponent - self.decimals)):
                return False
        elif not math.isclose(step, 10.0 ** -self.decimals):
            return False  # 77.40 is not 77.4: the format fixes the decimals shown
        if abs(want - value) > step / 2 * (1 + 1e-9) + 1e-12:
            return False
        if self.scientific:
            return True
        # At a tie (2090.5 shown as a whole number) only Python's own rounding passes, so that
        # moving the last digit by one fails on both sides.
        return math.isclose(value, float(f"{want:.{self.decimals}f}"), abs_tol=step / 1e6)


def parse_format(text: str) -> Format:
    """A :class:`Format` from its name (``int``, ``f3``, ``pct1``, ``x2``, ``e1``, ``f1*1000``)."""
    found = FORMAT_RE.match(text)
    if found is None or (found["kind"] != "int" and not found["decimals"]) or (
            found["kind"] == "int" and found["decimals"]):
        raise MapError(f"unknown format {text!r} (int, fN, pctN, xN, eN, optionally *K or /K)")
    scale = 100.0 if found["kind"] == "pct" else 1.0
    if found["op"]:
        factor = float(found["scale"])
        scale = scale * factor if found["op"] == "*" else scale / factor
    decimals = int(found["decimals"] or 0)
    return Format(text, decimals, scale, found["kind"] == "e", found["kind"] == "r")


@dataclass
class CellSpec:
    """What one cell's numbers are: ``-`` (not results), ``?`` (unmapped) or value/format pairs."""

    kind: str  # "values", "none" (-) or "unmapped" (?)
    items: list[tuple[str, Format]] = field(default_factory=list)


@dataclass
class TableMap:
    """The cell map of one table, read from its ``<!-- cells ... -->`` block."""

    rows: list[str] = field(default_factory=list)
    columns: dict[str, CellSpec] = field(default_factory=dict)
    cells: dict[tuple[int, str], CellSpec] = field(default_factory=dict)

    def spec(self, row: int, column: str) -> CellSpec | None:
        """The spec of body row ``row`` (1-based) in ``column``, or None if unmapped."""
        return self.cells.get((row, column), self.columns.get(column))

    def prefix(self, row: int) -> str | None:
        """What ``{row}`` stands for in body row ``row`` (1-based); None if not given."""
        if row > len(self.rows) or self.rows[row - 1] == "-":
            return None
        return self.rows[row - 1]


def parse_spec(text: str) -> CellSpec:
    """A :class:`CellSpec` from the text after ``COLUMN:``."""
    text = text.strip()
    if text == "-":
        return CellSpec("none")
    if text == "?":
        return CellSpec("unmapped")
    items = []
    for part in text.split(";"):
        value, _, fmt = part.strip().rpartition(" ")
        if not value.strip():
            raise MapError(f"{part.strip()!r}: want 'VALUE FORMAT'")
        items.append((value.strip(), parse_format(fmt)))
    return CellSpec("values", items)


def parse_block(body: str, header: list[str]) -> TableMap:
    """The :class:`TableMap` of a block's body; column names are checked against the header."""
    table_map = TableMap()
    for raw_line in body.splitlines():
        line = raw_line.strip()
        if not line:
            continue
        if line.startswith("rows:"):
            table_map.rows += [p.strip() for p in line[len("rows:"):].split("|")]
            continue
        found = CELL_LINE_RE.match(line)
        if found is None:
            raise MapError(f"cannot read cell map line {line!r}")
        column = found["column"].strip()
        if column not in header:
            raise MapError(f"cell map names column {column!r}, not in the header {header}")
        spec = parse_spec(found["spec"])
        if found["row"]:
            table_map.cells[(int(found["row"]), column)] = spec
        else:
            table_map.columns[column] = spec
    return table_map


def find_block(text: str, header: list[str]) -> TableMap | None:
    """The cell map in ``text`` (what stands between a Source line and its table), if any."""
    found = BLOCK_RE.search(text)
    return None if found is None else parse_block(found["body"], header)


def markdown_data(text: str) -> dict[str, list]:
    """A markdown results file (written by the program that measured, e.g. ``lmforge
    prompt``'s ``results.md``) as data: ``tables.N`` is its N-th table as a list of rows, each
    a dict from header to cell text (``tables.0[prompt=it_was].accuracy``), and ``numbers.N``
    the N-th number of the text outside the tables (``numbers.1``: the 34 of "...; 34 s.")."""
    from prosemap import prose_numbers  # imported here: prosemap imports this module

    tables: list[list[dict[str, str]]] = []
    numbers: list[float] = []
    header: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("|"):
            header = None
            numbers += [n.value for n in prose_numbers(line)]
            continue
        cells = [c.strip() for c in stripped.strip("|").split("|")]
        if header is None:
            header = cells
            tables.append([])
        elif not all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
            tables[-1].append(dict(zip(header, cells, strict=False)))
    return {"tables": tables, "numbers": numbers}


class Sources:
    """The parsed JSON of a table's source files, looked up by file name."""

    def __init__(self, paths: list[Path]) -> None:
        """Remember the paths; files are read on first use."""
        self.paths = paths
        self._loaded: dict[str, object] = {}

    def data(self, name: str | None) -> tuple[str, object]:
        """The file name and parsed JSON of source ``name`` (None: the first source)."""
        path = self.paths[0] if name is None else next(
            (p for p in self.paths if p.name == name), None)
        if path is None:
            raise MapError(f"{name} is not one of the sources (Source line or nums block)")
        if path.suffix not in (".json", ".md"):
            raise MapError(f"{path.name}: only JSON and markdown sources can be mapped")
        if path.name not in self._loaded:
            text = path.read_text(encoding="utf-8")
            self._loaded[path.name] = json.loads(text) if path.suffix == ".json" else \
                markdown_data(text)
        return path.name, self._loaded[path.name]

    def lookup(self, ref: str) -> float:
        """The number at ``FILE.json:path`` (or ``path`` in the first source)."""
        name, sep, path = ref.partition(":")
        if not sep or not name.endswith((".json", ".md")):
            name, path = None, ref  # type: ignore[assignment]
        file_name, node = self.data(name)
        for found in SEGMENT_RE.finditer(path):
            node = _step(node, found, f"{file_name}:{path}")
        if isinstance(node, str):
            try:
                node = float(node)
            except ValueError:
                raise MapError(f"{file_name}:{path} is the text {node!r}, not a number") from None
        if isinstance(node, bool) or not isinstance(node, int | float):
            raise MapError(f"{file_name}:{path} is not a number ({type(node).__name__})")
        return float(node)


def _step(node: object, segment: re.Match[str], where: str) -> object:
    """One path segment down from ``node``."""
    if segment["filter"] == "len":
        if not isinstance(node, list | dict):
            raise MapError(f"{where}: [len] needs a list or a dict")
        return len(node)
    if segment["filter"] is not None:
        pairs = [p.partition("=") for p in segment["filter"].split("&")]
        if not isinstance(node, list) or any(not sep for _, sep, _ in pairs):
            raise MapError(f"{where}: [{segment['filter']}] needs a list and field=text pairs")
        hits = [e for e in node if isinstance(e, dict)
                and all(str(e.get(k.strip())) == v.strip().strip('"') for k, _, v in pairs)]
        if len(hits) != 1:
            raise MapError(f"{where}: {len(hits)} elements with {segment['filter']}")
        return hits[0]
    key = segment["quoted"] if segment["quoted"] is not None else segment["plain"]
    if isinstance(node, list) and key.isdigit() and int(key) < len(node):
        return node[int(key)]
    if isinstance(node, dict) and key in node:
        return node[key]
    raise MapError(f"{where}: no key {key!r}")


def evaluate(expr: str, sources: Sources) -> float:
    """The value of a VALUE expression (path, number or function call)."""
    tokens = [(m["punct"] or m["word"]) for m in TOKEN_RE.finditer(expr) if m.group(0).strip()]
    position = 0

    def parse() -> float:
        nonlocal position
        if position >= len(tokens):
            raise MapError(f"{expr!r}: ends too early")
        token = tokens[position]
        position += 1
        if position < len(tokens) and tokens[position] == "(":
            if token not in FUNCTIONS:
                raise MapError(f"{expr!r}: unknown function {token!r} ({', '.join(FUNCTIONS)})")
            position += 1
            args = [parse()]
            while position < len(tokens) and tokens[position] == ",":
                position += 1
                args.append(parse())
            if position >= len(tokens) or tokens[position] != ")":
                raise MapError(f"{expr!r}: missing ')'")
            position += 1
            try:
                return float(FUNCTIONS[token](*args))
            except (TypeError, ZeroDivisionError) as e:
                raise MapError(f"{expr!r}: {token}: {e}") from None
        try:
            return float(token)
        except ValueError:
            return sources.lookup(token)

    value = parse()
    if position != len(tokens):
        raise MapError(f"{expr!r}: unexpected {' '.join(tokens[position:])!r}")
    return value


def expand(value: str, prefix: str | None) -> str:
    """``value`` with ``{row}`` replaced by the row's prefix."""
    if "{row}" not in value:
        return value
    if prefix is None:
        raise MapError(f"{value!r} uses {{row}} but the 'rows:' line gives none for this row")
    if prefix.endswith(":"):  # a whole file per row: {row}.key is FILE.json:key
        return value.replace("{row}.", prefix).replace("{row}", prefix)
    return value.replace("{row}", prefix)
