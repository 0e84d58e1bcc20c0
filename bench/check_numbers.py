"""Check that every number in a BENCHMARKS.md table comes from the raw results it names.

The rule (issue 17): each table sits under a line (the nearest such line above it in the same
section; prose about the protocol may stand between them)

    Source: [bench/results/NAME.json](bench/results/NAME.json) · command: `python bench/...`

and every number in the table appears in that raw file, rounded as the table shows it. A
Source line may name several raw files (a table that gathers runs of one script); a number
must then appear in one of them.

How a table cell is read:

* Numbers are the tokens that look like results: ``3,401``, ``48 %``, ``0.33 %``, ``1.55x``,
  ``2.9e-6``, ``+0.23``, both sides of ``58.3 ± 3.1`` and of ``79.1 / 67.4``. Digits glued to
  letters are names, not results (``MiniLM-L6``, ``TREC-6``, ``F1``, ``p50``, ``8k``), and so is
  everything inside backticks.
* A number matches a raw value ``v`` when ``v`` or ``100 * v`` (a fraction shown as a percent)
  rounds to it at the precision shown: ``77.2`` matches 0.7717889 and 77.17, ``119`` matches
  119.46, ``2.9e-6`` matches 2.87e-6.
* Raw values are every number in the JSON (nested objects and lists included; numeric strings
  too), or every number token of a ``.md`` / text source.
* The header row is not checked (column names, not results).
* Numbers that are not results (a model shape in a row label, a k in a setting) are
  whitelisted per table with an HTML comment between the Source line and the table:
  ``<!-- check_numbers ignore: 4, 256 (BERT-mini shape in the row labels) -->``.

Usage: python bench/check_numbers.py [BENCHMARKS.md ...]   (exit 1 and a line per problem)
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_RE = re.compile(r"^\s*Source:\s*(?P<rest>.*)$")
LINK_RE = re.compile(r"\[[^\]]*\]\((?P<path>[^)\s]+)\)")
IGNORE_RE = re.compile(r"<!--\s*check_numbers\s+ignore:\s*(?P<items>[^(>]*?)\s*(?:\(.*)?-->")
CODE_RE = re.compile(r"`[^`]*`")
NUMBER_RE = re.compile(
    r"(?P<sign>[+\-\u2212])?"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?P<exp>[eE][+\-\u2212]?\d+)?"
    r"(?P<unit>\s?%|x(?![A-Za-z0-9_])|\u00d7)?"
)


@dataclass(frozen=True)
class Number:
    """One number as a table shows it: its text, value and the rounding step it implies."""

    text: str
    value: float
    step: float  # 10^-decimals (scaled by the exponent in scientific notation)

    def matches(self, raw: float) -> bool:
        """True if ``raw`` (or ``100 * raw``, a fraction shown as a percent) rounds to this."""
        tol = self.step / 2 * (1 + 1e-9) + 1e-12
        return any(math.isfinite(c) and abs(c - self.value) <= tol for c in (raw, 100 * raw))


@dataclass
class Table:
    """A markdown table of BENCHMARKS.md with what precedes it."""

    line: int  # 1-based line of the header row
    heading: str
    rows: list[list[str]]  # body rows (cells), header and separator excluded
    header: list[str]
    sources: list[str] = field(default_factory=list)
    source_line: int | None = None
    ignore: set[str] = field(default_factory=set)


def parse_number(match: re.Match[str]) -> Number:
    """A :class:`Number` from a NUMBER_RE match."""
    digits = match["digits"].replace(",", "")
    sign = -1.0 if match["sign"] in ("-", "\u2212") else 1.0
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    exponent = int(match["exp"][1:].replace("\u2212", "-")) if match["exp"] else 0
    value = sign * float(f"{digits}e{exponent}")  # 1e400 -> inf, not an OverflowError
    return Number(match.group(0).strip(), value, float(f"1e{exponent - decimals}"))


def numbers_in(text: str) -> Iterator[Number]:
    """The result-like numbers of a cell (see the module docstring for what counts)."""
    text = CODE_RE.sub(" ", text).replace("**", " ").replace("\u00a0", " ")
    for match in NUMBER_RE.finditer(text):
        start = match.start()
        before = text[start - 1] if start > 0 else " "
        after = text[match.end()] if match.end() < len(text) else " "
        if before.isalnum() or before in "._":
            continue  # L6, F1, 1.2.3, v2: part of a name
        if not match["sign"] and before in "-\u2212" and start > 1 and text[start - 2].isalnum():
            continue  # TREC-6 (the sign would have been taken if it were a minus)
        if not match["unit"] and (after.isalnum() or after == "_"):
            continue  # 8k, 22.7M, 5th: a name or a unit glued on
        yield parse_number(match)


def raw_values(path: Path) -> list[float]:
    """Every number in a raw results file (JSON leaves, or number tokens of a text file)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".json":
        return [n.value for n in numbers_in(text)]
    out: list[float] = []

    def walk(node: object) -> None:
        if isinstance(node, bool) or node is None:
            return
        if isinstance(node, int | float):
            out.append(float(node))
        elif isinstance(node, str):
            with contextlib.suppress(ValueError):  # "5e-5" stored as text
                out.append(float(node))
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(text))
    return out


