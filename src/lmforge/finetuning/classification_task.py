"""Sequence classification as a :class:`~lmforge.finetuning.task.Task`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

from lmforge.errors import ConfigError
from lmforge.finetuning.classification import (
    ClassificationCollator,
    ClassificationObjective,
    class_weights,
    classification_reducer,
    collect_label_names,
    predict_probabilities,
    prepare_classification,
)


def load_pretrained(auto_class: Any, source: str, kwargs: dict[str, Any],
                    what: str) -> tuple[nn.Module, bool]:
    """``auto_class.from_pretrained`` with a one-line error; returns (model, new weights?)."""
    try:
        model, info = auto_class.from_pretrained(source, output_loading_info=True, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot load {source!r} for {what} ({first}); use a folder with "
                          "config.json and safetensors") from None
    return model, bool(info.get("missing_keys"))


def model_kwargs(model_cfg: Any) -> dict[str, Any]:
    """from_pretrained options shared by every task (safety, attention, dropout)."""
    if model_cfg is None:
        return {}
    kwargs: dict[str, Any] = {"trust_remote_code": model_cfg.trust_remote_code,
                              "attn_implementation": model_cfg.attn_implementation}
    if model_cfg.dropout is not None:
        kwargs.update(hidden_dropout_prob=model_cfg.dropout,
                      attention_probs_dropout_prob=model_cfg.dropout)
    return kwargs


class ClassificationTask:
    """Single-label, multi-label and sentence-pair classification."""

    name = "classification"

    def setup(self, job: Any, train: datasets.Dataset) -> dict[str, Any]:
        """Label names from the training split plus the column settings."""
        task = job.task
        labels = collect_label_names(train, task.label_column, task.multi_label,
                                     task.label_separator)
        return {"task": self.name, "labels": labels, "multi_label": task.multi_label,
                "text_column": task.text_column, "text_pair_column": task.text_pair_column,
                "label_column": task.label_column, "label_separator": task.label_separator,
                "class_weights": task.class_weights, "max_length": job.data.max_length,
                "thresholds": None}

    def encode(self, raw: datasets.Dataset, tokenizer: Any, info: dict[str, Any],
               split_name: str) -> datasets.Dataset:
        """Tokenize texts and map labels to ids."""
        label2id = {n: i for i, n in enumerate(info["labels"])}
        label_column = info["label_column"] if info["label_column"] in raw.column_names \
            else None
        return prepare_classification(
            raw, tokenizer, label2id, text_column=info["text_column"],
            text_pair_column=info.get("text_pair_column"), label_column=label_column,
            multi_label=info["multi_label"], separator=info.get("label_separator", ","),
            max_length=info.get("max_length", 128), split_name=split_name)

    def load_model(self, source: str, info: dict[str, Any],
                   model_cfg: Any = None) -> tuple[nn.Module, bool]:
        """``AutoModelForSequenceClassification`` with the label names in its config."""
        names = info["labels"]
        kwargs = model_kwargs(model_cfg)
        kwargs.update(num_labels=len(names), id2label=dict(enumerate(names)),
                      label2id={n: i for i, n in enumerate(names)},
                      problem_type="multi_label_classification" if info["multi_label"]
                      else "single_label_classification")
        return load_pretrained(AutoModelForSequenceClassification, source, kwargs,
                               "classification")

    def objective(self, model: nn.Module, info: dict[str, Any], train_cfg: Any,
                  train: datasets.Dataset) -> nn.Module:
        """Cross-entropy (weights, smoothing) or BCE for multi-label."""
        weights = None
        if info.get("class_weights") == "balanced" and not info["multi_label"]:
            weights = class_weights(train["labels"], len(info["labels"]))
        return ClassificationObjective(model, info["multi_label"], weights,
                                       train_cfg.label_smoothing)

    def collator(self, tokenizer: Any, model: nn.Module) -> Any:
        """Dynamic padding; int or multi-hot labels."""
        return ClassificationCollator(tokenizer)

    def reducer(self, sums: dict[str, float]) -> dict[str, float]:
        """Loss, accuracy and macro-F1."""
        return classification_reducer(sums)

    def finalize(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
                 validation: datasets.Dataset | None, accelerator: Any) -> None:
        """Multi-label: tune one decision threshold per label on the validation set."""
        if not info["multi_label"] or validation is None:
            return
        from lmforge.evaluation.classification import tune_thresholds

        ys, ps = [], []
        for probs, labels in predict_probabilities(model, validation,
                                                   ClassificationCollator(tokenizer),
                                                   multi_label=True, device=accelerator.device,
                                                   autocast=accelerator.autocast):
            ps.append(probs)
            ys.append(labels)
        info["thresholds"] = [float(t) for t in tune_thresholds(np.concatenate(ys),
                                                                np.concatenate(ps))]

    def report(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
               raw: datasets.Dataset, encoded: datasets.Dataset, out_dir: Path,
               accelerator: Any, batch_size: int = 64) -> dict[str, Any]:
        """Metrics, ROC / PR / calibration plots and predictions.jsonl."""
        from lmforge.finetuning.report import evaluate_classifier

        return evaluate_classifier(model, encoded, raw, ClassificationCollator(tokenizer),
                                   info["labels"], info, out_dir, accelerator, batch_size)

    @torch.no_grad()
    def predict(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
                records: list[dict[str, Any]], top_k: int = 1) -> list[dict[str, Any]]:
        """Top-k labels with probabilities (and thresholded labels for multi-label)."""
        model.eval()
        texts = [str(r[info["text_column"]]) for r in records]
        pair_column = info.get("text_pair_column")
        pairs = [str(r[pair_column]) for r in records] if pair_column else None
        enc = tokenizer(texts, pairs, truncation=True, max_length=info.get("max_length", 128),
                        padding=True, return_tensors="pt")
        logits = model(**enc).logits.float()
        names = info["labels"]
        multi = info["multi_label"]
        probs = (torch.sigmoid(logits) if multi else torch.softmax(logits, -1)).numpy()
        thresholds = np.asarray(info["thresholds"]) if info.get("thresholds") else 0.5
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
