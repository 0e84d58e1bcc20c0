"""Every PEFT method on a tiny BERT classifier: train, save, reload, predict, merge."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmforge.cli import main
from lmforge.errors import ConfigError
from lmforge.finetuning.saved import load_finetuned
from lmforge.finetuning.task import get_task
from lmforge.peft import PeftConfig, apply_peft, merge_adapter
from lmforge.peft.adapters import AdapterLinear, BottleneckAdapter
from tests.peft.conftest import common_args, summary_of

TEXTS = ["the film was really great", "a very lovely and sad story", "the story was quite",
         "and very boring the film"]
HIDDEN, LAYERS, HEAD = 64, 2, 64 * 3 + 3  # tiny encoder; classifier (64 -> 3 labels)


def _logits(model: torch.nn.Module, tokenizer, texts: list[str] = TEXTS) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.float()


def _expected_trainable(method: str) -> int:
    """Trainable parameter counts by the methods' formulas (num_virtual_tokens=4, r=8, /8)."""
    bottleneck = HIDDEN // 8
    adapter = 2 * HIDDEN * bottleneck + bottleneck + HIDDEN  # W_down, b_down, W_up, b_up
    norms = (2 * LAYERS + 1) * 2 * HIDDEN  # two LayerNorms per layer + the embeddings' one
    per_layer_bias = 4 * HIDDEN + 2 * HIDDEN + 128 + HIDDEN  # q,k,v,o; 2 LN; FFN in/out
    return HEAD + {
        "lora": LAYERS * 2 * (8 * HIDDEN + HIDDEN * 8),  # A, B on query and value
        "ia3": LAYERS * (HIDDEN + HIDDEN + 128),  # l_k, l_v, l_ff (input of FFN output)
        "prompt": 4 * HIDDEN,
        "houlsby": 2 * LAYERS * adapter + norms,
        "pfeiffer": LAYERS * adapter + norms,
        "bitfit": LAYERS * per_layer_bias + HIDDEN + HIDDEN,  # + embeddings LN, pooler
    }[method]


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt", "ptuning", "houlsby", "pfeiffer",
                                    "bitfit"])
