"""Prose numbers of BENCHMARKS.md / README.md, each bound to its raw value or declared not one.

A prose unit is a run of consecutive text lines: a paragraph, or the items of a list up to the
next blank line, heading, table, HTML comment or code fence. A unit's numbers are bound by an
HTML comment block (invisible when rendered) on the line right after the unit::

    lmforge is 2.80x the peer's tokens/s at equal loss (5.687 vs 5.682), in 246 s.
    <!-- nums pretrain_mlm-bf16-1000steps.json
    2.80x = ratio(rows.lmforge.tokens_per_s, rows.hf_trainer.tokens_per_s) x2
    5.687 = rows.lmforge.val_loss f3
    5.682 = rows.hf_trainer.val_loss f3
    246 = rows.lmforge.train_seconds int
    -->

* The first line names the unit's sources: file names in ``bench/results/`` (or paths with a
  ``/``, relative to the markdown file's folder); the first is the default of a path without
  ``FILE.json:``. A block of ``-`` lines only needs none.
* Then one line per number of the unit, in the order the text shows them: ``TEXT = VALUE
  FORMAT`` binds the number shown as TEXT (``2.80x``, ``38.3 %``, ``1,114``) to a VALUE (a
  path, number or function of them) in a FORMAT, with the syntax of the table cell maps
  (``bench/cellmap.py``); ``- TEXT | TEXT ...`` declares consecutive numbers that are not
  measurements (a setting, a count of a data set's rows, a name). ``#`` starts a comment.
* A block after the last line of a list binds the whole list (the list is one unit, up to
  the blank line). A block inside a list, after one item, ends the unit there, so items can
  have a block each; it is then indented like the item's text (every line of it), so that
  the comment stays inside the item when rendered.

The check: the unit's numbers, in order, must be exactly the block's texts (a changed digit,
a swap, a number added or removed fails), and every bound number must be its VALUE as its
FORMAT rounds it. A unit with numbers and no block fails. Which tokens are numbers, and which
are never asked for, is the rule in ``bench/check_numbers.py``'s docstring.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cellmap import Format, MapError, Sources, evaluate, parse_format

BLOCK_START_RE = re.compile(r"^\s*<!--\s*nums\b")
COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
CODE_RE = re.compile(r"`[^`]*`")
LINK_TARGET_RE = re.compile(r"\]\([^)\s]*\)")
URL_RE = re.compile(r"https?://\S+")
DATE_RE = re.compile(r"(?<![\d.])\d{4}-\d{2}-\d{2}(?!\d)")
TIME_RE = re.compile(r"(?<![\d.:])\d{1,2}:\d{2}(?::\d{2})?(?![\d:])")
VERSION_RE = re.compile(r"(?<![\d.])\d+(?:\.\d+){2,}(?!\.?\d)")
LIST_MARKER_RE = re.compile(r"^[ \t]*\d+[.)][ \t]", re.MULTILINE)
NUMBER_RE = re.compile(
    r"(?P<sign>[+\-\u2212])?"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?P<exp>[eE][+\-\u2212]?\d+)?"
    r"(?P<unit>\s?%|x(?![A-Za-z0-9_])|\u00d7)?"
)


def is_cjk(char: str) -> bool:
    """True for CJK characters and punctuation: they separate numbers like spaces do."""
    return "\u2e80" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff" or \
        "\uff00" <= char <= "\uffef"


def _word(char: str) -> bool:
    """A character that glues to a number and makes it part of a name (L6, 8k, v2)."""
    return (char.isalnum() or char == "_") and not is_cjk(char)


def strip_non_numbers(text: str) -> str:
    """``text`` with what is never a result blanked out: HTML comments, code spans, link
    targets, URLs, dates, clock times and version strings (``2.13.0``, ``127.0.0.1``)."""
    for pattern in (COMMENT_RE, CODE_RE, LINK_TARGET_RE, URL_RE, DATE_RE, TIME_RE, VERSION_RE):
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text.replace("**", "  ").replace("\u00a0", " ")


@dataclass(frozen=True)
class ProseNumber:
    """One number as the prose shows it: its text, value and the rounding step it implies."""

    text: str
    value: float
    step: float


def _make(sign: str, digits: str, exp: str | None, unit: str | None) -> ProseNumber:
    plain = digits.replace(",", "")
    decimals = len(plain.split(".")[1]) if "." in plain else 0
    exponent = int(exp[1:].replace("\u2212", "-")) if exp else 0
    value = (-1.0 if sign in ("-", "\u2212") else 1.0) * float(f"{plain}e{exponent}")
    text = sign + digits + (exp or "") + (unit or "")
    return ProseNumber(text.strip(), value, float(f"1e{exponent - decimals}"))


def prose_numbers(text: str) -> Iterator[ProseNumber]:
    """The numbers of a piece of prose, lines joined (a code span may cross a line break);
    see the rule in check_numbers.py's docstring."""
    for number, _ in number_spans(text):
        yield number


