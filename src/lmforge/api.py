"""The Python API: every CLI command as a function, and :func:`load` for finished models.

Each function takes the same configuration as its command, in any mix of forms, resolved in
this order (later wins): the command's defaults, ``config`` (a config dataclass, a dict or a
YAML path), keyword sections (``train={"lr": 3e-5}``, ``output_dir="runs/x"``), then
``key=value`` strings::

    import lmforge

    result = lmforge.finetune("configs/finetune.yaml", "train.epochs=1",
                              data={"path": "../shared/data/sst2"}, output_dir="runs/sst2")
    result.metrics["accuracy"], result.run_dir
    clf = lmforge.load(result.run_dir)
    clf.predict(["a gorgeous, witty film"])

A function returns a :class:`RunResult` instead of printing; a problem in the input raises
:class:`~lmforge.errors.LmforgeError` with the one-line message the CLI would print. Every
run saves and restores the process-wide state it changes (:func:`lmforge.engine.scope.run_scope`),
so a script or notebook can train any number of times, in any mix of precisions.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.config import build_config, load_yaml, merge_dicts, to_dict
from lmforge.errors import ConfigError

ConfigSource = Any  # a config dataclass instance, a mapping, a YAML path, or None


@dataclass
class RunResult:
    """What a command returns.

    Attributes:
        command: The command's name (``finetune``, ``pretrain``, ...).
        summary: The command's summary (what it writes to ``summary.json``).
        run_dir: The run directory, when the command writes one.
        metrics: The headline metrics (validation metrics of a fine-tuning, final
            evaluation of a pretraining, the metrics of ``evaluate``).
        table: The human-readable report the CLI prints, when the command makes one.
    """

    command: str
    summary: dict[str, Any]
    run_dir: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    table: str | None = None


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)}


def headline_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The metrics a user asks for first, from a command's summary."""
    for key in ("validation_metrics", "final_eval", "ensemble", "prompt"):
        if isinstance(summary.get(key), Mapping):
            return _numbers(summary[key])
    return _numbers({k: v for k, v in summary.items() if k not in ("examples", "inputs")})


def _config_data(config: ConfigSource) -> tuple[dict[str, Any], str | None]:
    """(mapping, YAML path) from the ``config`` argument."""
    if config is None:
        return {}, None
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return to_dict(config), None
    if isinstance(config, Mapping):
        return dict(config), None
    if isinstance(config, (str, Path)):
        return {}, str(config)
    raise ConfigError(f"config must be a config dataclass, a dict or a YAML path, not "
                      f"{type(config).__name__}")


def resolve_job(command: str, config: ConfigSource = None, overrides: tuple[str, ...] = (),
                sections: Mapping[str, Any] | None = None) -> Any:
    """The validated config of ``command`` from any mix of config forms (see the module doc)."""
    from lmforge.cli import COMMANDS

    if command not in COMMANDS:
        raise ConfigError(f"unknown command {command!r}; choose one of {sorted(COMMANDS)}")
    base, yaml_path = _config_data(config)
    if yaml_path is not None:
        base = load_yaml(yaml_path)
    data = merge_dicts(base, dict(sections or {}))
    return build_config(COMMANDS[command].config, None, list(overrides), base=data)


def run_command(command: str, job: Any, resume: bool = False,
                hooks: Sequence[Any] = (), **options: Any) -> dict[str, Any]:
    """Run one command on a resolved config inside a :func:`run_scope`; return its summary.

    ``hooks`` (engine :class:`~lmforge.engine.hooks.StepHook` objects) go to the commands
    that train with the engine (finetune, pretrain); ``options`` are extra keyword arguments
    of the command's function (e.g. ``report_splits`` of finetune). Every command that
    returns a ``run_dir`` gets its ``lineage.json`` there (:mod:`lmforge.lineage`).
    """
    import time

    from lmforge.cli import COMMANDS, quiet_libraries
    from lmforge.engine.scope import run_scope
    from lmforge.lineage import write_lineage
    from lmforge.runs import is_main_process

    quiet_libraries(debug=False, interactive=True)  # lmforge logs its own line for a new head
    kwargs = {"hooks": list(hooks)} if hooks else {}
    started = time.time()
    with run_scope():
        summary = COMMANDS[command].load()(job, resume=resume, **kwargs, **options)
    if isinstance(summary, Mapping) and summary.get("run_dir") and is_main_process() and \
            dataclasses.is_dataclass(job) and Path(summary["run_dir"]).is_dir():
        write_lineage(command, to_dict(job), summary["run_dir"], started)
    return summary


def _api(command: str, config: ConfigSource, overrides: tuple[str, ...], resume: bool,
         sections: dict[str, Any], hooks: Sequence[Any] = ()) -> RunResult:
    job = resolve_job(command, config, overrides, sections)
    summary = dict(run_command(command, job, resume, hooks))
    table = summary.pop("table", None)
    run_dir = Path(summary["run_dir"]) if summary.get("run_dir") else None
    return RunResult(command, summary, run_dir, headline_metrics(summary), table)


