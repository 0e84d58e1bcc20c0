"""Wire types: what a finished model takes and gives over HTTP and in predictions.

The pydantic request models (their OpenAPI schemas say what they check), the record models a
task builds from its run's column names, and the :class:`Route` a task declares for its own
endpoint. Serving, the predictor and the tasks all read these, so they sit on a low floor:
this module imports only pydantic (see docs/architecture.md, "Floors").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    model_validator,
)

NON_BLANK = (r"[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
             r"\u3000]")
"""Pattern of a string with a non-whitespace character, whitespace as Python's ``str.split``
and ``str.strip`` define it (JSON Schema's ``\\S`` would count ``\\x1c``-``\\x1f`` as text and
so promise inputs the server then finds blank)."""

NonBlank = Annotated[str, Field(pattern=NON_BLANK)]
"""A string that is not empty or whitespace only (its OpenAPI schema says so)."""


def integral(value: Any) -> Any:
    """``3.0`` -> ``3`` (JSON Schema counts it as an integer; strict pydantic would not)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[int, BeforeValidator(integral)]
"""An integer as JSON Schema means it: ``3`` or ``3.0``, but not ``true`` or ``"3"``."""


def describe_choices(schema: dict[str, Any], cls: type) -> None:
    """Make a request model's JSON schema say what its validators check.

    Fields declared ``x: str = None`` are optional but never null: their ``default: null`` is
    dropped. ``one_of`` / ``any_of`` (class attributes naming fields, by alias) become
    ``oneOf`` / ``anyOf`` lists of ``required`` clauses.
    """
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            rest = {k: v for k, v in prop.items() if k != "default"}
            if '"null"' not in json.dumps(rest):  # the type itself is not nullable
                del prop["default"]
    for key, names in (("oneOf", getattr(cls, "one_of", ())),
                       ("anyOf", getattr(cls, "any_of", ()))):
        if names:
            schema[key] = [{"required": [name]} for name in names]


class _Choice(BaseModel):
    """Checks ``one_of`` (exactly one given) and ``any_of`` (at least one given)."""

    one_of: ClassVar[tuple[str, ...]] = ()
    """Aliases of fields of which exactly one must be given."""
    any_of: ClassVar[tuple[str, ...]] = ()
    """Aliases of fields of which at least one must be given."""

    @model_validator(mode="after")
    def _choice(self) -> _Choice:
        given = {f.alias or name for name, f in type(self).model_fields.items()
                 if getattr(self, name) is not None}
        if self.one_of and len(given & set(self.one_of)) != 1:
            raise ValueError(f"give exactly one of {list(self.one_of)}")
        if self.any_of and not given & set(self.any_of):
            raise ValueError(f"give at least one of {list(self.any_of)}")
        return self


class Strict(_Choice):
    """A request body that rejects unknown fields and wrong JSON types (no ``true`` for an
    integer, no ``"1"`` for a number), and whose schema says what it checks."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=describe_choices)


class InputRecord(_Choice):
    """One input record of ``POST /predict``: the fields the task reads; others are ignored
    (records read from files carry labels and ids)."""

    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra=describe_choices,
                              populate_by_name=False)


def record_model(name: str, fields: dict[str, tuple[Any, Any]], doc: str, *,
                 one_of: tuple[str, ...] = (),
                 any_of: tuple[str, ...] = ()) -> type[InputRecord]:
    """An :class:`InputRecord` model with fields named after the run's columns.

    Args:
        name: The model's name (its OpenAPI component), e.g. ``ClassificationInput``.
        fields: Column name -> ``(type, Field(...))``; required unless the field has a default
            (``Field(None)``: optional, never null).
        doc: The model's description (OpenAPI).
        one_of: Columns of which exactly one must be given.
        any_of: Columns of which at least one must be given.

    Returns:
        The model class (its ``model_dump(by_alias=True, exclude_none=True)`` is the record).
    """
    # Columns are aliases of generic attribute names: a column may be called "schema" or
    # "model_config", which a pydantic attribute cannot.
    definitions = {f"field_{i}": (Annotated[kind, Field(alias=column)], info)
                   for i, (column, (kind, info)) in enumerate(fields.items())}
    model = create_model(name, __base__=InputRecord, __doc__=doc, **definitions)
    model.one_of, model.any_of = one_of, any_of
    return model


class OneOrManyTexts(Strict):
    """A request with one ``text`` or several ``texts``."""

    one_of: ClassVar[tuple[str, ...]] = ("text", "texts")
    text: str = Field(None, description="One input text.")
    texts: list[str] = Field(None, min_length=1, description="Several input texts (one batch).")

    def all_texts(self) -> list[str]:
        """The inputs as a list."""
        return [self.text] if self.text is not None else list(self.texts or [])


def _pair_schema(schema: dict[str, Any], cls: type) -> None:
    describe_choices(schema, cls)
    # The shape of text_pair follows text / texts (the equal length is checked, not schema).
    schema["oneOf"] = [
        {"required": ["text"], "properties": {"text_pair": {"type": "string"}}},
        {"required": ["texts"], "properties": {"text_pair": {"type": "array"}}}]


class OneOrManyTextPairs(OneOrManyTexts):
    """A request with one ``text`` and its ``text_pair``, or ``texts`` and as many pairs."""

    model_config = ConfigDict(json_schema_extra=_pair_schema)
    text_pair: str | list[str] = Field(
        ..., description="Second text(s): a string with 'text', a list as long as 'texts'.")

    @model_validator(mode="after")
    def _pairs(self) -> OneOrManyTextPairs:
        many = isinstance(self.text_pair, list)
        if many != (self.texts is not None) or (many and len(self.text_pair) != len(
                self.texts or [])):
            raise ValueError("text_pair must be a string with 'text' or a list as long as "
                             "'texts'")
        return self


@dataclass(frozen=True)
class RouteCall:
    """What a task's HTTP request asks the server to predict.

    Attributes:
        records: One input record per prediction; ``None`` where the answer needs no model
            call (e.g. an empty text has no entities).
        texts: Every string of the request, checked against the server's size limits.
        top_k: Labels with scores per input.
    """

    records: list[dict[str, Any] | None]
    texts: list[str]
    top_k: int = 1


@dataclass(frozen=True)
class Route:
    """A task's own HTTP route (``lmforge serve`` mounts it beside ``/predict``).

    Attributes:
        path: The URL path, e.g. ``/classify``.
        request: The pydantic model of the request body (its OpenAPI schema).
        response: The pydantic model of the response body.
        description: The route's OpenAPI description.
        call: ``(request, settings) -> RouteCall``; raises a
            :class:`~lmforge.errors.DataError` (HTTP 422) for a request the model cannot take.
        respond: ``(request, rows) -> response body``; ``rows`` align with
            ``RouteCall.records`` (``None`` where the record was ``None``).
        exclude_none: Drop ``None`` fields from the response (optional keys).
    """

    path: str
    request: type
    response: type
    description: str
    call: Callable[[Any, Any], RouteCall]
    respond: Callable[[Any, list[Any]], dict[str, Any]]
    exclude_none: bool = False
