"""Self-supervised pretraining: masked LM (+ whole-word masking, NSP, SOP) and causal LM.

Names load on first use (PEP 562), so ``lmforge --help`` does not import torch.
"""

from __future__ import annotations

from lmforge.lazy import lazy_getattr

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

__getattr__ = lazy_getattr(__name__, _WHERE)
