"""The one training loop, shared by every stage.

Design notes:
- Batches are built by the engine from a deterministic plan (``make_batches`` seeded by
  ``seed`` and the epoch), and every micro-batch gets its own ``torch.Generator`` seeded from
  (seed, epoch, micro-batch index). Masking therefore never touches the global RNG, and a
  resumed run rebuilds exactly the batches and masks it would have seen.
- Distribution goes through ``accelerate`` (``accelerate launch`` / ``torchrun``; DDP and
  FSDP2 are the tested modes, FSDP's differences in :mod:`lmforge.engine.sharding`). Each
  rank takes every ``world_size``-th batch of the same plan.
- The model passed in returns a dict with ``loss`` (scalar) and ``n`` (how many targets the
  loss averages over), plus optional additive counts used by evaluation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from transformers import get_scheduler

from lmforge.data.sampling import make_batches, shard_batches
from lmforge.engine import checkpoint as ckpt
from lmforge.engine import sharding
from lmforge.engine.dropout import fast_dropout_scope
from lmforge.engine.hooks import StepHook
from lmforge.engine.memory import keep_freed_memory, release_freed_memory
from lmforge.engine.precision import make_accelerator
from lmforge.errors import ConfigError, DataError, NonFiniteLossError
from lmforge.settings import TrainConfig
from lmforge.tracking import MultiLogger, ProgressBar

log = logging.getLogger(__name__)

Collator = Callable[[list[dict[str, Any]], torch.Generator], dict[str, torch.Tensor]]
# Turns summed evaluation counts into metrics, e.g. {"loss_sum", "n"} -> {"eval_loss", ...}.
EvalReducer = Callable[[dict[str, float]], dict[str, float]]



class Objective(Protocol):
    """What the engine trains and evaluates: in practice an ``nn.Module`` wrapping a model.

    ``objective(**batch)`` takes a collated batch and returns, all as 0-d tensors:
    ``loss`` (the mean over the batch's targets), ``n`` (how many targets it averages: the
    engine weights micro-batches by it, so gradient accumulation and evaluation give the mean
    over targets, not over batches) and any ``count_*`` / ``*_sum`` additive counts that the
    :data:`EvalReducer` turns into metrics. The pretraining objectives
    (:mod:`lmforge.pretraining.objectives`) and each task's ``objective.py`` implement it.
    """

    def __call__(self, **batch: torch.Tensor) -> Mapping[str, torch.Tensor]:
        """Loss, target count and evaluation counts of one batch."""
        ...

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True
                         ) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """The trainable and frozen parameters (the optimizer's groups come from them)."""
        ...

    def train(self, mode: bool = True) -> Any:
        """Switch dropout on (training) or off."""
        ...


_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight", "ln_")


def _seed_for(seed: int, epoch: int, index: int, salt: int = 0) -> int:
    # A fixed mixing of the integers; Python's hash() is salted per process, so not used.
    return (seed * 1_000_003 + epoch * 10_007 + index * 31 + salt) % (2**63 - 1)


def default_eval_reducer(sums: dict[str, float]) -> dict[str, float]:
    """Average loss over targets and add perplexity."""
    n = max(sums.get("n", 0.0), 1.0)
    loss = sums.get("loss_sum", 0.0) / n
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0))}


_LAYER_INDEX = re.compile(r"\.(?:layer|layers|h|block)\.(\d+)\.")
_EMBEDDING_NAMES = ("embeddings", "embed_tokens", "wte", "wpe", "shared")


def layer_depth(name: str, num_layers: int) -> int:
    """Depth of a parameter for layer-wise LR decay: 0 embeddings, 1..L layers, L+1 heads."""
    found = _LAYER_INDEX.search(f".{name}")
    if found:
        return int(found.group(1)) + 1
    if any(part in name for part in _EMBEDDING_NAMES):
        return 0
    return num_layers + 1


