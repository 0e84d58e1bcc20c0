"""Sequence classification as a :class:`~lmforge.finetuning.task.Task`.

Served at ``POST /classify`` (one text or a batch, optional sentence pairs, top-k labels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import nn
from transformers import AutoModelForSequenceClassification

from lmforge.errors import DataError
from lmforge.evaluation.classification import tune_thresholds
from lmforge.finetuning.classification.attack import ClassificationTarget
from lmforge.finetuning.classification.data import (
    ClassificationCollator,
    collect_label_names,
    predict_probabilities,
    prepare_classification,
)
from lmforge.finetuning.classification.explain import ClassificationAdapter
from lmforge.finetuning.classification.objective import (
    ClassificationObjective,
    class_weights,
    classification_reducer,
)
from lmforge.finetuning.classification.report import evaluate_classifier
from lmforge.finetuning.classification.settings import ClassificationSettings
from lmforge.finetuning.models import load_pretrained, model_kwargs
from lmforge.finetuning.task import SAMPLE_TEXTS, Task, saved_settings
from lmforge.wire import (
    InputRecord,
    JsonInt,
    OneOrManyTextPairs,
    OneOrManyTexts,
    Route,
    RouteCall,
    record_model,
)


class ClassifyRequest(OneOrManyTexts):
    """``POST /classify`` (single-text models)."""

    top_k: JsonInt = Field(1, ge=1, le=1000, description="Labels with scores to return.")


class ClassifyPairRequest(OneOrManyTextPairs):
    """``POST /classify`` (sentence-pair models): ``text_pair`` goes with each text."""

    top_k: JsonInt = Field(1, ge=1, le=1000, description="Labels with scores to return.")


class LabelScore(BaseModel):
    """A label and its probability."""

    label: str
    score: float


class ClassifyResult(BaseModel):
    """One input's prediction (``label``/``score`` single-label, ``labels`` multi-label)."""

    text: str
    top_k: list[LabelScore]
    label: str | None = None
    score: float | None = None
    labels: list[str] | None = None


class ClassifyResponse(BaseModel):
    """Predictions in input order."""

    results: list[ClassifyResult]


def _classify_call(req: ClassifyRequest, settings: ClassificationSettings) -> RouteCall:
    texts = req.all_texts()
    given = getattr(req, "text_pair", None)  # only ClassifyPairRequest has it
    pairs = [given] if isinstance(given, str) else given
    pair_column = settings.text_pair_column
    if bool(pair_column) != (pairs is not None):
        raise DataError("this model takes sentence pairs: send text_pair" if pair_column
                        else "this model takes single texts: drop text_pair")
    records: list[dict[str, Any] | None] = [{settings.text_column: t} for t in texts]
    for record, pair in zip(records, pairs or [], strict=False):
        record[pair_column] = pair  # type: ignore[index]
    return RouteCall(records, texts + list(pairs or []), req.top_k)


