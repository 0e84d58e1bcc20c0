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

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.commands.runner import (
    ConfigSource,
    headline_metrics,
    resolve_job,
    run_command,
)

if TYPE_CHECKING:  # pragma: no cover - annotation only
    from lmforge.predictor import Predictor

__all__ = ["RunResult", "attack", "continual_learning", "evaluate", "explain", "export",
           "finetune", "headline_metrics", "load", "pipeline", "pretrain", "prompt",
           "resolve_job", "run", "run_command", "train_tokenizer", "tune"]


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


def _api(command: str, config: ConfigSource, overrides: tuple[str, ...], resume: bool,
         sections: dict[str, Any], hooks: Sequence[Any] = ()) -> RunResult:
    job = resolve_job(command, config, overrides, sections)
    summary = dict(run_command(command, job, resume, hooks))
    table = summary.pop("table", None)
    run_dir = Path(summary["run_dir"]) if summary.get("run_dir") else None
    return RunResult(command, summary, run_dir, headline_metrics(summary), table)


def run(command: str, config: ConfigSource = None, *overrides: str, resume: bool = False,
        hooks: Sequence[Any] = (), **sections: Any) -> RunResult:
    """Run any registered command by name (the named functions below are shortcuts).

    Every command of :data:`lmforge.commands.registry.COMMANDS` is reachable this way, so a
    new command needs no function here.

    Args:
        command: The command's name, as on the command line (``"finetune"``,
            ``"tokenizer train"``, ...).
        config: Its config: a config dataclass, a dict or a YAML path.
        *overrides: ``key=value`` strings.
        resume: Continue the run in ``output_dir`` (commands that resume).
        hooks: Extra engine hooks (commands that train).
        **sections: Config sections or keys.

    Returns:
        The run's summary, folder and headline metrics.
    """
    return _api(command, config, overrides, resume, sections, hooks)


def finetune(config: ConfigSource = None, *overrides: str, resume: bool = False,
             hooks: Sequence[Any] = (), **sections: Any) -> RunResult:
    """Fine-tune a pretrained model on a labeled task (``lmforge finetune``).

    Args:
        config: A :class:`~lmforge.finetuning.settings.FinetuneJob`, a dict or a YAML path.
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
         threads: int | None = None) -> Predictor:
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
    # Imported here: torch loads with it, and `import lmforge` / `lmforge --help` must not
    # pay for torch before a command runs.
    from lmforge.predictor import load_predictor

    return load_predictor(source, backend, precision, threads)
