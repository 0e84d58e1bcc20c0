"""`lmforge finetune` / `evaluate` / `predict` for seq2seq on a tiny T5 copy task."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoConfig,
    BartConfig,
    BartForConditionalGeneration,
    T5Config,
    T5ForConditionalGeneration,
)

from lmforge.cli import main

WORDS = ["red", "green", "blue", "cat", "dog", "fish", "one", "two"]


def _pairs(path: Path, rows: int, seed: int) -> Path:
    """Copy task: the target is the source (3-4 words)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            text = " ".join(rng.choices(WORDS, k=rng.randint(3, 4)))
            fh.write(json.dumps({"source": text, "target": text}) + "\n")
    return path


def _tokenizer(root: Path) -> int:
    """Save a fixed word-level vocabulary (``<pad>=0 </s>=1 <unk>=2``); return its size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                  eos_token="</s>", unk_token="<unk>")
    tok.save_pretrained(root)
    return len(tok)


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny T5 (decoder start = pad, as in T5)."""
    root = tmp_path_factory.mktemp("t5")
    size = _tokenizer(root)
    torch.manual_seed(0)
    config = T5Config(vocab_size=size, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                      num_decoder_layers=1, num_heads=4, pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0, dropout_rate=0.0)
    T5ForConditionalGeneration(config).save_pretrained(root)
    return root


def test_finetune_evaluate_predict(tmp_path: Path, t5_dir: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _pairs(data / "train.jsonl", 96, 0)
    _pairs(data / "dev.jsonl", 16, 1)
    _pairs(data / "test.jsonl", 16, 2)
    run = tmp_path / "run"
    code = main(["finetune", f"--output-dir={run}", f"data.path={data}", "task.name=seq2seq",
                 f"model.pretrained={t5_dir}", "model.dropout=0.0", "train.lr=1e-2",
                 "train.epochs=5", "train.warmup_ratio=0", "train.scheduler=constant",
                 "train.batch_size=16", "train.eval_every=30", "train.log_every=30",
                 "task.max_new_tokens=8", "track.progress=false"])
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "seq2seq"
    for split in ("validation_metrics", "test_metrics"):
        assert {"rouge1", "rouge2", "rougeL", "bleu", "exact_match", "loss",
                "perplexity"} <= set(summary[split])
    # 30 steps teach the word distribution (uniform guessing over the 11 ids would give a
    # perplexity of ~11); a loose bound so the test checks learning without being brittle.
    assert summary["test_metrics"]["perplexity"] < 8
    rows = [json.loads(x) for x in (run / "eval-test" / "predictions.jsonl").read_text()
            .splitlines()]
    assert len(rows) == 16 and set(rows[0]) == {"source", "target", "prediction"}
    info = json.loads((run / "model" / "lmforge_task.json").read_text())
    assert info["text_column"] == "source"

    out = tmp_path / "eval"
    assert main(["evaluate", f"run={run}", f"data.path={data / 'test.jsonl'}",
                 f"output_dir={out}"]) == 0
    report = json.loads((out / "summary.json").read_text())
    assert report["headline"]["rouge1"] == pytest.approx(summary["test_metrics"]["rouge1"])

    inputs = tmp_path / "in.txt"
    inputs.write_text("red cat one\nblue dog fish two\n")
    preds = tmp_path / "preds.jsonl"
    assert main(["predict", f"run={run}", f"input={inputs}", f"output={preds}"]) == 0
    got = [json.loads(x) for x in preds.read_text().splitlines()]
    assert [g["source"] for g in got] == ["red cat one", "blue dog fish two"]
    assert all(isinstance(g["prediction"], str) for g in got)


def test_missing_target_column_is_a_clear_error(tmp_path: Path, t5_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = _pairs(tmp_path / "train.jsonl", 20, 0)
    code = main(["finetune", f"--output-dir={tmp_path / 'run'}", f"data.path={data}",
                 "task.name=seq2seq", f"model.pretrained={t5_dir}",
                 "task.target_column=summary", "track.progress=false"])
    assert code == 2
    assert "column 'summary' not found" in capsys.readouterr().err


def test_bart_runs_and_model_dropout_maps_to_its_config(tmp_path: Path) -> None:
    model_dir = tmp_path / "bart"
    size = _tokenizer(model_dir)
    torch.manual_seed(0)
    # BART starts decoding from </s> (here id 1), unlike T5.
    config = BartConfig(vocab_size=size, d_model=32, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=4, decoder_attention_heads=4,
                        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32,
                        pad_token_id=0, bos_token_id=1, eos_token_id=1,
                        decoder_start_token_id=1, forced_eos_token_id=1)
    BartForConditionalGeneration(config).save_pretrained(model_dir)
    data = tmp_path / "data"
    data.mkdir()
    _pairs(data / "train.jsonl", 32, 0)
    _pairs(data / "test.jsonl", 4, 1)
    run = tmp_path / "run"
    assert main(["finetune", f"--output-dir={run}", f"data.path={data}", "task.name=seq2seq",
                 f"model.pretrained={model_dir}", "model.dropout=0.2", "train.max_steps=3",
                 "train.batch_size=8", "data.validation_ratio=0", "task.max_new_tokens=4",
                 "track.progress=false"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert {"rouge1", "bleu", "loss"} <= set(summary["test_metrics"])
    saved = AutoConfig.from_pretrained(run / "model")
    assert saved.dropout == pytest.approx(0.2) and saved.attention_dropout == pytest.approx(0.2)
