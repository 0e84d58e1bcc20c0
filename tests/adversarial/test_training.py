"""FGM / PGD / FreeLB / R-Drop hooks: gradients equal a hand-written version of each method,
and the options compose with the engine (accumulation, bf16, PEFT, NER) end to end."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
)

import lmforge
from lmforge.adversarial.training import AdversarialTraining, adversarial_hook, project
from lmforge.cli import main
from lmforge.errors import ConfigError
from lmforge.finetuning.classification.objective import ClassificationObjective
from lmforge.finetuning.task import all_tasks
from tests.test_api import sentiment_task

EPS, ALPHA, K = 0.7, 0.3, 3


class TokenObjective(torch.nn.Module):
    """Token-level cross-entropy, like the NER task's objective."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, labels: torch.Tensor, **inputs: torch.Tensor) -> dict:
        logits = self.model(**inputs).logits
        return {"loss": torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten()),
                "n": labels.numel()}


def _setup(kind: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, num_labels=3)
    ids = torch.randint(5, 40, (4, 7))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0  # one padded example: its padding gets no perturbation
    if kind == "sequence":
        objective = ClassificationObjective(BertForSequenceClassification(config))
        labels = torch.tensor([0, 1, 2, 1])
    else:
        objective = TokenObjective(BertForTokenClassification(config))
        labels = torch.randint(0, 3, (4, 7))
    return objective, {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _engine(objective: torch.nn.Module) -> SimpleNamespace:
    def forward_loss(batch: dict) -> tuple[torch.Tensor, dict]:
        out = objective(**batch)
        return out["loss"], out

    return SimpleNamespace(unwrapped=objective, model=objective, accelerator=Accelerator(cpu=True),
                           cfg=SimpleNamespace(grad_accum=1, seed=0),
                           state=SimpleNamespace(global_step=0), forward_loss=forward_loss)


def _hook_grads(method: str, kind: str) -> dict[str, torch.Tensor]:
    """Run one micro-step the way the engine does, with the hook."""
    objective, batch = _setup(kind)
    engine = _engine(objective)
    hook = AdversarialTraining(method, EPS, ALPHA, K, init_mag=0.0)
    hook.on_train_begin(engine)
    batch = hook.transform_batch(batch, engine)
    loss, outputs = engine.forward_loss(batch)
    loss = hook.extra_loss(loss, batch, outputs, engine)
    loss.backward()
    hook.after_backward(batch, engine)
    hook.on_step_end(engine, {})
    hook.on_train_end(engine)
    return {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}


def _manual_grads(method: str, kind: str) -> dict[str, torch.Tensor]:
    """The same method written out with inputs_embeds (no hooks)."""
    objective, batch = _setup(kind)
    model = objective.model
    emb = model.get_input_embeddings()
    mask = batch["attention_mask"].unsqueeze(-1).float()
    inputs = {k: v for k, v in batch.items() if k != "input_ids"}

    def loss_at(delta: torch.Tensor) -> torch.Tensor:
        return objective(inputs_embeds=emb(batch["input_ids"]) + delta, **inputs)["loss"]

    def delta_grad(delta: torch.Tensor) -> torch.Tensor:
        d = delta.detach().requires_grad_(True)
        grad = torch.autograd.grad(loss_at(d), d)[0]
        return grad * mask

    def unit(g: torch.Tensor) -> torch.Tensor:
        return g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)

    zero = torch.zeros(*batch["input_ids"].shape, 16)
    if method == "fgm":
        g = delta_grad(zero)
        total = loss_at(zero) + loss_at(EPS * unit(g))
    elif method == "pgd":
        g, delta = delta_grad(zero), zero
        for _ in range(K):
            delta = project(delta + ALPHA * unit(g), EPS) * mask
            g = delta_grad(delta)
        total = loss_at(zero) + loss_at(delta)
    else:  # freelb, zero start: mean of the losses at delta_0 .. delta_{K-1}
        delta, losses = zero, []
        for t in range(K):
            losses.append(loss_at(delta))
            if t < K - 1:
                delta = project(delta + ALPHA * unit(delta_grad(delta)), EPS) * mask
        total = sum(losses) / K
    objective.zero_grad()
    total.backward()
    return {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("method", "kind"), [("fgm", "sequence"), ("pgd", "sequence"),
                                              ("freelb", "sequence"), ("fgm", "token")])
