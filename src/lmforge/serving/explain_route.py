"""``POST /explain`` of ``lmforge serve`` (classification models): word attributions.

The method and its budget come with the request and are bounded by the server's limits
(``explain_methods``, ``explain_max_budget``, written into the request schema; outside them:
422). One explanation costs up to ``budget`` model calls (IG steps, LIME samples, SHAP
evaluations), so it runs in a worker thread under the model's lock, outside the
micro-batcher, within ``request_timeout_s``; a client that disconnects stops waiting for it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field, create_model

from lmforge.explaining.explainer import Explainer
from lmforge.explaining.methods import Options
from lmforge.serving.admission import until_disconnect
from lmforge.serving.errors import post_route
from lmforge.serving.limits import check_limits
from lmforge.serving.settings import ServeJob
from lmforge.wire import JsonInt, NonBlank, OneOrManyTextPairs, OneOrManyTexts

# The option that a request's budget sets, and its default, per method.
BUDGETS: dict[str, tuple[str, int]] = {"ig": ("n_steps", 32), "lime": ("lime_samples", 500),
                                       "shap": ("shap_evals", 500)}


class _ExplainOptions(BaseModel):
    """What every ``POST /explain`` request may add besides its texts, whose words must not be
    blank (an empty text has nothing to attribute; ``/predict`` still accepts it)."""

    text: NonBlank = Field(None, description="One input text.")
    texts: list[NonBlank] = Field(None, min_length=1,
                                  description="Several input texts (one batch).")
    target: str = Field(None, description="Label to explain (default: the predicted).")
    tokens: bool = Field(False, description="Also return the sub-word tokens and scores.")


class _ExplainTexts(_ExplainOptions, OneOrManyTexts):
    """``POST /explain`` on a single-text model."""


class _ExplainPairs(_ExplainOptions, OneOrManyTextPairs):
    """``POST /explain`` on a sentence-pair model."""

    text_pair: NonBlank | list[NonBlank] = Field(
        ..., description="Second text(s): a string with 'text', a list as long as 'texts'.")


def explain_request_model(methods: list[str], max_budget: int, pairs: bool,
                          labels: list[str] | None = None) -> type[BaseModel]:
    """The request body of this server's ``POST /explain``: its methods, its budget cap, its
    model's labels as targets, and ``text_pair`` exactly when the model takes sentence pairs
    (so the schema is the truth)."""
    default = "ig" if "ig" in methods else methods[0]
    targets: dict[str, Any] = {}
    if labels:
        targets["target"] = (Literal[tuple(labels)], Field(  # type: ignore[valid-type]
            None, description="Label to explain (default: the predicted)."))
    return create_model(
        "ExplainRequest", __base__=_ExplainPairs if pairs else _ExplainTexts,
        __doc__="``POST /explain``: word attributions of one method for each text.",
        **targets,
        method=(Literal[tuple(methods)], Field(default, description=(  # type: ignore[valid-type]
            "ig (Integrated Gradients), gradxinput, rollout, occlusion, lime or shap; "
            "those this server enables."))),
        budget=(JsonInt, Field(None, ge=1, le=max_budget, description=(
            "Model evaluations per text: IG steps, LIME samples or SHAP max_evals "
            f"(default 32 / 500 / 500, at most {max_budget})."))))


class WordScore(BaseModel):
    """A word (sub-words merged; score = sum of theirs) and its attribution."""

    word: str
    score: float
    segment: int = Field(description="0: text, 1: text_pair.")


class TokenScore(BaseModel):
    """A sub-word token and its attribution."""

    token: str
    score: float


class ExplainResult(BaseModel):
    """One text's prediction and the attribution of each word to the explained label."""

    text: str
    label: str = Field(description="Predicted label.")
    score: float = Field(description="Its probability.")
    target: str = Field(description="Explained label.")
    target_score: float = Field(description="Its probability.")
    words: list[WordScore]
    tokens: list[TokenScore] | None = None


class ExplainResponse(BaseModel):
    """Attributions per text, in input order, with what they cost."""

    method: str
    budget: int | None = Field(None, description="The budget used (absent: the method has "
                                                     "none).")
    model_calls: int = Field(description="Sequences run through the model, all texts.")
    seconds: float
    results: list[ExplainResult]


def mount_explain_route(app: FastAPI, predictor: Any, cfg: ServeJob, auth: list[Any],
                        gate: Any) -> None:
    """Add ``POST /explain`` to a server built by ``create_app`` (its task serves
    explanations): admitted through the server's gate (503 when not ready or draining),
    bounded by ``explain_methods`` / ``explain_max_budget`` and the input limits (422)."""
    settings = predictor.settings
    text_column = settings.text_column
    pair_column = getattr(settings, "text_pair_column", None)

    request_model = explain_request_model(list(cfg.explain_methods), cfg.explain_max_budget,
                                          bool(pair_column), predictor.labels)

    def run(records: list[dict[str, Any]], req: Any,
            options: Options) -> dict[str, Any]:
        # A text the tokenizer reduces to nothing (e.g. U+200B) comes back from the explainer
        # with its prediction and no words.
        explainer = Explainer(predictor, options)
        with predictor.lock:  # the tokenizer and model are shared with the batcher's thread
            result = explainer.explain(records, [req.method], req.target)
        cost = result.cost[req.method]
        out: list[dict[str, Any]] = []
        for ex, row in zip(result.examples, result.rows(token_level=True), strict=True):
            entry = row["methods"][req.method]
            pred = ex.prediction
            item = {"text": str(ex.record[text_column]), "label": pred["label"],
                    "score": pred["score"], "target": pred["target"],
                    "target_score": pred["target_score"],
                    "words": [{"word": w, "score": s, "segment": g} for w, s, g in zip(
                        row["words"], entry["word_scores"], row["word_segments"], strict=True)]}
            if req.tokens:
                item["tokens"] = [{"token": t, "score": s} for t, s in zip(
                    row["tokens"], entry["token_scores"], strict=True)]
            out.append(item)
        return {"results": out, "model_calls": int(cost["sequences"]),
                "seconds": float(cost["seconds"])}

    async def explain(request: Any, req: Any) -> dict[str, Any]:
        # The request model already holds the enabled methods and the budget cap (422).
        check_limits(req.model_dump(exclude_none=True), cfg.max_items, cfg.max_input_chars)
        texts = req.all_texts()
        pairs = ([req.text_pair] if isinstance(req.text_pair, str) else req.text_pair) \
            if pair_column else None
        gate.check_tokens(texts + list(pairs or []))
        option, default = BUDGETS.get(req.method, (None, 0))
        budget = None
        if option is not None:
            budget = req.budget if req.budget is not None else min(default,
                                                                   cfg.explain_max_budget)
        options = Options(**({option: budget} if option else {}))
        records = [{text_column: t} for t in texts]
        for record, pair in zip(records, pairs or [], strict=False):
            record[pair_column] = pair
        with gate.admitted():
            work = asyncio.ensure_future(asyncio.wait_for(
                asyncio.to_thread(run, records, req, options), cfg.request_timeout_s))
            try:
                body = await until_disconnect(work, request.receive)
            except asyncio.TimeoutError:
                raise HTTPException(504, f"no answer within request_timeout_s="
                                         f"{cfg.request_timeout_s}") from None
        return {"method": req.method, "budget": budget, **body}

    post_route(app, "/explain", request_model, explain,
               "Word attributions of one method for each text (see docs/explain.md).", auth,
               response_model=ExplainResponse, response_model_exclude_none=True)
