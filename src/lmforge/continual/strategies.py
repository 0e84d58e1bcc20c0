"""The continual-learning strategies, registered in one table :data:`STRATEGIES`.

A strategy decides what a stream run does around each experience's engine training (see
:mod:`lmforge.commands.continual`); the training itself is always the one engine loop, with the
strategy's hooks (:mod:`lmforge.continual.hooks`):

=========  ===================================================================
naive      fine-tune on each experience in turn (the lower bound)
joint      one training on every experience at once (the upper bound)
replay     train on the experience's rows plus a memory of earlier experiences' rows
ewc        online EWC: a Fisher-weighted quadratic penalty towards the old weights
lwf        distil the previous model's outputs for the old tasks (no stored data)
agem       project gradients that would raise the loss on a memory (A-GEM)
lora       a LoRA adapter and head per experience on a frozen backbone (task ids)
=========  ===================================================================
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lmforge.continual.buffer import ReplayBuffer, buffer_capacity
from lmforge.continual.hooks import (
    AgemHook,
    EwcHook,
    LwfHook,
    ReplayHook,
    calibrated_lambda,
    estimate_fisher,
    trainable_parameters,
)
from lmforge.engine.hooks import StepHook
from lmforge.finetuning.saved import save_finetuned, write_settings
from lmforge.peft.io import PEFT_FILE, WEIGHTS_FILE
from lmforge.peft.methods import LORA_TARGETS, _model_type, apply_peft, head_modules
from lmforge.settings import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What a strategy may use: the job, the stream, the model and how to batch."""

    job: Any
    stream: Any
    task: Any
    objective: Any  # MaskedObjective
    tokenizer: Any
    collator: Any
    source: str

    @property
    def model(self) -> nn.Module:
        """The ``transformers`` model (or ``PeftModel``) inside the objective."""
        return self.objective.model


class Strategy:
    """Base strategy: sequential fine-tuning with no protection (``naive``)."""

    joint = False
    """Train once on the union of the experiences instead of one after another."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.cfg = ctx.job.strategy

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model to train (the ``peft:`` section applied), before the objective wraps it."""
        return apply_peft(model, self.ctx.job.peft, self.ctx.task, self.ctx.source)

    def train_set(self, index: int) -> datasets.Dataset:
        """The training rows of experience ``index``."""
        return self.ctx.stream.experiences[index].train

    def train_config(self, index: int, cfg: TrainConfig) -> TrainConfig:
        """The engine settings of experience ``index``: ``train.*`` with a seed of its own."""
        return dataclasses.replace(cfg, seed=cfg.seed + index)

    def hooks(self, index: int) -> list[StepHook]:
        """Engine hooks for experience ``index`` (called after the state before it is set)."""
        return []

    def after_experience(self, index: int, engine: Any, folder: Path) -> None:
        """Update the strategy's state once experience ``index`` is learned; save it."""

    def restore(self, index: int, folder: Path) -> None:
        """Rebuild the state after experience ``index`` from its folder (resume)."""

    def select(self, index: int | None) -> None:
        """Make the model answer for experience ``index`` (None: back to the trained one)."""

    def save_model(self, index: int, folder: Path) -> None:
        """Write the model after experience ``index`` (a model folder ``lmforge.load`` reads)."""
        ctx = self.ctx
        save_finetuned(folder, ctx.model, ctx.tokenizer, ctx.stream.settings, ctx.job.peft,
                       ctx.source, ctx.job.model.pretrained)

    def load_model(self, index: int, folder: Path) -> None:
        """Load the weights :meth:`save_model` wrote back into the live model."""
        load_weights(self.ctx.model, folder)

    def stored_parameters(self) -> int:
        """Parameters the strategy keeps to answer for every experience at the end."""
        return sum(p.numel() for p in self.ctx.model.parameters())

    def summary(self) -> dict[str, Any]:
        """Strategy facts for ``summary.json``."""
        return {}


