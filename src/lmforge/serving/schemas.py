"""Request and response bodies of the HTTP API shared by every task (pydantic; they make
the OpenAPI schema).

Each task's own route (``/classify``, ``/entities``, ``/answer``) has its schemas in the
task's module (:meth:`lmforge.finetuning.task.Task.http_route`), built on ``Strict`` and
``OneOrManyTexts`` from :mod:`lmforge.finetuning.task`; ``/predict``'s items are the task's
:meth:`~lmforge.finetuning.task.Task.input_record_model`. Unknown fields are rejected (422)
so a typo such as ``{"txt": ...}`` is an error, not an empty prediction. Every schema says
what the server checks, so a client generated from ``/openapi.json`` sends valid requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, Field, create_model

from lmforge.serving.errors import ErrorResponse
from lmforge.wire import InputRecord, JsonInt, OneOrManyTexts, Strict

__all__ = ["ErrorResponse", "GenerateRequest", "GenerateResponse", "Health", "Message",
           "OneOrManyTexts", "PredictResponse", "Readiness", "Strict", "generate_request_model",
           "predict_request_model"]


class Message(Strict):
    """One chat turn."""

    role: Literal["system", "user", "assistant"]
    content: str


class GenerateRequest(Strict):
    """``POST /generate``: one prompt or conversation."""

    one_of: ClassVar[tuple[str, ...]] = ("prompt", "messages")
    prompt: str = Field(None, description="Prompt text.")
    messages: list[Message] = Field(None, min_length=1,
                                    description="Conversation (chat models).")
    max_new_tokens: JsonInt = Field(None, ge=1, description="Default: the run's setting.")
    # Each decoding option left out is the run's own (its task.* settings, as `lmforge
    # predict` uses them); the defaults below are those of a run that set none.
    temperature: float = Field(None, gt=0, le=100, description=(
        "Sampling temperature (default: the run's, 1.0 unless set)."))
    top_p: float = Field(None, gt=0, le=1, description="Nucleus sampling mass (default: the "
                                                        "run's, 1.0 unless set).")
    top_k: JsonInt = Field(None, ge=0, le=1_000_000, description=(
        "Sample from the k most likely tokens, 0: all (default: the run's, 50 unless set)."))
    repetition_penalty: float = Field(None, gt=0, le=10, description=(
        "> 1 discourages tokens already in the prompt or reply, 1: off (default: the run's)."))
    do_sample: bool = Field(None, description="Sample instead of greedy decoding (default: "
                                              "the run's, false unless set).")
    stream: bool = Field(False, description="Server-sent events, one per text piece.")


def generate_request_model(max_new_tokens: int) -> type[GenerateRequest]:
    """:class:`GenerateRequest` with the server's cap on ``max_new_tokens`` in its schema."""
    return create_model("GenerateRequest", __base__=GenerateRequest,
                        __doc__=GenerateRequest.__doc__,
                        max_new_tokens=(JsonInt, Field(None, ge=1, le=max_new_tokens, description=(
                            "Default: the run's setting; at most the server's "
                            "max_new_tokens."))))


class GenerateResponse(BaseModel):
    """The generated text."""

    text: str


class PredictRequestBase(Strict):
    """``POST /predict``: input records as ``lmforge predict`` reads them (or bare texts)."""

    inputs: list[Any]
    top_k: JsonInt = Field(1, ge=1, le=1000, description="Labels with scores per input.")


def predict_request_model(record: type[InputRecord],
                          from_text: Callable[[str], dict[str, Any]] | None
                          ) -> type[PredictRequestBase]:
    """The ``/predict`` request of a served task: a list of its records (or bare texts).

    Args:
        record: The task's :meth:`~lmforge.finetuning.task.Task.input_record_model`.
        from_text: Turns a bare string into a record (None: only records are accepted).
    """
    item: Any = record
    what = "records"
    if from_text is not None:
        # One validation path: a text becomes its record first, so an error points at the
        # record's field, not at a branch of a union; the schema still says "or a string".
        item = Annotated[record, BeforeValidator(
            lambda value: from_text(value) if isinstance(value, str) else value,
            json_schema_input_type=record | str)]
        what = "records (or bare texts)"
    return create_model("PredictRequest", __base__=PredictRequestBase,
                        __doc__=PredictRequestBase.__doc__,
                        inputs=(list[item], Field(..., min_length=1, description=(
                            f"Input {what}; fields other than the task's are ignored."))))


class PredictResponse(BaseModel):
    """Exactly the rows ``lmforge predict`` writes, in input order."""

    results: list[dict[str, Any]]


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether the model answers: ``ready``, else ``loading``, ``failed`` or ``draining``."""

    status: Literal["ready", "loading", "failed", "draining"]
    task: str
    detail: str | None = Field(None, description="Why it is not ready.")
