"""Evaluation of fine-tuned models: classification, NER, QA, generation and LM metrics.

Metrics come from scikit-learn, seqeval, rouge-score and sacreBLEU (imported on first use);
plots are written as PNGs with matplotlib's Agg canvas. Every metric function returns a plain,
JSON-serializable dict.

Names load on first use (PEP 562), so ``lmforge --help`` does not import torch.
"""

from __future__ import annotations

from lmforge.lazy import lazy_getattr

_WHERE = {
    "CJKCharTokenizer": "lmforge.evaluation.generation",
    "ClassificationAccumulator": "lmforge.evaluation.classification",
    "bio_to_bioes": "lmforge.evaluation.ner",
    "bioes_to_bio": "lmforge.evaluation.ner",
    "classification_metrics": "lmforge.evaluation.classification",
    "convert_scheme": "lmforge.evaluation.ner",
    "exact_match": "lmforge.evaluation.qa",
    "expected_calibration_error": "lmforge.evaluation.calibration",
    "f1": "lmforge.evaluation.qa",
    "generation_metrics": "lmforge.evaluation.generation",
    "has_cjk": "lmforge.evaluation.generation",
    "ner_metrics": "lmforge.evaluation.ner",
    "normalize_answer": "lmforge.evaluation.qa",
    "perplexity": "lmforge.evaluation.lm",
    "plot_confusion_matrix": "lmforge.evaluation.plots",
    "plot_pr_curves": "lmforge.evaluation.plots",
    "plot_reliability_diagram": "lmforge.evaluation.plots",
    "plot_roc_curves": "lmforge.evaluation.plots",
    "qa_metrics": "lmforge.evaluation.qa",
    "tune_thresholds": "lmforge.evaluation.classification",
    "write_classification_plots": "lmforge.evaluation.plots",
}

__all__ = [
    "CJKCharTokenizer",
    "ClassificationAccumulator",
    "bio_to_bioes",
    "bioes_to_bio",
    "classification_metrics",
    "convert_scheme",
    "exact_match",
    "expected_calibration_error",
    "f1",
    "generation_metrics",
    "has_cjk",
    "ner_metrics",
    "normalize_answer",
    "perplexity",
    "plot_confusion_matrix",
    "plot_pr_curves",
    "plot_reliability_diagram",
    "plot_roc_curves",
    "qa_metrics",
    "tune_thresholds",
    "write_classification_plots",
]

__getattr__ = lazy_getattr(__name__, _WHERE)
