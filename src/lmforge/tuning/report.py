"""What a study leaves behind: trials table, best.yaml, plots, TensorBoard hparams, models."""

from __future__ import annotations

import csv
import logging
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import yaml

from lmforge.config import load_yaml
from lmforge.runs import temporary_name

log = logging.getLogger(__name__)


def load_config(run_dir: Path) -> dict[str, Any]:
    """A trial's resolved fine-tuning config, without its output directory."""
    data = load_yaml(run_dir / "config.yaml")
    data.pop("output_dir", None)
    return data


def _sort_key(trial: Any, objs: list[Any]) -> float:
    value = trial.values[0] if trial.values else None
    if value is None or math.isnan(value):
        return math.inf
    return -value if objs[0].direction == "maximize" else value


def best_trial(study: Any, objs: list[Any]) -> Any:
    """The best finished trial; with several objectives, the Pareto trial best on the first."""
    if len(objs) == 1:
        return study.best_trial
    return min(study.best_trials, key=lambda t: _sort_key(t, objs))


def keep_best_models(study: Any, objs: list[Any], keep: int) -> None:
    """Delete ``model/`` of every finished trial but the best ``keep`` (disk)."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE),
                      key=lambda t: _sort_key(t, objs))
    kept = {t.number for t in complete[:keep]}
    # An interrupted trial and the retry that resumed it share one run folder.
    kept_dirs = {t.user_attrs.get("run_dir") for t in complete[:keep]}
    for trial in trials:
        if trial.state.is_finished() and trial.number not in kept and "run_dir" in \
                trial.user_attrs and trial.user_attrs["run_dir"] not in kept_dirs:
            shutil.rmtree(Path(trial.user_attrs["run_dir"]) / "model", ignore_errors=True)


def trial_rows(trials: list[Any], objs: list[Any]) -> list[dict[str, Any]]:
    """One row per trial (best first): number, state, objective values, params, cost."""
    rows = []
    for trial in trials:
        row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name.lower()}
        for i, obj in enumerate(objs):
            row[obj.name] = trial.values[i] if trial.values else None
        if trial.state.name == "PRUNED" and trial.intermediate_values:
            row[objs[0].name] = trial.intermediate_values[max(trial.intermediate_values)]
        row.update(trial.params)
        row.update({"seed": trial.user_attrs.get("seed"), "steps": trial.user_attrs.get("steps"),
                    "train_seconds": trial.user_attrs.get("train_seconds"),
                    "run_dir": trial.user_attrs.get("run_dir")})
        rows.append(row)
    order = {"complete": 0, "pruned": 1}
    rows.sort(key=lambda r: (order.get(r["state"], 2),
                             _row_key(r.get(objs[0].name), objs[0].direction)))
    return rows


def _row_key(value: Any, direction: str) -> float:
    if value is None:
        return math.inf
    return -value if direction == "maximize" else value


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The trials as a markdown table (best first)."""
    if not rows:
        return "no trials yet"
    columns = [c for c in _columns(rows) if c != "run_dir"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_table(rows: list[dict[str, Any]], run_dir: Path) -> None:
    """``trials.csv`` (every column) and ``trials.md``."""
    columns = _columns(rows)
    tmp = temporary_name(run_dir / "trials.csv")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(run_dir / "trials.csv")
    (run_dir / "trials.md").write_text(markdown(rows) + "\n", encoding="utf-8")


def write_best_yaml(trial: Any, path: Path) -> None:
    """The best trial's full config, reproducible with ``lmforge finetune -c best.yaml``."""
    data = load_config(Path(trial.user_attrs["run_dir"]))
    header = (f"# Best trial {trial.number} of the study (values {list(trial.values)}).\n"
              f"# Reproduce: lmforge finetune -c {path.name} --output-dir runs/best\n")
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
                    encoding="utf-8")


def write_plots(study: Any, objs: list[Any], folder: Path) -> dict[str, str]:
    """PNGs of the optimisation history, parameter importances, intermediate values (and the
    Pareto front with two or three objectives), drawn with Optuna's matplotlib backend."""
    import matplotlib
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    folder.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Any] = {}
    name = objs[0].name
    target = (lambda t: t.values[0]) if len(objs) > 1 else None
    plots["history"] = lambda: ovm.plot_optimization_history(study, target=target,
                                                             target_name=name)
    plots["importances"] = lambda: ovm.plot_param_importances(study, target=target,
                                                              target_name=name)
    if len(objs) == 1:
        plots["intermediate"] = lambda: ovm.plot_intermediate_values(study)
    elif len(objs) in (2, 3):
        plots["pareto"] = lambda: ovm.plot_pareto_front(
            study, target_names=[o.name for o in objs])
    written = {}
    for key, draw in plots.items():
        try:
            # Optuna sets a global style; rc_context restores the process's own afterwards.
            with warnings.catch_warnings(), matplotlib.rc_context():
                warnings.simplefilter("ignore")
                ax = draw()
                figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                figure.set_size_inches(8, 5)
                figure.tight_layout()
                figure.savefig(folder / f"{key}.png", dpi=100)
                plt.close(figure)
            written[key] = str(folder / f"{key}.png")
        except Exception as err:  # noqa: BLE001 - too few trials for a plot is not an error
            log.info("plot %s skipped: %s", key, str(err).splitlines()[0] if str(err) else err)
        plt.close("all")
    return written


def write_hparams(rows: list[dict[str, Any]], objs: list[Any], folder: Path) -> None:
    """One TensorBoard hparams entry per finished trial (HPARAMS tab)."""
    from torch.utils.tensorboard import SummaryWriter

    if folder.exists():
        shutil.rmtree(folder)  # rewritten whole: a resumed study lists every trial once
    writer = SummaryWriter(str(folder))
    skip = {"trial", "state", "steps", "train_seconds", "run_dir", *(o.name for o in objs)}
    try:
        for row in rows:
            values = {o.name: row.get(o.name) for o in objs}
            if any(v is None for v in values.values()):
                continue
            hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                       for k, v in row.items() if k not in skip}
            writer.add_hparams(hparams, {f"hparam/{k}": float(v) for k, v in values.items()},
                               run_name=f"trial-{row['trial']:04d}")
    finally:
        writer.close()
