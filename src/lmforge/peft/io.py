"""Saving, loading and merging parameter-efficient models.

What ``run/model/`` holds per method (besides the tokenizer and ``lmforge_task.json``):

- ``none``: the full ``transformers`` model (``config.json`` + ``model.safetensors``).
- lora / ia3 / prefix / prompt / ptuning: a ``peft`` adapter folder (``adapter_config.json``
  + ``adapter_model.safetensors``, the task head inside via ``modules_to_save``), loadable
  with ``peft.PeftModel.from_pretrained(base_model, run/model)``.
- houlsby / pfeiffer / bitfit: ``adapter_weights.safetensors`` with only the trained tensors
  (adapters, norms, biases, head), rebuilt onto the base model by
  :func:`load_adapted_model`.

Every non-``none`` folder also has ``lmforge_peft.json``: the method, its settings and the base
checkpoint the weights apply to.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from lmforge.errors import ConfigError
from lmforge.models.build import resolve_checkpoint
from lmforge.peft.adapters import has_adapters
from lmforge.peft.methods import PeftTask, apply_peft
from lmforge.peft.settings import PeftConfig

PEFT_FILE = "lmforge_peft.json"  # method, settings and base model of an adapted run
WEIGHTS_FILE = "adapter_weights.safetensors"  # trained tensors of houlsby / pfeiffer / bitfit


def _is_peft_model(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def trainable_state(model: nn.Module) -> dict[str, Any]:
    """The tensors that training changed: every parameter with ``requires_grad``."""
    return {name: p.detach().contiguous() for name, p in model.named_parameters()
            if p.requires_grad}


def save_adapted_model(model: nn.Module, folder: Path, cfg: PeftConfig, source: str,
                       base_name: str | None = None) -> None:
    """Write the model of a fine-tuning run to ``folder`` in the method's format.

    Args:
        model: The trained model (``apply_peft``'s result).
        folder: The (temporary) ``model/`` folder.
        cfg: The ``peft:`` section the model was built with.
        source: The base checkpoint folder the adapter applies to.
        base_name: The base as the user named it (e.g. a builtin name), tried on load when
            ``source`` has moved.
    """
    if cfg.method == "none":
        model.save_pretrained(folder)
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if _is_peft_model(model):
        model.save_pretrained(folder)
        fmt = "peft"
    else:
        from safetensors.torch import save_file

        save_file(trainable_state(model), str(folder / WEIGHTS_FILE))
        fmt = "lmforge"
    meta = {"method": cfg.method, "format": fmt, "base_model": str(source),
            "base_model_name": base_name, "peft": asdict(cfg)}
    (folder / PEFT_FILE).write_text(json.dumps(meta, indent=2))


def peft_info_of(model_dir: str | Path) -> dict[str, Any] | None:
    """The ``lmforge_peft.json`` of a model folder, or None for a full model."""
    path = Path(model_dir) / PEFT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _base_source(meta: dict[str, Any]) -> str:
    base = meta["base_model"]
    if Path(base).exists():
        return base
    name = meta.get("base_model_name")
    if name:

        resolved = resolve_checkpoint(name)
        if Path(resolved).exists():
            return resolved
    raise ConfigError(f"the base model {base!r} these adapter weights apply to is missing; "
                      "restore it at that path or fine-tune again")


def load_adapted_model(model_dir: str | Path, task: PeftTask, settings: Any) -> nn.Module:
    """Load a fine-tuned model folder in whatever format :func:`save_adapted_model` wrote.

    Args:
        model_dir: ``run/model``.
        task: The registered task (its ``load_model`` builds the base with the right head).
        settings: The task settings (``lmforge_task.json``).

    Returns:
        The plain ``transformers`` model (method none), a ``peft.PeftModel`` (peft-library
        methods), or the base model rebuilt with adapters / trained biases (lmforge methods),
        in eval mode.
    """
    meta = peft_info_of(model_dir)
    if meta is None:
        model, _ = task.load_model(str(model_dir), settings)
        return model
    base = _base_source(meta)
    model, _ = task.load_model(base, settings)
    if meta["format"] == "peft":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(model_dir))
    else:
        from safetensors.torch import load_file

        cfg = PeftConfig(**meta["peft"])
        model = apply_peft(model, cfg, task, base, verbose=False)
        state = load_file(str(Path(model_dir) / WEIGHTS_FILE))
        result = model.load_state_dict(state, strict=False)
        # Every trained tensor must come from the file, and the file hold nothing else.
        missing = [k for k in trainable_state(model) if k not in state]
        if result.unexpected_keys or missing:
            odd = (result.unexpected_keys or missing)[0]
            raise ConfigError(f"{model_dir}/{WEIGHTS_FILE} does not match a "
                              f"{meta['method']} model ({odd!r} unexpected or missing); was it "
                              "written by another lmforge version?")
    model.eval()
    return model


def merge_adapter(model: nn.Module) -> nn.Module:
    """Fold an adapter into the base weights; return a plain ``transformers`` model.

    LoRA (W0 + (alpha/r) B A) and IA3 (W0 scaled by l) merge exactly, and the ``peft``
    head copies replace the original head. Models that are already plain (method none,
    bitfit) come back unchanged.

    Raises:
        ConfigError: for prompt methods (virtual tokens are inputs, not weights) and
            bottleneck adapters (a non-linear branch cannot fold into a matrix).
    """
    if _is_peft_model(model):
        config = model.peft_config[model.active_adapter]
        if config.is_prompt_learning:
            raise ConfigError(f"peft {config.peft_type.value.lower()} cannot be merged: its "
                              "virtual tokens are inputs, not weights; keep the PeftModel")
        # Put the trained head copies in place first: peft's IA3 unload fails on a wrapped
        # head that is not a single Linear (e.g. RobertaClassificationHead).
        from peft.utils import ModulesToSaveWrapper

        for name, module in list(model.named_modules()):
            if isinstance(module, ModulesToSaveWrapper):
                parent_name, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent_name), child,
                        module.modules_to_save[model.active_adapter])
        return model.merge_and_unload()
    if has_adapters(model):
        raise ConfigError("houlsby / pfeiffer adapters cannot be merged (f(W_down h) is "
                          "non-linear); keep the adapted model or use peft.method=lora")
    return model
