"""Request and response bodies of the HTTP API shared by every task (pydantic; they make
the OpenAPI schema).

Each task's own route (``/classify``, ``/entities``, ``/answer``) has its schemas in the
task's module (:meth:`lmforge.finetuning.task.Task.http_route`), built on ``Strict`` and
``OneOrManyTexts`` from :mod:`lmforge.finetuning.task`. Unknown fields are rejected (422) so
a typo such as ``{"txt": ...}`` is an error, not an empty prediction.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from lmforge.finetuning.task import OneOrManyTexts, Strict

__all__ = ["ErrorResponse", "GenerateRequest", "GenerateResponse", "Message", "OneOrManyTexts",
           "PredictRequest", "PredictResponse", "Strict"]


class Message(Strict):
    """One chat turn."""

    role: Literal["system", "user", "assistant"]
    content: str


class GenerateRequest(Strict):
    """``POST /generate``: one prompt or conversation."""

    prompt: str | None = Field(None, description="Prompt text.")
    messages: list[Message] | None = Field(None, description="Conversation (chat models).")
    max_new_tokens: int | None = Field(None, ge=1, description="Default: the run's setting.")
    temperature: float = Field(1.0, gt=0, le=100, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    stream: bool = Field(False, description="Server-sent events, one per text piece.")

    @model_validator(mode="after")
    def _one_of(self) -> GenerateRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' is empty; give at least one user message")
        return self


class GenerateResponse(BaseModel):
    """The generated text."""

    text: str


class PredictRequest(Strict):
    """``POST /predict``: raw records as ``lmforge predict`` reads them (or bare texts)."""

    inputs: list[dict[str, Any] | str] = Field(..., min_length=1)
    top_k: int = Field(1, ge=1, le=1000)


class PredictResponse(BaseModel):
    """Exactly the rows ``lmforge predict`` writes, in input order."""

    results: list[dict[str, Any]]


class ErrorResponse(BaseModel):
    """An error (``limit`` names the setting that was exceeded, for 413)."""

    detail: str
    limit: str | None = None
