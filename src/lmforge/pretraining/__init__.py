"""Self-supervised pretraining: masked LM (+ whole-word masking, NSP, SOP) and causal LM.

Names load on first use (PEP 562), so ``lmforge --help`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "CausalLMObjective": "lmforge.pretraining.objectives",
    "MaskedLMObjective": "lmforge.pretraining.objectives",
    "lm_eval_reducer": "lmforge.pretraining.objectives",
    "wrap_for_objective": "lmforge.pretraining.objectives",
}

__all__ = [
    "CausalLMObjective",
    "MaskedLMObjective",
    "lm_eval_reducer",
    "wrap_for_objective",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'lmforge.pretraining' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
