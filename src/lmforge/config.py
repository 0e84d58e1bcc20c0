"""Typed, self-documenting configuration.

Every command's settings are a tree of dataclasses (one per concern: data, model, training,
tracking, ...). Each field carries its help text in ``metadata["help"]``, so the CLI's
``--help``, the YAML files and the validation all come from one definition (the approach of
LitGPT's ``args.py`` and PEFT's ``LoraConfig``).

A config is built from, in order of precedence: the dataclass defaults, a YAML file, then
``section.key=value`` overrides from the command line. Unknown keys are errors that suggest
the nearest valid key; values are coerced to the annotated type; each dataclass's
``__post_init__`` checks value ranges.

A section may be a *tagged union*: its class names its variants
(``variant_classes() -> {tag: class}``) and the field that picks one (``variant_tag``), and
each variant adds its own keys. ``task`` is one (``task.name=qa`` makes ``task.doc_stride`` a
key, ``task.name=classification`` does not).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from lmforge.errors import ConfigError
from lmforge.textfiles import read_text

T = TypeVar("T")


def opt(default: Any, help: str) -> Any:
    """Declare a config field with a default and its help text.

    Args:
        default: Default value; lists and dicts are copied per instance.
        help: One-sentence description shown by ``--help``.

    Returns:
        A ``dataclasses.field`` carrying the help text.
    """
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        value = default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value),
                                 metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise a :class:`ConfigError` naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        hint = _suggest(str(value), [str(c) for c in choices])
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {list(choices)}{hint}")


def _suggest(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """Return (inner type, is_optional) for ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Coerce ``value`` (from YAML or the command line) to the annotated type ``tp``."""
    inner, optional = _unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{key} cannot be empty; give it a value")
    origin = typing.get_origin(inner)
    if origin in (list, tuple, Sequence):
        (item_tp,) = typing.get_args(inner)[:1] or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()] if value else []
        if not isinstance(value, (list, tuple)):
            value = [value]
        if dataclasses.is_dataclass(item_tp):
            # A list of sections (e.g. the experiences of a continual stream): each item is
            # built and checked like a section, with its index in messages.
            return [v if isinstance(v, item_tp) else
                    from_dict(item_tp, _mapping(v, f"{key}[{i}]"), f"{key}[{i}].")
                    for i, v in enumerate(value)]
        return [_coerce(v, item_tp, key) for v in value]
    if origin is dict or inner is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping like {{old: new}}, got {value!r}")
        return dict(value)
    if inner is Any:
        return value
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if inner in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            number = float(value) if inner is float else value
            if inner is int:
                as_float = float(value)
                if not as_float.is_integer():
                    raise ValueError
                number = int(as_float)
            return number
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be {inner.__name__}, got {value!r}") from None
    if inner is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    return value


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a section (mapping), got {value!r}")
    return value


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping, rejecting unknown keys.

    Args:
        cls: The dataclass type.
        data: Nested mapping (as loaded from YAML).
        prefix: Dotted path of ``cls`` inside the root config, for messages.

    Returns:
        A validated instance of ``cls``.

    Raises:
        ConfigError: On an unknown key (with a did-you-mean hint) or a bad value.
    """
    data = dict(data or {})
    if _is_union(cls):
        cls, data = _resolve_variant(cls, data, prefix)
    hints = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in fields:
            valid = [f"{prefix}{name}" for name in fields]
            deep = [k for k, _, _ in iter_options(cls, prefix)]
            leaf = [k for k in deep if k.rsplit(".", 1)[-1] == key]
            hint = f" (did you mean {leaf[0]!r}?)" if leaf else _suggest(full, valid + deep)
            raise ConfigError(f"unknown config key {full!r}{hint}; "
                              f"see --help for the valid keys")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{full} must be a section (mapping), got {value!r}")
            # Start from this field's own default section (a root config may give a section
            # different defaults, e.g. a smaller learning rate for fine-tuning).
            section_default = _field_default(fields[key])
            base = dataclasses.asdict(section_default) if section_default is not None else {}
            if _is_union(tp) and section_default is not None and \
                    _resolve_variant(tp, {**base, **value}, f"{full}.")[0] \
                    is not type(section_default):
                base = {}  # another variant: the default section's keys are not its keys
            kwargs[key] = from_dict(tp, {**base, **value}, f"{full}.")
        else:
            kwargs[key] = _coerce(value, tp, full)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        # Messages from a section's checks usually name their key in full ("set train.epochs
        # > 0"); only a message that does not mention the section gets it as a prefix.
        message = str(err)
        raise ConfigError(f"{prefix}{message}" if prefix and prefix not in message
                          else message) from None


def _is_union(cls: type) -> bool:
    """``cls`` is a tagged union's base (its variants inherit the hook, not the role)."""
    return "variant_classes" in vars(cls)


def _field_defaults(cls: type) -> dict[str, Any]:
    return {f.name: _field_default(f) for f in dataclasses.fields(cls)}


