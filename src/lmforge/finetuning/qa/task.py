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
from pydantic import BaseModel, Field
from torch import nn
from transformers import AutoModelForQuestionAnswering

from lmforge.errors import DataError
from lmforge.evaluation.qa import qa_metrics
from lmforge.finetuning.models import load_pretrained, model_kwargs
from lmforge.finetuning.qa.data import (
    QACollator,
    answers_of,
    check_answers,
    postprocess_qa,
    prepare_qa_eval,
    prepare_qa_train,
)
from lmforge.finetuning.qa.explain import QuestionAnsweringAdapter
from lmforge.finetuning.qa.objective import QAObjective, qa_reducer
from lmforge.finetuning.qa.settings import QaSettings
from lmforge.finetuning.task import SAMPLE_TEXTS, Task, saved_settings
from lmforge.runs import write_json
from lmforge.wire import InputRecord, NonBlank, Route, RouteCall, Strict, record_model

log = logging.getLogger(__name__)



class AnswerRequest(Strict):
    """``POST /answer``: extractive QA."""

    question: NonBlank = Field(..., description="The question (not blank).")
    context: NonBlank = Field(..., description="The passage holding the answer (not blank).")


class AnswerResponse(BaseModel):
    """The best span of the context (empty answer and start -1 when there is none)."""

    answer: str
    score: float | None
    start: int
    end: int


def _answer_call(req: AnswerRequest, settings: QaSettings) -> RouteCall:
    if not (req.question.strip() and req.context.strip()):
        raise DataError("question and context must not be blank")
    return RouteCall([{settings.question_column: req.question,
                       settings.context_column: req.context}], [req.question, req.context])


def _answer_response(req: AnswerRequest, rows: list[Any]) -> dict[str, Any]:
    row = rows[0]
    start = int(row["start"])
    return {"answer": row["answer"], "score": row["score"], "start": start,
            "end": start + len(row["answer"]) if start >= 0 else -1}


