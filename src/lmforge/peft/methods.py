"""Parameter-efficient methods, registered in one table :data:`METHODS` {name -> builder}.

A builder takes the task's ``transformers`` model (task head included) and returns the model
to train: a ``peft.PeftModel`` for the methods the ``peft`` library provides, or the same
module with most parameters frozen (and adapters inserted) for the others. Every method
keeps the task head trainable, and it is saved with the method's weights.

Formulas (x: input of a frozen weight W0 (d_out, d_in); h: a sub-layer output)::

    lora      h = W0 x + (alpha / r) B A x,   A (r, d_in), B (d_out, r) = 0 at start
    ia3       k -> l_k * k, v -> l_v * v, ffn inner activation a -> l_ff * a (l = 1 at start)
    prefix    attention over [P_k; K] and [P_v; V]: trained key / value prefixes per layer
    prompt    inputs [P; E(x)]: N trained embeddings before the token embeddings
    ptuning   as prompt, with P produced by a small MLP (prompt encoder)
    houlsby   h -> h + W_up f(W_down h) after attention and feed-forward (see adapters.py)
    pfeiffer  the same after the feed-forward only
    bitfit    only the bias terms (and the head) train
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from torch import nn

from lmforge.engine.loop import _LAYER_INDEX, layer_depth
from lmforge.errors import ConfigError
from lmforge.models.build import count_parameters
from lmforge.peft.adapters import add_adapters
from lmforge.peft.settings import PeftConfig

log = logging.getLogger(__name__)


class PeftTask(Protocol):
    """What the PEFT methods ask of a fine-tuning task (a
    :class:`~lmforge.finetuning.task.Task`, which sits on a higher floor): how ``peft`` wraps
    its model, whether it has a head to keep trainable, and whether virtual tokens fit."""

    name: ClassVar[str]
    peft_task_type: ClassVar[str]
    """The ``peft.TaskType`` name (decides which ``PeftModel`` subclass wraps the model)."""
    has_head: ClassVar[bool]
    per_token_outputs: ClassVar[bool]
    takes_past_key_values: ClassVar[bool]

    def load_model(self, source: str, settings: Any,
                   model_cfg: Any = None) -> tuple[nn.Module, bool]:
        """The task's ``transformers`` model from ``source`` (and whether its head is new)."""
        ...

_BERT_LORA = ["query", "value"]
# LoRA default targets: the attention query and value projections (Hu et al. 2021, sec. 7.1).
LORA_TARGETS: dict[str, list[str]] = {
    "bert": _BERT_LORA, "roberta": _BERT_LORA, "xlm-roberta": _BERT_LORA,
    "electra": _BERT_LORA, "camembert": _BERT_LORA,
    "distilbert": ["q_lin", "v_lin"],
    "gpt2": ["c_attn"],  # fused q, k, v Conv1D
    "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
    "t5": ["q", "v"], "mt5": ["q", "v"], "bart": ["q_proj", "v_proj"],
}
# IA3 (Liu et al. 2022): rescale keys, values and the feed-forward inner activation, i.e. the
# input of the feed-forward output projection (the "feedforward" modules). BERT's FFN output
# is `layer.N.output.dense`, whose suffix `output.dense` also names the attention output, so
# BERT-like models use regexes (full match).
_BERT_FFN_OUT = r".*\.layer\.\d+\.output\.dense$"
_BERT_IA3 = (r".*\.(?:key|value)$|" + _BERT_FFN_OUT, _BERT_FFN_OUT)
IA3_TARGETS: dict[str, tuple[Any, Any]] = {
    "bert": _BERT_IA3, "roberta": _BERT_IA3, "xlm-roberta": _BERT_IA3, "electra": _BERT_IA3,
    "camembert": _BERT_IA3,
    "distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"]),
    "gpt2": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"]),
    "llama": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "mistral": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "qwen2": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "t5": (["k", "v", "wo"], ["wo"]), "mt5": (["k", "v", "wo"], ["wo"]),
    "bart": (["k_proj", "v_proj", "fc2"], ["fc2"]),
}


@dataclass
class Target:
    """What a builder needs to know besides the model and the config.

    Attributes:
        task: The lmforge task object: its ``peft_task_type`` (which ``PeftModel`` subclass
            wraps the model), ``has_head``, ``per_token_outputs`` (virtual tokens would shift
            them) and ``takes_past_key_values``.
        head: Module names (relative to the model) that must train and be saved with the
            method: the task head plus any module the base checkpoint does not hold.
    """

    task: PeftTask
    head: list[str]


Builder = Callable[[nn.Module, PeftConfig, Target], nn.Module]


def _model_type(model: nn.Module) -> str:
    return str(getattr(getattr(model, "config", None), "model_type", "") or "")


def checkpoint_keys(source: str) -> set[str] | None:
    """Tensor names stored in a local safetensors checkpoint (None when unknown)."""
    folder = Path(source)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    single = folder / "model.safetensors"
    if not single.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(single), "pt") as fh:
        return set(fh.keys())


