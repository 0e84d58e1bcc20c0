"""bench/check_numbers.py: every number of a BENCHMARKS.md table is checked against its raw file.

Mapped tables cell by cell (their ``<!-- cells -->`` block), unmapped ones against the pool of
all raw values of their sources.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_numbers", ROOT / "bench" / "check_numbers.py")
check_numbers = importlib.util.module_from_spec(_spec)
sys.modules["check_numbers"] = check_numbers  # its dataclasses look their module up there
_spec.loader.exec_module(check_numbers)  # type: ignore[union-attr]


def test_benchmarks_md_numbers_come_from_their_sources() -> None:
    problems = check_numbers.check_file(ROOT / "BENCHMARKS.md")
    assert not problems, "\n".join(problems)


def _doc(tmp_path: Path, table: str, raw: dict, source: bool = True, extra: str = "") -> Path:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "x.json").write_text(json.dumps(raw))
    line = "Source: [bench/results/x.json](bench/results/x.json) · command: `python bench/x.py`"
    doc = tmp_path / "B.md"
    doc.write_text(f"# B\n\n## Section\n\n{line if source else 'Some text.'}\n{extra}\n"
                   f"{table}\n")
    return doc


TABLE = """| run | acc | tokens/s | speed-up | MFU | diff | mean ± std |
|---|---:|---:|---:|---:|---:|---:|
| **lmforge** (MiniLM-L6, TREC-6) | 77.2 % | **3,401** | 1.55x | 48 % | 2.9e-6 | 58.3 ± 3.1 |"""
RAW = {"acc": 0.7717889, "tps": 3401.0, "nested": {"speedup": 1.5535, "mfu": [0.483]},
       "diff": "2.87e-06", "mean": 0.5825, "std": 0.0307}


def test_a_table_whose_numbers_are_all_in_the_source_passes(tmp_path: Path) -> None:
    assert check_numbers.check_file(_doc(tmp_path, TABLE, RAW)) == []


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("acc", 0.7727, "77.2 %"), ("tps", 3402.0, "3,401"), ("std", 0.0316, "3.1"),
])
def test_a_drifted_number_fails_naming_table_row_and_column(tmp_path: Path, key: str,
                                                            value: float, shown: str) -> None:
    problems = check_numbers.check_file(_doc(tmp_path, TABLE, {**RAW, key: value}))
    assert len(problems) == 1
    assert "table at line 7 (under 'Section')" in problems[0]
    assert "row '**lmforge** (MiniLM-L6, TREC-6)'" in problems[0]
    assert f"{shown} not found in bench/results/x.json" in problems[0]


def test_a_table_without_a_source_line_fails(tmp_path: Path) -> None:
    (problem,) = check_numbers.check_file(_doc(tmp_path, TABLE, RAW, source=False))
    assert "no 'Source: [bench/results/NAME.json](...)' line above it in its section" in problem


def test_a_missing_source_file_fails(tmp_path: Path) -> None:
    doc = _doc(tmp_path, TABLE, RAW)
    (tmp_path / "bench" / "results" / "x.json").unlink()
    (problem,) = check_numbers.check_file(doc)
    assert "source bench/results/x.json does not exist" in problem


def test_ignore_comment_whitelists_numbers_of_that_table(tmp_path: Path) -> None:
    table = TABLE.replace("(MiniLM-L6, TREC-6)", "(4 x 256)")
    assert len(check_numbers.check_file(_doc(tmp_path, table, RAW))) == 2
    ignored = _doc(tmp_path / "b", table, RAW,
                   extra="<!-- check_numbers ignore: 4, 256 (the model shape) -->")
    assert check_numbers.check_file(ignored) == []


def test_numbers_glued_to_names_are_not_results() -> None:
    found = [n.text for n in check_numbers.numbers_in(
        "MiniLM-L6 TREC-6 F1 p50 8k 22.7M CoNLL-2003 `k=4` (+0.23) -1.5 88.99 % 4.6x")]
    assert found == ["+0.23", "-1.5", "88.99 %", "4.6x"]


# --- mapped tables: each cell against its own key -------------------------------------------

BENCH = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")


def _table(text: str, source: str, ordinal: int = 0) -> check_numbers.Table:
    """The ``ordinal``-th table of ``text`` whose Source line names ``source``."""
    tables = [t for t in check_numbers.find_tables(text.splitlines())
              if any(s.endswith("/" + source) for s in t.sources)]
    return tables[ordinal]


def _row_index(table: check_numbers.Table, label: str | int) -> int:
    if isinstance(label, int):
        return label - 1  # a 1-based body row
    exact = [i for i, row in enumerate(table.rows) if row[0] == label]
    (index,) = exact or [i for i, row in enumerate(table.rows) if row[0].startswith(label)]
    return index


def _set_cells(text: str, source: str, edits: dict[tuple[str | int, str], str],
               ordinal: int = 0) -> str:
    """``text`` with cells (row label prefix or 1-based index, column header) replaced."""
    table = _table(text, source, ordinal)
    lines = text.splitlines()
    rows = [list(row) for row in table.rows]
    for (label, column), value in edits.items():
        index = _row_index(table, label)
        rows[index][table.header.index(column)] = value
        lines[table.line + 1 + index] = "| " + " | ".join(rows[index]) + " |"
    return "\n".join(lines) + "\n"


def _cell(text: str, source: str, label: str | int, column: str, ordinal: int = 0) -> str:
    table = _table(text, source, ordinal)
    return table.rows[_row_index(table, label)][table.header.index(column)]


def _swap(text: str, source: str, a: tuple[str, str], b: tuple[str, str],
          ordinal: int = 0) -> str:
    first, second = _cell(text, source, *a, ordinal), _cell(text, source, *b, ordinal)
    assert first != second
    return _set_cells(text, source, {a: second, b: first}, ordinal)


def _problems(text: str) -> list[str]:
    return [p for r in check_numbers.report_text(text, ROOT) for p in r.problems]


def test_benchmarks_md_headline_tables_are_mapped() -> None:
    reports = {(r.table.sources[0].rsplit("/", 1)[-1], r.table.line): r
               for r in check_numbers.report_text(BENCH, ROOT)}
    for source in ("pretrain_mlm-bf16-1000steps.json", "pretrain_mlm.json",
                   "continual_avalanche_1k.json", "continual_avalanche_first.json",
                   "attack_vs_textattack.json",
                   "explain_sst2.json", "speed_finetune_sst2.json", "serve_load.json"):
        hits = [r for (name, _), r in reports.items() if name == source]
        assert hits and all(r.mapped and r.mapped_cells and not r.unmapped_cells for r in hits)


def test_the_untampered_copy_passes() -> None:
    assert _problems(BENCH) == []


def test_swapping_lmforge_and_trainer_tokens_per_s_in_the_mlm_table_fails() -> None:
    for source in ("pretrain_mlm-bf16-1000steps.json", "pretrain_mlm.json"):
        text = _swap(BENCH, source, ("**lmforge**", "tokens/s"), ("HF `Trainer`", "tokens/s"))
        problems = _problems(text)
        assert len(problems) == 2, problems
        assert all("column 'tokens/s'" in p and "tokens_per_s" in p for p in problems)


def test_swapping_lmforge_and_avalanche_ewc_accuracy_fails() -> None:
    table = _table(BENCH, "continual_avalanche_1k.json")
    column = "avg. accuracy"
    ewc = [i for i, row in enumerate(table.rows) if row[0] == "ewc"]
    assert [table.rows[i][1] for i in ewc] == ["lmforge", "avalanche"]
    lines = BENCH.splitlines()
    col = table.header.index(column)
    for i, j in (ewc, ewc[::-1]):
        cells = list(table.rows[i])
        cells[col] = table.rows[j][col]
        lines[table.line + 1 + i] = "| " + " | ".join(cells) + " |"
    problems = _problems("\n".join(lines))
    assert len(problems) == 2, problems
    assert all("results.ewc." in p and "average_accuracy" in p for p in problems)


def test_changing_lmforge_attack_success_to_textattacks_number_fails() -> None:
    label = "lmforge (DeepWordBug settings)"
    assert _cell(BENCH, "attack_vs_textattack.json", label, "success rate") == "77.4"
    assert _cell(BENCH, "attack_vs_textattack.json", "TextAttack DeepWordBug",
                 "success rate") == "81.0"
    text = _set_cells(BENCH, "attack_vs_textattack.json", {(label, "success rate"): "81.0"})
    (problem,) = _problems(text)
    assert "shows 81.0 but" in problem and "attack_success_rate (pct1) is 77.4" in problem


@pytest.mark.parametrize("source", ["explain_sst2.json", "explain_sst2_shap.json"])
def test_giving_lime_the_occlusion_rows_numbers_fails(source: str) -> None:
    table = _table(BENCH, source)
    occlusion = table.rows[_row_index(table, "occlusion")]
    text = _set_cells(BENCH, source, {("lime", column): occlusion[col]
                                      for col, column in enumerate(table.header) if col})
    problems = _problems(text)
    assert len(problems) == len(table.header) - 1, problems  # every column of the row
    assert all("row 'lime'" in p for p in problems)


def _bump_last_digit(text: str, delta: int) -> str:
    shown = next(check_numbers.numbers_in(text)).text  # the first result-like number
    found = check_numbers.NUMBER_RE.search(text, text.index(shown))
    assert found is not None
    digits = found["digits"]
    last = int(digits[-1]) + delta
    if not 0 <= last <= 9:
        last = int(digits[-1]) - delta
    return text[:found.start("digits")] + digits[:-1] + str(last) + text[found.end("digits"):]


MAPPED_CELLS = [
    ("pretrain_mlm-bf16-1000steps.json", "HF `Trainer`", "val MLM loss"),
    ("pretrain_mlm-bf16-1000steps.json", "**lmforge**", "MFU (bf16 peak)"),
    ("speed_finetune_sst2.json", "trainer-pad128", "speed-up vs Trainer"),
    ("speed_finetune_sst2.json", 3, "dev accuracy (%)"),
    ("continual_avalanche_1k.json", 4, "BWT"),
    ("attack_vs_textattack.json", "TextAttack DeepWordBug", "seconds"),
    ("explain_sst2.json", "lime", "seconds / explanation"),
    ("serve_load.json", "lmforge onnx int8", "300 clients"),
    ("continual_stream_1k.json", "ewc lambda 1e7", "parameters stored"),
]


@pytest.mark.parametrize("delta", [1, -1])
@pytest.mark.parametrize(("source", "label", "column"), MAPPED_CELLS)
def test_a_last_digit_moved_by_one_on_a_mapped_cell_fails(source: str, label: str | int,
                                                          column: str, delta: int) -> None:
    cell = _cell(BENCH, source, label, column)
    text = _set_cells(BENCH, source, {(label, column): _bump_last_digit(cell, delta)})
    (problem,) = _problems(text)
    assert f"column '{column}'" in problem and "shows" in problem


def test_every_mapped_number_of_benchmarks_md_fails_when_its_last_digit_moves() -> None:
    """Sweep: each mapped cell's first number, its last digit +1, is caught."""
    missed = []
    for report in check_numbers.report_text(BENCH, ROOT):
        if not report.mapped:
            continue
        table = report.table
        lines = BENCH.splitlines()
        for index, row in enumerate(table.rows):
            for col, cell in enumerate(row):
                spec = check_numbers.find_block(table.preamble, table.header).spec(
                    index + 1, table.header[col])
                if col == 0 or spec is None or spec.kind != "values" or not list(
                        check_numbers.numbers_in(cell)):
                    continue
                changed = list(row)
                changed[col] = _bump_last_digit(cell, 1)
                edited = list(lines)
                edited[table.line + 1 + index] = "| " + " | ".join(changed) + " |"
                found = check_numbers.find_tables(edited)
                single = next(t for t in found if t.line == table.line)
                if not check_numbers.check_table(single, ROOT):
                    missed.append(f"line {table.line} row {index + 1} {table.header[col]}")
    assert not missed, missed


