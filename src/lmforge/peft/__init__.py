"""Parameter-efficient fine-tuning: one table of methods, their save / load / merge.

``PeftConfig`` is imported eagerly (the CLI needs it); the rest loads torch and ``peft`` on
first use.
"""

from __future__ import annotations

from lmforge.lazy import lazy_getattr
from lmforge.peft.settings import PEFT_METHODS, PeftConfig

__all__ = ["METHODS", "PEFT_METHODS", "PeftConfig", "apply_peft", "load_adapted_model",
           "merge_adapter", "save_adapted_model"]

_LAZY = {"METHODS": "lmforge.peft.methods", "apply_peft": "lmforge.peft.methods",
         "load_adapted_model": "lmforge.peft.io", "merge_adapter": "lmforge.peft.io",
         "save_adapted_model": "lmforge.peft.io"}

__getattr__ = lazy_getattr(__name__, _LAZY)