class ClassificationTask(Task):
    """Single-label, multi-label and sentence-pair classification."""

    name = "classification"
    settings_class = ClassificationSettings
    peft_task_type = "SEQ_CLS"
    has_head = True
    onnx_outputs = ("logits",)
    serves_explanations = True
    supports_continual = True

    def selection_metric(self, job: Any) -> tuple[str, bool]:
        """Accuracy (subset accuracy for multi-label), not the loss: the validation loss rises
        once the model grows confident while its accuracy still improves, so picking on the
        loss keeps an early checkpoint (SST-2, BENCHMARKS.md: the defaults study)."""
        return ("eval_subset_accuracy" if job.task.multi_label else "eval_accuracy"), True

    def tuning_objectives(self, options: Any) -> tuple[str, ...]:
        """What :func:`~lmforge.finetuning.classification.objective.classification_reducer`
        reports (subset accuracy only for multi-label runs)."""
        if options.multi_label:
            return ("eval_loss", "eval_accuracy", "eval_subset_accuracy", "eval_macro_f1")
        return ("eval_loss", "eval_accuracy", "eval_macro_f1")

    def explain_adapter(self) -> type:
        """:class:`~lmforge.finetuning.classification.explain.ClassificationAdapter`."""
        return ClassificationAdapter

    def attack_target(self) -> type:
        """:class:`~lmforge.finetuning.classification.attack.ClassificationTarget` (single-label
        models; ``lmforge attack`` refuses multi-label ones)."""
        return ClassificationTarget

    def setup(self, job: Any, train: datasets.Dataset) -> ClassificationSettings:
        """Label names from the training split plus the column settings."""
        task = job.task
        labels = collect_label_names(train, task.label_column, task.multi_label,
                                     task.label_separator)
        return saved_settings(ClassificationSettings, task, task=self.name, labels=labels,
                              max_length=job.data.max_length)

    def encode(self, raw: datasets.Dataset, tokenizer: Any, settings: ClassificationSettings,
               split_name: str) -> datasets.Dataset:
        """Tokenize texts and map labels to ids."""
        label2id = {n: i for i, n in enumerate(settings.labels)}
        label_column = settings.label_column if settings.label_column in raw.column_names \
            else None
        return prepare_classification(
            raw, tokenizer, label2id, text_column=settings.text_column,
            text_pair_column=settings.text_pair_column, label_column=label_column,
            multi_label=settings.multi_label, separator=settings.label_separator,
            max_length=settings.max_length, split_name=split_name)

    def load_model(self, source: str, settings: ClassificationSettings,
                   model_cfg: Any = None) -> tuple[nn.Module, bool]:
        """``AutoModelForSequenceClassification`` with the label names in its config."""
        names = settings.labels
        kwargs = model_kwargs(model_cfg)
        kwargs.update(num_labels=len(names), id2label=dict(enumerate(names)),
                      label2id={n: i for i, n in enumerate(names)},
                      problem_type="multi_label_classification" if settings.multi_label
                      else "single_label_classification",
                      # A classifier of another label set (intermediate-task transfer, e.g.
                      # SST-5 -> SST-2) keeps its encoder and gets a new head.
                      ignore_mismatched_sizes=True)
        return load_pretrained(AutoModelForSequenceClassification, source, kwargs,
                               "classification")

    def objective(self, model: nn.Module, settings: ClassificationSettings, train_cfg: Any,
                  train: datasets.Dataset) -> nn.Module:
        """Cross-entropy (weights, smoothing) or BCE for multi-label."""
        weights = None
        if settings.class_weights == "balanced" and not settings.multi_label:
            weights = class_weights(train["labels"], len(settings.labels))
        return ClassificationObjective(model, settings.multi_label, weights,
                                       train_cfg.label_smoothing)

    def collator(self, tokenizer: Any, model: nn.Module) -> Any:
        """Dynamic padding; int or multi-hot labels."""
        return ClassificationCollator(tokenizer)

    def reducer(self, sums: dict[str, float]) -> dict[str, float]:
        """Loss, accuracy and macro-F1."""
        return classification_reducer(sums)

    def finalize(self, model: nn.Module, tokenizer: Any, settings: ClassificationSettings,
                 validation: datasets.Dataset | None, accelerator: Any) -> None:
        """Multi-label: tune one decision threshold per label on the validation set."""
        if not settings.multi_label or validation is None:
            return

        ys, ps = [], []
        for probs, labels in predict_probabilities(model, validation,
                                                   ClassificationCollator(tokenizer),
                                                   multi_label=True, device=accelerator.device,
                                                   autocast=accelerator.autocast):
            ps.append(probs)
            ys.append(labels)
        settings.thresholds = [float(t) for t in tune_thresholds(np.concatenate(ys),
                                                                 np.concatenate(ps))]

    def report(self, model: nn.Module, tokenizer: Any, settings: ClassificationSettings,
               raw: datasets.Dataset, encoded: datasets.Dataset, out_dir: Path,
               accelerator: Any, batch_size: int = 64) -> dict[str, Any]:
        """Metrics, ROC / PR / calibration plots and predictions.jsonl."""
        return evaluate_classifier(model, encoded, raw, ClassificationCollator(tokenizer),
                                   settings, out_dir, accelerator, batch_size)

    @torch.no_grad()
    def predict(self, model: nn.Module, tokenizer: Any, settings: ClassificationSettings,
                records: list[dict[str, Any]], top_k: int = 1) -> list[dict[str, Any]]:
        """Top-k labels with probabilities (and thresholded labels for multi-label)."""
        model.eval()
        texts = [str(r[settings.text_column]) for r in records]
        pair_column = settings.text_pair_column
        pairs = [str(r[pair_column]) for r in records] if pair_column else None
        enc = tokenizer(texts, pairs, truncation=True, max_length=settings.max_length,
                        padding=True, return_tensors="pt")
        logits = model(**enc).logits.float()
        names = settings.labels
        multi = settings.multi_label
        probs = (torch.sigmoid(logits) if multi else torch.softmax(logits, -1)).numpy()
        thresholds = np.asarray(settings.thresholds) if settings.thresholds else 0.5
        results = []
        for text, p in zip(texts, probs, strict=True):
            order = np.argsort(-p)[:top_k]
            record: dict[str, Any] = {"text": text, "top_k": [
                {"label": names[int(c)], "score": float(p[c])} for c in order]}
            if multi:
                record["labels"] = [names[int(c)] for c in np.flatnonzero(p >= thresholds)]
            else:
                record["label"], record["score"] = names[int(order[0])], float(p[order[0]])
            results.append(record)
        return results

    # ---------------------------------------------------------------- what other stages ask
    def rewritable_columns(self, settings: ClassificationSettings) -> list[str]:
        """The text (and pair) column: a synonym or typo keeps the label."""
        return [settings.text_column] + ([settings.text_pair_column]
                                         if settings.text_pair_column else [])

    def example_record(self, settings: ClassificationSettings) -> dict[str, Any]:
        """A text (and its pair) of two words."""
        record = {settings.text_column: "warm up"}
        if settings.text_pair_column:
            record[settings.text_pair_column] = "warm up"
        return record

    def input_record_model(self, settings: ClassificationSettings) -> type[InputRecord]:
        """The text column (and the pair column of a sentence-pair model), as strings."""
        fields: dict[str, Any] = {settings.text_column: (str, Field(..., description="Text."))}
        if settings.text_pair_column:
            fields[settings.text_pair_column] = (str, Field(..., description="Second text."))
        return record_model("ClassificationInput", fields, "One text to classify.")

    def check_record(self, settings: ClassificationSettings,
                     record: dict[str, Any]) -> str | None:
        """The text column, and the pair column of a sentence-pair model, as strings."""
        need = [settings.text_column] + ([settings.text_pair_column]
                                         if settings.text_pair_column else [])
        missing = [k for k in need if not isinstance(record.get(k), str)]
        return f"each input needs string fields {need} (missing: {missing})" if missing \
            else None

    def sample_inputs(self, settings: ClassificationSettings,
                      rows: list[dict[str, Any]] | None) -> list[tuple[str, str | None]]:
        """Texts (and pairs) from the data rows, else the built-in samples."""
        column, pair = settings.text_column, settings.text_pair_column
        if rows and column in rows[0]:
            return [(str(r[column]), str(r[pair]) if pair else None) for r in rows]
        if pair:
            return list(zip(SAMPLE_TEXTS, SAMPLE_TEXTS[1:] + SAMPLE_TEXTS[:1], strict=True))
        return [(text, None) for text in SAMPLE_TEXTS]

    def onnx_output_class(self) -> Any:
        """``SequenceClassifierOutput`` (``.logits`` (B, C))."""
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput

    def http_route(self, settings: ClassificationSettings) -> Route:
        """``POST /classify``: labels with probabilities for one text or a batch."""
        request = ClassifyPairRequest if settings.text_pair_column else ClassifyRequest
        return Route("/classify", request, ClassifyResponse,
                     "Labels with probabilities for one text or a batch of texts.",
                     _classify_call, lambda req, rows: {"results": rows}, exclude_none=True)
