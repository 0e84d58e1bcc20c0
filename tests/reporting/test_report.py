"""`lmforge report`: the page of one run and of several, built from run folders alone."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from lmforge.cli import main
from lmforge.commands.report import (
    REPORT_FILE,
    build_page,
    refresh_run_report,
    write_run_report,
)
from lmforge.errors import ConfigError
from lmforge.reporting.charts import downsample, line_chart
from lmforge.reporting.document import is_report, write_report
from tests.reporting.conftest import EVIL, make_run


def test_one_run_shows_metrics_curves_task_pictures_examples_lineage_and_config(
        tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    page = build_page([run])
    # Self-contained: no script, nothing loaded from elsewhere, pictures inline.
    assert "<script" not in page and "http://" not in page.replace(
        "http://www.w3.org/2000/svg", "") and "https://" not in page
    assert page.count("data:image/png;base64,") == 2
    # Every run-provided string is escaped (a label, an example text).
    assert EVIL not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    # Curves: losses share a chart, lr and the eval metric have their own.
    titles = re.findall(r'class="title">([^<]+)</text>', page)
    assert titles == ["loss", "lr", "eval_accuracy"]
    # The task's own tables and examples: the most confident mistake comes first.
    assert "Per class" in page and "Confusion matrix" in page
    assert page.index("the worst mistake") < page.index("a mild mistake") \
        < page.index("right and sure")
    # Lineage (parents, data fingerprints) and the config.
    assert "runs/pretrain-1" in page and "cd" * 32 in page and "config.yaml" in page
    assert "0.75" in page  # the headline metric


def test_several_runs_overlay_curves_and_list_config_differences(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", lr=1e-3, seed=0)
    b = make_run(tmp_path / "b", lr=3e-4, seed=1)
    page = build_page([a, b])
    diff = page[page.index('id="config-diff"'):]
    diff = diff[:diff.index("</section>")]
    assert "train.lr" in diff and "train.seed" in diff and "output_dir" not in diff
    assert "task.name" not in diff  # equal keys are not differences
    charts = re.findall(r"<svg.*?</svg>", page)
    loss = next(c for c in charts if 'class="title">train_loss<' in c)
    assert 'data-series="a"' in loss and 'data-series="b"' in loss  # overlaid
    assert len(charts) == 4  # train_loss, lr, eval_loss, eval_accuracy: a chart each
    metrics = page[page.index('id="metrics"'):page.index('id="curves"')]
    assert "0.75" in metrics and "0.76" in metrics  # side by side


def test_downsampling_keeps_extremes_and_bounds_the_points() -> None:
    points = [(float(i), 1.0 / (i + 1)) for i in range(10_000)]
    points[5_000] = (5_000.0, 9.0)  # a loss spike
    kept = downsample(points, 600)
    assert len(kept) <= 600 and kept[0] == points[0] and kept[-1] == points[-1]
    assert (5_000.0, 9.0) in kept
    assert [x for x, _ in kept] == sorted(x for x, _ in kept)
    assert downsample([(0.0, float("nan")), (1.0, 2.0)], 600) == [(1.0, 2.0)]
    assert line_chart("empty", {"x": []}) == ""


def test_the_command_writes_the_file_and_refuses_what_is_not_a_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b", seed=1)
    assert main(["report", str(a)]) == 0
    assert is_report(a / REPORT_FILE)
    out = tmp_path / "both.html"
    assert main(["report", str(a), str(b), f"output={out}", "examples=1"]) == 0
    assert is_report(out) and "the worst mistake" in out.read_text()
    assert "a mild mistake" not in out.read_text()  # examples=1
    # A report.html lmforge did not write (an older attack run's page) is never overwritten.
    (b / REPORT_FILE).write_text("<html>attack report</html>")
    capsys.readouterr()
    assert main(["report", str(b)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not an lmforge report" in err and "\n" not in err
    assert (b / REPORT_FILE).read_text() == "<html>attack report</html>"
    assert main(["report"]) == 2 and "lmforge report RUN" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2 and "not a run folder" in \
        capsys.readouterr().err


def test_report_at_the_end_of_a_run_follows_track_report(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    off = SimpleNamespace(track=SimpleNamespace(report=False))
    assert write_run_report(run, off) is None and not (run / REPORT_FILE).exists()
    assert write_run_report(run, SimpleNamespace()) is None  # no track section, no switch
    assert write_run_report(run, SimpleNamespace(report=False)) is None
    assert not (run / REPORT_FILE).exists()
    # attack and explain have no track section: their own `report` switch decides.
    assert write_run_report(run, SimpleNamespace(report=True)) == run / REPORT_FILE
    (run / REPORT_FILE).unlink()
    on = SimpleNamespace(track=SimpleNamespace(report=True))
    assert write_run_report(run, on) == run / REPORT_FILE and is_report(run / REPORT_FILE)
    # lmforge evaluate rewrites a run's report after adding an eval-<split>/ folder to it.
    (run / "eval-test").mkdir()
    (run / "eval-test" / "summary.json").write_text(json.dumps({"headline": {"f1": 0.123}}))
    assert refresh_run_report(run) == run / REPORT_FILE
    assert "Evaluation: test" in (run / REPORT_FILE).read_text()
    assert refresh_run_report(tmp_path / "no-such-run") is None  # no report: none written
    # A failure is logged, never raised: the run itself succeeded.
    (run / REPORT_FILE).write_text("someone else's file")
    assert write_run_report(run, on) is None
    assert refresh_run_report(run) is None


def test_a_broken_section_is_a_note_not_a_failure(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    (run / "eval-validation" / "summary.json").write_text(json.dumps({"metrics": {
        "per_class": {"x": {"precision": "not a number"}}, "confusion_matrix": 3}}))
    page = build_page([run])
    assert "Training curves" in page and "Per class" in page
    with pytest.raises(ConfigError):
        write_report(run / "config.yaml", page)  # not a report: refused
