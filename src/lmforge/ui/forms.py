"""The Train tab's form, generated from a command's config dataclass, and its launch.

The form's fields are :func:`lmforge.config.iter_options` of the command's root config (the
CLI's options: same keys, defaults and help texts), grouped by section. What the user
changed becomes ``key=value`` overrides, validated by :func:`lmforge.config.build_config`
exactly as the CLI validates them; the preview shows the equivalent command line and the
resolved YAML, and Start launches that same argument list (:mod:`lmforge.ui.jobs`).
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lmforge.config import build_config, iter_options, to_dict
from lmforge.errors import ConfigError

HIDDEN = frozenset({"output_dir"})
"""Keys the form does not show: the UI picks the run folder (under its root)."""

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, (list, dict)):
        return "yaml"
    return "text"


def as_text(value: Any) -> str:
    """A default as the form shows it (and as a ``key=value`` override would write it)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def form_spec(config: type) -> list[dict[str, Any]]:
    """The form of ``config``: ``[{"section", "options": [{"key", "default", "help",
    "kind"}]}]``, sections in the config's order, top-level keys first."""
    sections: dict[str, list[dict[str, Any]]] = {}
    for key, default, help_text in iter_options(config):
        if key in HIDDEN:
            continue
        section = key.split(".")[0] if "." in key else ""
        sections.setdefault(section, []).append(
            {"key": key, "default": as_text(default), "help": help_text,
             "kind": _kind(default)})
    return [{"section": name, "options": options} for name, options in sections.items()]


def overrides(config: type, values: Mapping[str, Any]) -> list[str]:
    """``key=value`` strings for the values that differ from their defaults.

    Raises:
        ConfigError: A key the config does not have (or one the UI sets itself).
    """
    defaults = {key: as_text(default) for key, default, _ in iter_options(config)}
    out = []
    for key, value in values.items():
        if key not in defaults or key in HIDDEN:
            raise ConfigError(f"unknown option {key!r} for this command")
        text = as_text(value) if not isinstance(value, str) else value.strip()
        if text != defaults[key]:
            out.append(f"{key}={text}")
    return out


def default_name(command: str) -> str:
    """A fresh run folder name: ``finetune-20260101-120000``."""
    return f"{command.replace(' ', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"


def preview(command: str, config: type, values: Mapping[str, Any],
            name: str) -> dict[str, Any]:
    """The validated config of a form: the command line, its argv (and the ``key=value``
    overrides in it) and the resolved YAML.

    Args:
        command: The registered command (``finetune``).
        config: Its root config class.
        values: The form's ``{key: value}`` (only changed values matter).
        name: The run folder's name under the root.

    Raises:
        ConfigError: A bad name, an unknown key, or the config's own validation.
    """
    if not NAME.match(name):
        raise ConfigError(f"run name {name!r}: use letters, digits, '.', '_' and '-'")
    pairs = overrides(config, values)
    argv = [*command.split(), f"--output-dir={name}", *pairs]
    job = build_config(config, overrides=[*pairs, f"output_dir={name}"])
    return {"argv": argv, "overrides": pairs, "command": "lmforge " + shlex.join(argv),
            "yaml": yaml.safe_dump(to_dict(job), sort_keys=False, allow_unicode=True),
            "config": to_dict(job), "name": name}


def run_folder(root: Path, name: str) -> Path:
    """``root / name`` for a new run, refused when it exists."""
    folder = root / name
    if folder.exists() or folder.is_symlink():
        raise ConfigError(f"run folder {name!r} already exists under the root; pick another "
                          "name")
    return folder
