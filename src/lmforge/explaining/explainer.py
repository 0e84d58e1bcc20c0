"""Explain a loaded model's predictions: encode, pick targets, run methods, count the cost."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from lmforge.config import check, check_choice
from lmforge.errors import ConfigError, DataError
from lmforge.explaining.adapters import Example, get_adapter, setting, settings_of
from lmforge.explaining.faithfulness import BINS, agreement, aopc
from lmforge.explaining.methods import DEFAULT_METHODS, METHODS, Context, Options, check_methods
from lmforge.explaining.scoring import Counter, Scorer
from lmforge.explaining.words import WORD_MODES, word_scores


@dataclass
class Explanations:
    """The result of :meth:`Explainer.explain`.

    Attributes:
        examples: The encoded inputs (tokens, words, targets, predictions).
        scores: Method -> one (F,) token-score array per example.
        cost: Method -> seconds, model sequences and forward passes (totals and per example).
    """

    examples: list[Example]
    scores: dict[str, list[np.ndarray]] = field(default_factory=dict)
    cost: dict[str, dict[str, float]] = field(default_factory=dict)

    def rows(self, token_level: bool = True) -> list[dict[str, Any]]:
        """One JSON-ready dict per example: prediction, words with scores per method, and
        (``token_level``) the tokens with their scores."""
        out = []
        for k, ex in enumerate(self.examples):
            row: dict[str, Any] = {"input": ex.record, "prediction": ex.prediction,
                                   "words": [w.text for w in ex.words],
                                   "word_segments": [w.segment for w in ex.words]}
            if token_level:
                row["tokens"] = ex.tokens
            row["methods"] = {}
            for name, per in self.scores.items():
                entry: dict[str, Any] = {"word_scores": word_scores(ex.words, per[k])}
                if token_level:
                    entry["token_scores"] = [float(v) for v in per[k]]
                row["methods"][name] = entry
            out.append(row)
        return out


def _cost(counter: Counter, n: int) -> dict[str, float]:
    return {"seconds": counter.seconds, "sequences": counter.sequences,
            "forward_passes": counter.passes, "seconds_per_example": counter.seconds / n,
            "sequences_per_example": counter.sequences / n}


class Explainer:
    """Attributions for a :class:`~lmforge.predictor.Predictor`.

    Args:
        predictor: The loaded model (``lmforge.load``).
        options: Method budgets (:class:`~lmforge.explaining.methods.Options`).
        words: Word merging: ``auto`` (jieba for Chinese text), ``tokenizer`` or ``jieba``.
    """

    def __init__(self, predictor: Any, options: Options | None = None,
                 words: str = "auto") -> None:
        check_choice("words", words, WORD_MODES)
        self.predictor = predictor
        self.options = options or Options()
        self.words = words
        # The predictor's task object declares its adapter (this package names no task).
        self.adapter = get_adapter(predictor.task, settings_of(predictor))
        tok = predictor.tokenizer
        self.scorer = Scorer(predictor.model, self.adapter, int(tok.pad_token_id or 0),
                             self.options.batch_size)
        self.context = Context(predictor.model, tok, self.adapter, self.scorer, self.options)

    def encode(self, records: list[dict[str, Any]], target: str | None = None,
               entity: int = 0) -> list[Example]:
        """Encode records and set each one's target (the prediction unless ``target``)."""
        examples = [self.adapter.encode(self.predictor.tokenizer, r, self.words)
                    for r in records]
        outputs: list[Any] = []
        size = self.options.batch_size
        for start in range(0, len(examples), size):
            chunk = examples[start:start + size]
            out = self.scorer.outputs([(e.ids, e.type_ids, [0]) for e in chunk])
            logits = self.adapter.logits(out)
            for i in range(len(chunk)):
                outputs.append(tuple(x[i].detach() for x in logits)
                               if isinstance(logits, tuple) else logits[i].detach())
        self.adapter.resolve_targets(examples, outputs, target, entity)
        return examples

    def explain(self, records: list[dict[str, Any]], methods: list[str] | None = None,
                target: str | None = None, entity: int = 0) -> Explanations:
        """Token scores of every method for every record, with the cost of each method.

        Args:
            records: Inputs with the task's fields (the text column, pair column, ...).
            methods: Names from :data:`~lmforge.explaining.methods.METHODS` (default: all
                but random).
            target: Label (classification) or entity type (NER) to explain; default: the
                prediction.
            entity: NER: which predicted entity (0 = the first).

        Raises:
            ConfigError / DataError: unknown method or target, empty text, no entity.
        """
        methods = list(methods or DEFAULT_METHODS)
        check_methods(methods, self.predictor.backend)
        examples = self.encode(records, target, entity)
        result = Explanations(examples)
        for name in methods:
            self.scorer.counter = Counter()
            with self.scorer.counter:
                result.scores[name] = self._scores(name, examples)
            result.cost[name] = _cost(self.scorer.counter, len(examples))
        return result

    def _scores(self, method: str, examples: list[Example]) -> list[np.ndarray]:
        """One method's (F,) scores per example; an example without features gets (0,)."""
        wordy = [ex for ex in examples if len(ex.features)]
        scores = iter(METHODS[method].fn(self.context, wordy) if wordy else [])
        return [next(scores) if len(ex.features) else np.zeros(0, dtype=np.float32)
                for ex in examples]

    def evaluate(self, result: Explanations, bins: tuple[float, ...] = BINS
                 ) -> dict[str, Any]:
        """Faithfulness (AOPC comprehensiveness / sufficiency) per method and agreement.

        A ``random`` method is added when missing, evaluated the same way.
        Inputs without a word (empty scores) are left out: nothing can be removed from them.

        Raises:
            DataError: no input has a word to remove.
        """
        if "random" not in result.scores:
            self.scorer.counter = Counter()
            with self.scorer.counter:
                result.scores["random"] = self._scores("random", result.examples)
            result.cost["random"] = _cost(self.scorer.counter, len(result.examples))
        keep = [k for k, ex in enumerate(result.examples) if len(ex.features)]
        if not keep:
            raise DataError("faithfulness needs at least one input with words; every input "
                            "was empty after tokenization")
        examples = [result.examples[k] for k in keep]
        faith: dict[str, Any] = {}
        started = time.perf_counter()
        for name, scores in result.scores.items():
            faith[name] = aopc(self.scorer, examples, [scores[k] for k in keep],
                               self.adapter.perturbation, self.context.fill_id, bins)
        return {"faithfulness": faith,
                "agreement": agreement({m: [s[k] for k in keep]
                                        for m, s in result.scores.items()}),
                "bins": list(bins), "examples": len(examples),
                "evaluation_seconds": time.perf_counter() - started}