def number_spans(text: str) -> Iterator[tuple[ProseNumber, tuple[int, int]]]:
    """Each number of ``text`` with the span of its digits (start, end) in ``text``."""
    text = strip_non_numbers(LIST_MARKER_RE.sub(lambda m: " " * len(m.group(0)), text))
    for match in NUMBER_RE.finditer(text):
        start = match.start()
        before = text[start - 1] if start > 0 else " "
        sign = match["sign"] or ""
        if sign and (_word(before) or before in "._"):
            if not before.isdigit():
                continue  # TREC-6: a name
            sign = ""  # 3-5 %: a range, the dash is not a sign
        elif not sign and (_word(before) or before in "._"):
            continue  # L6, F1, 1.2: part of a name
        elif not sign and before in "-\u2212" and start > 1 and _word(text[start - 2]):
            continue  # a name with a dash before the digits
        end = match.end()
        after = text[end] if end < len(text) else " "
        if not match["unit"] and _word(after):
            continue  # 8k, 22.7M, 5th: a name or a unit glued on
        yield (_make(sign, match["digits"], match["exp"], match["unit"]),
               (match.start("digits"), match.end("digits")))


@dataclass
class Entry:
    """One line item of a nums block: the number's text, and its value and format if bound."""

    text: str
    value: str | None = None
    fmt: Format | None = None


@dataclass
class Block:
    """A parsed ``<!-- nums ... -->`` block."""

    line: int  # 1-based line of ``<!-- nums``
    sources: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)


@dataclass
class Unit:
    """A run of prose lines and the nums block after it, if any."""

    line: int  # 1-based first line
    lines: list[str]
    heading: str
    block: Block | None = None
    block_error: str | None = None

    def numbers(self) -> list[ProseNumber]:
        """Every number of the unit, in order."""
        return list(prose_numbers("\n".join(self.lines)))


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).replace("\u2212", "-")


def parse_block(body: str, line: int) -> Block:
    """A :class:`Block` from the text between ``<!-- nums`` and ``-->``."""
    first, _, rest = body.partition("\n")
    block = Block(line, first.split())
    for raw in rest.splitlines():
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        if text.startswith("- ") or text == "-":
            block.entries += [Entry(t.strip()) for t in text[1:].split("|") if t.strip()]
            continue
        shown, sep, spec = text.partition(" = ")
        if not sep:
            raise MapError(f"cannot read nums line {text!r} (want 'TEXT = VALUE FORMAT' or "
                           "'- TEXT | TEXT')")
        value, _, fmt = spec.strip().rpartition(" ")
        if not value.strip():
            raise MapError(f"{text!r}: want 'TEXT = VALUE FORMAT'")
        block.entries.append(Entry(shown.strip(), value.strip(), parse_format(fmt)))
    return block


