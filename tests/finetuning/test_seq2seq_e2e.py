"""`lmforge finetune` / `evaluate` / `predict` for seq2seq: a tiny BART learns a copy task;
a tiny T5 runs (its decoder start and dropout naming differ from BART's)."""

from __future__ import annotations

import json
import random
from collections import Counter
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


def _save_bart(root: Path) -> Path:
    """A tiny BART (1 + 1 layers, hidden 64); BART starts decoding from </s> (id 1)."""
    size = _tokenizer(root)
    torch.manual_seed(0)
    config = BartConfig(vocab_size=size, d_model=64, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=4, decoder_attention_heads=4,
                        encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=32,
                        pad_token_id=0, bos_token_id=1, eos_token_id=1,
                        decoder_start_token_id=1, forced_eos_token_id=1)
    BartForConditionalGeneration(config).save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_bart(tmp_path_factory.mktemp("bart"))


def test_finetune_evaluate_predict(tmp_path: Path, bart_dir: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _pairs(data / "train.jsonl", 96, 0)
    _pairs(data / "dev.jsonl", 16, 1)
    test_file = _pairs(data / "test.jsonl", 16, 2)
    run = tmp_path / "run"
    # BART has learned absolute positions, so 120 steps teach it to copy in order (a 1-layer
    # T5, with relative position biases only, learns the bag of words but not the order).
    code = main(["finetune", f"--output-dir={run}", f"data.path={data}", "task.name=seq2seq",
                 f"model.pretrained={bart_dir}", "model.dropout=0.0", "train.lr=1e-2",
                 "train.epochs=20", "train.warmup_ratio=0", "train.scheduler=constant",
                 "train.batch_size=16", "train.eval_every=30", "train.log_every=30",
                 "task.max_new_tokens=8", "track.progress=false"])
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "seq2seq"
    for split in ("validation_metrics", "test_metrics"):
        assert {"rouge1", "rouge2", "rougeL", "bleu", "exact_match", "loss",
                "perplexity"} <= set(summary[split])
    # Learning to use the source is what passes: a decoder that ignores it emits one fixed
    # output, which matches at most the most frequent test target (here each target is
    # distinct: 1 of 16) and shares a few words with the others.
    targets = [json.loads(x)["target"] for x in test_file.read_text().splitlines()]
    source_blind = max(Counter(targets).values()) / len(targets)
    test = summary["test_metrics"]
    assert source_blind <= 0.125
    assert test["exact_match"] >= 0.75 and test["rouge1"] >= 90 and test["perplexity"] < 1.5
    rows = [json.loads(x) for x in (run / "eval-test" / "predictions.jsonl").read_text()
            .splitlines()]
    assert len(rows) == 16 and set(rows[0]) == {"source", "target", "prediction"}
    assert sum(r["prediction"] == r["source"] for r in rows) / 16 == test["exact_match"]
    info = json.loads((run / "model" / "lmforge_task.json").read_text())
    assert info["text_column"] == "source"

    out = tmp_path / "eval"
    assert main(["evaluate", f"run={run}", f"data.path={test_file}", f"output_dir={out}"]) == 0
    report = json.loads((out / "summary.json").read_text())
    assert report["headline"]["rouge1"] == pytest.approx(test["rouge1"])

    inputs = tmp_path / "in.txt"
    sources = ["red cat one", "blue dog fish two", "green green fish"]
    inputs.write_text("\n".join(sources) + "\n")
    preds = tmp_path / "preds.jsonl"
    assert main(["predict", f"run={run}", f"input={inputs}", f"output={preds}"]) == 0
    got = [json.loads(x) for x in preds.read_text().splitlines()]
    assert [g["source"] for g in got] == sources
    assert sum(g["prediction"] == g["source"] for g in got) >= 2  # copies unseen inputs


def test_missing_target_column_is_a_clear_error(tmp_path: Path, bart_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = _pairs(tmp_path / "train.jsonl", 20, 0)
    code = main(["finetune", f"--output-dir={tmp_path / 'run'}", f"data.path={data}",
                 "task.name=seq2seq", f"model.pretrained={bart_dir}",
                 "task.target_column=summary", "track.progress=false"])
    assert code == 2
    assert "column 'summary' not found" in capsys.readouterr().err


def test_t5_runs_and_model_dropout_maps_to_its_config(tmp_path: Path) -> None:
    model_dir = tmp_path / "t5"
    size = _tokenizer(model_dir)
    torch.manual_seed(0)
    # T5 starts decoding from <pad> (id 0), unlike BART, and names its dropout dropout_rate.
    config = T5Config(vocab_size=size, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                      num_decoder_layers=1, num_heads=4, pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0, dropout_rate=0.0)
    T5ForConditionalGeneration(config).save_pretrained(model_dir)
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
    rows = [json.loads(x) for x in (run / "eval-test" / "predictions.jsonl").read_text()
            .splitlines()]
    assert len(rows) == 4 and all(isinstance(r["prediction"], str) for r in rows)
    saved = AutoConfig.from_pretrained(run / "model")
    assert saved.dropout_rate == pytest.approx(0.2)