def parameter_groups(model: torch.nn.Module, weight_decay: float, lr: float = 1.0,
                     layer_decay: float = 1.0) -> list[dict[str, Any]]:
    """AdamW groups: no decay on biases and norms; optional layer-wise LR decay.

    With ``layer_decay`` = d < 1, a parameter at depth k of L+1 gets lr * d^(L + 1 - k)
    (ELECTRA, Clark et al. 2020): the head trains at ``lr``, embeddings slowest.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    depths = [int(m.group(1)) + 1 for n, _ in named if (m := _LAYER_INDEX.search(f".{n}"))]
    num_layers = max(depths, default=0)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in named:
        no_decay = p.ndim < 2 or any(k in name for k in _NO_DECAY)
        depth = layer_depth(name, num_layers) if layer_decay < 1.0 else num_layers + 1
        group = groups.setdefault((depth, no_decay), {
            "params": [], "weight_decay": 0.0 if no_decay else weight_decay,
            "lr": lr * layer_decay ** (num_layers + 1 - depth)})
        group["params"].append(p)
    return list(groups.values())


def make_adamw(groups: list[dict[str, Any]], cfg: TrainConfig,
               device: torch.device) -> torch.optim.AdamW:
    """AdamW with the fused kernel where the device has one (CPU and CUDA, torch >= 2.4).

    The default implementation loops over the parameters in Python, a handful of element-wise
    kernels each: for MiniLM-L6 (22.7M parameters, ~100 tensors) on 2 CPU cores that was tens
    of times slower per step than the fused kernel, which updates every tensor in one pass
    (the Trainer's default, ``adamw_torch_fused``). Falls back to the multi-tensor
    (``foreach``) implementation where fused is unavailable.
    """
    kwargs = {"lr": cfg.lr, "betas": (cfg.adam_beta1, cfg.adam_beta2), "eps": cfg.adam_eps}
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # pragma: no cover - older torch, dtypes
            pass
    return torch.optim.AdamW(groups, foreach=True, **kwargs)


@dataclass
class TrainResult:
    """What :meth:`Engine.train` returns."""

    state: ckpt.TrainState
    metrics: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0


class Engine:
    """Train a model with hooks, checkpoints, resume, mixed precision and accelerate.

    Args:
        model: The :class:`Objective` (an ``nn.Module`` whose forward returns
            ``{"loss": scalar, "n": count, ...}``).
        cfg: Training settings.
        train_dataset: Indexable dataset of example dicts (e.g. ``datasets.Dataset``).
        collator: Builds a batch from examples and a generator.
        run_dir: Where checkpoints go (``run_dir/checkpoints``).
        eval_dataset: Optional validation set.
        eval_reducer: Turns summed eval counts into metrics.
        hooks: Step hooks (see :mod:`lmforge.engine.hooks`).
        loggers: Where metrics go.
        lengths: Example lengths, for ``group_by_length``.
        save_model_fn: Saves the final model, given the unwrapped module and a folder.
        accelerator: An existing ``Accelerator`` (one is created otherwise).
    """

    def __init__(self, model: Objective, cfg: TrainConfig, train_dataset: Any,
                 collator: Collator, run_dir: str | Path, *, eval_dataset: Any = None,
                 eval_reducer: EvalReducer = default_eval_reducer,
                 hooks: Sequence[StepHook] = (), loggers: MultiLogger | None = None,
                 lengths: Sequence[int] | None = None,
                 accelerator: Accelerator | None = None, show_progress: bool = True) -> None:
        release_freed_memory()  # only with LMFORGE_MALLOC=release (why: memory.py)
        keep_freed_memory()  # only with LMFORGE_MALLOC=keep
        self.cfg = cfg
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if len(train_dataset) == 0:
            raise DataError("the training set is empty; check data.path and data.max_examples")
        if accelerator is None:
            accelerator, _ = make_accelerator(cfg.precision)
        self.accelerator = accelerator
        self.precision = {"no": "fp32"}.get(accelerator.mixed_precision,
                                            accelerator.mixed_precision)
        self.run_dir = Path(run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.collator, self.eval_reducer = collator, eval_reducer
        self.hooks = list(hooks)
        self.loggers = loggers or MultiLogger([])
        self.lengths = lengths
        self.show_progress = show_progress
        self.state = ckpt.TrainState()
        self.should_stop = False  # set by hooks (e.g. early stopping) to end training

        self.batches_per_epoch = len(self._epoch_batches(0))
        if self.batches_per_epoch < cfg.grad_accum:
            raise DataError(f"only {self.batches_per_epoch} batches per process for "
                            f"train.grad_accum={cfg.grad_accum}; use more data or smaller "
                            "train.batch_size / grad_accum")
        self.steps_per_epoch = self.batches_per_epoch // cfg.grad_accum
        self.total_steps = cfg.max_steps if cfg.max_steps > 0 else \
            max(1, math.ceil(cfg.epochs * self.steps_per_epoch))

        self.unwrapped = model
        self.sharded = sharding.is_sharded(self.accelerator)
        if self.sharded:
            sharding.expose_inner_model(model)
            tied = sharding.tied_names(model)
        optimizer = make_adamw(parameter_groups(model, cfg.weight_decay, cfg.lr,
                                                cfg.layerwise_lr_decay), cfg,
                               self.accelerator.device)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        if self.sharded:
            sharding.check_ties_kept(self.model, tied)
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None \
            else int(cfg.warmup_ratio * self.total_steps)
        # The scheduler is stepped by us once per optimizer step (not prepared by accelerate,
        # which would step it once per process).
        self.scheduler = get_scheduler(cfg.scheduler if cfg.scheduler != "constant"
                                       else "constant_with_warmup", self.optimizer,
                                       num_warmup_steps=warmup,
                                       num_training_steps=self.total_steps)

    # ----------------------------------------------------------------- data plan
    @property
    def is_main(self) -> bool:
        """True on the process that writes files."""
        return self.accelerator.is_main_process

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        batches = make_batches(len(self.train_dataset), self.cfg.batch_size,
                               lengths=self.lengths if self.cfg.group_by_length else None,
                               shuffle=True, group_by_length=self.cfg.group_by_length,
                               seed=self.cfg.seed, epoch=epoch, drop_last=False)
        world = self.accelerator.num_processes
        if world > 1:
            batches = shard_batches(batches, self.accelerator.process_index, world)
        return batches

    def _collate(self, dataset: Any, indices: list[int], seed: int) -> dict[str, torch.Tensor]:
        return collate(dataset, indices, self.collator, seed, self.accelerator.device)

    # ----------------------------------------------------------------- steps
    def forward_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Run the model on a batch under the configured precision; return (loss, outputs).

        Hooks (e.g. adversarial training) call this for extra forward passes.
        """
        with self.accelerator.autocast():
            outputs = self.model(**batch)
        return outputs["loss"].float(), outputs

    def _micro_step(self, batch: dict[str, torch.Tensor], sync: bool) -> torch.Tensor:
        for hook in self.hooks:
            batch = hook.transform_batch(batch, self)
        ctx = self.accelerator.no_sync(self.model) if not sync else contextlib.nullcontext()
        with ctx:
            loss, outputs = self.forward_loss(batch)
            for hook in self.hooks:
                loss = hook.extra_loss(loss, batch, outputs, self)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at step {self.state.global_step + 1}; "
                    f"{self._last_good_checkpoint()}; lower train.lr, raise "
                    "train.warmup_ratio or check the data")
            self.accelerator.backward(loss / self.cfg.grad_accum)
            for hook in self.hooks:
                hook.after_backward(batch, self)
        return loss.detach()

    # ----------------------------------------------------------------- public API
    def train(self, resume: bool = False) -> TrainResult:
        """Run training to ``total_steps``; with ``resume`` continue from the latest checkpoint.

        Returns:
            Final state, last evaluation metrics and throughput.
        """
        if resume:
            self._resume()
        fast = self.cfg.fast_dropout and self.accelerator.device.type == "cpu"
        with fast_dropout_scope(self.unwrapped, enabled=fast):
            return self._train()

    def _train(self) -> TrainResult:
        for hook in self.hooks:
            hook.on_train_begin(self)
        cfg, state = self.cfg, self.state
        eval_every = cfg.eval_every or self.steps_per_epoch
        save_every = cfg.save_every or eval_every
        progress = ProgressBar(self.total_steps, initial=state.global_step, desc="train",
                               enabled=self.show_progress and self.is_main)
        metrics: dict[str, float] = {}
        window_loss, window_n, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
        t0, tokens_at_start = time.perf_counter(), state.tokens_seen
        self.model.train()
        while state.global_step < self.total_steps:
            batches = self._epoch_batches(state.epoch)
            usable = (len(batches) // cfg.grad_accum) * cfg.grad_accum
            while state.batch_in_epoch < usable and state.global_step < self.total_steps:
                step_loss = 0.0
                for j in range(cfg.grad_accum):
                    index = state.batch_in_epoch + j
                    seed = _seed_for(cfg.seed, state.epoch, index,
                                     self.accelerator.process_index)
                    batch = self._collate(self.train_dataset, batches[index], seed)
                    window_tokens += count_tokens(batch)
                    step_loss += float(self._micro_step(batch, sync=j == cfg.grad_accum - 1))
                if cfg.max_grad_norm > 0:
                    self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                state.global_step += 1
                state.batch_in_epoch += cfg.grad_accum
                window_loss += step_loss / cfg.grad_accum
                window_n += 1
                step_metrics = {"loss": step_loss / cfg.grad_accum,
                                "lr": self.scheduler.get_last_lr()[0]}
                for hook in self.hooks:
                    hook.on_step_end(self, step_metrics)
                if state.global_step % cfg.log_every == 0 or \
                        state.global_step == self.total_steps:
                    elapsed = time.perf_counter() - window_start
                    tokens = self._sum_across(window_tokens)
                    state.tokens_seen += tokens
                    logged = {"train_loss": window_loss / window_n, "lr": step_metrics["lr"],
                              "tokens_per_s": tokens / max(elapsed, 1e-9),
                              "epoch": state.epoch + state.batch_in_epoch / max(usable, 1)}
                    self.loggers.log(logged, state.global_step)
                    progress.update(window_n, loss=logged["train_loss"],
                                    tokens_per_s=logged["tokens_per_s"])
                    window_loss, window_n, window_tokens = 0.0, 0, 0
                    window_start = time.perf_counter()
                evaluate_now = state.global_step % eval_every == 0 or \
                    state.global_step == self.total_steps
                new_best = False
                if evaluate_now and self.eval_dataset is not None:
                    metrics = self.evaluate()
                    new_best = self._track_best(metrics)
                    self.loggers.log(metrics, state.global_step)
                    for hook in self.hooks:
                        hook.on_evaluate(self, metrics)
                    self.model.train()
                # A new best is saved even between save steps: the run restores the best
                # checkpoint's weights at the end, so it must exist (the Trainer instead
                # refuses save_steps that are not a multiple of eval_steps).
                if state.global_step % save_every == 0 or state.global_step == self.total_steps \
                        or self.should_stop or new_best:
                    self.save_checkpoint()
                if self.should_stop:
                    break
            if self.should_stop:
                break
            if state.batch_in_epoch >= usable:
                state.epoch += 1
                state.batch_in_epoch = 0
        progress.close()
        for hook in self.hooks:
            hook.on_train_end(self)
        seconds = time.perf_counter() - t0
        tokens = state.tokens_seen - tokens_at_start
        return TrainResult(state, metrics, seconds, tokens / max(seconds, 1e-9))

    def evaluate(self, dataset: Any = None, max_batches: int | None = None,
                 seed: int = 1234) -> dict[str, float]:
        """Evaluate on ``dataset`` (default: the validation set) with fixed masks."""
        dataset = self.eval_dataset if dataset is None else dataset
        return evaluate_model(self.model, dataset, self.collator, self.accelerator,
                              batch_size=self.cfg.batch_size,
                              max_batches=max_batches or self.cfg.eval_max_batches,
                              reducer=self.eval_reducer, seed=seed)

    def save_checkpoint(self) -> Path | None:
        """Write a resumable checkpoint (all ranks take part; rank 0 renames)."""
        tmp = ckpt.tmp_dir_for(self.ckpt_root, self.state.global_step)
        if self.is_main:
            tmp.mkdir(parents=True, exist_ok=True)
        self.accelerator.wait_for_everyone()
        ckpt.write_rank_rng(tmp, self.accelerator.process_index)
        if self.sharded:  # every rank gathers weights and writes its optimizer shard
            sharding.write_sharded_state(self.accelerator, self.model, self.optimizer, tmp)
        self.accelerator.wait_for_everyone()
        final = None
        if self.is_main:
            optimizer = self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") \
                else self.optimizer
            final = ckpt.write_checkpoint(  # None: written above by every rank (FSDP)
                self.ckpt_root, tmp,
                None if self.sharded else self.accelerator.unwrap_model(self.model),
                None if self.sharded else optimizer, self.scheduler, self.state)
            ckpt.prune(self.ckpt_root, self.cfg.keep_last, self.state.best_step)
        self.accelerator.wait_for_everyone()
        return final

    # ----------------------------------------------------------------- internals
    def _resume(self) -> None:
        latest = ckpt.latest_checkpoint(self.ckpt_root)
        if latest is None:
            log.warning("--resume: no checkpoint in %s yet; starting from step 0", self.ckpt_root)
            return
        optimizer = self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") \
            else self.optimizer
        if self.sharded:  # collective: weights broadcast from rank 0, optimizer shards read
            sharding.load_sharded_state(self.accelerator, self.model, self.optimizer, latest)
        self.state = ckpt.load_checkpoint(
            latest, None if self.sharded else self.accelerator.unwrap_model(self.model),
            None if self.sharded else optimizer, self.scheduler,
            self.accelerator.process_index)
        if self.state.global_step > self.total_steps:
            raise ConfigError(f"checkpoint {latest.name} is past train.max_steps="
                              f"{self.total_steps}; raise max_steps or start a new run")
        log.info("resumed from %s (step %d, epoch %d)", latest, self.state.global_step,
                 self.state.epoch)

    def _last_good_checkpoint(self) -> str:
        """Where a failed run can resume from, as a phrase for an error message."""
        latest = ckpt.latest_checkpoint(self.ckpt_root)
        if latest is None:
            return "no checkpoint had been written yet, so rerun from the start"
        return f"the last good checkpoint is {latest} (resume with --resume)"

    def _track_best(self, metrics: dict[str, float]) -> bool:
        """Record ``metrics`` if they are the best so far; return whether they are."""
        value = metrics.get(self.cfg.metric_for_best)
        if value is None:
            raise ConfigError(f"train.metric_for_best={self.cfg.metric_for_best!r} is not among "
                              f"the evaluation metrics {sorted(metrics)}")
        best = self.state.best_metric
        better = best is None or (value > best if self.cfg.greater_is_better else value < best)
        if better:
            self.state.best_metric, self.state.best_step = value, self.state.global_step
        return better

    def _sum_across(self, value: int) -> int:
        if self.accelerator.num_processes == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.long, device=self.accelerator.device)
        return int(self.accelerator.reduce(tensor, reduction="sum").item())


