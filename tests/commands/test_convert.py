"""``lmforge convert``: a GGUF file as a folder that plain transformers loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.cli import main

pytest.importorskip("gguf")

from tests.models.test_gguf import write_tiny_gguf  # noqa: E402


def test_convert_writes_a_folder_transformers_loads(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoModelForCausalLM

    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    out = tmp_path / "tiny-hf"
    assert main(["convert", str(source), f"output={out}"]) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 2
    assert json.loads((out / "lmforge_gguf.json").read_text())["source"] == str(source.resolve())
    assert str(out) in capsys.readouterr().out
    # Run again: the finished folder is reused, not rewritten.
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert main(["convert", str(source), f"output={out}"]) == 0
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("args, message", [
    ([], "name the model to convert"),
    (["nothing-here"], "neither a .gguf file nor a builtin"),
    (["missing.gguf"], "does not exist"),
])
def test_convert_bad_input_is_one_line_and_exit_2(args: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
