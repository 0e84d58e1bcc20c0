"""The user's text files and stdin: UTF-8 or a one-line error (exit 2), never a traceback."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from lmforge.cli import main
from lmforge.errors import ConfigError, DataError
from lmforge.prompting.templates import load_prompts
from lmforge.serving.security import load_api_keys
from lmforge.textfiles import read_lines, read_text

LATIN1 = "café très bon\n".encode("latin-1")  # 0xe9 at byte 4 of line 1


def test_read_lines_strips_line_ends_and_a_bom(tmp_path: Path) -> None:
    file = tmp_path / "in.txt"
    file.write_bytes(b"\xef\xbb\xbfone\r\ntwo\n\nthr\xc3\xa9e")
    assert list(read_lines(file)) == ["one", "two", "", "thr\u00e9e"]
    assert read_text(file) == "one\r\ntwo\n\nthr\u00e9e"


@pytest.mark.parametrize(("data", "where"), [
    (b"fine\n" + LATIN1, "line 2, byte 4: 0xe9"),
    ("two\n".encode("utf-16"), "line 1, byte 1: 0xff"),  # a UTF-16 file (its byte-order mark)
])
def test_non_utf8_files_name_the_line_byte_and_fix(tmp_path: Path, data: bytes,
                                                   where: str) -> None:
    file = tmp_path / "in.txt"
    file.write_bytes(data)
    for read in (lambda: list(read_lines(file)), lambda: read_text(file)):
        with pytest.raises(DataError) as err:
            read()
        message = str(err.value)
        assert where in message and "iconv -f latin1 -t utf-8" in message
        assert str(file) in message and "\n" not in message
    with pytest.raises(ConfigError):  # the caller picks the error class
        read_text(file, ConfigError)


def test_stdin_bytes_and_a_c_locale_text_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n" + LATIN1)))
    lines = read_lines("-")
    assert next(lines) == "ok"
    with pytest.raises(DataError, match=r"standard input is not UTF-8 text \(line 2, byte 4"):
        next(lines)
    # A text stream without .buffer, decoded with surrogateescape as under LANG=C.
    monkeypatch.setattr(sys, "stdin", io.StringIO(LATIN1.decode("utf-8", "surrogateescape")))
    with pytest.raises(DataError, match=r"standard input is not UTF-8 text \(line 1\)"):
        list(read_lines("-"))


def test_config_templates_and_key_files_in_latin1_are_one_line_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "ft.yaml"
    config.write_bytes(b"train:\n  lr: 1e-3  # caf\xe9\n")
    assert main(["finetune", "-c", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ft.yaml' is not UTF-8 text (line 2, byte 18: 0xe9)" in err[0], err
    templates = tmp_path / "prompts.yaml"
    templates.write_bytes(b"templates:\n  - \"{text} It was caf\xe9.\"\n")
    with pytest.raises(ConfigError, match="prompts.yaml' is not UTF-8 text"):
        load_prompts(templates)
    keys = tmp_path / "keys.txt"
    keys.write_bytes(b"\xe9" * 16 + b"\n")
    with pytest.raises(ConfigError, match="keys.txt' is not UTF-8 text"):
        load_api_keys(key_file=str(keys))
