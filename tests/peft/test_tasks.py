"""LoRA beyond classification (NER, QA, causal SFT), prefix tuning on SFT, and resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from lmforge.cli import main
from lmforge.finetuning.saved import read_settings
from lmforge.finetuning.sft.data import END_OF_TURN, chat_prompt
from lmforge.finetuning.sft.task import ChatSftTask
from tests.finetuning.conftest import save_word_encoder
from tests.finetuning.test_ner_e2e import CITIES, NAMES, _conll
from tests.finetuning.test_ner_e2e import FILLER as NER_FILLER
from tests.finetuning.test_qa_e2e import CITIES as QA_CITIES
from tests.finetuning.test_qa_e2e import FILLER as QA_FILLER
from tests.finetuning.test_qa_e2e import PEOPLE, QUESTION, _squad
from tests.finetuning.test_sft_e2e import WORDS, _jsonl, _rows
from tests.peft.conftest import LR, common_args, summary_of


def _evaluate(run: Path, out: Path, split: str = "validation") -> dict:
    """``lmforge evaluate`` of the reloaded run on one of its own splits.

    fp32 like the training runs (``common_args``), so the losses can be compared to 1e-5;
    ``auto`` would pick bf16 on a CPU with bf16 units.
    """
    assert main(["evaluate", f"run={run}", f"split={split}", f"output_dir={out}",
                 "precision=fp32"]) == 0
    return json.loads((out / "summary.json").read_text())["headline"]


def test_lora_token_classification(tmp_path: Path) -> None:
    encoder = save_word_encoder(tmp_path / "enc", NAMES + CITIES + NER_FILLER + ["mr", "in",
                                                                                  "new"])
    data = tmp_path / "data"
    data.mkdir()
    _conll(data / "train.conll", 64, 0)
    _conll(data / "dev.conll", 16, 1)
    run = tmp_path / "run"
    # 24 steps: at 8 the tagger still says O everywhere (f1 0); at 24 it finds most entities.
    assert main([*common_args(run, data, encoder, steps=24), "task.name=token_classification",
                 "peft.method=lora", "train.lr=1e-2"]) == 0
    summary = summary_of(run)
    assert summary["peft_method"] == "lora" and summary["trainable_share"] < 0.1
    config = json.loads((run / "model" / "adapter_config.json").read_text())
    assert config["task_type"] == "TOKEN_CLS" and "classifier" in config["modules_to_save"]
    # The reloaded adapter + head scores the dev split exactly as the trained model did.
    assert _evaluate(run, tmp_path / "eval") == pytest.approx(summary["validation_metrics"])
    # The adapter learned: its LoRA updates left zero, and the entities are found (an
    # all-O tagger scores f1 0; 24 steps reach 0.86).
    _assert_lora_trained(run)
    assert summary["validation_metrics"]["f1"] >= 0.5, summary["validation_metrics"]


def test_lora_question_answering(tmp_path: Path) -> None:
    encoder = save_word_encoder(tmp_path / "enc", PEOPLE + QA_CITIES + QA_FILLER + QUESTION +
                                ["lives", "in"])
    data = tmp_path / "data"
    data.mkdir()
    _squad(data / "train.jsonl", 48, 0)
    _squad(data / "dev.jsonl", 12, 1)
    run = tmp_path / "run"
    assert main([*common_args(run, data, encoder), "task.name=qa", "data.max_length=32",
                 "task.doc_stride=8", "peft.method=lora", "train.lr=1e-2"]) == 0
    summary = summary_of(run)
    config = json.loads((run / "model" / "adapter_config.json").read_text())
    assert config["task_type"] == "QUESTION_ANS" and "qa_outputs" in config["modules_to_save"]
    assert _evaluate(run, tmp_path / "eval") == pytest.approx(summary["validation_metrics"])
    # The adapter learned: LoRA updates left zero, and answers are found (one step: exact
    # match 0 of 12; eight: 5 of 12).
    _assert_lora_trained(run)
    assert summary["validation_metrics"]["exact_match"] >= 25.0, summary["validation_metrics"]


def _assert_lora_trained(run: Path) -> None:
    """Every LoRA B matrix of the saved adapter moved from its zero initialisation."""
    adapter = load_file(str(run / "model" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(float(v.abs().max()) > 0 for v in lora_b)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 (1 layer, 32 wide) with a byte-level BPE tokenizer."""
    from lmforge.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("gpt2")
    texts = [f"{r['prompt']} {r['response']} <|im_start|>user <|im_end|> assistant"
             for r in _rows(200, 9)]
    tok = train_tokenizer(texts, root, kind="bpe", vocab_size=400, min_frequency=1)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=1,
                               n_head=4, bos_token_id=tok.bos_token_id,
                               eos_token_id=tok.eos_token_id)).save_pretrained(root)
    return root