# --- the map format on a small document ------------------------------------------------------

MAPPED_TABLE = """| run | tokens/s | acc | speed-up | mean ± std |
|---|---:|---:|---:|---:|
| lmforge | 3,401 | 77.2 % | 1.55x | 58.3 ± 3.1 |
| peer | 2,189 | 70.0 % | 1.00x | 50.0 ± 1.0 |"""
MAPPED_RAW = {"rows": {"lmforge": {"tps": 3401.2, "acc": 0.7717, "mean": 0.583, "std": 0.031},
                       "peer": {"tps": 2189.0, "acc": 0.7, "mean": 0.5, "std": 0.01}}}
CELLS = """<!-- cells
rows: rows.lmforge | rows.peer
tokens/s: {row}.tps int
acc: {row}.acc pct1
speed-up: ratio({row}.tps, rows.peer.tps) f2
mean ± std: {row}.mean pct1; {row}.std pct1
-->
"""


def _mapped(tmp_path: Path, table: str = MAPPED_TABLE, cells: str = CELLS,
            raw: dict | None = None) -> list[str]:
    return check_numbers.check_file(_doc(tmp_path, table, raw or MAPPED_RAW, extra=cells))


def test_a_mapped_table_passes_and_is_counted(tmp_path: Path, capsys) -> None:
    assert _mapped(tmp_path) == []
    doc = tmp_path / "B.md"
    assert check_numbers.main(["-v", str(doc)]) == 0
    out = capsys.readouterr().out
    assert "[mapped] 'Section': 8 cells mapped, 0 unmapped" in out
    assert "ok: 1 of 1 tables mapped; 8 cells checked against their key, 0 cells unmapped" in out


