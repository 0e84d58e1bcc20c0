"""The CLI: version, generated help, one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lmforge import __version__
from lmforge.cli import build_parser, main
from lmforge.config import iter_options
from lmforge.finetuning.task import TASKS
from lmforge.pretraining.settings import PretrainJob


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_every_option_with_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    out = capsys.readouterr().out
    for key, default, _ in iter_options(PretrainJob):
        assert f"{key} = {default!r}" in out


def test_tokenizer_train_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tokenizer", "train", "--help"])
    assert "tokenizer.kind = 'wordpiece'" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["pretrain", "train.lrr=1"], "did you mean 'train.lr'"),
    (["pretrain", "data.path=/nonexistent/x.txt", "model.tokenizer=/nonexistent/tok"],
     "does not exist"),
    (["pretrain", "-c", "/nonexistent.yaml"], "not found"),
    (["evaluate"], "set run=RUN_DIR"),
    (["pretrain", "--resume"], "--resume needs the run"),
    (["finetune", "train.epochs=-3"], "set train.epochs > 0 or train.max_steps"),
])
def test_errors_are_one_line_exit_2(args: list[str], message: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert "train.set" not in err  # a section's key is never glued onto the message


def test_output_dir_that_is_a_file_is_a_one_line_error(
        tmp_path: Path, corpus_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    assert main(["tokenizer", "train", f"data.path={corpus_file}",
                 f"--output-dir={taken}"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: output directory {str(taken)!r} is an "
                                        "existing file; pass a folder path to --output-dir"]
    assert taken.read_text() == "not a folder"


@pytest.mark.parametrize("earlier", ["checkpoints/step-00000004/state.json", "summary.json"])
def test_training_into_an_earlier_run_needs_resume(
        earlier: str, tmp_path: Path, corpus_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    (run / earlier).parent.mkdir(parents=True, exist_ok=True)
    (run / earlier).write_text("{}")
    assert main(["pretrain", f"data.path={corpus_file}", f"--output-dir={run}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: {run} already holds a run (")
    assert err[0].endswith("pass --resume to continue it, or a new or empty --output-dir to "
                           "start over")
    assert [p.name for p in run.iterdir()] == [earlier.split("/")[0]]  # nothing written


def test_console_script_exit_code_and_no_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    proc = subprocess.run([sys.executable, "-m", "lmforge", "tokenizer", "train",
                           f"data.path={empty}", f"--output-dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "empty" in proc.stderr.splitlines()[-1]


def test_debug_shows_traceback() -> None:
    from lmforge.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["pretrain", "train.lrr=1", "--debug"])


def test_bare_run_dir_is_run_option() -> None:
    from lmforge.cli import _positional_run
    from lmforge.deploy.settings import PredictJob

    assert _positional_run(PredictJob, ["runs/x", "top_k=2"]) == ["run=runs/x", "top_k=2"]
    assert _positional_run(PredictJob, ["run=runs/x"]) == ["run=runs/x"]


def test_bare_word_without_run_field_is_one_line_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "oops"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unexpected argument 'oops'") and "\n" not in err


def test_key_values_after_options_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmforge.cli as cli

    seen = {}

    def fake_resolve(args):  # noqa: ANN001, ANN202
        seen["overrides"], seen["output_dir"] = args.overrides, args.output_dir
        raise cli.ConfigError("stop")

    monkeypatch.setattr(cli, "_resolve", fake_resolve)
    assert main(["predict", "runs/x", "--output-dir", "out", "top_k=2"]) == 2
    assert seen == {"overrides": ["runs/x", "top_k=2"], "output_dir": "out"}


def test_load_report_table_is_dropped_unless_debug(tmp_path: Path) -> None:
    """transformers' LOAD REPORT table is filtered; lmforge's own one-line notes are kept."""
    import logging

    from transformers import BertConfig, BertForSequenceClassification

    from lmforge.cli import drop_load_report, quiet_libraries

    config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32)
    BertForSequenceClassification(config).bert.save_pretrained(tmp_path)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("transformers.modeling_utils")
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.removeFilter(drop_load_report)
        BertForSequenceClassification.from_pretrained(tmp_path)  # new classifier head
        assert any("LOAD REPORT" in r.getMessage() for r in records)
        records.clear()
        quiet_libraries(debug=False, interactive=True)
        BertForSequenceClassification.from_pretrained(tmp_path)
        assert not any("LOAD REPORT" in r.getMessage() for r in records)
        logger.warning("other warnings still pass")
        assert [r.getMessage() for r in records] == ["other warnings still pass"]
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(drop_load_report)


def test_top_level_help_names_every_finetune_task() -> None:
    # How the help line spells each registered task; a new task must be added here and there.
    spelled = {"classification": "classification", "token_classification": "NER",
               "qa": "extractive QA", "seq2seq": "seq2seq", "sft": "chat SFT"}
    assert set(spelled) == set(TASKS)
    line = " ".join(build_parser().format_help().split("finetune", 1)[1].split("evaluate")[0]
                    .split())
    for words in spelled.values():
        assert words in line, (words, line)