def count_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Real (non-padding) tokens in a batch; examples when the batch has no token ids."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    if "input_ids" in batch:
        return batch["input_ids"].numel()
    return len(next(iter(batch.values())))


def collate(dataset: Any, indices: list[int], collator: Collator, seed: int,
            device: torch.device) -> dict[str, torch.Tensor]:
    """Read rows ``indices`` (one Arrow read) and build a batch with a seeded generator."""
    rows = dataset[indices]  # dict of column -> list
    examples = [dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)]
    batch = collator(examples, torch.Generator().manual_seed(seed))
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def evaluate_model(model: Objective, dataset: Any, collator: Collator,
                   accelerator: Accelerator, *, batch_size: int, max_batches: int | None = None,
                   reducer: EvalReducer = default_eval_reducer,
                   seed: int = 1234, across_processes: bool = True) -> dict[str, float]:
    """Evaluate ``model`` on ``dataset`` with fixed (seeded) masks; shards across processes.

    Args:
        model: Returns ``{"loss", "n", "count_*"}`` like the training model.
        dataset: Indexable dataset.
        collator: Batch maker.
        accelerator: Gives the device, autocast and the process group.
        batch_size: Examples per batch.
        max_batches: Optional cap on batches.
        reducer: Turns summed counts into metrics.
        seed: Seed of the evaluation masks, so runs compare on identical inputs.
        across_processes: Split the batches over the process group and sum the counts;
            False when one process evaluates alone (a report on the main process).

    Returns:
        The reducer's metrics.
    """
    if dataset is None or len(dataset) == 0:
        raise DataError("the evaluation set is empty; set data.validation_ratio > 0")
    # Forward through the unwrapped module: ranks may run different numbers of batches, and a
    # DDP wrapper would try to synchronise buffers on each forward. An FSDP model is its own
    # wrapper and all-gathers in every forward, so there each rank runs as many forwards.
    sharded = across_processes and sharding.is_sharded(accelerator)
    if not sharded:
        model = accelerator.unwrap_model(model)
    was_training = model.training
    model.eval()
    batches = make_batches(len(dataset), batch_size, shuffle=False)
    if max_batches:
        batches = batches[:max_batches]
    rank, world = (accelerator.process_index, accelerator.num_processes) if across_processes \
        else (0, 1)
    sums: dict[str, float] = {"loss_sum": 0.0, "n": 0.0}
    mine = list(range(rank, len(batches), world))
    # FSDP: a rank with one batch fewer runs batch 0 once more and drops its counts (-1).
    mine += [-1] * (-(-len(batches) // world) - len(mine)) if sharded else []
    for index in mine:
        batch = collate(dataset, batches[max(index, 0)], collator,
                        _seed_for(seed, 0, max(index, 0)), accelerator.device)
        with accelerator.autocast():
            outputs = model(**batch)
        if index < 0:
            continue
        n = float(outputs.get("n", 1))
        sums["loss_sum"] += float(outputs["loss"]) * n
        sums["n"] += n
        for key, value in outputs.items():
            if key.startswith("count_"):
                sums[key] = sums.get(key, 0.0) + float(value)
    if world > 1:
        # A rank may have had no batch (and so no count_* keys): merge dicts, not tensors.
        merged: dict[str, float] = {}
        for part in gather_object([sums]):
            for key, value in part.items():
                merged[key] = merged.get(key, 0.0) + value
        sums = merged
    model.train(was_training)
    return reducer(sums)