def test_a_swap_in_a_mapped_table_fails_where_the_pool_passes(tmp_path: Path) -> None:
    swapped = MAPPED_TABLE.replace("3,401", "X").replace("2,189", "3,401").replace("X", "2,189")
    problems = _mapped(tmp_path, swapped)
    assert len(problems) == 2  # both tokens/s cells (the ratios read the raw values)
    pooled = check_numbers.check_file(_doc(tmp_path / "pool", swapped, MAPPED_RAW))
    assert not [p for p in pooled if "tokens/s" in p]  # the old pooled check misses the swap


def test_a_number_without_a_key_fails(tmp_path: Path) -> None:
    problems = _mapped(tmp_path, cells=CELLS.replace("acc: {row}.acc pct1\n", ""))
    assert len(problems) == 2
    assert "column 'acc': 77.2 % has no key in the table's cell map" in problems[0]


def test_cells_marked_unmapped_are_counted_and_pooled(tmp_path: Path, capsys) -> None:
    assert _mapped(tmp_path, cells=CELLS.replace("{row}.acc pct1", "?")) == []
    assert check_numbers.main([str(tmp_path / "B.md")]) == 0
    assert "6 cells mapped, 2 unmapped" not in capsys.readouterr().out  # only unmapped tables
    report = check_numbers.report_file(tmp_path / "B.md")[0]
    assert (report.mapped_cells, report.unmapped_cells) == (6, 2)