def find_units(lines: list[str]) -> list[Unit]:
    """The prose units of a markdown file with their nums blocks (tables, headings, code,
    comments and ``Source:`` paragraphs are not prose)."""
    units: list[Unit] = []
    heading = ""
    current: Unit | None = None
    i = 0
    in_code = False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            current = None
            i += 1
            continue
        if in_code:
            i += 1
            continue
        if stripped.startswith("<!--"):
            end = i
            while end < len(lines) and "-->" not in lines[end]:
                end += 1
            body = "\n".join(lines[i:end + 1])
            if BLOCK_START_RE.match(line):
                inner = re.sub(r"^\s*<!--\s*nums", "", body, count=1).rsplit("-->", 1)[0]
                target = current if current is not None and current.block is None and \
                    current.block_error is None else None
                try:
                    block = parse_block(inner, i + 1)
                except MapError as e:
                    if target is not None:
                        target.block_error = str(e)
                    else:
                        units.append(Unit(i + 1, [], heading, None, str(e)))
                else:
                    if target is not None:
                        target.block = block
                    else:  # a block that follows no unit
                        units.append(Unit(i + 1, [], heading, block))
            current = None
            i = end + 1
            continue
        if not stripped or stripped.startswith("|") or line.startswith("#"):
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            current = None
            i += 1
            continue
        if current is None:
            if stripped.startswith("Source:"):  # the source paragraph, up to a blank line
                while i < len(lines) and lines[i].strip() and not lines[i].lstrip().startswith(
                        ("<!--", "|")):
                    i += 1
                continue
            current = Unit(i + 1, [], heading)
            units.append(current)
        current.lines.append(line)
        i += 1
    return units


def resolve_sources(block: Block, base: Path) -> list[Path]:
    """The block's source paths (bare names are files of ``bench/results/``)."""
    return [(base / s) if "/" in s else (base / "bench" / "results" / s) for s in block.sources]


def check_unit(unit: Unit, base: Path) -> tuple[list[str], int, int]:
    """Problems of one unit, and how many of its numbers are bound / declared not results."""
    where = f"paragraph at line {unit.line}" + (f" (under '{unit.heading}')"
                                                if unit.heading else "")
    if unit.block_error:
        return [f"{where}: nums block: {unit.block_error}"], 0, 0
    numbers = unit.numbers()
    block = unit.block
    if block is None:
        if not numbers:
            return [], 0, 0
        return [f"{where}: {', '.join(n.text for n in numbers)}: no <!-- nums --> block binds "
                "these numbers (bind each to its raw value, or declare it '- TEXT' if it is "
                "not a measurement)"], 0, 0
    if not unit.lines:
        return [f"{where}: a nums block that follows no paragraph"], 0, 0
    problems = []
    shown = [_squash(n.text) for n in numbers]
    listed = [_squash(e.text) for e in block.entries]
    if shown != listed:
        k = next((k for k, (a, b) in enumerate(zip(shown, listed, strict=False)) if a != b),
                 min(len(shown), len(listed)))
        got = numbers[k].text if k < len(numbers) else "nothing"
        want = block.entries[k].text if k < len(block.entries) else "nothing"
        return [f"{where}: its text shows {len(numbers)} number(s), its nums block lists "
                f"{len(block.entries)}; number {k + 1} is {got} in the text but {want} in "
                "the block"], 0, 0
    paths = resolve_sources(block, base)
    missing = [str(p.relative_to(base)) for p in paths if not p.is_file()]
    if missing:
        return [f"{where}: nums block source {', '.join(missing)} does not exist"], 0, 0
    sources = Sources(paths)
    bound = 0
    for number, entry in zip(numbers, block.entries, strict=True):
        if entry.value is None:
            continue
        bound += 1
        if not paths:
            problems.append(f"{where}: {number.text}: the nums block names no source file")
            continue
        try:
            raw = evaluate(entry.value, sources)
        except (MapError, ValueError, OSError) as e:
            problems.append(f"{where}: {number.text}: {e}")
            continue
        assert entry.fmt is not None
        if not entry.fmt.matches(number.text, number.value, number.step, raw):
            problems.append(f"{where}: shows {number.text} but {entry.value} "
                            f"({entry.fmt.text}) is {entry.fmt.shown(raw)}")
    return problems, bound, len(numbers) - bound