def _cells(line: str) -> list[str]:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    # A backslash-escaped pipe (\|) is text inside a cell, not a separator.
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def _is_separator(line: str) -> bool:
    return bool(re.fullmatch(r"\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*", line))


def find_tables(lines: list[str]) -> list[Table]:
    """Tables with their Source line and ignore comments (looked for above the header)."""
    tables: list[Table] = []
    heading = ""
    in_code = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if in_code:
            i += 1
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _is_separator(lines[i + 1]):
            table = Table(line=i + 1, heading=heading, rows=[], header=_cells(line))
            # The nearest Source line above the table in the same section (prose about the
            # protocol may stand between them); ignore comments anywhere in between count.
            j = i - 1
            while j >= 0 and not lines[j].startswith("#") and not lines[j].lstrip(
                    ).startswith("|"):
                if (found := IGNORE_RE.search(lines[j])) is not None:
                    table.ignore |= {t for t in re.split(r"[,\s]+", found["items"]) if t}
                if (source := SOURCE_RE.match(lines[j])) is not None:
                    table.source_line = j + 1
                    table.sources = [m["path"] for m in LINK_RE.finditer(source["rest"])]
                    break
                j -= 1
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                table.rows.append(_cells(lines[i]))
                i += 1
            tables.append(table)
            continue
        i += 1
    return tables


def check_table(table: Table, base: Path) -> list[str]:
    """Problems of one table: no Source line, a missing raw file, numbers not found."""
    where = f"table at line {table.line} (under '{table.heading}')"
    if table.source_line is None:
        return [f"{where}: no 'Source: [bench/results/NAME.json](...)' line above it in its "
                "section"]
    if not table.sources:
        return [f"{where}: its Source line (line {table.source_line}) links no raw file"]
    values: list[float] = []
    problems = []
    for source in table.sources:
        path = (base / source).resolve()
        if not path.is_file():
            problems.append(f"{where}: source {source} does not exist")
            continue
        try:
            values += raw_values(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            problems.append(f"{where}: source {source} is not readable JSON/text ({e})")
    if problems:
        return problems
    names = ", ".join(table.sources)
    for row in table.rows:
        label = row[0] if row else ""
        for col, cell in enumerate(row):
            column = table.header[col] if col < len(table.header) else f"column {col + 1}"
            for number in numbers_in(cell):
                if number.text in table.ignore or number.text.rstrip("%x\u00d7 ") in table.ignore:
                    continue
                if not any(number.matches(v) for v in values):
                    problems.append(f"{where}, row '{label}', column '{column}': "
                                    f"{number.text} not found in {names}")
    return problems


def check_file(path: Path) -> list[str]:
    """All problems of one markdown file (sources are relative to the file's folder)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    problems = []
    for table in find_tables(lines):
        problems += [f"{path.name}: {p}" for p in check_table(table, path.parent)]
    return problems


def main(argv: Iterable[str] | None = None) -> int:
    """Check the given markdown files (default: BENCHMARKS.md); print problems, return 1 if any."""
    files = [Path(a) for a in (list(argv) if argv is not None else sys.argv[1:])] \
        or [ROOT / "BENCHMARKS.md"]
    problems = [p for f in files for p in check_file(f)]
    for problem in problems:
        print(problem)
    if not problems:
        tables = sum(len(find_tables(f.read_text(encoding="utf-8").splitlines())) for f in files)
        print(f"ok: every number of {tables} tables found in its source")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
