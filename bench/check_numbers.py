"""Check every number of BENCHMARKS.md and README.md, tables and prose, against raw results.

Tables (issue 17): each table sits under a line (the nearest such line above it in the same
section; prose about the protocol may stand between them)

    Source: [bench/results/NAME.json](bench/results/NAME.json) · command: `python bench/...`

Mapped tables (the goal for all): a ``<!-- cells ... -->`` block between the Source line and
the table maps every cell, by row and column, to a JSON path of a source (or a named
function of such values, e.g. a ratio) and a format (``int``, ``f3``, ``pct1``, ...); the
block's syntax is described in ``bench/cellmap.py``. A mapped number must be the value its
cell names, rounded as its format says: a swapped pair, a changed digit or a number with no
key fails. A table without a Source line and without numbers (once its ignore list is
applied) is text, not results (a feature table), and is not checked.

Unmapped tables (no block yet, or cells marked ``?``) get only the old, weaker pooled check,
and the report counts them: a number passes if any value of the table's sources rounds to it.
How a table cell is read:

* Numbers are the tokens that look like results: ``3,401``, ``48 %``, ``0.33 %``, ``1.55x``,
  ``2.9e-6``, ``+0.23``, both sides of ``58.3 ± 3.1`` and of ``79.1 / 67.4``. Digits glued to
  letters are names, not results (``MiniLM-L6``, ``TREC-6``, ``F1``, ``p50``, ``8k``), and so is
  everything inside backticks and version strings (``2.13.0``, ``127.0.0.1``).
* Pooled check: a number matches a raw value ``v`` when ``v`` or ``100 * v`` (a fraction shown
  as a percent) rounds to it at the precision shown: ``77.2`` matches 0.7717889 and 77.17,
  ``119`` matches 119.46, ``2.9e-6`` matches 2.87e-6. Raw values are every number in the JSON
  (nested objects and lists included; numeric strings too), or every number token of a
  ``.md`` / text source.
* The header row is not checked (column names, not results).
* Numbers that are not results (a model shape in a row label, a k in a setting) are
  whitelisted per table with an HTML comment between the Source line and the table:
  ``<!-- check_numbers ignore: 4, 256 (BERT-mini shape in the row labels) -->``.

Prose (issue 23): every number in the text of the file must be accounted for by a
``<!-- nums ... -->`` block right after its paragraph (syntax in ``bench/prosemap.py``): bound
to its raw value (``2.80x = ratio(rows.lmforge.tokens_per_s, rows.hf_trainer.tokens_per_s)
x2``), or declared not a measurement (``- 300 | 5e-5  # settings``). The rule for which
tokens are numbers, and which are never asked for:

* Never asked for (blanked before reading): headings (titles), tables (checked above), code
  blocks and code spans, HTML comments, link targets and URLs, the ``Source:`` paragraph,
  dates (``2026-11-30``), clock times (``07:38``), version strings with two or more dots
  (``2.13.0``, ``127.0.0.1``), numbered-list markers (``1.``) and digits glued to letters
  (``MiniLM-L6``, ``8k``, ``22.7M``, ``p99``; CJK characters do not glue: ``约14分钟`` reads 14).
* Every other number is read, as in tables (``3-5 %`` reads 3 and 5 %, a range, not -5), and
  must be in the block, in the order the text shows it. What ``-`` may declare: a setting or
  configuration value (``lr 5e-5``, ``batch 32``, ``300 steps`` as chosen, a model shape), a
  count fixed by the data set or the protocol rather than measured (872 dev sentences),
  a version, a year, an issue or goal number and a goal's threshold, a number quoted from a
  paper or from the issue. Everything measured, and everything derived from a measurement
  (a ratio, a difference, a range's ends), is bound to its raw value: a number that is
  neither bound nor declared, a changed digit, a swap or a number that is not its value fails.
  A measurement with no raw value is removed from the text (or re-measured by a program that
  writes its results file); it is never declared ``-``.

Usage: python bench/check_numbers.py [-v] [FILE.md ...]   (default: BENCHMARKS.md and
README.md; exit 1 and a line per problem; ``-v`` prints one line per table, mapped / unmapped
cells, and the prose counts of each file)
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
sys.path.insert(0, str(ROOT / "bench"))
from cellmap import CellSpec, MapError, Sources, evaluate, expand, find_block  # noqa: E402
from prosemap import VERSION_RE, Unit, check_unit, find_units  # noqa: E402

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
    preamble: str = ""  # the lines between the Source line and the table (cell map, ignores)


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
    text = VERSION_RE.sub(" ", text)  # 2.13.0, 127.0.0.1: versions and addresses
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
                    table.preamble = "\n".join(lines[j + 1:i])
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


@dataclass
class TableReport:
    """What checking one table found: its problems and how many cells are mapped."""

    table: Table
    mapped: bool  # the table has a cell map
    problems: list[str] = field(default_factory=list)
    mapped_cells: int = 0  # cells whose numbers are checked against their own key
    unmapped_cells: int = 0  # cells with numbers that only the pooled check covers
    label_cells: int = 0  # cells whose numbers the map marks as not results (-)
    numbers: int = 0  # numbers checked (mapped or pooled)
    results: bool = True  # False: a table without a Source line and without numbers (text)

    def summary(self) -> str:
        """One line for the table: mapped or not, and the cell counts."""
        state = "mapped" if self.mapped else "UNMAPPED"
        return (f"line {self.table.line} [{state}] '{self.table.heading}': "
                f"{self.mapped_cells} cells mapped, {self.unmapped_cells} unmapped"
                + (f", {self.label_cells} not results" if self.label_cells else "")
                + (f", {len(self.problems)} problems" if self.problems else ""))


def _where(table: Table) -> str:
    return f"table at line {table.line} (under '{table.heading}')"


def _load_pool(table: Table, base: Path) -> tuple[list[float], list[str]]:
    """Every raw value of the table's sources (the pooled check), and problems reading them."""
    values: list[float] = []
    problems = []
    for source in table.sources:
        path = (base / source).resolve()
        if not path.is_file():
            problems.append(f"{_where(table)}: source {source} does not exist")
            continue
        try:
            values += raw_values(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            problems.append(f"{_where(table)}: source {source} is not readable JSON/text ({e})")
    return values, problems


def _check_mapped(spec: CellSpec, numbers: list[Number], prefix: str | None,
                  sources: Sources) -> list[str]:
    """Problems of one mapped cell: a count mismatch, a bad path, a number not its value."""
    if len(spec.items) != len(numbers):
        return [f"shows {len(numbers)} number(s) ({', '.join(n.text for n in numbers)}) "
                f"but its cell map gives {len(spec.items)}"]
    problems = []
    for number, (value, fmt) in zip(numbers, spec.items, strict=True):
        try:
            ref = expand(value, prefix)
            raw = evaluate(ref, sources)
        except (MapError, json.JSONDecodeError, OSError) as e:
            problems.append(f"{number.text}: {e}")
            continue
        if not fmt.matches(number.text, number.value, number.step, raw):
            problems.append(f"shows {number.text} but {ref} ({fmt.text}) is "
                            f"{fmt.shown(raw)}")
    return problems


def check_table_report(table: Table, base: Path) -> TableReport:
    """Check one table: mapped cells against their keys, unmapped ones against the pool."""
    where = _where(table)
    if table.source_line is None:
        if not any(n.text not in table.ignore and n.text.rstrip("%x\u00d7 ") not in table.ignore
                   for row in table.rows for cell in row[1:] for n in numbers_in(cell)):
            return TableReport(table, False, results=False)  # no numbers: not a results table
        return TableReport(table, False, [f"{where}: no 'Source: [bench/results/NAME.json]"
                                          "(...)' line above it in its section"])
    if not table.sources:
        return TableReport(table, False, [f"{where}: its Source line (line "
                                          f"{table.source_line}) links no raw file"])
    try:
        table_map = find_block(table.preamble, table.header)
    except MapError as e:
        return TableReport(table, True, [f"{where}: cell map: {e}"])
    report = TableReport(table, table_map is not None)
    values, report.problems = _load_pool(table, base)
    if report.problems:
        return report
    sources = Sources([(base / s).resolve() for s in table.sources])
    names = ", ".join(table.sources)
    for index, row in enumerate(table.rows, start=1):
        label = row[0] if row else ""
        for col, cell in enumerate(row):
            column = table.header[col] if col < len(table.header) else f"column {col + 1}"
            spec = table_map.spec(index, column) if table_map is not None else None
            numbers = list(numbers_in(cell))
            if col == 0 or spec is None or spec.kind != "values":  # labels, unmapped cells
                numbers = [n for n in numbers if n.text not in table.ignore
                           and n.text.rstrip("%x\u00d7 ") not in table.ignore]
            if not numbers:
                continue
            at = f"{where}, row '{label}' [{index}], column '{column}'"
            if table_map is not None and spec is None:
                report.problems.append(f"{at}: {', '.join(n.text for n in numbers)} has no key "
                                       "in the table's cell map")
                continue
            if spec is not None and spec.kind == "none":
                report.label_cells += 1
                continue
            report.numbers += len(numbers)
            if spec is not None and spec.kind == "values":
                report.mapped_cells += 1
                report.problems += [f"{at}: {p}" for p in _check_mapped(
                    spec, numbers, table_map.prefix(index), sources)]  # type: ignore[union-attr]
                continue
            report.unmapped_cells += 1
            for number in numbers:
                if not any(number.matches(v) for v in values):
                    report.problems.append(f"{at}: {number.text} not found in {names}")
    return report


def check_table(table: Table, base: Path) -> list[str]:
    """Problems of one table: no Source line, a missing raw file, numbers that do not match."""
    return check_table_report(table, base).problems


def report_text(text: str, base: Path, name: str = "BENCHMARKS.md") -> list[TableReport]:
    """The report of every results table of a markdown text whose sources are relative to
    ``base`` (a table without a Source line and without numbers is text, not results)."""
    reports = [check_table_report(t, base) for t in find_tables(text.splitlines())]
    reports = [r for r in reports if r.results]
    for report in reports:
        report.problems = [f"{name}: {p}" for p in report.problems]
    return reports


@dataclass
class ProseReport:
    """What checking the prose of one markdown file found."""

    name: str
    units: list[Unit]
    problems: list[str] = field(default_factory=list)
    bound: int = 0  # numbers bound to a raw value
    declared: int = 0  # numbers declared not measurements ('- TEXT')

    def summary(self) -> str:
        """One line for the file's prose."""
        with_numbers = sum(1 for u in self.units if u.numbers())
        return (f"{self.name} prose: {with_numbers} paragraphs with numbers, {self.bound} "
                f"numbers bound to a raw value, {self.declared} declared not measurements"
                + (f", {len(self.problems)} problems" if self.problems else ""))


def prose_report_text(text: str, base: Path, name: str = "BENCHMARKS.md") -> ProseReport:
    """Check every number of the prose of a markdown text against its nums block."""
    report = ProseReport(name, find_units(text.splitlines()))
    for unit in report.units:
        problems, bound, declared = check_unit(unit, base)
        report.problems += [f"{name}: {p}" for p in problems]
        report.bound += bound
        report.declared += declared
    return report


def check_text(text: str, base: Path, name: str = "BENCHMARKS.md") -> list[str]:
    """All problems of a markdown text: its tables and its prose."""
    return [p for r in report_text(text, base, name) for p in r.problems] + \
        prose_report_text(text, base, name).problems


def report_file(path: Path) -> list[TableReport]:
    """The report of every table of one markdown file (sources relative to its folder)."""
    return report_text(path.read_text(encoding="utf-8"), path.parent, path.name)


def prose_report_file(path: Path) -> ProseReport:
    """The report of the prose of one markdown file (sources relative to its folder)."""
    return prose_report_text(path.read_text(encoding="utf-8"), path.parent, path.name)


def check_file(path: Path) -> list[str]:
    """All problems of one markdown file, tables and prose (sources relative to its folder)."""
    return check_text(path.read_text(encoding="utf-8"), path.parent, path.name)


def totals(reports: list[TableReport], prose: list[ProseReport] | None = None) -> str:
    """The summary line: tables and cells mapped vs unmapped, prose numbers bound."""
    mapped = [r for r in reports if r.mapped]
    cells = sum(r.mapped_cells for r in reports)
    unmapped = sum(r.unmapped_cells for r in reports)
    line = (f"{len(mapped)} of {len(reports)} tables mapped; {cells} cells checked against "
            f"their key, {unmapped} cells unmapped (pooled check only, "
            f"{len(reports) - len(mapped)} unmapped tables)")
    if prose:
        line += (f"; prose: {sum(p.bound for p in prose)} numbers bound, "
                 f"{sum(p.declared for p in prose)} declared not measurements")
    return line


DEFAULT_FILES = ("BENCHMARKS.md", "README.md")


def main(argv: Iterable[str] | None = None) -> int:
    """Check the given markdown files (default: BENCHMARKS.md and README.md), tables and
    prose; print problems, return 1 if any."""
    args = list(argv) if argv is not None else sys.argv[1:]
    verbose = "-v" in args
    files = [Path(a) for a in args if a != "-v"] or [ROOT / f for f in DEFAULT_FILES]
    reports = [r for f in files for r in report_file(f)]
    prose = [prose_report_file(f) for f in files]
    problems = [p for r in reports for p in r.problems] + [p for r in prose for p in r.problems]
    for report in reports:
        if verbose or not report.mapped:
            print(report.summary())
    if verbose:
        for report in prose:
            print(report.summary())
    for problem in problems:
        print(problem)
    print(("FAILED: " if problems else "ok: ") + totals(reports, prose)
          + (f"; {len(problems)} problems" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
