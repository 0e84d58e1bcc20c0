"""`lmforge finetune` / `evaluate` / `predict` for chat SFT on a tiny GPT-2."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import datasets
import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from lmforge.cli import main
from lmforge.finetuning.saved import read_settings
from lmforge.finetuning.sft.data import END_OF_TURN
from lmforge.finetuning.sft.task import ChatSftTask
from tests.conftest import TUNED_OPTIMIZER

WORDS = ["red", "green", "blue", "cat", "dog", "fish"]


def _rows(rows: int, seed: int) -> list[dict[str, str]]:
    """'say X Y' -> 'X Y'."""
    rng = random.Random(seed)
    out = []
    for _ in range(rows):
        words = " ".join(rng.choices(WORDS, k=2))
        out.append({"prompt": f"say {words}", "response": words})
    return out


def _jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 with a byte-level BPE tokenizer (no chat template of its own)."""
    from lmforge.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("gpt2")
    texts = [f"{r['prompt']} {r['response']} <|im_start|>user <|im_end|> assistant"
             for r in _rows(200, 9)]
    tok = train_tokenizer(texts, root, kind="bpe", vocab_size=400, min_frequency=1)
    assert not tok.chat_template
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=64, n_layer=1, n_head=4,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(root)
    return root


def _trained_tokens(encoded: datasets.Dataset) -> int:
    """Tokens the causal loss covers: labels after the one-position shift that are not -100."""
    return sum(sum(v != -100 for v in labels[1:]) for labels in encoded["labels"])


def test_finetune_evaluate_predict(tmp_path: Path, gpt2_dir: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _jsonl(data / "train.jsonl", _rows(64, 0))
    test_rows = _rows(12, 2)
    _jsonl(data / "dev.jsonl", _rows(12, 1))
    _jsonl(data / "test.jsonl", test_rows)
    run = tmp_path / "run"
    code = main(["finetune", f"--output-dir={run}", f"data.path={data}", "task.name=sft",
                 f"model.pretrained={gpt2_dir}", "model.dropout=0.0", "train.lr=5e-3",
                 "train.epochs=20", "train.warmup_ratio=0", "train.scheduler=constant",
                 "train.batch_size=16", "train.eval_every=40", "train.log_every=40",
                 "data.max_length=64", "task.max_new_tokens=12", "track.progress=false",
                 *TUNED_OPTIMIZER])
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "sft"
    metrics = summary["test_metrics"]
    assert {"loss", "perplexity", "token_accuracy", "tokens", "sample_rougeL"} <= set(metrics)

    # The saved tokenizer carries the default template, and prompts stay unlabeled: the
    # evaluated token count is exactly the reply tokens (+ end-of-turn) of the test split.
    tok = AutoTokenizer.from_pretrained(run / "model")
    assert tok.chat_template and END_OF_TURN in tok.chat_template
    info = json.loads((run / "model" / "lmforge_task.json").read_text())
    assert info["text_column"] == "prompt"
    settings = read_settings(run / "model")[1]
    encoded = ChatSftTask().encode(datasets.Dataset.from_list(test_rows), tok, settings, "test")
    first = encoded[0]
    reply = tok.decode([i for i, lab in zip(first["input_ids"], first["labels"], strict=True)
                        if lab != -100])
    assert reply.strip() == test_rows[0]["response"] + END_OF_TURN
    assert metrics["tokens"] == _trained_tokens(encoded)
    full = ChatSftTask().encode(datasets.Dataset.from_list(test_rows), tok,
                                replace(settings, train_on_prompt=True), "test")
    assert _trained_tokens(full) > 2 * metrics["tokens"]

    # 80 steps teach the 1-layer model to repeat the two words of the prompt: the sampled
    # replies are the references (a prompt-blind model repeats one fixed reply, which matches
    # at most the most frequent reference), generation stops at the end-of-turn marker.
    samples = [json.loads(x) for x in (run / "eval-test" / "predictions.jsonl").read_text()
               .splitlines()]
    assert len(samples) == 8 and samples[0]["reference"] == test_rows[0]["response"]
    right = sum(s["prediction"] == s["reference"] for s in samples)
    blind = max(Counter(s["reference"] for s in samples).values())
    assert right >= 7 and blind <= 2, samples
    assert metrics["token_accuracy"] >= 0.95 and metrics["sample_rougeL"] >= 90
    # The untuned model was scored first, on the same split and prompts (task.baseline_eval).
    before = summary["validation_before_metrics"]
    assert before["loss"] > summary["validation_metrics"]["loss"] + 1.0
    assert len((run / "eval-validation-before" / "predictions.jsonl").read_text()
               .splitlines()) == 8

    out = tmp_path / "eval"
    assert main(["evaluate", f"run={run}", f"data.path={data / 'test.jsonl'}",
                 f"output_dir={out}"]) == 0
    report = json.loads((out / "summary.json").read_text())
    assert report["headline"]["loss"] == pytest.approx(metrics["loss"], rel=1e-4)

    inputs = tmp_path / "in.txt"
    inputs.write_text("say red cat\nsay blue fish\n")
    preds = tmp_path / "preds.jsonl"
    assert main(["predict", f"run={run}", f"input={inputs}", f"output={preds}"]) == 0
    got = [json.loads(x) for x in preds.read_text().splitlines()]
    assert [g["prompt"] for g in got] == ["say red cat", "say blue fish"]
    assert [g["response"] for g in got] == ["red cat", "blue fish"]

    # Decoding options at predict time: extra stop strings and max_new_tokens are honoured,
    # seeded sampling repeats itself, and top_k (labels) is refused with the fix.
    assert main(["predict", f"run={run}", f"input={inputs}", f"output={preds}",
                 "generate.stop=[cat]"]) == 0
    assert [json.loads(x)["response"] for x in preds.read_text().splitlines()] == \
        ["red", "blue fish"]
    sampled = []
    for _ in range(2):
        assert main(["predict", f"run={run}", f"input={inputs}", f"output={preds}",
                     "generate.do_sample=true", "generate.temperature=3.0", "generate.seed=7",
                     "generate.max_new_tokens=6"]) == 0
        sampled.append(preds.read_text())
    assert sampled[0] == sampled[1]
    assert main(["predict", f"run={run}", f"input={inputs}", "top_k=3"]) == 2
    assert main(["predict", f"run={run}", f"input={inputs}",
                 "generate.max_new_tokens=100000"]) == 2
    wrong = _jsonl(tmp_path / "wrong.jsonl", [{"messages": ["say dog"]}])
    assert main(["predict", f"run={run}", f"input={wrong}", f"output={preds}"]) == 2

    # A messages file works for predict too (the trailing assistant turn is not an input).
    chat = _jsonl(tmp_path / "chat.jsonl", [{"messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "say dog"}]}])
    assert main(["predict", f"run={run}", f"input={chat}", f"output={preds}"]) == 0
    assert len(preds.read_text().splitlines()) == 1


def test_missing_columns_are_a_clear_error(tmp_path: Path, gpt2_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = _jsonl(tmp_path / "train.jsonl", [{"question": "a", "answer": "b"}] * 10)
    code = main(["finetune", f"--output-dir={tmp_path / 'run'}", f"data.path={data}",
                 "task.name=sft", f"model.pretrained={gpt2_dir}", "track.progress=false"])
    assert code == 2
    assert "'messages' column or 'prompt' and 'response' columns" in capsys.readouterr().err