@pytest.mark.parametrize("method", ["lora", "prefix"])
def test_causal_sft(method: str, tmp_path: Path, gpt2_dir: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _jsonl(data / "train.jsonl", _rows(48, 0))
    _jsonl(data / "dev.jsonl", _rows(8, 1))
    run = tmp_path / "run"
    assert main([*common_args(run, data, gpt2_dir), "task.name=sft", f"peft.method={method}",
                 "train.lr=1e-2", "data.max_length=48", "task.max_new_tokens=4",
                 "peft.num_virtual_tokens=4", "model.dropout=0.0"]) == 0
    summary = summary_of(run)
    assert summary["peft_method"] == method and summary["trainable_share"] < 0.2
    config = json.loads((run / "model" / "adapter_config.json").read_text())
    assert config["task_type"] == "CAUSAL_LM"
    headline = _evaluate(run, tmp_path / "eval")
    assert headline["loss"] == pytest.approx(summary["validation_metrics"]["loss"], rel=1e-5)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"say {WORDS[0]} {WORDS[1]}\n")
    out = tmp_path / "replies.jsonl"
    assert main(["predict", f"run={run}", f"input={prompts}", f"output={out}"]) == 0
    assert isinstance(json.loads(out.read_text())["response"], str)

    # The adapter loads with plain peft on the base model and scores the dev rows (the run's
    # own encoding) at the run's validation loss. LoRA learned (0.2 nats below the base
    # model; its B matrices start at zero). A 4-token prefix barely moves a random 1-layer
    # model in 8 steps (its random start alone is 0.05 nats below the base): it trained.
    from peft import PeftModel

    tok = AutoTokenizer.from_pretrained(run / "model")
    dev = ChatSftTask().encode(datasets.Dataset.from_list(_rows(8, 1)), tok,
                               read_settings(run / "model")[1], "dev")
    base = GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
    tuned = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(gpt2_dir),
                                      run / "model").eval()
    loss = summary["validation_metrics"]["loss"]
    assert _token_loss(tuned, dev) == pytest.approx(loss, rel=1e-4)
    if method == "lora":
        _assert_lora_trained(run)
        assert loss < _token_loss(base, dev) - 0.1
    else:
        steps = [load_file(str(run / "checkpoints" / f"step-0000000{i}" / "model.safetensors"))
                 for i in (4, 8)]
        prefix = [k for k in steps[0] if "prompt_encoder" in k]
        assert prefix and any(not torch.equal(steps[0][k], steps[1][k]) for k in prefix)
    # predict's reply is the adapter's own greedy reply; LoRA's is not the base model's
    # (both models answer the prefix run's prompt with an empty reply).
    replies = [_greedy_reply(m, tok, f"say {WORDS[0]} {WORDS[1]}") for m in (tuned, base)]
    assert json.loads(out.read_text())["response"] == replies[0]
    assert method != "lora" or replies[0] != replies[1], replies


def _token_loss(model: torch.nn.Module, rows: datasets.Dataset) -> float:
    """Mean next-token cross-entropy over the labelled (reply) tokens of ``rows``."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            labels = torch.tensor([row["labels"]])
            n = int((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=torch.tensor([row["input_ids"]]),
                                 labels=labels).loss) * n
            count += n
    return total / count


def _greedy_reply(model: torch.nn.Module, tok: object, prompt: str) -> str:
    """Greedy reply of ``model`` to one user turn, cut at the end-of-turn marker."""
    ids = tok(chat_prompt(tok, [{"role": "user", "content": prompt}]),
              add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False,
                             pad_token_id=tok.eos_token_id)
    text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    return text.split(END_OF_TURN)[0].strip()


def test_lora_resume_matches_uninterrupted(tmp_path: Path, trained: Callable[[str], Path],
                                           cls_data: Path, encoder_dir: Path) -> None:
    full = trained("lora")  # 8 steps in one go
    part = tmp_path / "run"
    args = [*common_args(part, cls_data, encoder_dir, steps=4), "peft.method=lora",
            f"train.lr={LR['lora']}", "peft.num_virtual_tokens=4", "peft.reduction_factor=8"]
    assert main(args) == 0
    resumed = [a for a in args if not a.startswith("train.max_steps")]
    assert main([*resumed, "train.max_steps=8", "--resume"]) == 0
    a = load_file(str(full / "checkpoints" / "step-00000008" / "model.safetensors"))
    b = load_file(str(part / "checkpoints" / "step-00000008" / "model.safetensors"))
    assert a.keys() == b.keys()
    trained_keys = [k for k in a if "lora_" in k or "modules_to_save" in k]
    assert trained_keys
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    # The adapter really trained between step 4 and 8 (the comparison is not vacuous).
    mid = load_file(str(part / "checkpoints" / "step-00000004" / "model.safetensors"))
    assert any(not torch.equal(mid[k], b[k]) for k in trained_keys)
    assert summary_of(part)["steps"] == 8