def test_method_trains_saves_reloads_predicts(method: str, trained: Callable[[str], Path],
                                              encoder_dir: Path) -> None:
    run = trained(method)
    summary = summary_of(run)
    assert summary["peft_method"] == method
    assert 0 < summary["trainable_share"] < 0.2
    if method != "ptuning":  # the prompt encoder MLP has no short formula
        assert summary["trainable_parameters"] == _expected_trainable(method)
    files = {p.name for p in (run / "model").iterdir()}
    assert {"lmforge_peft.json", "lmforge_task.json", "tokenizer.json"} <= files
    assert "model.safetensors" not in files  # only the method's weights are saved
    if method in ("houlsby", "pfeiffer", "bitfit"):
        assert "adapter_weights.safetensors" in files
    else:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= files

    # Reload (as predict / evaluate do): same scores as the report written after training.
    loaded = load_finetuned(str(run))
    task, settings, tokenizer, model = loaded.task, loaded.settings, loaded.tokenizer, \
        loaded.model
    rows = [json.loads(x) for x in (run / "eval-validation" / "predictions.jsonl")
            .read_text().splitlines()]
    again = task.predict(model, tokenizer, settings, [{"text": r["text"]} for r in rows],
                         top_k=3)
    for row, pred in zip(rows, again, strict=True):
        assert pred["label"] == row["predicted"]
        scores = {s["label"]: s["score"] for s in pred["top_k"]}
        assert scores == pytest.approx(row["scores"], abs=1e-5)

    # Head round trip: the reloaded head is the trained one (best checkpoint), not the init.
    best = load_file(str(run / "checkpoints" / f"step-{summary['best_step']:08d}" /
                         "model.safetensors"))
    head = {n: p for n, p in model.named_parameters()
            if "classifier" in n and "original_module" not in n}
    assert len(head) == 2
    torch.manual_seed(3)  # the run's seed: the head initialisation of the run
    init, _ = task.load_model(str(encoder_dir), settings)
    for name, p in head.items():
        assert torch.equal(p, best[f"model.{name}"]), name
        assert not torch.allclose(p, init.state_dict()[f"classifier.{name.split('.')[-1]}"])
    # The method's own weights moved: they differ between the step-4 and step-8 checkpoints
    # (so the optimizer updates them), and from their known start where it has a closed form.
    moved = {"lora": "lora_B", "ia3": "ia3_l", "prompt": "prompt_encoder",
             "ptuning": "prompt_encoder", "houlsby": "adapter.up", "pfeiffer": "adapter.up",
             "bitfit": "attention.self.query.bias"}[method]
    ckpts = run / "checkpoints"
    step4 = load_file(str(ckpts / "step-00000004" / "model.safetensors"))
    step8 = load_file(str(ckpts / "step-00000008" / "model.safetensors"))
    names = [n for n in step8 if moved in n and "original_module" not in n]
    assert names, sorted(step8)
    assert all(step4[n].shape == step8[n].shape for n in names)
    assert any(not torch.equal(step4[n], step8[n]) for n in names), names
    weights = [p for n, p in model.named_parameters() if moved in n]
    assert weights
    if method in ("lora", "houlsby", "pfeiffer"):  # zero-initialised up / B matrices
        assert all(p.abs().sum() > 0 for p in weights)
    elif method == "ia3":  # scaling vectors start at 1 (Liu et al. 2022)
        assert all(not torch.equal(p, torch.ones_like(p)) for p in weights)
    elif method == "bitfit":  # the biases start as the pretrained ones
        start = load_file(str(encoder_dir / "model.safetensors"))
        for name, p in model.named_parameters():
            if moved in name:
                key = name[name.index("encoder.layer"):]
                assert not torch.equal(p, start[key]), name


def test_bitfit_trains_only_biases_and_head(encoder_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(encoder_dir, num_labels=3)
    model = apply_peft(model, PeftConfig(method="bitfit"), get_task("classification"),
                       str(encoder_dir))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.endswith("bias") or n.startswith("classifier.") for n in trainable)
    assert "classifier.weight" in trainable and "bert.pooler.dense.bias" in trainable


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_merge_gives_identical_predictions(method: str, trained: Callable[[str], Path]) -> None:
    loaded = load_finetuned(str(trained(method)))
    tokenizer, model = loaded.tokenizer, loaded.model
    before = _logits(model, tokenizer)
    merged = merge_adapter(model)
    assert type(merged).__name__ == "BertForSequenceClassification"
    assert not any("lora_" in n or "ia3_" in n or "modules_to_save" in n
                   for n, _ in merged.named_parameters())
    after = _logits(merged, tokenizer)
    assert (before - after).abs().max() < 1e-5
    assert torch.equal(before.argmax(-1), after.argmax(-1))


def test_merge_refuses_prompt_and_adapters(trained: Callable[[str], Path]) -> None:
    for method in ("prompt", "houlsby"):
        model = load_finetuned(str(trained(method))).model
        with pytest.raises(ConfigError, match="cannot be merged"):
            merge_adapter(model)
    model = load_finetuned(str(trained("bitfit"))).model
    assert merge_adapter(model) is model  # already plain weights


