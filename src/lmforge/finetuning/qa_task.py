"""Extractive question answering (SQuAD style) as a :class:`~lmforge.finetuning.task.Task`.

Every split is encoded as training windows (start / end token positions) so the engine can
compute ``eval_loss`` during training. Exact match and F1 need spans decoded over all windows
of an example, so :meth:`QuestionAnsweringTask.report` builds evaluation windows itself
(``prepare_qa_eval``) from the raw split and runs ``postprocess_qa``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import datasets
import torch
from torch import nn
from transformers import AutoModelForQuestionAnswering

from lmforge.errors import DataError
from lmforge.finetuning.classification_task import load_pretrained, model_kwargs
from lmforge.finetuning.qa import (
    QACollator,
    answers_of,
    check_answers,
    postprocess_qa,
    prepare_qa_eval,
    prepare_qa_train,
)
from lmforge.runs import write_json

log = logging.getLogger(__name__)


class QAObjective(nn.Module):
    """The model's own start/end cross-entropy plus an exact-span count.

    Args:
        model: A ``*ForQuestionAnswering`` model (saved as is).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, start_positions: torch.Tensor, end_positions: torch.Tensor,
                **inputs: torch.Tensor) -> dict[str, Any]:
        """Loss = mean of start and end CE over windows (B,); counts windows with both right."""
        out = self.model(**inputs, start_positions=start_positions, end_positions=end_positions)
        # Token-level argmax (B,) each: a cheap training-time proxy for exact match.
        exact = (out.start_logits.argmax(-1) == start_positions) & \
            (out.end_logits.argmax(-1) == end_positions)
        return {"loss": out.loss, "n": start_positions.shape[0], "count_exact_span": exact.sum()}


def qa_reducer(sums: dict[str, float]) -> dict[str, float]:
    """eval_loss per window and the share of windows with the exact token span."""
    n = max(sums.get("n", 0.0), 1.0)
    return {"eval_loss": sums.get("loss_sum", 0.0) / n,
            "eval_span_accuracy": sums.get("count_exact_span", 0.0) / n}