def test_wrong_count_bad_path_and_bad_format_fail(tmp_path: Path) -> None:
    problems = _mapped(tmp_path, cells=CELLS.replace("{row}.mean pct1; {row}.std pct1",
                                                      "{row}.mean pct1"))
    assert len(problems) == 2 and "shows 2 number(s)" in problems[0]
    problems = _mapped(tmp_path / "b", cells=CELLS.replace("{row}.tps int", "{row}.tsp int"))
    assert len(problems) == 2 and "no key 'tsp'" in problems[0]
    (problem,) = _mapped(tmp_path / "c", cells=CELLS.replace("pct1\nspeed", "pct\nspeed"))
    assert "unknown format 'pct'" in problem


def test_the_format_fixes_the_decimals_shown(tmp_path: Path) -> None:
    (problem,) = _mapped(tmp_path, MAPPED_TABLE.replace("77.2 %", "77.20 %"))
    assert "shows 77.20 % but rows.lmforge.acc (pct1) is 77.2" in problem


@pytest.mark.parametrize(("fmt", "raw", "shown", "ok"), [
    ("int", 3401.4, "3,401", True), ("int", 3401.6, "3,401", False),
    ("f3", 0.0294, "0.029", True), ("f3", 0.0294, "0.03", False),
    ("pct1", 0.7717, "77.2", True), ("pct0", 0.483, "48", True),
    ("r2", 0.9, "0.9", True), ("r2", 0.96, "1.0", False), ("r2", 0.449, "0.45", True),
    ("e1", 2.87e-6, "2.9e-6", True), ("e1", 2.87e-6, "2.8e-6", False),
    ("f1*1000", 0.2044, "204.4", True), ("f1/1024", 2048.0, "2.0", True),
])
def test_formats(fmt: str, raw: float, shown: str, ok: bool) -> None:
    (number,) = check_numbers.numbers_in(shown)
    fmt_ = sys.modules["cellmap"].parse_format(fmt)
    assert fmt_.matches(number.text, number.value, number.step, raw) is ok