def test_plain_peft_loads_the_saved_adapter(trained: Callable[[str], Path],
                                            encoder_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    run = trained("lora")
    loaded = load_finetuned(str(run))
    tokenizer, ours = loaded.tokenizer, loaded.model
    base = AutoModelForSequenceClassification.from_pretrained(encoder_dir, num_labels=3)
    plain = PeftModel.from_pretrained(base, run / "model").eval()
    assert torch.equal(_logits(plain, tokenizer), _logits(ours, tokenizer))
    config = json.loads((run / "model" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(encoder_dir)
    assert set(config["modules_to_save"]) >= {"classifier"}


def test_adapter_starts_as_identity() -> None:
    base = torch.nn.Linear(8, 16)
    wrapped = AdapterLinear(base, BottleneckAdapter(16, 4, "gelu"))
    x = torch.randn(3, 5, 8)
    assert torch.equal(wrapped(x), base(x))  # W_up = 0: the pretrained function at step 0


def test_freeze_layers_with_full_finetuning(tmp_path: Path, cls_data: Path,
                                            encoder_dir: Path) -> None:
    run = tmp_path / "run"
    assert main([*common_args(run, cls_data, encoder_dir, steps=4), "peft.freeze_layers=1",
                 "train.lr=5e-3"]) == 0
    summary = summary_of(run)
    # Trainable: layer 1 (of 0, 1), the pooler and the head; embeddings and layer 0 frozen.
    per_layer = 4 * (HIDDEN * HIDDEN + HIDDEN) + 2 * (HIDDEN * 128) + 128 + HIDDEN + 4 * HIDDEN
    assert summary["trainable_parameters"] == per_layer + HIDDEN * HIDDEN + HIDDEN + HEAD
    # method none keeps the full transformers save.
    files = {p.name for p in (run / "model").iterdir()}
    assert "model.safetensors" in files and "lmforge_peft.json" not in files
    first = load_file(str(run / "checkpoints" / "step-00000004" / "model.safetensors"))
    start = load_file(str(encoder_dir / "model.safetensors"))
    assert torch.equal(first["model.bert.encoder.layer.0.output.dense.weight"],
                       start["encoder.layer.0.output.dense.weight"])
    assert not torch.equal(first["model.bert.encoder.layer.1.output.dense.weight"],
                           start["encoder.layer.1.output.dense.weight"])


def test_freeze_layers_with_bitfit(encoder_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(encoder_dir, num_labels=3)
    model = apply_peft(model, PeftConfig(method="bitfit", freeze_layers=1),
                       get_task("classification"), str(encoder_dir))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any("layer.0." in n or "embeddings" in n for n in trainable)
    assert "bert.encoder.layer.1.attention.self.query.bias" in trainable


@pytest.mark.parametrize(("overrides", "message"), [
    (["peft.method=prefix"], "peft.method=prefix needs a model that takes past_key_values"),
    (["peft.method=lora", "peft.freeze_layers=1"], "drop peft.freeze_layers"),
    (["peft.method=bitfit", "peft.freeze_layers=5"], "the model has 2 layers"),
    (["peft.method=lora", "peft.target_modules=nowhere"], "peft.method=lora is not supported"),
])
def test_unsupported_combinations_are_clear_errors(
        overrides: list[str], message: str, tmp_path: Path, cls_data: Path, encoder_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*common_args(tmp_path / "run", cls_data, encoder_dir, steps=1), *overrides])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("method", "task", "auto"), [
    ("prompt", "qa", "AutoModelForQuestionAnswering"),
    ("ptuning", "token_classification", "AutoModelForTokenClassification"),
])
def test_prompt_methods_refuse_per_token_tasks(method: str, task: str, auto: str,
                                               encoder_dir: Path) -> None:
    import transformers

    model = getattr(transformers, auto).from_pretrained(encoder_dir, num_labels=3)
    with pytest.raises(ConfigError, match=f"does not fit task.name={task}"):
        apply_peft(model, PeftConfig(method=method), get_task(task), str(encoder_dir))


def test_modules_missing_from_the_checkpoint_train_with_the_head(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, BertConfig, BertModel

    from lmforge.peft.methods import head_modules

    # An encoder saved without a pooler: the classifier's pooler is random on every load, so
    # it must be trained and saved like the head (else a reloaded model would differ).
    config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    assert head_modules(model, get_task("classification"), str(tmp_path)) == ["classifier",
                                                                     "bert.pooler"]
    model = apply_peft(model, PeftConfig(method="lora"), get_task("classification"), str(tmp_path))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("pooler" in n and "modules_to_save" in n for n in trainable)
