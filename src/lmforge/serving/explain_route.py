"""``POST /explain`` of ``lmforge serve`` (classification models): word attributions.

The method and its budget come with the request and are bounded by the server's limits
(``explain_methods``, ``explain_max_budget``; above them: 413). One explanation costs up to
``budget`` model calls (IG steps, LIME samples, SHAP evaluations), so it runs in a worker
thread under the model's lock, outside the micro-batcher, within ``request_timeout_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmforge.serving.settings import ServeJob

Method = Literal["ig", "gradxinput", "rollout", "occlusion", "lime", "shap"]
# The option that a request's budget sets, and its default, per method.
BUDGETS: dict[str, tuple[str, int]] = {"ig": ("n_steps", 32), "lime": ("lime_samples", 500),
                                       "shap": ("shap_evals", 500)}


class ExplainRequest(BaseModel):
    """``POST /explain``."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, description="One input text.")
    texts: list[str] | None = Field(None, min_length=1, description="Several input texts.")
    text_pair: str | list[str] | None = Field(
        None, description="Second text(s) for sentence-pair models (as in /classify).")
    method: Method = Field("ig", description="ig (Integrated Gradients), gradxinput, rollout, "
                                             "occlusion, lime or shap.")
    budget: int | None = Field(None, ge=1, description="Model evaluations per text: IG steps, "
                                                       "LIME samples or SHAP max_evals "
                                                       "(default 32 / 500 / 500, at most the "
                                                       "server's explain_max_budget).")
    target: str | None = Field(None, description="Label to explain (default: the predicted).")
    tokens: bool = Field(False, description="Also return the sub-word tokens and scores.")

    @model_validator(mode="after")
    def _shape(self) -> ExplainRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' or 'texts'")
        if self.text_pair is not None:
            many = isinstance(self.text_pair, list)
            if many != (self.texts is not None) or (many and len(self.text_pair) != len(
                    self.texts or [])):
                raise ValueError("text_pair must be a string with 'text' or a list as long "
                                 "as 'texts'")
        return self


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
                        state: dict[str, Any], check_texts: Callable[..., None],
                        errors: dict[int | str, dict[str, Any]]) -> None:
    """Add ``POST /explain`` to a classification server built by ``create_app``."""
    from lmforge.explaining.adapters import setting, settings_of
    from lmforge.explaining.explainer import Explainer
    from lmforge.explaining.methods import Options
    from lmforge.serving.app import LimitExceeded

    settings = settings_of(predictor)
    text_column = setting(settings, "text_column", "text")
    pair_column = setting(settings, "text_pair_column")

    def run(records: list[dict[str, Any]], req: ExplainRequest,
            options: Options) -> dict[str, Any]:
        explainer = Explainer(predictor, options)
        with predictor.lock:
            result = explainer.explain(records, [req.method], req.target)
        rows = result.rows(token_level=True)
        cost = result.cost[req.method]
        out = []
        for ex, row in zip(result.examples, rows, strict=True):
            entry = row["methods"][req.method]
            pred = ex.prediction
            item = {"text": str(ex.record[text_column]), "label": pred["label"],
                    "score": pred["score"], "target": pred["target"],
                    "target_score": pred["target_score"],
                    "words": [{"word": w, "score": s, "segment": g} for w, s, g in zip(
                        row["words"], entry["word_scores"], row["word_segments"],
                        strict=True)]}
            if req.tokens:
                item["tokens"] = [{"token": t, "score": s} for t, s in zip(
                    row["tokens"], entry["token_scores"], strict=True)]
            out.append(item)
        return {"results": out, "model_calls": int(cost["sequences"]),
                "seconds": float(cost["seconds"])}

    @app.post("/explain", response_model=ExplainResponse, response_model_exclude_none=True,
              tags=["explain"], dependencies=auth, responses=errors)
    async def explain(req: ExplainRequest) -> dict[str, Any]:
        """Word attributions of one method for each text (see docs/explain.md)."""
        if not state["ready"]:
            raise HTTPException(503, "model is not ready yet; poll /ready")
        if req.method not in cfg.explain_methods:
            raise LimitExceeded(f"method {req.method!r} is not enabled on this server "
                                f"(explain_methods={cfg.explain_methods})", "explain_methods")
        texts = [req.text] if req.text is not None else list(req.texts or [])
        pairs = [req.text_pair] if isinstance(req.text_pair, str) else req.text_pair
        if bool(pair_column) != (pairs is not None):
            raise HTTPException(422, "this model takes sentence pairs: send text_pair"
                                if pair_column else "this model takes single texts: drop "
                                                    "text_pair")
        check_texts(texts + list(pairs or []), len(texts))
        option, default = BUDGETS.get(req.method, (None, 0))
        budget = None
        if option is not None:
            budget = req.budget if req.budget is not None else min(default,
                                                                   cfg.explain_max_budget)
            if budget > cfg.explain_max_budget:
                raise LimitExceeded(f"budget={budget} is over the server's limit "
                                    f"explain_max_budget={cfg.explain_max_budget}",
                                    "explain_max_budget")
        options = Options(**({option: budget} if option else {}))
        records = [{text_column: t} for t in texts]
        for record, pair in zip(records, pairs or [], strict=False):
            record[pair_column] = pair
        try:
            body = await asyncio.wait_for(asyncio.to_thread(run, records, req, options),
                                          cfg.request_timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(504, f"no answer within request_timeout_s="
                                     f"{cfg.request_timeout_s}") from None
        return {"method": req.method, "budget": budget, **body}