def load_weights(model: nn.Module, folder: Path) -> None:
    """Load a model folder written by ``save_finetuned`` into ``model`` (same method)."""
    from safetensors.torch import load_model

    if (folder / "model.safetensors").is_file():
        load_model(model, str(folder / "model.safetensors"))
    elif (folder / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
    else:
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=False)


class Naive(Strategy):
    """Sequential fine-tuning: the lower bound."""


class Joint(Strategy):
    """All experiences in one training: the upper bound (no stream, no forgetting)."""

    joint = True

    def train_set(self, index: int) -> datasets.Dataset:
        return datasets.concatenate_datasets([e.train for e in self.ctx.stream.experiences])


class _Memory(Strategy):
    """A strategy with an episodic memory of earlier experiences."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        capacity = buffer_capacity(self.cfg.buffer_size, ctx.stream.train_examples())
        self.buffer = ReplayBuffer(capacity, self.cfg.buffer_policy, ctx.job.train.seed)

    def after_experience(self, index: int, engine: Any, folder: Path) -> None:
        self.buffer.add_experience(index, len(self.ctx.stream.experiences[index].train))

    def restore(self, index: int, folder: Path) -> None:
        # Seeded: adding the experiences again in order rebuilds the same memory.
        self.after_experience(index, None, folder)

    def summary(self) -> dict[str, Any]:
        return {"buffer_examples": len(self.buffer), "buffer_capacity": self.buffer.capacity,
                "buffer_policy": self.buffer.policy}


class Replay(_Memory):
    """Experience replay: memory rows of earlier experiences trained with the new ones.

    ``replay_mode=concat`` (default) adds the memory to the experience's training rows, so
    the new rows keep the full weight of their gradient (on SST-2 -> AG News at lr 5e-5,
    appending a memory batch to every batch learned AG News 10.8 points below naive;
    BENCHMARKS.md); ``batch`` appends ``replay_batch_size`` memory rows to every batch.
    """

    def train_set(self, index: int) -> datasets.Dataset:
        new = self.ctx.stream.experiences[index].train
        if self.cfg.replay_mode != "concat" or not len(self.buffer):
            return new
        rows: dict[int, list[int]] = {}
        for exp, row in self.buffer.entries():
            rows.setdefault(exp, []).append(row)
        memory = [self.ctx.stream.experiences[e].train.select(r) for e, r in sorted(rows.items())]
        return datasets.concatenate_datasets([new, *memory])

    def hooks(self, index: int) -> list[StepHook]:
        if self.cfg.replay_mode != "batch":
            return []
        count = self.cfg.replay_batch_size or self.ctx.job.train.batch_size
        pad = self.ctx.tokenizer.pad_token_id or 0
        return [ReplayHook(self.buffer, self.ctx.stream, self.ctx.collator, pad, count)]

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "replay_mode": self.cfg.replay_mode}


class Agem(_Memory):
    """A-GEM: gradient projection against a memory's reference gradient."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.hook: AgemHook | None = None
        self.projected = self.steps = 0

    def hooks(self, index: int) -> list[StepHook]:
        count = self.cfg.agem_batch_size or self.ctx.job.train.batch_size
        self.hook = AgemHook(self.buffer, self.ctx.stream, self.ctx.collator, count)
        return [self.hook]

    def after_experience(self, index: int, engine: Any, folder: Path) -> None:
        super().after_experience(index, engine, folder)
        if self.hook is not None:
            self.projected += self.hook.projected
            self.steps += self.hook.steps

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "agem_projected_steps": self.projected,
                "agem_steps": self.steps}


