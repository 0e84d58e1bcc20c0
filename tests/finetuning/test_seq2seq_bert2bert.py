"""`lmforge finetune task.name=seq2seq` from an ``EncoderDecoderModel`` warm-started from two
BERT encoders (Rothe et al. 2020), the encoder-decoder route of docs/generation.md: it loads via
``AutoModelForSeq2SeqLM``, trains, generates and reloads for ``predict``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, EncoderDecoderModel

from lmforge.cli import main
from tests.finetuning.conftest import save_word_encoder
from tests.finetuning.test_seq2seq_e2e import WORDS, _pairs


def _bert2bert(root: Path, with_eos: bool = True) -> Path:
    """Tiny BERT encoder + the same BERT as a decoder with new cross-attention."""
    encoder = save_word_encoder(root / "encoder", WORDS)
    torch.manual_seed(0)
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(str(encoder), str(encoder))
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    if with_eos:
        # BERT tokenizers have no bos / eos: [CLS] starts the decoder, [SEP] ends a target.
        tokenizer.add_special_tokens({"bos_token": "[CLS]", "eos_token": "[SEP]"})
    for config in (model.config, model.generation_config):
        config.decoder_start_token_id = tokenizer.cls_token_id
        config.eos_token_id = tokenizer.sep_token_id
        config.pad_token_id = tokenizer.pad_token_id
    model.config.vocab_size = model.config.decoder.vocab_size
    out = root / "bert2bert"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_warm_started_encoder_decoder_trains_generates_and_predicts(tmp_path: Path) -> None:
    model_dir = _bert2bert(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    _pairs(data / "train.jsonl", 96, 0)
    _pairs(data / "dev.jsonl", 16, 1)
    run = tmp_path / "run"
    code = main(["finetune", f"--output-dir={run}", f"data.path={data}", "task.name=seq2seq",
                 f"model.pretrained={model_dir}", "model.dropout=0.0", "train.lr=3e-3",
                 "train.epochs=12", "train.warmup_ratio=0", "train.scheduler=constant",
                 "train.batch_size=16", "train.num_threads=1", "task.max_new_tokens=8",
                 "task.baseline_eval=false", "track.progress=false"])
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "seq2seq"
    assert json.loads((run / "model" / "config.json").read_text())["model_type"] == \
        "encoder-decoder"
    val = summary["validation_metrics"]
    # Starting from a random LM head over 13 tokens (perplexity ~13), a decoder that learned
    # nothing from its source stays far above this; copying the source brings it near 1.
    assert val["perplexity"] < 3.0 and val["rouge1"] > 50
    rows = [json.loads(x) for x in (run / "eval-validation" / "predictions.jsonl").read_text()
            .splitlines()]
    assert len(rows) == 16 and all(r["prediction"] for r in rows)
    # Decoding stops at [SEP] and drops [CLS] / [PAD]: only vocabulary words come out.
    assert {w for r in rows for w in r["prediction"].split()} <= set(WORDS)

    inputs = tmp_path / "in.txt"
    inputs.write_text("red cat one\nblue dog fish two\n")
    preds = tmp_path / "preds.jsonl"
    assert main(["predict", f"run={run}", f"input={inputs}", f"output={preds}"]) == 0
    got = [json.loads(x) for x in preds.read_text().splitlines()]
    assert [g["source"] for g in got] == ["red cat one", "blue dog fish two"]
    assert all(g["prediction"] for g in got)


def test_bert_tokenizer_without_eos_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = _bert2bert(tmp_path, with_eos=False)
    data = _pairs(tmp_path / "train.jsonl", 20, 0)
    code = main(["finetune", f"--output-dir={tmp_path / 'run'}", f"data.path={data}",
                 "task.name=seq2seq", f"model.pretrained={model_dir}",
                 "train.num_threads=1", "track.progress=false"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "needs a tokenizer with an eos token" in err[-1]


def test_collator_drops_the_doubled_start_token(tmp_path: Path) -> None:
    from lmforge.finetuning.seq2seq.data import Seq2SeqCollator

    model_dir = _bert2bert(tmp_path)
    model = EncoderDecoderModel.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    target = tokenizer(text_target=["red cat"])["input_ids"][0]
    assert target[0] == cls  # the tokenizer's own [CLS], the decoder start token too
    batch = Seq2SeqCollator(tokenizer, model, pad_to_multiple_of=None)(
        [{"input_ids": target, "labels": target}])
    words = tokenizer.convert_tokens_to_ids(["red", "cat"])
    # Taught once: [CLS] -> red -> cat -> [SEP], not [CLS] -> [CLS] -> red ...
    assert batch["labels"].tolist() == [[*words, sep]]
    assert batch["decoder_input_ids"].tolist() == [[cls, *words]]