def options_from(source: Any) -> Options:
    """:class:`Options` from any object or dict carrying some of its field names."""
    values = {}
    for f in fields(Options):
        value = source.get(f.name) if isinstance(source, dict) else getattr(source, f.name,
                                                                            None)
        if value is not None:
            values[f.name] = value
    return Options(**values)


def check_budgets(options: Options) -> None:
    """One-line errors for budgets <= 0."""
    for name in ("n_steps", "internal_batch_size", "lime_samples", "shap_evals", "batch_size"):
        check(getattr(options, name) >= 1, f"{name} must be >= 1 (got {getattr(options, name)})")
    check_choice("baseline", options.baseline, ("pad", "mask"))


def explain_predictor(predictor: Any, inputs: Any, methods: list[str] | None = None,
                      target: str | None = None, entity: int = 0, words: str = "auto",
                      token_level: bool = True, **options: Any) -> list[dict[str, Any]]:
    """``Predictor.explain``: rows with word (and token) scores per method.

    Args:
        predictor: The loaded model.
        inputs: A text, a record, or a list of them (bare texts go to the text column).
        methods: Method names (default: ig, gradxinput, rollout, occlusion, lime, shap).
        target: Label / entity type to explain (default: the prediction).
        entity: NER: which predicted entity.
        words: Word merging (``auto``, ``tokenizer``, ``jieba``).
        token_level: Also return the tokens and their scores.
        **options: Budgets: n_steps, internal_batch_size, baseline, lime_samples,
            shap_evals, batch_size, seed.

    Returns:
        One dict per input (see :meth:`Explanations.rows`) with the cost per method.
    """
    unknown = sorted(set(options) - {f.name for f in fields(Options)})
    if unknown:
        raise ConfigError(f"unknown explain option(s) {unknown}; use "
                          f"{[f.name for f in fields(Options)]}")
    opts = Options(**options)
    check_budgets(opts)
    items = inputs if isinstance(inputs, list) else [inputs]
    text_column = setting(settings_of(predictor), "text_column", "text")
    records = [r if isinstance(r, dict) else {text_column: str(r)} for r in items]
    if not records:
        return []
    explainer = Explainer(predictor, opts, words)
    with predictor.lock:
        result = explainer.explain(records, methods, target, entity)
    rows = result.rows(token_level)
    for row in rows:
        row["cost"] = {m: {"seconds_per_example": c["seconds_per_example"],
                           "sequences_per_example": c["sequences_per_example"]}
                      for m, c in result.cost.items()}
    return rows
