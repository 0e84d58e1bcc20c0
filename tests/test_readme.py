"""Every ``lmforge ...`` command in README.md's code blocks runs as written: each parses and
validates against its command's config, and the prompt one fits its demonstrations."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

import lmforge.cli as cli
from lmforge.commands.registry import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"


def readme_commands() -> list[list[str]]:
    """The argument lists of the ``lmforge`` commands in README.md's shell code blocks
    (continuation lines joined, comments dropped, one command per side of a pipe)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars="|")
            lexer.whitespace_split, lexer.commenters = True, "#"
            words, command = list(lexer), []
            for word in [*words, "|"]:
                if word != "|":
                    command.append(word)
                    continue
                if command[:1] == ["lmforge"]:
                    out.append(command[1:])
                command = []
    return out


COMMAND_LINES = readme_commands()


def _name(argv: list[str]) -> str:
    return " ".join(argv[:2]) if " ".join(argv[:2]) in COMMANDS else argv[0]


def test_the_readme_shows_the_lifecycle_commands() -> None:
    shown = {_name(argv) for argv in COMMAND_LINES}
    assert {"tokenizer train", "pretrain", "finetune", "predict", "prompt", "export",
            "serve"} <= shown, shown


@pytest.mark.parametrize("argv", COMMAND_LINES,
                         ids=[f"{i}-{_name(a)}" for i, a in enumerate(COMMAND_LINES)])
def test_every_readme_command_parses_against_its_config(
        argv: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    if "--help" in argv:
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        assert done.value.code == 0 and "train.lr" in capsys.readouterr().out
        return
    ran: list[tuple[str, Any]] = []
    monkeypatch.setattr(cli, "run_command", lambda name, job, resume=False: ran.append(
        (name, job)) or {"command": name})
    code = cli.main(argv)
    assert code == 0, capsys.readouterr().err  # keys exist and values validate
    (name, job), = ran
    assert isinstance(job, COMMANDS[name].config)


def _tiny_smollm2_stand_in(root: Path, tokenizer_dir: Path) -> Path:
    """A 1-layer Llama with SmolLM2-135M's context (8192 positions) and a byte-level BPE
    tokenizer of 400 pieces (several tokens a word, so more tokens than SmolLM2's)."""
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.save_pretrained(root)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2,
                                 intermediate_size=32, max_position_embeddings=8192,
                                 pad_token_id=tok.pad_token_id or 0)).save_pretrained(root)
    return root


@pytest.mark.skipif(not SST2.is_dir(), reason="needs ../shared/data/sst2 (the README's data)")
def test_the_readme_prompt_command_fits_its_demonstrations(
        bpe_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The README's `lmforge prompt ... mode=icl shots=4 calibrate=true` on the real SST-2
    demonstrations, with a tiny stand-in for SmolLM2 and 4 evaluated sentences."""
    argv = next(a for a in COMMAND_LINES if a[0] == "prompt")
    model = _tiny_smollm2_stand_in(tmp_path / "model", bpe_dir)
    argv = [w if not w.startswith("model.pretrained=") else f"model.pretrained={model}"
            for w in argv]
    monkeypatch.chdir(ROOT)
    code = cli.main([*argv, "max_examples=4", f"--output-dir={tmp_path / 'run'}"])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "it_was" in out and "movie_is" in out  # every template of sst2.yaml scored