class Ewc(Strategy):
    """Online EWC (Schwarz et al. 2018): running Fisher F <- gamma F + F_t, anchor theta*.

    With ``strategy.ewc_lambda`` unset, lambda is calibrated after each experience
    (:func:`~lmforge.continual.hooks.calibrated_lambda`): the mini-batch Fisher's scale
    depends on the batch size, the loss and how well the experience was fit, so no fixed
    lambda suits every stream (1e5 left SST-2 -> AG News at lr 5e-5 as naive, issue 23). A
    penalty that stays under 1 % of the task loss is reported as a warning.
    """

    FILE = "ewc.safetensors"
    NEGLIGIBLE = 0.01  # penalty / task loss below which the penalty barely acts

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self.start: dict[str, torch.Tensor] = {}
        self.weight = self.cfg.ewc_lambda if self.cfg.ewc_lambda is not None else 0.0
        self.hook: EwcHook | None = None
        self.shares: list[float | None] = []

    def hooks(self, index: int) -> list[StepHook]:
        self.hook = None
        if self.cfg.ewc_lambda is None:  # the weights this experience starts from
            self.start = {n: p.detach().float().clone()
                          for n, p in trainable_parameters(self.ctx.objective).items()}
        if not self.fisher:
            return []
        self.hook = EwcHook(self.ctx.objective, self.fisher, self.anchor, self.weight)
        return [self.hook]

    def after_experience(self, index: int, engine: Any, folder: Path) -> None:
        self._check_penalty(index)
        fisher = estimate_fisher(engine, self.ctx.stream.experiences[index].train,
                                 self.cfg.fisher_batches, self.ctx.job.train.seed + index)
        gamma = self.cfg.ewc_decay
        self.fisher = {n: gamma * self.fisher[n] + f if n in self.fisher else f
                       for n, f in fisher.items()}
        self.anchor = {n: p.detach().float().clone()
                       for n, p in self.ctx.objective.named_parameters() if n in fisher}
        if self.cfg.ewc_lambda is None:
            self.weight = calibrated_lambda(self.fisher, self.anchor, self.start,
                                            self.cfg.ewc_auto_penalty)
            log.info("strategy ewc: lambda %.3g after experience %d (calibrated: moving as far "
                     "again costs %g nats)", self.weight, index, self.cfg.ewc_auto_penalty)
        self.start = {}
        state = {f"fisher.{n}": v.contiguous() for n, v in self.fisher.items()}
        state.update({f"anchor.{n}": v.contiguous() for n, v in self.anchor.items()})
        state["lambda"] = torch.tensor([self.weight], dtype=torch.float64)
        save_file(state, str(folder / self.FILE))

    def _check_penalty(self, index: int) -> None:
        share = self.hook.share() if self.hook is not None else None
        self.shares.append(share)
        if share is not None and share < self.NEGLIGIBLE:
            log.warning("strategy ewc: during experience %d the penalty averaged %.2g %% of the "
                        "task loss, too little to keep the earlier experiences; raise "
                        "strategy.ewc_lambda (%.3g) or leave it unset (calibrated)",
                        index, 100 * share, self.weight)

    def restore(self, index: int, folder: Path) -> None:
        state = load_file(str(folder / self.FILE))
        self.fisher = {k[7:]: v for k, v in state.items() if k.startswith("fisher.")}
        self.anchor = {k[7:]: v for k, v in state.items() if k.startswith("anchor.")}
        if self.cfg.ewc_lambda is None and "lambda" in state:
            self.weight = float(state["lambda"][0])
        self.shares.append(None)

    def summary(self) -> dict[str, Any]:
        return {"ewc_lambda": self.weight, "ewc_penalty_share": list(self.shares)}

    def stored_parameters(self) -> int:
        # The model, the running Fisher and the anchor weights.
        extra = sum(v.numel() for v in self.fisher.values()) + \
            sum(v.numel() for v in self.anchor.values())
        return super().stored_parameters() + extra


class Lwf(Strategy):
    """Learning without Forgetting: distil the previous model on the old outputs."""

    def hooks(self, index: int) -> list[StepHook]:
        groups = self.ctx.stream.distill_groups(index)
        if not groups:
            return []
        previous = LwfHook.frozen_copy(self.ctx.model)
        return [LwfHook(previous, groups, self.cfg.lwf_alpha, self.cfg.lwf_temperature)]


