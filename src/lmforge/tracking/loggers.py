"""Metric loggers: JSONL, TensorBoard, Weights & Biases (offline) and MLflow (local files).

Every backend writes under the run directory and never needs a network or a login, so a run
on an air-gapped cluster behaves like one on a laptop. The optional backends (wandb, mlflow)
are imported lazily so lmforge works without them installed.
"""

from __future__ import annotations

import difflib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lmforge.errors import ConfigError

VALID_BACKENDS: tuple[str, ...] = ("jsonl", "tensorboard", "wandb", "mlflow")

METRICS_FILE = "metrics.jsonl"
"""Name of the :class:`JsonlLogger` output file inside the run directory."""

RUN_CONFIG_FILE = "run_config.json"
"""Name of the file :meth:`JsonlLogger.log_config` writes inside the run directory."""


@runtime_checkable
class Logger(Protocol):
    """Anything that records scalar metrics and the run config."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record scalar ``metrics`` (e.g. ``{"train/loss": 2.3}``) at optimizer ``step``."""
        ...

    def log_config(self, config: dict) -> None:
        """Record the resolved run configuration (nested dicts allowed)."""
        ...

    def close(self) -> None:
        """Flush and release resources; the logger must not be used afterwards."""
        ...


def _to_float(value: Any) -> float:
    # Callers pass tensors and numpy scalars as often as floats; float() handles all three.
    return float(value.item() if hasattr(value, "item") else value)


class JsonlLogger:
    """Append one JSON object per :meth:`log` call to ``run_dir/metrics.jsonl``.

    The file is opened in append mode so a resumed run continues the same file, and each line is
    flushed immediately so a killed run keeps every metric logged before the kill. Non-finite
    values are written as ``NaN``/``Infinity``, which Python's ``json`` reads back.
    """

    def __init__(self, run_dir: str | Path) -> None:
        """Open (or create) ``run_dir/metrics.jsonl`` for appending.

        Args:
            run_dir: The run directory; created if missing.
        """
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / METRICS_FILE
        # Line buffering plus an explicit flush: cheap at logging frequency, and crash-safe.
        self._file = self.path.open("a", encoding="utf-8", buffering=1)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Append ``{"step": step, **metrics, "time": unix_seconds}`` as one line.

        Args:
            metrics: Scalar metrics; tensors and numpy scalars are converted to float.
            step: The global optimizer step.
        """
        record: dict[str, Any] = {"step": int(step)}
        record.update({name: _to_float(value) for name, value in metrics.items()})
        record["time"] = time.time()
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def log_config(self, config: dict) -> None:
        """Write the config to ``run_dir/run_config.json`` (overwriting an earlier one).

        Args:
            config: The resolved run configuration; values JSON cannot encode are stringified.
        """
        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        (self.run_dir / RUN_CONFIG_FILE).write_text(text + "\n", encoding="utf-8")

    def close(self) -> None:
        """Close the metrics file."""
        if not self._file.closed:
            self._file.close()


class TensorBoardLogger:
    """Write scalars to a TensorBoard event file under ``run_dir/tb``."""

    def __init__(self, run_dir: str | Path) -> None:
        """Create a ``SummaryWriter`` in ``run_dir/tb``.

        Args:
            run_dir: The run directory; created if missing.
        """
        # Deferred: pulls in tensorboard and protobuf, which most commands never need.
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(run_dir) / "tb"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # flush_secs=30 (default 120) so a killed run loses at most half a minute of curves.
        self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=30)
        self._config_logged = False

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Add one scalar per metric at ``step``.

        Args:
            metrics: Scalar metrics; the name becomes the TensorBoard tag.
            step: The global optimizer step.
        """
        for name, value in metrics.items():
            self._writer.add_scalar(name, _to_float(value), global_step=int(step))

    def log_config(self, config: dict) -> None:
        """Write the config once as a text summary (tag ``config``).

        A resumed run would otherwise stack a second copy on the TEXT tab at every restart.

        Args:
            config: The resolved run configuration.
        """
        if self._config_logged:
            return
        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        # Indenting by 4 spaces makes TensorBoard's markdown renderer show it as a code block.
        self._writer.add_text("config", "\n".join("    " + line for line in text.splitlines()))
        self._config_logged = True

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.flush()
        self._writer.close()


