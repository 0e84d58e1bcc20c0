"""Token classification (NER) as a :class:`~lmforge.finetuning.task.Task`.

Entity-level precision / recall / F1 (seqeval) are computed in :meth:`report`; the training
loss and token accuracy are in :mod:`.objective`. Served at ``POST /entities``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import datasets
import torch
from pydantic import BaseModel, Field
from torch import nn
from transformers import AutoModelForTokenClassification

from lmforge.errors import DataError
from lmforge.evaluation.ner import ner_metrics
from lmforge.finetuning.models import load_pretrained, model_kwargs
from lmforge.finetuning.task import Task, saved_settings
from lmforge.finetuning.token_classification.data import (
    NO_WORD,
    TokenClassificationCollator,
    collect_labels,
    decode_word_predictions,
    entities_from_tags,
    prepare_token_classification,
)
from lmforge.finetuning.token_classification.explain import TokenClassificationAdapter
from lmforge.finetuning.token_classification.objective import (
    TokenClassificationObjective,
    token_classification_reducer,
)
from lmforge.finetuning.token_classification.settings import TokenClassificationSettings
from lmforge.runs import write_json
from lmforge.wire import InputRecord, NonBlank, OneOrManyTexts, Route, RouteCall, record_model

log = logging.getLogger(__name__)


def _gold_tags(raw: datasets.Dataset, column: str) -> list[list[str]] | None:
    """Gold tag strings per row (ClassLabel ids are mapped back to names), or None."""
    if column not in raw.column_names:
        return None
    tags = raw[column]
    feature = raw.features[column]
    names = getattr(getattr(feature, "feature", None), "names", None)
    if names is not None:
        return [[names[t] for t in row] for row in tags]
    return [[str(t) for t in row] for row in tags]


def _per_type_table(metrics: dict[str, Any]) -> str:
    """Plain-text table: one row per entity type, then the strict micro average."""
    lines = [f"{'type':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
    for kind, m in sorted(metrics["per_type"].items()):
        lines.append(f"{kind:<12}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}"
                     f"{m['support']:>9d}")
    total = sum(m["support"] for m in metrics["per_type"].values())
    lines.append(f"{'micro':<12}{metrics['precision']:>10.4f}{metrics['recall']:>10.4f}"
                 f"{metrics['f1']:>10.4f}{total:>9d}")
    return "\n".join(lines)


def _char_entities(tokens: list[str], tags: list[str], scores: list[float] | None = None,
                   text: str | None = None) -> list[dict[str, Any]]:
    """Entities with character offsets (end exclusive) and a confidence score.

    Offsets point into ``text`` when the words came from ``text.split()``, else into
    ``" ".join(tokens)``; an entity's score is the mean probability of its words' tags.
    """
    starts, pos = [], 0
    for token in tokens:
        starts.append(pos)
        pos += len(token) + 1
    if text is not None:
        spans = [m.start() for m in re.finditer(r"\S+", text)]
        starts = spans if len(spans) == len(tokens) else starts
    out = []
    for ent in entities_from_tags(tokens, tags):
        last = ent["end_word"] - 1
        start, end = starts[ent["start_word"]], starts[last] + len(tokens[last])
        row = {**ent, "start": start, "end": end}
        if text is not None and len(starts) == len(tokens):
            row["text"] = text[start:end]
        if scores is not None:
            span = scores[ent["start_word"]:ent["end_word"]]
            row["score"] = float(sum(span) / len(span))
        out.append(row)
    return out


def _word_scores(best: list[list[float]], word_ids: list[list[int]],
                 num_words: list[int]) -> list[list[float]]:
    """Probability of the predicted tag per word, read where decode_word_predictions reads."""
    out = []
    for probs, wids, n in zip(best, word_ids, num_words, strict=True):
        scores = [0.0] * int(n)
        for pos, w in enumerate(wids):
            if w != NO_WORD:
                scores[w] = float(probs[pos])
        out.append(scores)
    return out



class EntitiesRequest(OneOrManyTexts):
    """``POST /entities``: texts are split on whitespace into words."""


class Entity(BaseModel):
    """An entity span; ``start``/``end`` are character offsets into the text (end exclusive)."""

    start: int
    end: int
    label: str
    score: float
    text: str


class EntitiesResult(BaseModel):
    """The entities of one text."""

    text: str
    entities: list[Entity]


class EntitiesResponse(BaseModel):
    """Entities per input text, in input order."""

    results: list[EntitiesResult]


def _entities_call(req: EntitiesRequest, settings: TokenClassificationSettings) -> RouteCall:
    texts = req.all_texts()
    # A text without words has no entities: answered without a model call.
    return RouteCall([{settings.text_column: t} if t.split() else None for t in texts], texts)


def _entities_response(req: EntitiesRequest, rows: list[Any]) -> dict[str, Any]:
    results = []
    for text, row in zip(req.all_texts(), rows, strict=True):
        found = [] if row is None else [
            {"start": e["start"], "end": e["end"], "label": e["type"], "score": e["score"],
             "text": e["text"]} for e in row["entities"]]
        results.append({"text": text, "entities": found})
    return {"results": results}


class TokenClassificationTask(Task):
    """Named-entity recognition over pre-split words (BIO or BIOES tags)."""

    name = "token_classification"
    settings_class = TokenClassificationSettings
    peft_task_type = "TOKEN_CLS"
    has_head = True
    per_token_outputs = True
    onnx_outputs = ("logits",)

    def tuning_objectives(self, options: Any) -> tuple[str, ...]:
        """The keys of the tag objective's reducer (token accuracy, not entity F1, which
        needs decoded spans and is only in the full report)."""
        return ("eval_loss", "eval_token_accuracy")

    def explain_adapter(self) -> type:
        """:class:`~lmforge.finetuning.token_classification.explain.TokenClassificationAdapter`
        (explains one predicted entity)."""
        return TokenClassificationAdapter

    def setup(self, job: Any, train: datasets.Dataset) -> TokenClassificationSettings:
        """Labels from the training split (every prefix of each type) and column settings."""
        task = job.task
        labels = collect_labels(train, task.scheme, tags_column=task.tags_column, complete=True)
        return saved_settings(TokenClassificationSettings, task, task=self.name, labels=labels,
                              max_length=job.data.max_length)

    def encode(self, raw: datasets.Dataset, tokenizer: Any, settings: TokenClassificationSettings,
               split_name: str) -> datasets.Dataset:
        """Tokenize words and align tags to first sub-words (unlabeled rows allowed)."""
        tags_column = settings.tags_column if settings.tags_column in raw.column_names else None
        return prepare_token_classification(
            raw, tokenizer, {n: i for i, n in enumerate(settings.labels)},
            tokens_column=settings.tokens_column, tags_column=tags_column,
            max_length=settings.max_length,
            label_all_subwords=settings.label_all_subwords, split_name=split_name)

    def load_model(self, source: str, settings: TokenClassificationSettings,
                   model_cfg: Any = None) -> tuple[nn.Module, bool]:
        """``AutoModelForTokenClassification`` with the tag names in its config."""
        names = settings.labels
        kwargs = model_kwargs(model_cfg)
        kwargs.update(num_labels=len(names), id2label=dict(enumerate(names)),
                      label2id={n: i for i, n in enumerate(names)})
        return load_pretrained(AutoModelForTokenClassification, source, kwargs,
                               "token classification")

    def objective(self, model: nn.Module, settings: TokenClassificationSettings, train_cfg: Any,
                  train: datasets.Dataset) -> nn.Module:
        """Token-level cross-entropy."""
        return TokenClassificationObjective(model)

    def collator(self, tokenizer: Any, model: nn.Module) -> Any:
        """Pads ids and labels (-100); word alignment columns are dropped."""
        return TokenClassificationCollator(tokenizer)

    def reducer(self, sums: dict[str, float]) -> dict[str, float]:
        """eval_loss and eval_token_accuracy."""
        return token_classification_reducer(sums)

    def finalize(self, model: nn.Module, tokenizer: Any, settings: TokenClassificationSettings,
                 validation: datasets.Dataset | None, accelerator: Any) -> None:
        """Nothing to tune for NER."""

    @torch.no_grad()
    def _word_tags(self, model: nn.Module, encoded: datasets.Dataset, collator: Any,
                   labels: list[str], device: Any, autocast: Any = None,
                   batch_size: int = 64,
                   scores_out: list[list[float]] | None = None) -> list[list[str]]:
        """Predicted tag per original word, streamed batch by batch.

        With ``scores_out``, the probability of each word's tag is appended to it too.
        """
        model.eval()
        out: list[list[str]] = []
        for start in range(0, len(encoded), batch_size):
            rows = encoded[start:start + batch_size]
            examples = [dict(zip(rows, values, strict=True))
                        for values in zip(*rows.values(), strict=True)]
            batch = {k: v.to(device) for k, v in collator(examples).items() if k != "labels"}
            with autocast() if autocast else contextlib.nullcontext():
                logits = model(**batch).logits  # (B, L, C)
            best, pred = logits.float().softmax(-1).max(-1)  # (B, L) each
            out.extend(decode_word_predictions(pred.cpu().tolist(), rows["word_ids"], labels,
                                               rows["num_words"]))
            if scores_out is not None:
                scores_out.extend(_word_scores(best.cpu().tolist(), rows["word_ids"],
                                               rows["num_words"]))
        return out

    def report(self, model: nn.Module, tokenizer: Any, settings: TokenClassificationSettings,
               raw: datasets.Dataset, encoded: datasets.Dataset, out_dir: Path,
               accelerator: Any, batch_size: int = 64) -> dict[str, Any]:
        """Entity-level metrics (overall and per type), summary.json and predictions.jsonl."""
        gold = _gold_tags(raw, settings.tags_column)
        if gold is None:
            raise DataError(f"column {settings.tags_column!r} not found (columns: "
                            f"{', '.join(raw.column_names)}); evaluate on tagged data")
        pred = self._word_tags(model, encoded, TokenClassificationCollator(tokenizer),
                               settings.labels, accelerator.device, accelerator.autocast,
                               batch_size)
        metrics = ner_metrics(gold, pred, settings.scheme)
        headline = {k: metrics[k] for k in ("precision", "recall", "f1", "accuracy")}
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as fh:
            for words, g, p in zip(raw[settings.tokens_column], gold, pred, strict=True):
                row = {"tokens": words, "tags": g, "predicted": p,
                       "entities": entities_from_tags(words, p)}
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        write_json(out_dir / "summary.json", {"headline": headline, "metrics": metrics})
        return {"headline": headline, "metrics": metrics, "table": _per_type_table(metrics)}

    def predict(self, model: nn.Module, tokenizer: Any, settings: TokenClassificationSettings,
                records: list[dict[str, Any]], top_k: int = 1) -> list[dict[str, Any]]:
        """Tags and entities with char offsets and scores per record.

        Offsets index the record's text when it came as a text line (split on whitespace),
        else the space-joined tokens.
        """
        column, text_column = settings.tokens_column, settings.text_column
        words: list[list[str]] = []
        texts: list[str | None] = []
        for record in records:
            if column in record:
                words.append([str(w) for w in record[column]])
                texts.append(None)
            elif text_column in record:
                texts.append(str(record[text_column]))
                words.append(texts[-1].split())
            else:
                raise DataError(f"an input has neither {column!r} nor {text_column!r}; give "
                                "a tokens list or a text line")
        # The dataset has no tags column, so encode() aligns no labels.
        encoded = self.encode(datasets.Dataset.from_dict({column: words}), tokenizer,
                              settings, "predict")
        device = next(model.parameters()).device
        scores: list[list[float]] = []
        tags = self._word_tags(model, encoded, TokenClassificationCollator(tokenizer),
                               settings.labels, device, batch_size=len(words),
                               scores_out=scores)
        return [{"tokens": w, "tags": t, "entities": _char_entities(w, t, s, text)}
                for w, t, s, text in zip(words, tags, scores, texts, strict=True)]

    # ---------------------------------------------------------------- what other stages ask
    def example_record(self, settings: TokenClassificationSettings) -> dict[str, Any]:
        """Two words."""
        return {settings.tokens_column: ["warm", "up"]}

    def input_record_model(self, settings: TokenClassificationSettings) -> type[InputRecord]:
        """A non-empty list of words, or a text with at least one word."""
        return record_model("TokenClassificationInput", {
            settings.tokens_column: (list[NonBlank], Field(
                None, min_length=1, description="The words (none blank).")),
            settings.text_column: (NonBlank, Field(
                None, description="A text, split on whitespace into words."))},
            "The words of one sentence, or its text.",
            any_of=(settings.tokens_column, settings.text_column))

    def check_record(self, settings: TokenClassificationSettings,
                     record: dict[str, Any]) -> str | None:
        """A non-empty list of words, or a text with at least one word."""
        tokens = record.get(settings.tokens_column)
        text = record.get(settings.text_column)
        ok = (isinstance(tokens, list) and tokens and all(isinstance(t, str) and t.strip()
                                                          for t in tokens)) \
            or (isinstance(text, str) and text.split())
        return None if ok else (f"each input needs a non-empty {settings.tokens_column!r} "
                                f"list or a {settings.text_column!r} text")

    def sample_inputs(self, settings: TokenClassificationSettings,
                      rows: list[dict[str, Any]] | None) -> list[tuple[str, str | None]]:
        """The words of the data rows joined by spaces, else the built-in samples."""
        if rows and settings.tokens_column in rows[0]:
            return [(" ".join(map(str, r[settings.tokens_column])), None) for r in rows]
        return super().sample_inputs(settings, rows)

    def onnx_output_class(self) -> Any:
        """``TokenClassifierOutput`` (``.logits`` (B, L, C))."""
        from transformers.modeling_outputs import TokenClassifierOutput

        return TokenClassifierOutput

    def http_route(self, settings: TokenClassificationSettings) -> Route:
        """``POST /entities``: entities with character offsets into each text."""
        return Route("/entities", EntitiesRequest, EntitiesResponse,
                     "Entities with character offsets into each text.", _entities_call,
                     _entities_response)
