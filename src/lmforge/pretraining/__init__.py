"""Self-supervised pretraining: masked LM (+ whole-word masking, NSP, SOP) and causal LM."""

from __future__ import annotations

from lmforge.pretraining.objectives import (
    CausalLMObjective,
    MaskedLMObjective,
    lm_eval_reducer,
    wrap_for_objective,
)

__all__ = ["CausalLMObjective", "MaskedLMObjective", "lm_eval_reducer", "wrap_for_objective"]
