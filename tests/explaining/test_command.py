"""`lmforge explain` end to end: files, the faithfulness table, bad input (exit 2)."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest

import lmforge
from lmforge.cli import main
from lmforge.errors import ConfigError
from lmforge.explaining.adapters import get_adapter
from lmforge.finetuning.task import get_task
from tests.serving.conftest import sentences


def test_explain_command_writes_jsonl_html_png_and_table(sentiment_run: Path,
                                                         tmp_path: Path) -> None:
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(t for t, _ in sentences(4, 5)) + "\n")
    out = tmp_path / "explain"
    result = lmforge.explain(run=str(sentiment_run), input=str(inputs), evaluate=True,
                             methods=["ig", "occlusion", "lime"], lime_samples=60, n_steps=8,
                             output_dir=str(out))
    assert result.run_dir == out
    rows = [json.loads(line) for line in (out / "explanations.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and set(rows[0]["methods"]) == {"ig", "occlusion", "lime", "random"}
    assert len(rows[0]["methods"]["ig"]["word_scores"]) == len(rows[0]["words"])
    page = (out / "explanations.html").read_text()
    # Self-contained: no external scripts, styles, fonts or images.
    assert not re.search(r"(src|href)=|@import|url\(", page)
    assert "predicted" in page and page.count('class="ex"') == 4
    assert (out / "example.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "faithfulness.md").read_text()
    assert "| ig |" in table and "| random |" in table and "Spearman" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faithfulness"]["ig"]["comprehensiveness"] > \
        summary["faithfulness"]["random"]["comprehensiveness"]
    assert summary["cost"]["lime"]["sequences_per_example"] == pytest.approx(60)
    assert "comprehensiveness" in (out / "report.html").read_text()  # report=true default


@pytest.mark.parametrize("args, message", [
    (["methods=[ig,lim]"], "did you mean 'lime'"),
    (["n_steps=0"], "n_steps must be >= 1"),
    (["lime_samples=-5"], "lime_samples must be >= 1"),
    (["target=maybe", "methods=[occlusion]"], "not a label of this model"),
])
def test_bad_input_is_one_line_and_exit_2(sentiment_run: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], args: list[str],
                                          message: str) -> None:
    inputs = tmp_path / "in.txt"
    inputs.write_text("the film was good\n")
    code = main(["explain", str(sentiment_run), f"input={inputs}",
                 f"--output-dir={tmp_path / 'x'}", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(("name", "data"), [
    ("in.txt", "the film was good\nc'était très bon\n".encode("latin-1")),
    ("in.jsonl", '{"text": "très bon"}\n'.encode("latin-1")),
    ("in.tsv", "text\ntrès bon\n".encode("cp1252")),
    ("in.txt", "the film was good\n".encode("utf-16")),
])
@pytest.mark.parametrize("command", ["explain", "predict"])
def test_input_files_and_stdin_that_are_not_utf8_are_one_line_errors(
        sentiment_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, command: str, name: str, data: bytes) -> None:
    inputs = tmp_path / name
    inputs.write_bytes(data)
    extra = ["methods=[occlusion]", f"--output-dir={tmp_path / 'x'}"] \
        if command == "explain" else []
    code = main([command, str(sentiment_run), f"input={inputs}", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"{name}' is not UTF-8 text (line " in err[0] and "iconv" in err[0], err
    if name == "in.txt":  # the same text piped in
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        code = main([command, str(sentiment_run), "input=-", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "standard input is not UTF-8" in err[0], err


def test_empty_text_and_generative_tasks_are_refused(sentiment_run: Path,
                                                     tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"text": ""}) + "\n")
    assert main(["explain", str(sentiment_run), f"input={inputs}", "methods=[occlusion]",
                 f"--output-dir={tmp_path / 'x'}"]) == 2
    with pytest.raises(ConfigError, match="explanations support"):
        get_adapter(get_task("sft"), {})  # the lookup asks the task object


def test_evaluate_flag_on_the_command_line(sentiment_run: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in.txt"
    inputs.write_text("the film was good\n")
    out = tmp_path / "x"
    assert main(["explain", str(sentiment_run), f"input={inputs}", "methods=[occlusion]",
                 "--evaluate", f"--output-dir={out}"]) == 0
    assert "| occlusion |" in (out / "faithfulness.md").read_text()