def head_modules(model: nn.Module, task: PeftTask, source: str | None) -> list[str]:
    """The task head (children beside the base model) and modules missing from ``source``.

    ``task`` is the task object (:class:`~lmforge.finetuning.task.Task`).

    A module the checkpoint lacks (e.g. a pooler) is randomly initialised on every load, so it
    must be trained and saved with the method, or a reloaded model would differ.
    """
    prefix = getattr(model, "base_model_prefix", "")
    names: list[str] = []
    if task.has_head:
        names = [name for name, child in model.named_children()
                 if name != prefix and any(True for _ in child.parameters())]
    keys = checkpoint_keys(source) if source else None
    if keys is not None:
        for name, _ in model.named_parameters():
            bare = name[len(prefix) + 1:] if prefix and name.startswith(prefix + ".") else name
            if name in keys or bare in keys or f"{prefix}.{name}" in keys:
                continue
            parts = name.split(".")
            module = ".".join(parts[:2] if parts[0] == prefix and len(parts) > 2 else parts[:1])
            if module not in names and module != prefix:
                names.append(module)
    return names


def _owned_by(name: str, modules: list[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def _set_trainable(model: nn.Module, keep: Callable[[str], bool]) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(keep(name))


# ------------------------------------------------------------------------ peft-library methods
def _wrap(model: nn.Module, config: Any, method: str) -> nn.Module:
    from peft import get_peft_model

    try:
        return get_peft_model(model, config)
    except (ValueError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"peft.method={method} is not supported for a "
                          f"{_model_type(model) or type(model).__name__} model ({first}); use "
                          "peft.method=lora or an adapter") from None


def _lora(model: nn.Module, cfg: PeftConfig, target: Target) -> nn.Module:
    from peft import LoraConfig

    kind = _model_type(model)
    modules = cfg.target_modules or LORA_TARGETS.get(kind)
    if not modules:
        raise ConfigError(f"no default LoRA targets for model type {kind!r}; set "
                          "peft.target_modules=NAME,NAME (e.g. q_proj,v_proj)")
    config = LoraConfig(task_type=target.task.peft_task_type, r=cfg.r, lora_alpha=cfg.alpha,
                        lora_dropout=cfg.dropout, target_modules=modules,
                        use_dora=cfg.use_dora, use_rslora=cfg.use_rslora,
                        fan_in_fan_out=kind == "gpt2",  # GPT-2's Conv1D stores W transposed
                        modules_to_save=target.head or None)
    return _wrap(model, config, "lora")


def _ia3(model: nn.Module, cfg: PeftConfig, target: Target) -> nn.Module:
    from peft import IA3Config

    kind = _model_type(model)
    if cfg.target_modules:
        # User targets: treat the ones that look like feed-forward outputs as feed-forward.
        modules, feedforward = cfg.target_modules, [
            m for m in cfg.target_modules if any(k in m for k in ("wo", "down", "lin2", "fc2",
                                                                  "mlp", "output.dense"))]
    elif kind in IA3_TARGETS:
        modules, feedforward = IA3_TARGETS[kind]
    else:
        raise ConfigError(f"no default IA3 targets for model type {kind!r}; set "
                          "peft.target_modules=NAME,NAME (keys, values, feed-forward output)")
    config = IA3Config(task_type=target.task.peft_task_type, target_modules=modules,
                       feedforward_modules=feedforward, modules_to_save=target.head or None,
                       fan_in_fan_out=kind == "gpt2")
    return _wrap(model, config, "ia3")


def _check_prompt_task(method: str, task: PeftTask) -> None:
    # Virtual tokens are prepended to the inputs, so per-token outputs (tags, span logits,
    # next-token logits) grow by N positions and no longer line up with the labels.
    if task.per_token_outputs:
        prefix = ", prefix" if task.takes_past_key_values else ""
        raise ConfigError(f"peft.method={method} does not fit task.name={task.name}: the "
                          "virtual tokens shift the per-token outputs; use peft.method=lora, "
                          f"ia3{prefix} or an adapter")


def _prompt_learning(model: nn.Module, cfg: PeftConfig, target: Target,
                     method: str) -> nn.Module:
    import peft

    task_type = target.task.peft_task_type
    # Shapes given explicitly: peft reads them from config.hidden_size / num_attention_heads
    # / num_hidden_layers, which some configs (DistilBERT: dim, n_heads, n_layers) lack.
    common: dict[str, Any] = {"task_type": task_type, "num_virtual_tokens": cfg.num_virtual_tokens,
                              "token_dim": model.get_input_embeddings().embedding_dim}
    config = getattr(model, "config", None)
    for key, names in (("num_attention_heads", ("num_attention_heads", "n_heads", "n_head")),
                       ("num_layers", ("num_hidden_layers", "n_layers", "n_layer"))):
        value = next((getattr(config, n) for n in names if getattr(config, n, None)), None)
        if value:
            common[key] = value
    if method == "prefix":
        # Prefixes enter attention as a key / value cache. For the head tasks peft passes
        # them only to a forward that names `past_key_values` (transformers 5 encoders name
        # it `cache`), else it fails at the first step: refuse up front.
        backbone = getattr(model, getattr(model, "base_model_prefix", ""), model)
        if not target.task.takes_past_key_values and not any(
                "past_key_values" in inspect.signature(m.forward).parameters
                for m in (model, backbone)):
            other = "lora" if target.task.per_token_outputs else "prompt, ptuning or lora"
            raise ConfigError(f"peft.method=prefix needs a model that takes past_key_values; "
                              f"a {_model_type(model) or 'this'} model does not; use "
                              f"peft.method={other}")
        peft_config: Any = peft.PrefixTuningConfig(**common)
    else:
        _check_prompt_task(method, target.task)
        peft_config = peft.PromptTuningConfig(**common) if method == "prompt" \
            else peft.PromptEncoderConfig(**common)
    if target.head:
        peft_config.modules_to_save = list(target.head)
    return _wrap(model, peft_config, method)


def _prefix(model: nn.Module, cfg: PeftConfig, target: Target) -> nn.Module:
    return _prompt_learning(model, cfg, target, "prefix")


def _prompt(model: nn.Module, cfg: PeftConfig, target: Target) -> nn.Module:
    return _prompt_learning(model, cfg, target, "prompt")


def _ptuning(model: nn.Module, cfg: PeftConfig, target: Target) -> nn.Module:
    return _prompt_learning(model, cfg, target, "ptuning")


# ------------------------------------------------------------------------ lmforge methods
def _adapters(model: nn.Module, cfg: PeftConfig, target: Target) -> nn.Module:
    add_adapters(model, _model_type(model), cfg.method, cfg.reduction_factor, cfg.non_linearity)
    # Houlsby et al. 2019 also train the layer norms (and the head). Norms are found by class
    # (nn.LayerNorm, T5LayerNorm, LlamaRMSNorm, ...), whatever their attribute names.
    norms = [name for name, m in model.named_modules()
             if isinstance(m, nn.LayerNorm) or type(m).__name__.endswith("Norm")]
    _set_trainable(model, lambda n: ".adapter." in f".{n}" or _owned_by(n, target.head)
                   or _owned_by(n, norms))
    return model


def _bitfit(model: nn.Module, cfg: PeftConfig, target: Target) -> nn.Module:
    if not any(n.endswith("bias") and not _owned_by(n, target.head)
               for n, _ in model.named_parameters()):
        raise ConfigError(f"peft.method=bitfit: a {_model_type(model) or 'this'} model has no "
                          "bias terms to train; use peft.method=lora")
    _set_trainable(model, lambda n: n.endswith("bias") or _owned_by(n, target.head))
    return model


def _none(model: nn.Module, cfg: PeftConfig, target: Target) -> nn.Module:
    return model


METHODS: dict[str, Builder] = {
    "none": _none,
    "lora": _lora,
    "ia3": _ia3,
    "prefix": _prefix,
    "prompt": _prompt,
    "ptuning": _ptuning,
    "houlsby": _adapters,
    "pfeiffer": _adapters,
    "bitfit": _bitfit,
}


def freeze_first_layers(model: nn.Module, count: int) -> None:
    """Freeze the embeddings and layers 0..count-1 (the engine's layer-depth naming)."""
    depths = [int(m.group(1)) + 1 for n, _ in model.named_parameters()
              if (m := _LAYER_INDEX.search(f".{n}"))]
    num_layers = max(depths, default=0)
    if count > num_layers:
        raise ConfigError(f"peft.freeze_layers={count} but the model has {num_layers} layers; "
                          f"use a value <= {num_layers}")
    for name, p in model.named_parameters():
        if layer_depth(name, num_layers) <= count:
            p.requires_grad_(False)


def apply_peft(model: nn.Module, cfg: PeftConfig, task: PeftTask, source: str | None = None,
               verbose: bool = True) -> nn.Module:
    """Turn a task model into the model to train under ``cfg`` (see :data:`METHODS`).

    Args:
        model: The ``transformers`` model from ``Task.load_model`` (head included).
        cfg: The ``peft:`` section.
        task: The lmforge task (:class:`~lmforge.finetuning.task.Task`) or its name.
        source: The base checkpoint folder (finds modules it lacks, which must train).
        verbose: Log the trainable parameter count.

    Returns:
        A ``peft.PeftModel`` (lora, ia3, prefix, prompt, ptuning) or ``model`` itself, with
        adapters inserted and frozen parameters marked ``requires_grad=False``.
    """
    if not task.peft_task_type:
        raise ConfigError(f"task {task.name!r} declares no peft task type; PEFT methods do "
                          "not apply to it")
    if cfg.method != "none" or cfg.freeze_layers:
        target = Target(task, head_modules(model, task, source))
        model = METHODS[cfg.method](model, cfg, target)
        if cfg.freeze_layers:
            freeze_first_layers(model, cfg.freeze_layers)
    if verbose:
        trainable, total = count_parameters(model)
        if trainable == 0:
            raise ConfigError(f"peft.method={cfg.method} left no trainable parameter; lower "
                              "peft.freeze_layers or choose another method")
        log.info("peft.method=%s: %d of %d parameters trainable (%.2f%%)", cfg.method,
                 trainable, total, 100.0 * trainable / max(total, 1))
    return model