def finetune(config: ConfigSource = None, *overrides: str, resume: bool = False,
             hooks: Sequence[Any] = (), **sections: Any) -> RunResult:
    """Fine-tune a pretrained model on a labeled task (``lmforge finetune``).

    Args:
        config: A :class:`~lmforge.settings.FinetuneJob`, a dict or a YAML path.
        *overrides: ``key=value`` strings, e.g. ``"train.lr=3e-5"``.
        resume: Continue the run in ``output_dir`` from its latest checkpoint.
        hooks: Extra engine hooks (:class:`~lmforge.engine.hooks.StepHook`), e.g. to
            report each evaluation to a tuner.
        **sections: Config sections or keys, e.g. ``train={"epochs": 1}``,
            ``output_dir="runs/x"``.

    Returns:
        The run: ``run_dir``, validation ``metrics`` and the whole ``summary``.
    """
    return _api("finetune", config, overrides, resume, sections, hooks)


def pretrain(config: ConfigSource = None, *overrides: str, resume: bool = False,
             hooks: Sequence[Any] = (), **sections: Any) -> RunResult:
    """Self-supervised pretraining, from scratch or continued (``lmforge pretrain``).

    Takes the config and hooks as :func:`finetune` does; ``metrics`` are the final evaluation.
    """
    return _api("pretrain", config, overrides, resume, sections, hooks)


def continual_learning(config: ConfigSource = None, *overrides: str, resume: bool = False,
              hooks: Sequence[Any] = (), **sections: Any) -> RunResult:
    """Learn a stream of experiences in order and measure forgetting (``lmforge continual``).

    Named ``continual_learning`` because ``lmforge.continual`` is the package.

    Takes the config and hooks as :func:`finetune` does (``hooks`` run in every experience's
    training, before the strategy's own); ``metrics`` are ``average_accuracy``, ``bwt``,
    ``fwt`` and ``forgetting``, ``summary["accuracy_matrix"]`` is R.
    """
    return _api("continual", config, overrides, resume, sections, hooks)


def evaluate(config: ConfigSource = None, *overrides: str, **sections: Any) -> RunResult:
    """Evaluate a run (``lmforge evaluate``): perplexity, or a fine-tuned model's report.

    Example:
        >>> lmforge.evaluate(run="runs/sst2", data={"path": "dev.tsv"})
    """
    return _api("evaluate", config, overrides, False, sections)


def train_tokenizer(config: ConfigSource = None, *overrides: str, **sections: Any) -> RunResult:
    """Train a WordPiece / BPE / Unigram tokenizer (``lmforge tokenizer train``)."""
    return _api("tokenizer train", config, overrides, False, sections)


def prompt(config: ConfigSource = None, *overrides: str, **sections: Any) -> RunResult:
    """Zero-shot / in-context prompting or few-shot prompt-based tuning (``lmforge prompt``)."""
    return _api("prompt", config, overrides, False, sections)


def export(config: ConfigSource = None, *overrides: str, **sections: Any) -> RunResult:
    """Export a fine-tuned run: merged HF folder, ONNX, int8 ONNX (``lmforge export``)."""
    return _api("export", config, overrides, False, sections)


def tune(config: ConfigSource = None, *overrides: str, **sections: Any) -> RunResult:
    """Search fine-tuning hyperparameters with Optuna (``lmforge tune``).

    Example:
        >>> lmforge.tune("configs/finetune.yaml", "tune.space=space.yaml", "tune.n_trials=20",
        ...              output_dir="runs/study")

    ``metrics`` are the best trial's objective values; ``summary["best_config"]`` is a
    ``best.yaml`` that ``lmforge.finetune`` reproduces. Running it again on the same
    ``output_dir`` continues the study.
    """
    result = _api("tune", config, overrides, False, sections)
    best = result.summary.get("best") or {}
    result.metrics = {k: float(v) for k, v in (best.get("values") or {}).items()}
    return result


def pipeline(config: ConfigSource = None, *overrides: str, **sections: Any) -> RunResult:
    """Run a pipeline of stages with content caching (``lmforge pipeline``)."""
    return _api("pipeline", config, overrides, False, sections)


def attack(config: ConfigSource = None, *overrides: str, **sections: Any) -> RunResult:
    """Attack a fine-tuned classifier and report its robustness (``lmforge attack``).

    Example:
        >>> lmforge.attack(run="runs/sst2", attacks=["char"], num_examples=200)
    """
    return _api("attack", config, overrides, False, sections)


def explain(config: ConfigSource = None, *overrides: str, **sections: Any) -> RunResult:
    """Explain a run's predictions on inputs (``lmforge explain``): jsonl, HTML, PNG, and
    with ``evaluate=True`` the faithfulness table.

    Example:
        >>> lmforge.explain(run="runs/sst2", input="dev.tsv", limit=20, evaluate=True)

    For a model already loaded, ``lmforge.load(run).explain(texts)`` returns the rows.
    """
    return _api("explain", config, overrides, False, sections)


def load(source: str | Path, backend: str = "auto", precision: str = "auto",
         threads: int | None = None) -> Any:
    """Load a fine-tuned run or an ONNX export folder as a :class:`~lmforge.predictor.Predictor`.

    Args:
        source: A finetune run directory, its ``model/`` folder, or an ``lmforge export``
            folder (``OUT``, ``OUT/onnx``, ``OUT/onnx-int8``).
        backend: ``auto`` (ONNX Runtime for an export folder, PyTorch otherwise), ``torch``
            or ``onnx``.
        precision: PyTorch only: ``auto`` (bf16 where the CPU has bf16 units), ``bf16`` or
            ``fp32``.
        threads: CPU threads for inference (None: torch's default).

    Returns:
        A predictor whose ``predict(texts_or_records)`` returns the rows ``lmforge predict``
        writes, for every task.
    """
    from lmforge.predictor import load_predictor

    return load_predictor(source, backend, precision, threads)
