"""Prompting: templates and verbalizers, cloze / label scoring, in-context demonstrations,
contextual calibration and few-shot prompt-based fine-tuning (``lmforge prompt``).

Names are imported lazily so that ``lmforge --help`` (which imports ``settings``) stays fast.
"""

from __future__ import annotations

from lmforge.lazy import lazy_getattr

_WHERE = {
    "calibrate": "calibration", "content_free_prior": "calibration",
    "format_demos": "demos", "mean_pooled_embeddings": "demos",
    "nearest_per_class": "demos", "sample_per_class": "demos",
    "Encoder": "scoring", "causal_scores": "scoring", "cloze_scores": "scoring",
    "continuation_logprobs": "scoring", "label_probs": "scoring", "load_lm": "scoring",
    "naive_continuation_logprobs": "scoring", "PromptJob": "settings",
    "PromptSet": "templates", "Template": "templates", "load_prompts": "templates",
    "parse_prompts": "templates",
}


__all__ = [
    "Encoder",
    "PromptJob",
    "PromptSet",
    "Template",
    "calibrate",
    "causal_scores",
    "cloze_scores",
    "content_free_prior",
    "continuation_logprobs",
    "format_demos",
    "label_probs",
    "load_lm",
    "load_prompts",
    "mean_pooled_embeddings",
    "naive_continuation_logprobs",
    "nearest_per_class",
    "parse_prompts",
    "sample_per_class",
]

__getattr__ = lazy_getattr(__name__, {name: f"lmforge.prompting.{module}"
                                       for name, module in _WHERE.items()})
