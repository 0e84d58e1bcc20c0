"""Chat SFT under FSDP2 with two CPU processes (gloo) through ``accelerate launch``.

Against one process on the same data and global batch (2 x 4 rows vs 1 x 8): the losses and
the saved weights agree, ``model/`` loads in plain ``transformers``, and a run killed after
its first checkpoint resumes from it (the sharded optimizer state included) to the weights
of the uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

WORDS = ["red", "green", "blue", "cat", "dog", "fish"]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes=2",
              "--num_machines=1", "--machine_rank=0", "--mixed_precision=no", "--dynamo_backend=no",
              "--use_fsdp", "--fsdp_version=2", "--fsdp_auto_wrap_policy=TRANSFORMER_BASED_WRAP",
              "--fsdp_state_dict_type=SHARDED_STATE_DICT"]
ENV = {**os.environ, "LMFORGE_PROGRESS": "0", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
STEPS = 20


@pytest.fixture(scope="module")
def llama_task(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-layer Llama with tied embeddings (as SmolLM2) and chat rows (train / dev).

    Every row is "say X Y" -> "X Y", each word one token: all rows train the same number of
    tokens, so the mean of the two processes' mean losses is the one process's mean.
    """
    from lmforge.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("fsdp")
    model_dir, data = root / "llama", root / "data"
    # The default chat template's rendering, so every word (line start or not) is one token.
    texts = [f"<|im_start|>user\nsay {a} {b}<|im_end|>\n<|im_start|>assistant\n{a} {b}"
             "<|im_end|>\n" for a in WORDS for b in WORDS]
    tok = train_tokenizer(texts, model_dir, kind="bpe", vocab_size=400, min_frequency=1)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=True, pad_token_id=tok.pad_token_id)).save_pretrained(model_dir)
    rng = random.Random(0)
    data.mkdir()
    for name, rows in (("train", 48), ("dev", 8)):
        lines = []
        for _ in range(rows):
            words = " ".join(rng.choices(WORDS, k=2))
            lines.append(json.dumps({"messages": [{"role": "user", "content": f"say {words}"},
                                                  {"role": "assistant", "content": words}]}))
        (data / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return model_dir, data


def _finetune(launcher: list[str], run: Path, model_dir: Path, data: Path, batch_size: int,
              *extra: str) -> list[str]:
    return [*launcher, "-m", "lmforge", "finetune", f"--output-dir={run}", "task.name=sft",
            f"data.path={data}", f"model.pretrained={model_dir}", "model.dropout=0.0",
            f"train.max_steps={STEPS}", f"train.batch_size={batch_size}", "train.lr=1e-2",
            "train.warmup_ratio=0", "train.group_by_length=false", "train.eval_every=10",
            "train.save_every=2", "train.log_every=1", "train.num_threads=1",
            "train.precision=fp32", "task.max_new_tokens=3", "track.backends=jsonl",
            "track.progress=false", *extra]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _eval_losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["eval_loss"] for r in rows if "eval_loss" in r]


def _weights(run: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / name))


def _checkpoint_steps(run: Path) -> list[int]:
    return sorted(int(p.name[5:]) for p in (run / "checkpoints").glob("step-*"))


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants: torch's elastic agent starts the workers in
    sessions of their own, so killing the launcher's process group would leave them running."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while being listed
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


@pytest.mark.slow
def test_fsdp_matches_one_process_and_resumes_after_kill(
        tmp_path: Path, llama_task: tuple[Path, Path]) -> None:
    model_dir, data = llama_task
    single, sharded = tmp_path / "single", tmp_path / "fsdp"
    _run(_finetune([sys.executable], single, model_dir, data, 8))
    _run(_finetune(ACCELERATE, sharded, model_dir, data, 4))
    summary = json.loads((sharded / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == STEPS
    # Sharded optimizer state (one shard per rank) next to the full weights of rank 0.
    checkpoint = sharded / "checkpoints" / f"step-{STEPS:08d}"
    assert sorted(p.name for p in (checkpoint / "optimizer_0").glob("*.distcp")) == \
        ["__0_0.distcp", "__1_0.distcp"]
    assert not (checkpoint / "optimizer.pt").exists()

    # The losses (evaluated in lockstep by both ranks, and by rank 0's rebuilt model for the
    # report) and the final weights are the one-process run's.
    one, two = _eval_losses(single), _eval_losses(sharded)
    assert len(one) == len(two) == 2 and one[1] < one[0]
    assert two == pytest.approx(one, abs=1e-5)
    expected = json.loads((single / "summary.json").read_text())["validation_metrics"]
    assert summary["validation_metrics"]["loss"] == pytest.approx(expected["loss"], abs=1e-5)
    reference, weights = _weights(single), _weights(sharded)
    assert set(weights) == set(reference)  # one name for the tied lm_head / embeddings
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, reference[name], atol=1e-5, rtol=1e-4)
    loaded = AutoModelForCausalLM.from_pretrained(sharded / "model")
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight

    # SIGKILL both processes once a mid-run checkpoint exists, resume: the same weights.
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_finetune(ACCELERATE, killed, model_dir, data, 4), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if (killed / "checkpoints").is_dir() and any(_checkpoint_steps(killed)):
            break
        time.sleep(0.02)
    _kill_tree(proc.pid)  # the launcher and its two workers
    proc.wait()
    time.sleep(1)  # a worker left alive would go on writing checkpoints
    assert not (killed / "summary.json").exists(), "the run finished before it was killed"
    at_kill = _checkpoint_steps(killed)
    assert at_kill and at_kill[-1] < STEPS
    resumed = _run(_finetune(ACCELERATE, killed, model_dir, data, 4, "--resume"))
    assert f"step-{at_kill[-1]:08d} (step {at_kill[-1]}," in resumed.stderr  # "resumed from"
    assert json.loads((killed / "summary.json").read_text())["steps"] == STEPS
    for name, tensor in _weights(killed).items():
        torch.testing.assert_close(tensor, weights[name], atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_fsdp_lora_matches_one_process(tmp_path: Path, llama_task: tuple[Path, Path]) -> None:
    model_dir, data = llama_task
    lora = ("peft.method=lora", "peft.dropout=0.0", "train.max_steps=4", "train.eval_every=4")
    single, sharded = tmp_path / "single", tmp_path / "fsdp"
    _run(_finetune([sys.executable], single, model_dir, data, 8, *lora))
    _run(_finetune(ACCELERATE, sharded, model_dir, data, 4, *lora))
    assert _eval_losses(sharded) == pytest.approx(_eval_losses(single), abs=1e-5)
    reference = _weights(single, "adapter_model.safetensors")
    adapter = _weights(sharded, "adapter_model.safetensors")
    assert set(adapter) == set(reference) and adapter
    for name, tensor in adapter.items():
        torch.testing.assert_close(tensor, reference[name], atol=1e-5, rtol=1e-4)
