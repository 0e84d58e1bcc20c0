"""GGUF files -> ordinary, trainable Hugging Face folders (converted once, then cached).

A GGUF file (llama.cpp's format) holds quantised weights, the model's hyper-parameters and its
tokenizer. ``transformers`` reads it with ``from_pretrained(folder, gguf_file=...)``: every
tensor is de-quantised to floats (Q4_1 blocks: ``w = d * q + m`` per block of 32 weights) and
llama.cpp's rotary permutation of the query / key projections is undone. The model it returns
carries a quantisation marker, so ``save_pretrained`` refuses it, and that load takes ~15 s.

:func:`convert_gguf` does the load once and writes a normal folder (``config.json``,
``model.safetensors``, the tokenizer with its chat template, ``generation_config.json``) by
moving the de-quantised weights into a model built from the same config. Every lmforge stage
then treats the folder like any other checkpoint: fine-tune, LoRA, merge, export, serve.

The weights keep the quantisation noise: they are the Q4 model's values written as float32,
not the original half-precision checkpoint (``lmforge finetune`` trains from them as they are).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from lmforge.errors import ConfigError

log = logging.getLogger(__name__)

CACHE_ENV = "LMFORGE_CACHE_HOME"
"""Environment variable naming the folder converted models are cached in."""

MARKER = "lmforge_gguf.json"
"""Written last into a converted folder: its presence means the conversion completed."""


def cache_home() -> Path:
    """Where converted models live: ``$LMFORGE_CACHE_HOME``, else ``~/.cache/lmforge``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lmforge").expanduser()


def _fingerprint(path: Path) -> str:
    """A key that changes when the file or the converting library changes."""
    import transformers

    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def converted_folder(gguf_path: str | Path) -> Path:
    """The cache folder :func:`convert_gguf` writes ``gguf_path`` to (whether or not it exists)."""
    path = Path(gguf_path).expanduser()
    return cache_home() / "gguf" / f"{path.stem}-{_fingerprint(path)}"


def _load(path: Path) -> tuple[object, object]:
    """(de-quantised model, tokenizer) from a GGUF file; one-line errors for what users hit."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401 - transformers needs it to read the file
    except ImportError:
        raise ConfigError(f"reading {path.name} needs the gguf package: pip install gguf") \
            from None
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (ValueError, KeyError, OSError, NotImplementedError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

        known = ", ".join(a for a in GGUF_SUPPORTED_ARCHITECTURES
                          if a not in ("general", "tokenizer"))
        raise ConfigError(f"cannot convert {path} ({first}); transformers reads GGUF files of "
                          f"these architectures: {known}") from None
    return model, tokenizer


def convert_gguf(gguf_path: str | Path, out_dir: str | Path | None = None) -> str:
    """Convert a GGUF file into a trainable Hugging Face folder, once.

    Args:
        gguf_path: The ``.gguf`` file.
        out_dir: Where to write the folder (default: :func:`converted_folder`, a cache keyed
            on the file's path, size and time and on the transformers version).

    Returns:
        The folder, loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer`` (safetensors).

    Raises:
        ConfigError: The file does not exist, is not a GGUF file, or holds an architecture
            transformers cannot read.
    """
    path = Path(gguf_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"GGUF file {str(path)!r} does not exist; check the path")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ConfigError(f"{path} is not a GGUF file (it does not start with 'GGUF'); "
                              "give a .gguf file or a Hugging Face folder")
    out = Path(out_dir).expanduser() if out_dir is not None else converted_folder(path)
    if (out / MARKER).is_file():
        return str(out)
    if out_dir is not None and out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not a finished conversion; give a new folder "
                          "(nothing there is overwritten)")
    started = time.perf_counter()
    log.info("converting %s (GGUF, de-quantised to float32) into %s; done once", path, out)
    model, tokenizer = _load(path)
    from transformers import AutoModelForCausalLM

    config = model.config  # type: ignore[attr-defined]
    # The marker that makes save_pretrained refuse; the weights are plain floats by now.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(model.state_dict())  # type: ignore[attr-defined]
    plain.generation_config = model.generation_config  # type: ignore[attr-defined]
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed into place: a killed conversion leaves no folder
    # that looks complete, and two processes converting at once do not mix their files.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)  # type: ignore[attr-defined]
        (staging / MARKER).write_text(json.dumps({
            "source": str(path.resolve()), "source_bytes": path.stat().st_size,
            "architecture": config.model_type, "dtype": "float32",
            "note": "de-quantised from GGUF: the weights carry the quantisation noise"},
            indent=2) + "\n")
        if out.exists():  # empty, or an incomplete conversion in the cache (no marker)
            shutil.rmtree(out)
        try:
            staging.rename(out)
        except OSError:
            if not (out / MARKER).is_file():  # not another process's finished copy
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("converted %s in %.1f s", path.name, time.perf_counter() - started)
    return str(out)