# --- prose: every number of the text bound to its raw value or declared not one (issue 23) ---

README = (ROOT / "README.md").read_text(encoding="utf-8")
prosemap = sys.modules["prosemap"]

PROSE = """# B

## Section

lmforge ran 2.80x the peer (5.687 vs 5.682 loss) at batch 32 on 2026-11-30 with torch 2.13.0.
<!-- nums x.json
2.80x = ratio(rows.lmforge.tps, rows.peer.tps) x2
5.687 = rows.lmforge.loss f3
5.682 = rows.peer.loss f3
- 32  # the batch size (a setting)
-->
"""
PROSE_RAW = {"rows": {"lmforge": {"tps": 16515.1, "loss": 5.68717}, "peer": {"tps": 5888.3,
                                                                             "loss": 5.68154}}}


def _prose(tmp_path: Path, text: str = PROSE, raw: dict | None = None) -> list[str]:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "x.json").write_text(json.dumps(raw or PROSE_RAW))
    doc = tmp_path / "B.md"
    doc.write_text(text, encoding="utf-8")
    return check_numbers.check_file(doc)


def test_a_bound_paragraph_passes_and_is_counted(tmp_path: Path) -> None:
    assert _prose(tmp_path) == []
    report = check_numbers.prose_report_file(tmp_path / "B.md")
    assert (report.bound, report.declared) == (3, 1)


@pytest.mark.parametrize(("old", "new"), [("2.80x", "2.81x"), ("5.687 vs", "5.688 vs")])
def test_a_changed_prose_digit_fails(tmp_path: Path, old: str, new: str) -> None:
    text = PROSE.replace(old, new, 1)
    (problem,) = _prose(tmp_path, text)
    assert "paragraph at line 5 (under 'Section')" in problem
    assert f"number {'1' if 'x' in old else '2'} is {new.split()[0]} in the text" in problem


def test_a_changed_prose_digit_fails_even_with_its_block_edited_alike(tmp_path: Path) -> None:
    text = PROSE.replace("2.80x", "2.81x")
    (problem,) = _prose(tmp_path, text)
    assert "shows 2.81x but ratio(rows.lmforge.tps, rows.peer.tps) (x2) is 2.80" in problem


def test_swapped_prose_numbers_fail(tmp_path: Path) -> None:
    text = PROSE.replace("(5.687 vs 5.682 loss)", "(5.682 vs 5.687 loss)")
    (problem,) = _prose(tmp_path, text)
    assert "number 2 is 5.682 in the text but 5.687 in the block" in problem
    both = text.replace("5.687 = rows.lmforge", "X").replace(
        "5.682 = rows.peer", "5.687 = rows.peer").replace("X", "5.682 = rows.lmforge")
    problems = _prose(tmp_path / "b", both)
    assert len(problems) == 2 and all("shows" in p for p in problems)


def test_an_unbound_measurement_looking_number_fails(tmp_path: Path) -> None:
    (problem,) = _prose(tmp_path, PROSE + "\nThe run took 246 s and 38.3 % of the peak.\n")
    assert "paragraph at line 13" in problem
    assert "246, 38.3 %: no <!-- nums --> block binds these numbers" in problem
    (problem,) = _prose(tmp_path / "b", PROSE.replace("batch 32", "batch 32 in 246 s"))
    assert "its text shows 5 number(s), its nums block lists 4" in problem