def _resolve_variant(cls: type, data: dict[str, Any], prefix: str) -> tuple[type, dict[str, Any]]:
    """The variant of tagged-union section ``cls`` that ``data`` picks, and its keys.

    A key of another variant is an error, unless it holds that variant's default: configs
    saved before the section was split list every variant's keys at their defaults (an old
    run folder's ``config.yaml``), and those still load.
    """
    classes: Mapping[str, type] = cls.variant_classes()
    tag_key = cls.variant_tag
    tag = data.get(tag_key, _field_defaults(cls)[tag_key])
    check_choice(f"{prefix}{tag_key}", tag, list(classes))
    chosen = classes[tag]
    defaults = {name: _field_defaults(other) for name, other in classes.items()}
    kept: dict[str, Any] = {}
    for key, value in data.items():
        owners = [] if key in defaults[tag] else \
            [name for name, keys in defaults.items() if key in keys]
        if not owners:
            kept[key] = value  # its own key, or unknown (from_dict names the nearest)
        elif any(defaults[name][key] != value for name in owners):
            raise ConfigError(f"{prefix}{key} is an option of {prefix}{tag_key}="
                              f"{' / '.join(owners)}, not of {prefix}{tag_key}={tag}; "
                              f"remove it or set {prefix}{tag_key}")
    return chosen, kept


def to_dict(config: Any) -> dict[str, Any]:
    """Convert a config dataclass tree to plain nested dicts (YAML-serializable)."""
    return dataclasses.asdict(config)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def iter_options(cls: type, prefix: str = "",
                 instance: Any = None) -> Iterator[tuple[str, Any, str]]:
    """Yield ``(dotted key, default, help)`` for every leaf option of ``cls``.

    Defaults come from ``instance`` when given (a section's default inside a root config).
    """
    if _is_union(cls):
        yield from _union_options(cls, prefix, instance)
        return
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        default = getattr(instance, f.name) if instance is not None else _field_default(f)
        if dataclasses.is_dataclass(tp):
            yield from iter_options(tp, f"{prefix}{f.name}.", default)
            continue
        yield f"{prefix}{f.name}", default, f.metadata.get("help", "")


def _union_options(cls: type, prefix: str, instance: Any) -> Iterator[tuple[str, Any, str]]:
    """Every key of every variant once, its help saying which variants take it."""
    classes: Mapping[str, type] = cls.variant_classes()
    tag_key = cls.variant_tag
    seen: dict[str, tuple[Any, str, list[str]]] = {}
    for tag, variant in classes.items():
        source = instance if type(instance) is variant else None
        for key, default, help_text in iter_options(variant, prefix, source):
            if key in seen:
                seen[key][2].append(tag)
            else:
                seen[key] = (default, help_text, [tag])
    for key, (default, help_text, tags) in seen.items():
        if key != f"{prefix}{tag_key}" and len(tags) < len(classes):
            help_text = f"[{prefix}{tag_key}={' / '.join(tags)}] {help_text}"
        yield key, default, help_text


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """Turn ``["train.lr=1e-3", "data.path=x.txt"]`` into a nested dict.

    Values are parsed as YAML scalars (so ``1e-3`` is a float and ``true`` a bool); the
    dataclass types then coerce them.
    """
    nested: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} is not key=value; write e.g. train.lr=3e-4")
        key, raw = pair.split("=", 1)
        key = key.strip().lstrip("-")
        if not key:
            raise ConfigError(f"override {pair!r} has an empty key")
        try:
            # A bare "-" is stdin (input=-), not YAML's list of one null.
            value = yaml.safe_load(raw) if raw.strip() not in ("", "-") else raw.strip()
        except yaml.YAMLError:
            value = raw
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {pair!r} conflicts with an earlier value of {part}")
        node[parts[-1]] = value
    return nested


def nested_strings(value: Any) -> list[str]:
    """Every string inside ``value`` (a string, or mappings and lists holding them), in order."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in nested_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in nested_strings(v)]
    return []


def merge_dicts(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``, section by section (nested mappings are merged)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_dicts(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict, with a clear error for a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; check the --config path")
    try:
        data = yaml.safe_load(read_text(path, ConfigError)) or {}
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}; fix its syntax") \
            from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
    return data


def build_config(cls: type[T], yaml_path: str | Path | None = None,
                 overrides: Sequence[str] = (), base: Mapping[str, Any] | None = None) -> T:
    """Resolve a config: defaults < ``base`` < YAML file < ``key=value`` overrides.

    Args:
        cls: Root config dataclass of the command.
        yaml_path: Optional YAML file.
        overrides: ``section.key=value`` strings.
        base: Optional mapping applied before the YAML file (e.g. a resumed run's config).

    Returns:
        The validated config.
    """
    data: dict[str, Any] = dict(base or {})
    if yaml_path:
        data = merge_dicts(data, load_yaml(yaml_path))
    data = merge_dicts(data, parse_overrides(overrides))
    return from_dict(cls, data)


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (written to a temp file, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)  # one per process (DDP ranks)
    tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True),
                   encoding="utf-8")
    tmp.replace(path)


def temporary_name(path: Path) -> Path:
    """A sibling of ``path`` that no other process writes (``name.<pid>.tmp``).

    Two ranks that both write the same file must not share a temporary: the first
    rename would take the other's file away before it is renamed.
    """
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")
