"""The config of ``lmforge convert`` (torch-free: ``--help`` imports it)."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import opt


@dataclass
class ConvertJob:
    """``lmforge convert SOURCE [output=FOLDER]``: a GGUF file as a trainable HF folder.

    The weights are de-quantised to float32 and saved as safetensors with the tokenizer
    (and its chat template). Other commands convert on first use by themselves; this command
    makes the folder explicit (to copy it, export it or pass it to plain ``transformers``).
    """

    source: str = opt("", "A .gguf file or a builtin GGUF model (smollm2-135m-instruct).")
    output: str | None = opt(None, "Folder to write (default: the shared cache, "
                                   "$LMFORGE_CACHE_HOME or ~/.cache/lmforge/gguf/).")
    output_dir: str | None = opt(None, "Unused (the folder is output=...).")