def test_numbers_that_are_never_asked_for(tmp_path: Path) -> None:
    text = ("# Title 2026 with 5 numbers\n\nOn 2026-11-30 at 07:38-07:56, torch 2.13.0+cpu on "
            "127.0.0.1, `lr=5e-5 batch=32`, [a link](bench/results/x-1000steps.json), MiniLM-L6, "
            "TREC-6, p99, 8k and 22.7M:\n1. a numbered item\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    found = [n.text for u in prosemap.find_units(text.splitlines()) for n in u.numbers()]
    assert found == []


def test_how_prose_numbers_are_read() -> None:
    found = [n.text for n in prosemap.prose_numbers(
        "3-5 % of 1.3-3.8 s, -0.353 and +0.018, 2.9e-6, 1,114 MiB, 约14分钟, 86.2%（68.7%）")]
    assert found == ["3", "5 %", "1.3", "3.8", "-0.353", "+0.018", "2.9e-6", "1,114", "14",
                     "86.2%", "68.7%"]


def test_a_block_in_a_list_binds_the_item_above_it(tmp_path: Path) -> None:
    text = PROSE + ("\n- first item, 5.687\n  <!-- nums x.json\n  5.687 = rows.lmforge.loss f3\n"
                    "  -->\n- second item, declared 7\n  <!-- nums\n  - 7  # a count\n  -->\n")
    assert _prose(tmp_path, text) == []
    broken = text.replace("- second item, declared 7", "- second item, declared 8")
    (problem,) = _prose(tmp_path / "b", broken)
    assert "number 1 is 8 in the text but 7 in the block" in problem


def test_a_bad_nums_block_fails(tmp_path: Path) -> None:
    (problem,) = _prose(tmp_path, PROSE.replace("5.682 = rows.peer.loss f3", "5.682 rows"))
    assert "cannot read nums line '5.682 rows'" in problem
    (problem,) = _prose(tmp_path / "b", PROSE.replace("rows.peer.loss f3", "rows.peer.los f3"))
    assert "5.682: x.json:rows.peer.los: no key 'los'" in problem


def test_readme_is_checked_by_default_and_passes() -> None:
    assert "README.md" in check_numbers.DEFAULT_FILES
    assert check_numbers.check_file(ROOT / "README.md") == []
    assert check_numbers.prose_report_file(ROOT / "README.md").bound > 0


def _bound_numbers(text: str):
    """(unit, index) of every bound prose number of a markdown text."""
    for unit in prosemap.find_units(text.splitlines()):
        if unit.block is None:
            continue
        for index, entry in enumerate(unit.block.entries):
            if entry.value is not None:
                yield unit, index


def _bump_prose_number(unit, index: int, delta: int = 1):
    """A copy of ``unit`` whose ``index``-th number has its last digit moved (block unchanged,
    so the text no longer reads as the block lists it) and one whose block moves alike."""
    text = "\n".join(unit.lines)
    _, (_, end) = list(prosemap.number_spans(text))[index]
    last = int(text[end - 1]) + delta
    if not 0 <= last <= 9:
        last = int(text[end - 1]) - delta
    new_text = text[:end - 1] + str(last) + text[end:]
    edited = prosemap.Unit(unit.line, new_text.split("\n"), unit.heading, unit.block)
    new_number = edited.numbers()[index].text
    block = prosemap.Block(unit.block.line, unit.block.sources, [
        prosemap.Entry(new_number, e.value, e.fmt) if k == index else e
        for k, e in enumerate(unit.block.entries)])
    return edited, prosemap.Unit(unit.line, edited.lines, unit.heading, block)


@pytest.mark.parametrize("name", ["README.md", "BENCHMARKS.md"])
def test_every_bound_prose_number_fails_when_its_last_digit_moves(name: str) -> None:
    """Sweep: each bound number, its last digit +1, is caught both by its text (the block no
    longer lists it) and by its value (when the block is edited to read the same)."""
    text = (ROOT / name).read_text(encoding="utf-8")
    missed = []
    for unit, index in _bound_numbers(text):
        edited, both = _bump_prose_number(unit, index)
        if not prosemap.check_unit(edited, ROOT)[0] or not prosemap.check_unit(both, ROOT)[0]:
            missed.append(f"{name} line {unit.line} number {index + 1}")
    assert not missed, missed


def test_readme_main_job_numbers_are_bound_to_the_demo_results_file() -> None:
    (unit,) = [u for u in prosemap.find_units(README.splitlines())
               if u.block is not None and "demo.json" in u.block.sources]
    values = [e.value for e in unit.block.entries]
    assert {"test_metrics.accuracy", "test_metrics.f1_macro", "test_metrics.roc_auc_macro",
            "test_split.majority_class_accuracy", "main_job.train_seconds",
            "main_job.steps"} <= set(values)
    edited, both = _bump_prose_number(unit, values.index("test_metrics.accuracy"))
    (problem,) = prosemap.check_unit(edited, ROOT)[0]
    assert "in the text but" in problem
    (problem,) = prosemap.check_unit(both, ROOT)[0]
    assert "but test_metrics.accuracy (f3) is" in problem


def test_every_table_of_benchmarks_md_and_readme_is_mapped_cell_by_cell() -> None:
    for name in check_numbers.DEFAULT_FILES:
        for report in check_numbers.report_file(ROOT / name):
            assert report.mapped and not report.unmapped_cells, report.summary()


def test_a_markdown_source_and_list_lengths_can_be_mapped(tmp_path: Path) -> None:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "r.md").write_text("# r\n\nOn the 872 dev sentences; 34 s.\n\n"
                                  "| prompt | accuracy |\n|---|---|\n| it_was | 50.9 |\n"
                                  "| ensemble (mean p) | 48.4 |\n")
    (results / "y.json").write_text(json.dumps({"words": ["a", "b", "c"]}))
    doc = tmp_path / "B.md"
    doc.write_text(
        "# B\n\n## S\n\nSource: [bench/results/r.md](bench/results/r.md) · command: `x`\n\n"
        "<!-- cells\nrows: tables.0[prompt=it_was] | tables.0[prompt=\"ensemble (mean p)\"]\n"
        "acc: {row}.accuracy f1\n[1] dev: numbers.0 int\n-->\n\n| run | acc | dev |\n"
        "|---|---|---|\n| a | 50.9 | 872 |\n| b | 48.4 | |\n\nThe example has 3 words.\n"
        "<!-- nums y.json\n"
        "3 = words[len] int\n-->\n")
    assert check_numbers.check_file(doc) == []
    doc.write_text(doc.read_text().replace("| b | 48.4 |", "| b | 50.9 |").replace(
        "has 3 words", "has 4 words").replace("3 = words", "4 = words"))
    problems = check_numbers.check_file(doc)
    assert len(problems) == 2
    assert "shows 50.9 but tables.0[prompt=\"ensemble (mean p)\"].accuracy (f1) is 48.4" in \
        problems[0]
    assert "shows 4 but words[len] (int) is 3" in problems[1]


def test_a_row_prefix_may_name_a_whole_file(tmp_path: Path) -> None:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    for name, acc in (("a", 0.791), ("b", 0.47)):
        (results / f"{name}.json").write_text(json.dumps({"lmforge": {"accuracy": acc}}))
    doc = tmp_path / "B.md"
    doc.write_text("# B\n\n## S\n\nSource: [bench/results/a.json](bench/results/a.json), "
                   "[bench/results/b.json](bench/results/b.json)\n\n<!-- cells\n"
                   "rows: a.json: | b.json:\nacc: {row}.lmforge.accuracy pct1\n-->\n\n"
                   "| task | acc |\n|---|---:|\n| a | 79.1 |\n| b | 47.0 |\n")
    assert check_numbers.check_file(doc) == []
    doc.write_text(doc.read_text().replace("| a | 79.1 |", "| a | 47.0 |").replace(
        "| b | 47.0 |", "| b | 79.1 |"))
    assert len(check_numbers.check_file(doc)) == 2
