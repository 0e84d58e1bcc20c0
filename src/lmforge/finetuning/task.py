"""The task interface of ``lmforge finetune`` and its one registration table.

A downstream task is one package ``finetuning/<name>/`` with the same modules:

- ``data.py``: raw split -> encoded examples (no padding), the collator, task data helpers;
- ``objective.py``: the loss wrapper the engine trains (``{"loss", "n", "count_*"}``) and the
  reducer that turns summed evaluation counts into metrics (the two generative tasks share
  theirs from :mod:`lmforge.finetuning.generative`);
- ``task.py``: the :class:`Task` subclass and its typed :class:`TaskSettings` (saved with the
  model as ``lmforge_task.json``), plus everything other packages need to know about the
  task: its PEFT task type and head, whether it generates, its ONNX outputs, its HTTP route
  with request / response schemas, an example record.

Serving, export and PEFT ask the task object; they never branch on its name. Adding a task is
one package and one line in :data:`TASKS` (``tests/finetuning/test_registry.py`` checks that
every registered task provides what serving, export and PEFT need).

Life of a task in a run::

    settings = task.setup(job, raw["train"])          labels, columns -> lmforge_task.json
    enc = task.encode(raw[split], tokenizer, settings, split)
    model, new_head = task.load_model(source, settings, job.model)
    wrapped = task.objective(model, settings, job.train, enc["train"])   # engine contract
    ... Engine(wrapped, ..., collator=task.collator(tokenizer, model), reducer=task.reducer)
    task.finalize(model, tokenizer, settings, enc["validation"], accelerator)  # e.g. thresholds
    report = task.report(model, tokenizer, settings, raw[split], enc[split], out_dir, accelerator)
    rows = task.predict(model, tokenizer, settings, records, top_k)
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    model_validator,
)

from lmforge.config import check_choice, opt

if TYPE_CHECKING:  # pragma: no cover - annotations only; the config loads without torch
    import datasets
    from torch import nn

# Task name -> "package.module:Class". Imported lazily so a task's heavy imports load only
# when it is used.
TASKS: dict[str, str] = {
    "classification": "lmforge.finetuning.classification.task:ClassificationTask",
    "token_classification": "lmforge.finetuning.token_classification.task:TokenClassificationTask",
    "qa": "lmforge.finetuning.qa.task:QuestionAnsweringTask",
    "seq2seq": "lmforge.finetuning.seq2seq.task:Seq2SeqTask",
    "sft": "lmforge.finetuning.sft.task:ChatSftTask",
}

DEFAULT_TASK = next(iter(TASKS))  # what ``task.name`` is when a config does not say

SAMPLE_TEXTS = [
    "good",
    "the film was long but the ending made up for it",
    "Alice lives in Paris .",
    "what a wonderful day",
    "the service was slow , the food was cold and nobody said sorry for the wait at all",
    "ok",
    "Mr Smith went home to London after the meeting ended late on friday",
    "where does Alice live ?",
]
"""Built-in inputs of varied lengths (ONNX export checks, warm-up) when no data is given."""


@dataclass
class TaskSettings:
    """What a fine-tuned model needs besides its weights, saved as ``lmforge_task.json``.

    Each task extends it with its own fields; the file is written and read through the
    config machinery (:func:`lmforge.config.to_dict` / :func:`lmforge.config.from_dict`), so a
    stray or misspelled key is an error, not a silent default.
    """

    task: str = opt("", "The registered task name.")
    text_column: str = opt("text", "Input column of a plain text line (lmforge predict, "
                                   "Predictor.predict with bare strings).")
    max_length: int = opt(128, "Tokens per input (longer inputs are cut or windowed).")


NON_BLANK = (r"[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
             r"\u3000]")
"""Pattern of a string with a non-whitespace character, whitespace as Python's ``str.split``
and ``str.strip`` define it (JSON Schema's ``\\S`` would count ``\\x1c``-``\\x1f`` as text and
so promise inputs the server then finds blank)."""

NonBlank = Annotated[str, Field(pattern=NON_BLANK)]
"""A string that is not empty or whitespace only (its OpenAPI schema says so)."""


def _integral(value: Any) -> Any:
    # JSON Schema counts 3.0 as an integer; strict pydantic would not.
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[int, BeforeValidator(_integral)]
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


class Task:
    """Base class of the fine-tuning tasks: the interface, and the facts other packages ask.

    Subclasses set the class attributes and implement the methods that raise
    ``NotImplementedError``; the rest have defaults that fit most tasks.
    """

    name: ClassVar[str] = ""
    settings_class: ClassVar[type[TaskSettings]] = TaskSettings
    peft_task_type: ClassVar[str] = ""
    """The ``peft.TaskType`` name (decides which ``PeftModel`` subclass wraps the model)."""
    has_head: ClassVar[bool] = False
    """A new head sits beside the pretrained backbone (trained and saved with PEFT methods)."""
    per_token_outputs: ClassVar[bool] = False
    """Outputs are per input position (tags, span logits, next tokens): prompt-tuning's
    virtual tokens would shift them out of line with the labels."""
    takes_past_key_values: ClassVar[bool] = False
    """The task's model family takes a key / value cache (prefix tuning works without a
    check of the model's forward signature)."""
    generative: ClassVar[bool] = False
    """The model writes text token by token (served at ``/generate``, no ONNX graph)."""
    accepts_messages: ClassVar[bool] = False
    """Generative tasks: the model answers chat conversations, not only prompts."""
    onnx_outputs: ClassVar[tuple[str, ...]] = ()
    """Named outputs of the exported ONNX graph; empty when the task has no ONNX export."""
    serves_explanations: ClassVar[bool] = False
    """``lmforge serve`` mounts ``POST /explain`` (word attributions of text inputs)."""
    metric_scale: ClassVar[float] = 100.0
    """Factor from a headline metric to points (1.0 where metrics are percentages already)."""
    supports_continual: ClassVar[bool] = False
    """``lmforge continual`` can train it: ``objective()`` returns a module with ``.model``
    and ``loss_and_counts(logits (B, C), labels)``, so a stream can mask the classes of
    other experiences, and the labels are single class ids."""

    # ---------------------------------------------------------------- training and evaluation
    def setup(self, job: Any, train: datasets.Dataset) -> TaskSettings:
        """Read label names etc. from the training split; return the settings to save."""
        raise NotImplementedError

    def encode(self, raw: datasets.Dataset, tokenizer: Any, settings: Any,
               split_name: str) -> datasets.Dataset:
        """Turn a raw split into model inputs (no padding)."""
        raise NotImplementedError

    def load_model(self, source: str, settings: Any,
                   model_cfg: Any = None) -> tuple[nn.Module, bool]:
        """Load the ``transformers`` model for the task; return (model, new_head)."""
        raise NotImplementedError

    def objective(self, model: nn.Module, settings: Any, train_cfg: Any,
                  train: datasets.Dataset) -> nn.Module:
        """Wrap the model so its forward returns ``{"loss", "n", "count_*"}``."""
        raise NotImplementedError

    def collator(self, tokenizer: Any, model: nn.Module) -> Any:
        """The batch maker for this task's encoded examples."""
        raise NotImplementedError

    def reducer(self, sums: dict[str, float]) -> dict[str, float]:
        """Evaluation metrics during training from summed counts."""
        raise NotImplementedError

    def selection_metric(self, job: Any) -> tuple[str, bool]:
        """``train.metric_for_best=auto``: the in-loop metric that picks the best checkpoint
        and whether larger is better. The loss, unless the task knows a better one."""
        return "eval_loss", False

    def finalize(self, model: nn.Module, tokenizer: Any, settings: Any,
                 validation: datasets.Dataset | None, accelerator: Any) -> None:
        """Optional post-training step (e.g. tune thresholds); may update ``settings``."""

    def report(self, model: nn.Module, tokenizer: Any, settings: Any, raw: datasets.Dataset,
               encoded: datasets.Dataset, out_dir: Path, accelerator: Any,
               batch_size: int = 64) -> dict[str, Any]:
        """Full evaluation into ``out_dir``; returns a dict with a flat ``headline``."""
        raise NotImplementedError

    def predict(self, model: nn.Module, tokenizer: Any, settings: Any,
                records: list[dict[str, Any]], top_k: int = 1) -> list[dict[str, Any]]:
        """Predictions for raw input records (dicts holding the task's input fields)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- what other stages ask
    def label_names(self, settings: Any) -> list[str] | None:
        """Label names for the model config's ``id2label`` (None: the task has no labels)."""
        labels = getattr(settings, "labels", None)
        return list(labels) if labels else None

    accepts_texts: ClassVar[bool] = True
    """A bare string is an input (:meth:`record_from_text`); False where records are needed."""

    def rewritable_columns(self, settings: Any) -> list[str]:
        """Input columns that may be rewritten word by word without changing the label
        (data augmentation, word-level attacks); empty where labels are tied to the exact
        words (tags, answer spans) or the output is text. Order: text, then its pair."""
        return []

    def record_from_text(self, settings: Any, text: str) -> dict[str, Any]:
        """The input record for a bare text (a line of ``lmforge predict``'s input)."""
        return {settings.text_column: text}

    def input_record_model(self, settings: Any) -> type[InputRecord]:
        """The pydantic model of one input record (``POST /predict``'s items, its schema).

        It must accept exactly the records :meth:`check_record` accepts (restricted to the
        fields it declares); build it with :func:`record_model`.
        """
        return record_model("TextInput", {settings.text_column: (
            str, Field(..., description="The text."))}, "One input text.")

    def example_record(self, settings: Any) -> dict[str, Any]:
        """One small valid input (server warm-up, tests)."""
        return self.record_from_text(settings, "warm up")

    def check_record(self, settings: Any, record: dict[str, Any]) -> str | None:
        """Why ``record`` cannot be predicted (None when it can); the server answers 422."""
        if isinstance(record.get(settings.text_column), str):
            return None
        return f"each input needs a string field {settings.text_column!r}"

    def sample_inputs(self, settings: Any,
                      rows: list[dict[str, Any]] | None) -> list[tuple[str, str | None]]:
        """(text, pair text) inputs for the ONNX export check, from data rows or built-ins."""
        column = settings.text_column
        if rows and column in rows[0]:
            return [(str(r[column]), None) for r in rows]
        return [(text, None) for text in SAMPLE_TEXTS]

    def onnx_output_class(self) -> Any:
        """The ``transformers`` output class an ONNX session's outputs are wrapped in."""
        raise NotImplementedError(f"task {self.name} has no ONNX export")

    def http_route(self, settings: Any) -> Route | None:
        """The task's own route (None: only ``/predict``, or ``/generate`` if generative)."""
        return None

    # ---------------------------------------------------------------- generative tasks
    def generation_inputs(self, tokenizer: Any, settings: Any, prompt: str | None,
                          messages: list[dict[str, str]] | None) -> dict[str, Any]:
        """Tokenized input of one ``/generate`` request, as ``predict`` builds it (batch 1)."""
        raise NotImplementedError(f"task {self.name} does not generate")

    def generation_kwargs(self, tokenizer: Any) -> dict[str, Any]:
        """Extra ``model.generate`` options of the task (e.g. a chat's stop string)."""
        return {}

    stop_string: ClassVar[str | None] = None
    """Text that ends a reply (held back from a stream, cut from the reply)."""

    def finish_reply(self, text: str) -> str:
        """The reply as ``predict`` returns it (cut at ``stop_string``, stripped)."""
        if self.stop_string:
            text = text.split(self.stop_string)[0]
        return text.strip()


def task_names_help() -> str:
    """``task.name``'s help text, from the registry."""
    return "Task: " + ", ".join(TASKS) + "."


def all_tasks() -> dict[str, Task]:
    """Every registered task, by name."""
    return {name: get_task(name) for name in TASKS}


def get_task(name: str) -> Task:
    """Instantiate the registered task ``name``."""
    check_choice("task.name", name, list(TASKS))
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