class QuestionAnsweringTask:
    """Extractive QA: predict the answer span of a question inside a context."""

    name = "qa"

    def setup(self, job: Any, train: datasets.Dataset) -> dict[str, Any]:
        """Column names and windowing / decoding settings (no labels to collect)."""
        t = job.task
        return {"task": self.name, "question_column": t.question_column,
                "context_column": t.context_column, "answers_column": t.answers_column,
                "id_column": t.id_column, "text_column": t.text_column,
                "doc_stride": t.doc_stride, "n_best": t.n_best,
                "max_answer_length": t.max_answer_length,
                "allow_unanswerable": t.allow_unanswerable, "max_length": job.data.max_length}

    def _check(self, raw: datasets.Dataset, info: dict[str, Any],
               split_name: str) -> tuple[datasets.Dataset, dict[str, Any]]:
        # check_answers logs a warning with the count and example ids when any is misaligned.
        return check_answers(raw, context_column=info["context_column"],
                             answers_column=info["answers_column"],
                             id_column=info["id_column"], split_name=split_name)

    def encode(self, raw: datasets.Dataset, tokenizer: Any, info: dict[str, Any],
               split_name: str) -> datasets.Dataset:
        """Training windows with answer token positions for every split (for eval_loss)."""
        cleaned, check = self._check(raw, info, split_name)
        if split_name == "train":
            info["train_answer_check"] = check  # saved with the model in lmforge_task.json
        if len(cleaned) == 0:
            raise DataError(f"no usable examples in split '{split_name}' (all answers "
                            "misaligned); fix answer_start in the data")
        return prepare_qa_train(
            cleaned, tokenizer, max_length=info.get("max_length", 384),
            doc_stride=info["doc_stride"], question_column=info["question_column"],
            context_column=info["context_column"], answers_column=info["answers_column"],
            split_name=split_name)

    def load_model(self, source: str, info: dict[str, Any],
                   model_cfg: Any = None) -> tuple[nn.Module, bool]:
        """``AutoModelForQuestionAnswering`` (a new start/end head on an encoder)."""
        return load_pretrained(AutoModelForQuestionAnswering, source, model_kwargs(model_cfg),
                               "question answering")

    def objective(self, model: nn.Module, info: dict[str, Any], train_cfg: Any,
                  train: datasets.Dataset) -> nn.Module:
        """Start/end cross-entropy."""
        return QAObjective(model)

    def collator(self, tokenizer: Any, model: nn.Module) -> Any:
        """Pads ids; stacks start/end positions."""
        return QACollator(tokenizer)

    def reducer(self, sums: dict[str, float]) -> dict[str, float]:
        """eval_loss and eval_span_accuracy."""
        return qa_reducer(sums)

    def finalize(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
                 validation: datasets.Dataset | None, accelerator: Any) -> None:
        """Nothing to tune (the null-score threshold stays 0)."""

    @torch.no_grad()
    def _spans(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
               examples: datasets.Dataset, device: Any, autocast: Any = None,
               batch_size: int = 64, split_name: str = "predict",
               top_k: int = 1) -> dict[str, dict[str, Any]]:
        """Best span per example id, over all windows, logits streamed per batch."""
        features = prepare_qa_eval(
            examples, tokenizer, max_length=info.get("max_length", 384),
            doc_stride=info["doc_stride"], question_column=info["question_column"],
            context_column=info["context_column"], answers_column=info["answers_column"],
            id_column=info["id_column"], split_name=split_name)
        collator = QACollator(tokenizer)
        model.eval()
        starts: list[Any] = []
        ends: list[Any] = []
        for first in range(0, len(features), batch_size):
            rows = features[first:first + batch_size]
            batch = collator([dict(zip(rows, values, strict=True))
                              for values in zip(*rows.values(), strict=True)])
            batch = {k: v.to(device) for k, v in batch.items()
                     if k not in ("start_positions", "end_positions")}
            with autocast() if autocast else contextlib.nullcontext():
                out = model(**batch)
            # Rows of (L_pad,) logits; postprocess_qa trims each to its feature's length.
            starts.extend(out.start_logits.float().cpu().numpy())
            ends.extend(out.end_logits.float().cpu().numpy())
        return postprocess_qa(
            examples, features, starts, ends, n_best=info["n_best"],
            max_answer_length=info["max_answer_length"],
            allow_unanswerable=info["allow_unanswerable"], id_column=info["id_column"],
            context_column=info["context_column"], top_k=top_k)

    def report(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
               raw: datasets.Dataset, encoded: datasets.Dataset, out_dir: Path,
               accelerator: Any, batch_size: int = 64) -> dict[str, Any]:
        """Exact match / F1 (SQuAD rules), summary.json and predictions.jsonl."""
        from lmforge.evaluation.qa import qa_metrics

        cleaned, check = self._check(raw, info, "evaluation")
        preds = self._spans(model, tokenizer, info, cleaned, accelerator.device,
                            accelerator.autocast, batch_size, "evaluation")
        id_column = info["id_column"]
        ids = [str(i) for i in (cleaned[id_column] if id_column in cleaned.column_names
                                else range(len(cleaned)))]
        references = {i: answers_of(row, info["answers_column"])
                      for i, row in zip(ids, cleaned, strict=True)}
        metrics = qa_metrics({i: p["text"] for i, p in preds.items()}, references)
        metrics["answer_check"] = check
        if "train_answer_check" in info:
            metrics["train_answer_check"] = info["train_answer_check"]
        headline = {"exact_match": metrics["exact_match"], "f1": metrics["f1"],
                    "misaligned_answers": check["misaligned_answers"],
                    "skipped_examples": check["dropped_examples"]}
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as fh:
            for i, row in zip(ids, cleaned, strict=True):
                p = preds[i]
                fh.write(json.dumps({"id": i, "question": row[info["question_column"]],
                                     "answer": p["text"], "score": p["score"],
                                     "start": p["start"], "gold": references[i]},
                                    ensure_ascii=False) + "\n")
        write_json(out_dir / "summary.json", {"headline": headline, "metrics": metrics})
        return {"headline": headline, "metrics": metrics}

    def predict(self, model: nn.Module, tokenizer: Any, info: dict[str, Any],
                records: list[dict[str, Any]], top_k: int = 1) -> list[dict[str, Any]]:
        """Best answer span (text, score, start char in the context) per question.

        With ``top_k > 1`` each row also lists the ``top_k`` best distinct spans.
        """
        q, c = info["question_column"], info["context_column"]
        for record in records:
            if q not in record or c not in record:
                raise DataError(f"QA inputs need {q!r} and {c!r} fields; give a jsonl file "
                                "with one {question, context} object per line")
        examples = datasets.Dataset.from_dict({
            info["id_column"]: [str(k) for k in range(len(records))],
            q: [str(r[q]) for r in records], c: [str(r[c]) for r in records]})
        device = next(model.parameters()).device
        preds = self._spans(model, tokenizer, info, examples, device,
                            batch_size=max(len(records), 1), top_k=top_k)
        rows = []
        for k, r in enumerate(records):
            pred = preds[str(k)]
            row = {"question": r[q], "answer": pred["text"], "score": pred["score"],
                   "start": pred["start"]}
            if top_k > 1:
                row["top_k"] = pred["top_k"]
            rows.append(row)
        return rows
