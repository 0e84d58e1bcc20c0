"""The task interface of ``lmforge finetune`` and its one registration table.

A downstream task is one package ``finetuning/<name>/`` with the same modules:

- ``data.py``: raw split -> encoded examples (no padding), the collator, task data helpers;
- ``objective.py``: the loss wrapper the engine trains (``{"loss", "n", "count_*"}``) and the
  reducer that turns summed evaluation counts into metrics (the two generative tasks share
  theirs from :mod:`lmforge.finetuning.generative`);
- ``settings.py`` (no torch, so ``--help`` stays fast): the task's options, declared once in
  a mixin and used twice: as the job's ``task`` section (a :class:`TaskConfig` variant, picked
  by ``task.name``) and inside its typed :class:`TaskSettings` (saved with the model as
  ``lmforge_task.json``);
- ``task.py``: the :class:`Task` subclass, plus everything other packages need to know about the
  task: its PEFT task type and head, whether it generates, its ONNX outputs, its HTTP route
  with request / response schemas, an example record, the metrics ``lmforge tune`` may
  optimise (:meth:`Task.tuning_objectives`);
- optionally ``explain.py`` (the adapter ``lmforge explain`` uses, returned by
  :meth:`Task.explain_adapter`) and ``attack.py`` (the target ``lmforge attack`` uses,
  returned by :meth:`Task.attack_target`).

Serving, export, PEFT, tuning, explaining and attacks ask the task object; they never branch
on its name, and no package outside ``finetuning`` keeps a table keyed by task names. Adding a
task is one package and one :class:`TaskEntry` line in :data:`TASKS`
(``tests/finetuning/test_registry.py`` checks that every registered task provides what
serving, export and PEFT need, and that no task name is a string literal anywhere else).

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

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from pydantic import Field

from lmforge.config import check_choice, from_dict, opt
from lmforge.wire import InputRecord, Route, record_model

if TYPE_CHECKING:  # pragma: no cover - annotations only; the config loads without torch
    import datasets
    from torch import nn

    from lmforge.reporting.html import Section



class TaskEntry(NamedTuple):
    """Where a registered task lives, as ``"package.module:Class"`` paths (imported lazily:
    the config module has no torch, so ``--help`` and config checks stay fast)."""

    task: str
    """The :class:`Task` subclass."""
    config: str
    """Its :class:`TaskConfig` variant (the ``task.*`` keys when ``task.name`` names it)."""


_PKG = "lmforge.finetuning"
TASKS: dict[str, TaskEntry] = {
    "classification": TaskEntry(f"{_PKG}.classification.task:ClassificationTask",
                                f"{_PKG}.classification.settings:ClassificationConfig"),
    "token_classification": TaskEntry(
        f"{_PKG}.token_classification.task:TokenClassificationTask",
        f"{_PKG}.token_classification.settings:TokenClassificationConfig"),
    "qa": TaskEntry(f"{_PKG}.qa.task:QuestionAnsweringTask", f"{_PKG}.qa.settings:QaConfig"),
    "seq2seq": TaskEntry(f"{_PKG}.seq2seq.task:Seq2SeqTask",
                         f"{_PKG}.seq2seq.settings:Seq2SeqConfig"),
    "sft": TaskEntry(f"{_PKG}.sft.task:ChatSftTask", f"{_PKG}.sft.settings:SftConfig"),
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


def _load(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class TaskConfig:
    """The ``task`` section: which task, and that task's own options.

    A tagged union (see :mod:`lmforge.config`): ``task.name`` picks the variant a task
    declares in its ``settings.py``, and only that variant's keys are valid.
    """

    name: str = opt(DEFAULT_TASK, "Task: " + ", ".join(TASKS) + ".")
    variant_tag: ClassVar[str] = "name"
    default_max_length: ClassVar[int] = 128
    """``data.max_length`` when the job does not set it."""

    @classmethod
    def variant_classes(cls) -> Mapping[str, type[TaskConfig]]:
        """Every registered task's section class, by task name."""
        return {name: _load(entry.config) for name, entry in TASKS.items()}

    def check_lengths(self, max_length: int) -> None:
        """Refuse options that cannot work with ``data.max_length`` (before any data work)."""

    def sigmoid_outputs(self) -> bool:
        """The model scores labels independently (multi-label), not with one softmax."""
        return False

    # The run report (``lmforge report``) asks the section, not the Task: the section's
    # module has no torch, so a report is built in well under a second.
    def report_tables(self, metrics: Mapping[str, Any]) -> list[Section]:
        """The task's own tables in a run report (per class, per entity type, ...).

        Args:
            metrics: The ``metrics`` of an evaluated split's ``summary.json``.
        """
        return []

    def report_examples(self, rows: list[dict[str, Any]],
                        count: int) -> tuple[str, list[dict[str, Any]]]:
        """The example predictions a run report shows, and a line saying how they were picked.

        Args:
            rows: An evaluated split's ``predictions.jsonl``.
            count: How many to show.
        """
        return "The first predictions of the split.", rows[:count]


def task_config(name: str, **options: Any) -> TaskConfig:
    """The ``task`` section of task ``name`` with ``options`` (checked like a config file)."""
    return from_dict(TaskConfig, {"name": name, **options}, "task.")


def saved_settings(settings_class: type[TaskSettings], options: TaskConfig,
                   **derived: Any) -> TaskSettings:
    """A run's :class:`TaskSettings`: every task option it shares with ``options`` (the job's
    ``task`` section), plus what ``setup`` derived from the data and the job."""
    shared = {f.name for f in dataclasses.fields(settings_class)} - {"task"}
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
              if f.name in shared}
    return settings_class(**{**values, **derived})


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
    """``lmforge serve`` mounts ``POST /explain`` (word attributions of text inputs).

    Narrower than :meth:`explain_adapter`: the route's request and response schemas are those
    of text classification (``text`` / ``text_pair`` in, ``label`` / ``score`` out), so only a
    task whose records and predictions have that shape may set it, while ``lmforge explain``
    and ``Predictor.explain`` work for every task with an adapter. A task that sets it must
    have an adapter (``tests/finetuning/test_registry.py`` checks)."""
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
    def tuning_objectives(self, options: Any) -> tuple[str, ...]:
        """Metrics the engine's in-loop evaluation reports for this task (its reducer's keys),
        which ``lmforge tune`` may prune on and pick each trial's best checkpoint with.

        Args:
            options: The job's ``task`` section (e.g. classification reports other metrics
                when ``task.multi_label`` is set).
        """
        return ("eval_loss",)

    def explain_adapter(self) -> type | None:
        """The :mod:`lmforge.explaining` adapter class of the task (built with the saved task
        settings), or None when its models cannot be explained. It lives in the task's
        package (``explain.py``) so the explaining package never names a task."""
        return None

    def attack_target(self) -> type | None:
        """The :mod:`lmforge.adversarial` target class that ``lmforge attack`` wraps a loaded
        predictor in (built as ``cls(predictor, batch_size)``), or None when its models cannot
        be attacked. It lives in the task's package (``attack.py``)."""
        return None

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


def all_tasks() -> dict[str, Task]:
    """Every registered task, by name."""
    return {name: get_task(name) for name in TASKS}


def get_task(name: str) -> Task:
    """Instantiate the registered task ``name``."""
    check_choice("task.name", name, list(TASKS))
    return _load(TASKS[name].task)()