class LoraPerExperience(Strategy):
    """Parameter isolation: adapter ``exp<i>`` (LoRA + its own head copy) per experience.

    The backbone is frozen and experience i's adapter is never trained again after i, so
    its accuracy cannot change: BWT = 0 by construction. The task id picks the adapter.
    """

    def _config(self) -> Any:
        from peft import LoraConfig

        cfg, model = self.ctx.job.peft, self.base
        modules = cfg.target_modules or LORA_TARGETS.get(_model_type(model)) or ["query",
                                                                               "value"]
        return LoraConfig(task_type=self.ctx.task.peft_task_type, r=cfg.r,
                          lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=modules, use_rslora=cfg.use_rslora,
                          modules_to_save=head_modules(model, self.ctx.task,
                                                       self.ctx.source) or None)

    def prepare(self, model: nn.Module) -> nn.Module:
        from peft import get_peft_model

        self.base = model
        self.config = self._config()
        return get_peft_model(model, self.config, adapter_name="exp0")

    @staticmethod
    def name(index: int) -> str:
        """The adapter of experience ``index``."""
        return f"exp{index}"

    def _ensure(self, index: int) -> None:
        model = self.ctx.model
        if self.name(index) not in model.peft_config:
            model.add_adapter(self.name(index), self.config)

    def train_config(self, index: int, cfg: TrainConfig) -> TrainConfig:
        return dataclasses.replace(super().train_config(index, cfg),
                                   lr=self.cfg.lora_lr or cfg.lr)

    def hooks(self, index: int) -> list[StepHook]:
        self._ensure(index)
        self.select(index)
        return []

    def select(self, index: int | None) -> None:
        model = self.ctx.model
        self._disabled = getattr(self, "_disabled", None)
        if self._disabled is not None:  # leave the no-adapter context of a future task
            self._disabled.__exit__(None, None, None)
            self._disabled = None
        if index is None:
            return
        if self.name(index) in model.peft_config:
            model.set_adapter(self.name(index))
        else:  # a task not learned yet: the frozen backbone with the initial head
            self._disabled = model.disable_adapter()
            self._disabled.__enter__()

    def save_model(self, index: int, folder: Path) -> None:
        ctx = self.ctx
        scratch = folder.with_name(folder.name + ".adapters")
        ctx.model.save_pretrained(scratch, selected_adapters=[self.name(index)])
        inner = scratch / self.name(index)
        src = inner if inner.is_dir() else scratch
        folder.mkdir(parents=True, exist_ok=True)
        for item in src.iterdir():
            if item.is_file():
                shutil.move(str(item), folder / item.name)
        shutil.rmtree(scratch, ignore_errors=True)
        ctx.tokenizer.save_pretrained(folder)
        write_settings(folder, ctx.stream.settings)
        meta = {"method": "lora", "format": "peft", "base_model": str(ctx.source),
                "base_model_name": ctx.job.model.pretrained,
                "peft": {**asdict(ctx.job.peft), "method": "lora"},
                "continual_adapter": self.name(index)}
        (folder / PEFT_FILE).write_text(json.dumps(meta, indent=2))

    def load_model(self, index: int, folder: Path) -> None:
        from peft import set_peft_model_state_dict

        self._ensure(index)
        set_peft_model_state_dict(self.ctx.model,
                                  load_file(str(folder / "adapter_model.safetensors")),
                                  adapter_name=self.name(index))

    def stored_parameters(self) -> int:
        # The frozen backbone once, plus each adapter's own tensors (LoRA and head copy).
        model = self.ctx.model
        own = sum(p.numel() for n, p in model.named_parameters()
                  if any(f".{self.name(i)}." in n or n.endswith(f".{self.name(i)}")
                         for i in range(self.ctx.stream.size)))
        backbone = sum(p.numel() for n, p in model.named_parameters()
                       if "lora_" not in n and "modules_to_save" not in n)
        return backbone + own


STRATEGIES: dict[str, type[Strategy]] = {
    "naive": Naive,
    "joint": Joint,
    "replay": Replay,
    "ewc": Ewc,
    "lwf": Lwf,
    "agem": Agem,
    "lora": LoraPerExperience,
}


def make_strategy(ctx: Context) -> Strategy:
    """The strategy ``ctx.job.strategy.name`` for the stream."""
    return STRATEGIES[ctx.job.strategy.name](ctx)