class QuestionAnsweringTask(Task):
    """Extractive QA: predict the answer span of a question inside a context."""

    name = "qa"
    settings_class = QaSettings
    peft_task_type = "QUESTION_ANS"
    has_head = True
    per_token_outputs = True
    onnx_outputs = ("start_logits", "end_logits")
    metric_scale = 1.0  # exact match and F1 are percentages already (SQuAD convention)

    def tuning_objectives(self, options: Any) -> tuple[str, ...]:
        """What :func:`~lmforge.finetuning.qa.objective.qa_reducer` reports (span accuracy on
        the windows that hold the answer, null accuracy on the others; exact match and F1 need
        the decoded answers and are only in the full report)."""
        return ("eval_loss", "eval_span_accuracy", "eval_null_accuracy")

    def explain_adapter(self) -> type:
        """:class:`~lmforge.finetuning.qa.explain.QuestionAnsweringAdapter` (explains the
        predicted answer span)."""
        return QuestionAnsweringAdapter

    def setup(self, job: Any, train: datasets.Dataset) -> QaSettings:
        """Column names and windowing / decoding settings (no labels to collect)."""
        return saved_settings(QaSettings, job.task, task=self.name,
                              max_length=job.data.max_length)

    def _check(self, raw: datasets.Dataset, settings: QaSettings,
               split_name: str) -> tuple[datasets.Dataset, dict[str, Any]]:
        # check_answers logs a warning with the count and example ids when any is misaligned.
        return check_answers(raw, context_column=settings.context_column,
                             answers_column=settings.answers_column,
                             id_column=settings.id_column, split_name=split_name)

    def encode(self, raw: datasets.Dataset, tokenizer: Any, settings: QaSettings,
               split_name: str) -> datasets.Dataset:
        """Training windows with answer token positions for every split (for eval_loss)."""
        cleaned, check = self._check(raw, settings, split_name)
        if split_name == "train":
            settings.train_answer_check = check  # saved with the model in lmforge_task.json
        if len(cleaned) == 0:
            raise DataError(f"no usable examples in split '{split_name}' (all answers "
                            "misaligned); fix answer_start in the data")
        return prepare_qa_train(
            cleaned, tokenizer, max_length=settings.max_length,
            doc_stride=settings.doc_stride, question_column=settings.question_column,
            context_column=settings.context_column, answers_column=settings.answers_column,
            split_name=split_name)

    def load_model(self, source: str, settings: QaSettings,
                   model_cfg: Any = None) -> tuple[nn.Module, bool]:
        """``AutoModelForQuestionAnswering`` (a new start/end head on an encoder)."""
        return load_pretrained(AutoModelForQuestionAnswering, source, model_kwargs(model_cfg),
                               "question answering")

    def objective(self, model: nn.Module, settings: QaSettings, train_cfg: Any,
                  train: datasets.Dataset) -> nn.Module:
        """Start/end cross-entropy."""
        return QAObjective(model)

    def collator(self, tokenizer: Any, model: nn.Module) -> Any:
        """Pads ids; stacks start/end positions."""
        return QACollator(tokenizer)

    def reducer(self, sums: dict[str, float]) -> dict[str, float]:
        """eval_loss, eval_span_accuracy and eval_null_accuracy."""
        return qa_reducer(sums)

    def finalize(self, model: nn.Module, tokenizer: Any, settings: QaSettings,
                 validation: datasets.Dataset | None, accelerator: Any) -> None:
        """Nothing to tune (the null-score threshold stays 0)."""

    @torch.no_grad()
    def _spans(self, model: nn.Module, tokenizer: Any, settings: QaSettings,
               examples: datasets.Dataset, device: Any, autocast: Any = None,
               batch_size: int = 64, split_name: str = "predict",
               top_k: int = 1) -> dict[str, dict[str, Any]]:
        """Best span per example id, over all windows, logits streamed per batch."""
        features = prepare_qa_eval(
            examples, tokenizer, max_length=settings.max_length,
            doc_stride=settings.doc_stride, question_column=settings.question_column,
            context_column=settings.context_column, answers_column=settings.answers_column,
            id_column=settings.id_column, split_name=split_name)
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
            examples, features, starts, ends, n_best=settings.n_best,
            max_answer_length=settings.max_answer_length,
            allow_unanswerable=settings.allow_unanswerable, id_column=settings.id_column,
            context_column=settings.context_column, top_k=top_k)

    def report(self, model: nn.Module, tokenizer: Any, settings: QaSettings,
               raw: datasets.Dataset, encoded: datasets.Dataset, out_dir: Path,
               accelerator: Any, batch_size: int = 64) -> dict[str, Any]:
        """Exact match / F1 (SQuAD rules), summary.json and predictions.jsonl."""
        cleaned, check = self._check(raw, settings, "evaluation")
        preds = self._spans(model, tokenizer, settings, cleaned, accelerator.device,
                            accelerator.autocast, batch_size, "evaluation")
        id_column = settings.id_column
        ids = [str(i) for i in (cleaned[id_column] if id_column in cleaned.column_names
                                else range(len(cleaned)))]
        references = {i: answers_of(row, settings.answers_column)
                      for i, row in zip(ids, cleaned, strict=True)}
        metrics = qa_metrics({i: p["text"] for i, p in preds.items()}, references)
        metrics["answer_check"] = check
        if settings.train_answer_check is not None:
            metrics["train_answer_check"] = settings.train_answer_check
        headline = {"exact_match": metrics["exact_match"], "f1": metrics["f1"],
                    "misaligned_answers": check["misaligned_answers"],
                    "skipped_examples": check["dropped_examples"]}
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as fh:
            for i, row in zip(ids, cleaned, strict=True):
                p = preds[i]
                fh.write(json.dumps({"id": i, "question": row[settings.question_column],
                                     "answer": p["text"], "score": p["score"],
                                     "start": p["start"], "gold": references[i]},
                                    ensure_ascii=False) + "\n")
        write_json(out_dir / "summary.json", {"headline": headline, "metrics": metrics})
        return {"headline": headline, "metrics": metrics}

    def predict(self, model: nn.Module, tokenizer: Any, settings: QaSettings,
                records: list[dict[str, Any]], top_k: int = 1) -> list[dict[str, Any]]:
        """Best answer span (text, score, start char in the context) per question.

        With ``top_k > 1`` each row also lists the ``top_k`` best distinct spans.
        """
        q, c = settings.question_column, settings.context_column
        for record in records:
            if q not in record or c not in record:
                raise DataError(f"QA inputs need {q!r} and {c!r} fields; give a jsonl file "
                                "with one {question, context} object per line")
        examples = datasets.Dataset.from_dict({
            settings.id_column: [str(k) for k in range(len(records))],
            q: [str(r[q]) for r in records], c: [str(r[c]) for r in records]})
        device = next(model.parameters()).device
        preds = self._spans(model, tokenizer, settings, examples, device,
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

    # ---------------------------------------------------------------- what other stages ask
    accepts_texts = False

    def input_record_model(self, settings: QaSettings) -> type[InputRecord]:
        """Non-blank question and context strings."""
        return record_model("QaInput", {
            settings.question_column: (NonBlank, Field(..., description="The question.")),
            settings.context_column: (NonBlank, Field(..., description="The passage."))},
            "A question about a passage.")

    def record_from_text(self, settings: QaSettings, text: str) -> dict[str, Any]:
        """A bare text is not a QA input: it needs a question and a context."""
        raise DataError(f"QA inputs need {settings.question_column!r} and "
                        f"{settings.context_column!r} fields; give records, not bare texts")

    def example_record(self, settings: QaSettings) -> dict[str, Any]:
        """A two-word question and context."""
        return {settings.question_column: "warm up ?", settings.context_column: "warm up ."}

    def check_record(self, settings: QaSettings, record: dict[str, Any]) -> str | None:
        """Non-empty question and context strings."""
        keys = [settings.question_column, settings.context_column]
        ok = all(isinstance(record.get(k), str) and record[k].strip() for k in keys)
        return None if ok else f"each input needs non-empty string fields {keys}"

    def sample_inputs(self, settings: QaSettings,
                      rows: list[dict[str, Any]] | None) -> list[tuple[str, str | None]]:
        """(question, context) pairs from the data rows, else built-in sample pairs."""
        if rows and settings.question_column in rows[0]:
            return [(str(r[settings.question_column]), str(r[settings.context_column]))
                    for r in rows]
        return list(zip(SAMPLE_TEXTS, SAMPLE_TEXTS[1:] + SAMPLE_TEXTS[:1], strict=True))

    def onnx_output_class(self) -> Any:
        """``QuestionAnsweringModelOutput`` (``.start_logits`` / ``.end_logits`` (B, L))."""
        from transformers.modeling_outputs import QuestionAnsweringModelOutput

        return QuestionAnsweringModelOutput

    def http_route(self, settings: QaSettings) -> Route:
        """``POST /answer``: the best answer span of the context."""
        return Route("/answer", AnswerRequest, AnswerResponse,
                     "The best answer span of the context.", _answer_call, _answer_response)