def test_hook_gradients_equal_the_written_out_method(method: str, kind: str) -> None:
    ours, manual = _hook_grads(method, kind), _manual_grads(method, kind)
    assert ours.keys() == manual.keys()
    for name in ours:
        assert torch.allclose(ours[name], manual[name], atol=1e-5, rtol=1e-4), name


def test_projection_keeps_each_example_inside_the_ball() -> None:
    delta = torch.randn(3, 5, 4) * torch.tensor([0.1, 1.0, 10.0]).view(3, 1, 1)
    norms = project(delta, 1.0).flatten(1).norm(dim=1)
    assert norms[0] == pytest.approx(float(delta[0].norm()), rel=1e-6)  # inside: unchanged
    assert norms[1:].tolist() == pytest.approx([1.0, 1.0], rel=1e-5)


def test_rdrop_kl_is_zero_without_dropout_and_positive_with_it() -> None:
    objective, batch = _setup("sequence")
    for dropout, positive in ((0.0, False), (0.3, True)):
        for module in objective.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = dropout
        engine = _engine(objective)
        hook = AdversarialTraining("rdrop", rdrop_alpha=1.0)
        hook.on_train_begin(engine)
        doubled = hook.transform_batch(batch, engine)
        assert doubled["input_ids"].shape[0] == 2 * batch["input_ids"].shape[0]
        loss, outputs = engine.forward_loss(doubled)
        total = hook.extra_loss(loss, doubled, outputs, engine)
        assert (float((total - loss).detach()) > 1e-6) is positive
        hook.on_train_end(engine)


def test_adversarial_hook_rejects_generative_tasks() -> None:
    job = SimpleNamespace(train=SimpleNamespace(adversarial="fgm"),
                          task=SimpleNamespace(name="seq2seq", multi_label=False))
    with pytest.raises(ConfigError, match="encoder tasks classification, token_classification"):
        adversarial_hook(job, all_tasks())


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return sentiment_task(tmp_path_factory.mktemp("adv"), train=64, dev=16)


@pytest.mark.parametrize(("method", "extra", "options"), [
    ("fgm", 2.0, ["train.grad_accum=2"]),           # one extra pass per micro-batch
    ("pgd", 2.0, ["adv.steps=2", "train.precision=bf16"]),
    ("freelb", 2.0, ["adv.steps=3", "peft.method=lora", "train.lr=5e-3"]),
    ("rdrop", 1.0, []),
])
def test_finetune_with_adversarial_training_reports_its_passes(
        method: str, extra: float, options: list[str], sentiment: tuple[Path, Path],
        tmp_path: Path) -> None:
    encoder, data = sentiment
    result = lmforge.finetune(
        {"data": {"path": str(data)}, "model": {"pretrained": str(encoder)}},
        f"train.adversarial={method}", *options,
        train={"max_steps": 4, "batch_size": 8, "lr": 5e-3, "warmup_ratio": 0.0,
               "num_threads": 1},
        track={"backends": ["jsonl"], "progress": False}, output_dir=str(tmp_path / method))
    report = result.summary["adversarial"]
    assert report["method"] == method and result.summary["steps"] == 4
    assert report["extra_forward_per_step"] == extra == report["extra_backward_per_step"]
    assert (result.run_dir / "model").is_dir()


@pytest.mark.parametrize(("override", "message"), [
    ("train.adversarial=fgn", "did you mean 'fgm'"),
    ("adv.epsilon=0", "adv.epsilon must be > 0"),
])
def test_bad_adversarial_options_are_one_line_errors(
        override: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", "model.pretrained=x", "data.path=y", override]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
