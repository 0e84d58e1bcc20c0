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
                   "continual_avalanche_1k.json", "attack_vs_textattack.json",
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
