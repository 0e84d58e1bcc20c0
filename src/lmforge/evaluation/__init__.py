"""Evaluation of fine-tuned models: classification, NER, QA, generation and LM metrics.

Metrics come from scikit-learn, seqeval, rouge-score and sacreBLEU (imported on first use);
plots are written as PNGs with matplotlib's Agg canvas. Every metric function returns a plain,
JSON-serializable dict.
"""

from __future__ import annotations

from lmforge.evaluation.calibration import expected_calibration_error
from lmforge.evaluation.classification import (
    ClassificationAccumulator,
    classification_metrics,
    tune_thresholds,
)
from lmforge.evaluation.generation import CJKCharTokenizer, generation_metrics, has_cjk
from lmforge.evaluation.lm import perplexity
from lmforge.evaluation.ner import bio_to_bioes, bioes_to_bio, convert_scheme, ner_metrics
from lmforge.evaluation.plots import (
    plot_confusion_matrix,
    plot_pr_curves,
    plot_reliability_diagram,
    plot_roc_curves,
    write_classification_plots,
)
from lmforge.evaluation.qa import exact_match, f1, normalize_answer, qa_metrics

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
