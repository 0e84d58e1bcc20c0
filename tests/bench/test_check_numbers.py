"""bench/check_numbers.py: every number in a BENCHMARKS.md table is found in its raw file."""

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