class WandbLogger:
    """Log to Weights & Biases in offline mode (sync later with ``wandb sync``)."""

    def __init__(self, run_dir: str | Path, project: str, run_name: str | None = None) -> None:
        """Start an offline wandb run whose files live under ``run_dir/wandb``.

        Args:
            run_dir: The run directory; created if missing.
            project: The wandb project name.
            run_name: The display name of the run; defaults to wandb's generated name.

        Raises:
            ConfigError: If wandb is not installed.
        """
        try:
            import wandb
        except ImportError as exc:
            raise ConfigError(
                "tracking backend 'wandb' needs the wandb package; "
                "fix: pip install 'lmforge[wandb]' or drop 'wandb' from the tracking backends"
            ) from exc
        # setdefault, not assignment: a user who deliberately exported WANDB_MODE keeps it, but
        # nobody is ever prompted for an API key mid-run.
        os.environ.setdefault("WANDB_MODE", "offline")
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self._run = wandb.init(project=project, name=run_name, dir=str(run_dir), mode="offline")

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step``.

        Args:
            metrics: Scalar metrics.
            step: The global optimizer step.
        """
        self._run.log({k: _to_float(v) for k, v in metrics.items()}, step=int(step))

    def log_config(self, config: dict) -> None:
        """Store the config as the wandb run config.

        Args:
            config: The resolved run configuration.
        """
        self._run.config.update(config, allow_val_change=True)

    def close(self) -> None:
        """Finish the wandb run."""
        self._run.finish()


class MlflowLogger:
    """Log to MLflow, by default into a local file store at ``run_dir/mlruns``."""

    # MLflow rejects param values longer than this (the limit of older tracking servers).
    _MAX_PARAM_CHARS = 500

    def __init__(self, run_dir: str | Path, experiment: str, run_name: str | None = None) -> None:
        """Start an MLflow run.

        The tracking URI is ``file:<run_dir>/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set, so
        nothing leaves the machine by default.

        Args:
            run_dir: The run directory; created if missing.
            experiment: The MLflow experiment name (created if missing).
            run_name: The run name; defaults to MLflow's generated name.

        Raises:
            ConfigError: If mlflow is not installed.
        """
        try:
            import mlflow
        except ImportError as exc:
            raise ConfigError(
                "tracking backend 'mlflow' needs the mlflow package; "
                "fix: pip install 'lmforge[mlflow]' or drop 'mlflow' from the tracking backends"
            ) from exc
        run_dir = Path(run_dir).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        self._mlflow = mlflow
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = (run_dir / "mlruns").as_uri()
            # MLflow >= 3.7 refuses a file store unless this opt-out is set; the file store is
            # still supported (maintenance mode) and needs no database (sqlite would add ~7 s
            # of schema migrations to every run). Only our own default store opts out.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        self._run = mlflow.start_run(run_name=run_name)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step``.

        Args:
            metrics: Scalar metrics.
            step: The global optimizer step.
        """
        self._mlflow.log_metrics({k: _to_float(v) for k, v in metrics.items()}, step=int(step))

    def log_config(self, config: dict) -> None:
        """Log the config as params, flattened to dotted keys (``optim.lr``).

        Args:
            config: The resolved run configuration.
        """
        params = {key: str(value)[: self._MAX_PARAM_CHARS] for key, value in flatten_config(config)}
        if params:
            self._mlflow.log_params(params)

    def close(self) -> None:
        """End the MLflow run."""
        self._mlflow.end_run()


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten nested mappings into ``(dotted.key, value)`` pairs.

    Args:
        config: A possibly nested mapping.
        prefix: Key prefix for recursion; leave empty.

    Returns:
        Leaf pairs in insertion order, e.g. ``[("optim.lr", 0.001)]``.
    """
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items.extend(flatten_config(value, prefix=f"{name}."))
        else:
            items.append((name, value))
    return items


class MultiLogger:
    """Fan every call out to several loggers; with none it is a silent no-op."""

    def __init__(self, loggers: Iterable[Logger] = ()) -> None:
        """Wrap ``loggers``.

        Args:
            loggers: The loggers to forward to, in order.
        """
        self.loggers: tuple[Logger, ...] = tuple(loggers)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Forward :meth:`Logger.log` to every logger."""
        for logger in self.loggers:
            logger.log(metrics, step)

    def log_config(self, config: dict) -> None:
        """Forward :meth:`Logger.log_config` to every logger."""
        for logger in self.loggers:
            logger.log_config(config)

    def close(self) -> None:
        """Close every logger, even if one fails; re-raise the first failure afterwards."""
        first_error: BaseException | None = None
        for logger in self.loggers:
            try:
                logger.close()
            except Exception as exc:  # one broken backend must not leak the others
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def __enter__(self) -> MultiLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def build_loggers(
    run_dir: str | Path,
    backends: Sequence[str] | str,
    *,
    project: str = "lmforge",
    run_name: str | None = None,
    is_main_process: bool = True,
) -> MultiLogger:
    """Create the loggers named in ``backends`` for a run.

    Args:
        run_dir: The run directory every backend writes under.
        backends: Names from :data:`VALID_BACKENDS` (case-insensitive, duplicates ignored); a
            comma-separated string such as ``"jsonl,tensorboard"`` is accepted too.
        project: The wandb project / MLflow experiment name.
        run_name: The run's display name; defaults to the run directory's name.
        is_main_process: False on distributed ranks other than 0, which then log nothing so
            metrics are not written N times.

    Returns:
        A :class:`MultiLogger` (empty on non-main processes or when ``backends`` is empty).

    Raises:
        ConfigError: If a backend name is unknown, or an optional backend is not installed.
    """
    if isinstance(backends, str):
        backends = backends.split(",")
    names: list[str] = []
    for raw in backends:
        name = str(raw).strip().lower()
        if not name or name in names:
            continue
        if name not in VALID_BACKENDS:
            close = difflib.get_close_matches(name, VALID_BACKENDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown tracking backend {raw!r}{hint}; "
                f"fix: use any of {', '.join(VALID_BACKENDS)}"
            )
        names.append(name)
    if not is_main_process:
        return MultiLogger([])

    run_dir = Path(run_dir)
    run_name = run_name or run_dir.resolve().name
    loggers: list[Logger] = []
    try:
        for name in names:
            if name == "jsonl":
                loggers.append(JsonlLogger(run_dir))
            elif name == "tensorboard":
                loggers.append(TensorBoardLogger(run_dir))
            elif name == "wandb":
                loggers.append(WandbLogger(run_dir, project=project, run_name=run_name))
            else:
                loggers.append(MlflowLogger(run_dir, experiment=project, run_name=run_name))
    except BaseException:
        # Don't leak open files/runs of the backends that did start.
        MultiLogger(loggers).close()
        raise
    return MultiLogger(loggers)
