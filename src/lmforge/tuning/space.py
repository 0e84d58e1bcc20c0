"""The search space: a YAML mapping from config keys to distributions.

::

    train.lr: {log_uniform: [1.0e-5, 3.0e-4]}
    train.batch_size: [16, 32]                  # a list: categorical choices
    train.warmup_ratio: {uniform: [0.0, 0.2]}
    train.epochs: {int: [1, 4]}                 # int / log_int, optional step
    peft.method: [none, lora]
    peft.r: {int: [4, 16], when: {peft.method: lora}}   # only sampled when the condition holds

Parameters are sampled in file order (define-by-run), so a ``when`` may only name a key that
comes earlier. Every key is checked against the fine-tuning config (with the CLI's did-you-mean)
and every bound and choice is built into a full config once, before the first trial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lmforge.config import _suggest, from_dict, iter_options, load_yaml, merge_dicts
from lmforge.errors import ConfigError
from lmforge.finetuning.settings import FinetuneJob

KINDS = ("uniform", "log_uniform", "int", "log_int", "choice")
# Keys the tuner sets itself: searching them would be meaningless or break the study.
RESERVED = ("output_dir", "train.metric_for_best", "train.greater_is_better")


@dataclass
class Param:
    """One searched key.

    Attributes:
        key: Dotted config key, e.g. ``train.lr``.
        kind: One of :data:`KINDS`.
        low, high: Bounds for the numeric kinds.
        choices: The values of a ``choice``.
        step: Grid step of an ``int`` / ``uniform`` (None: continuous / step 1).
        when: Conditions ``{key: [allowed values]}`` on earlier keys.
    """

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: list[Any] = field(default_factory=list)
    step: float | None = None
    when: dict[str, list[Any]] = field(default_factory=dict)

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether every condition holds for the values sampled so far."""
        return all(k in values and values[k] in allowed for k, allowed in self.when.items())

    def suggest(self, trial: Any) -> Any:
        """Sample this key from an Optuna trial."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, self.choices)
        if self.kind in ("int", "log_int"):
            return trial.suggest_int(self.key, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.kind == "log_int")
        return trial.suggest_float(self.key, self.low, self.high, step=self.step,
                                   log=self.kind == "log_uniform")

    def grid(self) -> list[Any]:
        """Every value of this key, for the grid sampler."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind in ("int", "log_int"):
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.kind == "uniform" and self.step:
            count = int(round((self.high - self.low) / self.step)) + 1
            return [round(self.low + i * self.step, 12) for i in range(count)]
        raise ConfigError(f"tune.sampler=grid needs discrete values, but {self.key} is "
                          f"{self.kind}; give a list of choices or a step")

    def extremes(self) -> list[Any]:
        """Values that must each build a valid config (bounds and every choice)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind in ("int", "log_int"):
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"search space: {key} bounds must be numbers, got {value!r}")
    try:
        number = float(value)  # YAML reads 1e-5 (no dot) as a string
    except ValueError:
        raise ConfigError(f"search space: {key} bounds must be numbers, got {value!r}") \
            from None
    if not math.isfinite(number):
        raise ConfigError(f"search space: {key} bound {value!r} is not finite")
    return number


def _parse_param(key: str, spec: Any) -> Param:
    if isinstance(spec, list):
        spec = {"choice": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"search space: {key}: {spec!r} is a fixed value, not a range; give "
                          "a list of choices or {uniform: [low, high]} (fixed values go in "
                          "the fine-tuning config)")
    spec = dict(spec)
    when = spec.pop("when", {}) or {}
    step = spec.pop("step", None)
    kinds = [k for k in spec if k in KINDS]
    unknown = [k for k in spec if k not in KINDS]
    if unknown:
        raise ConfigError(f"search space: {key} has an unknown field {unknown[0]!r}"
                          f"{_suggest(unknown[0], [*KINDS, 'when', 'step'])}; use one of "
                          f"{list(KINDS)} plus optional step / when")
    if len(kinds) != 1:
        raise ConfigError(f"search space: {key} needs exactly one of {list(KINDS)}")
    kind = kinds[0]
    value = spec[kind]
    if not isinstance(when, Mapping):
        raise ConfigError(f"search space: {key}: when must be a mapping like "
                          "{peft.method: lora}")
    conditions = {str(k): list(v) if isinstance(v, list) else [v] for k, v in when.items()}
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise ConfigError(f"search space: {key} has no choices; list at least one value")
        if any(isinstance(v, (dict, list)) for v in value):
            raise ConfigError(f"search space: {key} choices must be plain values "
                              "(numbers, strings, true/false, null)")
        if len({repr(v) for v in value}) != len(value):
            raise ConfigError(f"search space: {key} lists a choice twice: {value}")
        return Param(key, kind, choices=list(value), when=conditions)
    if not isinstance(value, list) or len(value) != 2:
        raise ConfigError(f"search space: {key}: {kind} takes [low, high], got {value!r}")
    low, high = (_number(key, v) for v in value)
    if low > high:
        raise ConfigError(f"search space: {key} has low {low:g} > high {high:g}; swap them")
    if kind.startswith("log") and low <= 0:
        raise ConfigError(f"search space: {key} is {kind} but low={low:g}; log ranges need "
                          "low > 0")
    if kind in ("int", "log_int") and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"search space: {key} is {kind} but its bounds are not integers")
    if step is not None:
        step = _number(key, step)
        if step <= 0 or kind.startswith("log"):
            raise ConfigError(f"search space: {key}: step must be > 0 and is not allowed with "
                              "log ranges")
    return Param(key, kind, low, high, step=step, when=conditions)


def _valid_keys() -> list[str]:
    return [key for key, _, _ in iter_options(FinetuneJob)]


def parse_space(data: Mapping[str, Any]) -> list[Param]:
    """Parse and check a search space mapping (see the module doc).

    Raises:
        ConfigError: An empty space, an unknown key (with did-you-mean), a bad range, or a
            condition on a key that is not searched earlier or can never hold.
    """
    if "space" in data and isinstance(data["space"], Mapping) and len(data) == 1:
        data = data["space"]
    if not data:
        raise ConfigError("the search space is empty; list at least one key, e.g. "
                          "train.lr: {log_uniform: [1e-5, 3e-4]}")
    valid = _valid_keys()
    params: list[Param] = []
    for raw_key, spec in data.items():
        key = str(raw_key)
        if key in RESERVED:
            raise ConfigError(f"search space: {key} is set by the tuner and cannot be searched "
                              "(the objective picks the best checkpoint)")
        if key not in valid:
            leaf = [k for k in valid if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
            hint = f" (did you mean {leaf[0]!r}?)" if leaf else _suggest(key, valid)
            raise ConfigError(f"search space: unknown config key {key!r}{hint}; see "
                              "`lmforge finetune --help` for the valid keys")
        param = _parse_param(key, spec)
        earlier = {p.key: p for p in params}
        for cond_key, allowed in param.when.items():
            if cond_key not in earlier:
                raise ConfigError(f"search space: {key} depends on {cond_key!r}, which is not "
                                  "searched before it; list that key first")
            possible = earlier[cond_key].extremes() if earlier[cond_key].kind == "choice" \
                else None
            if possible is not None and not any(v in possible for v in allowed):
                raise ConfigError(f"search space: {key} needs {cond_key} in {allowed}, but "
                                  f"{cond_key} is one of {possible}; the condition never holds")
        params.append(param)
    return params


def load_space(path: str) -> list[Param]:
    """Read and check the search space file ``path``."""
    if not path:
        raise ConfigError("no search space: pass -s space.yaml (or tune.space=FILE)")
    return parse_space(load_yaml(path))


def nested(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 1e-4}`` -> ``{"train": {"lr": 1e-4}}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def check_against(params: list[Param], base: Mapping[str, Any]) -> None:
    """Build the base config with each bound and choice of each key, before any trial runs.

    Catches values the fine-tuning config rejects (``train.batch_size: [0, 16]``,
    ``train.warmup_ratio: {uniform: [0, 1.5]}``) with the config's own message.
    """
    for param in params:
        for value in param.extremes():
            try:
                from_dict(FinetuneJob, merge_dicts(dict(base), nested({param.key: value})))
            except ConfigError as err:
                raise ConfigError(f"search space: {param.key}={value!r} is not a valid "
                                  f"value ({err})") from None


def sample(params: list[Param], trial: Any) -> dict[str, Any]:
    """Sample every active key from ``trial``; returns ``{dotted key: value}``."""
    values: dict[str, Any] = {}
    for param in params:
        if param.active(values):
            values[param.key] = param.suggest(trial)
    return values


def grid_space(params: list[Param]) -> dict[str, list[Any]]:
    """The grid sampler's search space (conditional keys are not supported on a grid)."""
    if any(p.when for p in params):
        raise ConfigError("tune.sampler=grid cannot search conditional keys (when:); use tpe "
                          "or random, or list the combinations as separate studies")
    return {p.key: p.grid() for p in params}
