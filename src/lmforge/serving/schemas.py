"""Request and response bodies of the HTTP API (pydantic; they make the OpenAPI schema).

Unknown fields are rejected (422) so a typo such as ``{"txt": ...}`` is an error, not an
empty prediction.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _OneOrMany(_Strict):
    text: str | None = Field(None, description="One input text.")
    texts: list[str] | None = Field(None, min_length=1,
                                    description="Several input texts (one batch).")

    @model_validator(mode="after")
    def _one_of(self) -> _OneOrMany:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' or 'texts'")
        return self

    def all_texts(self) -> list[str]:
        """The inputs as a list."""
        return [self.text] if self.text is not None else list(self.texts or [])


class ClassifyRequest(_OneOrMany):
    """``POST /classify``."""

    text_pair: str | list[str] | None = Field(
        None, description="Second text(s) for sentence-pair models: a string with 'text', "
                          "a list as long as 'texts'.")
    top_k: int = Field(1, ge=1, le=1000, description="Labels with scores to return.")

    @model_validator(mode="after")
    def _pairs(self) -> ClassifyRequest:
        if self.text_pair is None:
            return self
        many = isinstance(self.text_pair, list)
        if many != (self.texts is not None) or (many and len(self.text_pair) != len(
                self.texts or [])):
            raise ValueError("text_pair must be a string with 'text' or a list as long as "
                             "'texts'")
        return self


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


class EntitiesRequest(_OneOrMany):
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


class AnswerRequest(_Strict):
    """``POST /answer``: extractive QA."""

    question: str = Field(..., min_length=1)
    context: str = Field(..., min_length=1)


class AnswerResponse(BaseModel):
    """The best span of the context (empty answer and start -1 when there is none)."""

    answer: str
    score: float | None
    start: int
    end: int


class Message(_Strict):
    """One chat turn."""

    role: Literal["system", "user", "assistant"]
    content: str


class GenerateRequest(_Strict):
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


class PredictRequest(_Strict):
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
