"""Prompt templates and verbalizers, loaded from YAML.

A *template* T turns an input x into a cloze text with one slot for the answer, e.g.
``"{text} It was {mask}."``; a *verbalizer* v maps every label y to one or more words that
fill the slot (``{0: [terrible], 1: [great]}``), as in PET (Schick & Schütze, 2021) and
LM-BFF (Gao et al., 2021). File format (one file per task, several templates per task)::

    task: sst2
    labels: {0: [terrible], 1: [great]}        # the default verbalizer
    separator: "\\n\\n"                          # between in-context demonstrations
    templates:
      - "{text} It was {mask}."
      - name: review
        text: "Review: {text}\\nSentiment: {mask}"
        labels: {0: [negative], 1: [positive]} # a per-template verbalizer override

Placeholders: ``{text}`` (the input) and ``{mask}`` (the answer slot). For a masked LM the
slot becomes ``[MASK]`` token(s); for a causal LM the text before ``{mask}`` is the prompt
and the label words are scored as its continuation (text after the slot is ignored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmforge.errors import ConfigError
from lmforge.textfiles import read_text

PLACEHOLDERS = ("text", "mask")
_FIELD = re.compile(r"\{(\w*)\}")


@dataclass
class Template:
    """One prompt: the pattern and its verbalizer ``{label name: [words]}``."""

    name: str
    pattern: str
    verbalizer: dict[str, list[str]]

    @property
    def has_mask(self) -> bool:
        """Whether the pattern contains the ``{mask}`` slot."""
        return "{mask}" in self.pattern

    def split(self, text: str) -> tuple[str, str]:
        """Fill ``{text}`` and return (text before the slot, text after it).

        Without a ``{mask}`` slot the answer goes at the end (causal LMs only).
        """
        filled = self.pattern.replace("{text}", text)
        if "{mask}" not in filled:
            return filled, ""
        before, after = filled.split("{mask}", 1)
        return before, after

    def fill(self, text: str, answer: str) -> str:
        """The pattern with ``{text}`` and the slot filled (a demonstration or a cloze input)."""
        before, after = self.split(text)
        if not self.has_mask:
            sep = "" if not before or before[-1].isspace() else " "
            return f"{before}{sep}{answer}"
        return f"{before}{answer}{after}"

    def word(self, label: str) -> str:
        """The first (main) word of ``label``: what a demonstration shows as its answer."""
        return self.verbalizer[label][0]


@dataclass
class PromptSet:
    """The templates of one task, in file order."""

    task: str
    labels: list[str]
    templates: list[Template]
    separator: str = "\n\n"
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def select(self, names: list[str]) -> PromptSet:
        """Keep only the templates whose names (or 0-based indices) are in ``names``."""
        if not names:
            return self
        by_name = {t.name: t for t in self.templates}
        chosen = []
        for key in names:
            if key in by_name:
                chosen.append(by_name[key])
            elif key.isdigit() and int(key) < len(self.templates):
                chosen.append(self.templates[int(key)])
            else:
                raise ConfigError(f"template {key!r} is not in {self.source or 'the prompt file'} "
                                  f"(templates: {', '.join(by_name)}); fix template_names")
        return PromptSet(self.task, self.labels, chosen, self.separator, self.source, self.extra)

    def check_labels(self, data_labels: list[str]) -> None:
        """Every data label needs words and every verbalizer label must exist in the data."""
        for t in self.templates:
            unknown = sorted(set(t.verbalizer) - set(data_labels))
            if unknown:
                raise ConfigError(f"template {t.name!r} verbalizes label(s) {unknown} that are "
                                  f"not in the data (labels: {data_labels}); fix the labels "
                                  f"in {self.source or 'the prompt file'}")
            missing = [y for y in data_labels if y not in t.verbalizer]
            if missing:
                raise ConfigError(f"template {t.name!r} has no words for data label(s) "
                                  f"{missing}; add them under labels: in "
                                  f"{self.source or 'the prompt file'}")

    def check_masked(self) -> None:
        """A masked LM needs the ``{mask}`` slot in every template."""
        for t in self.templates:
            if not t.has_mask:
                raise ConfigError(f"template {t.name!r} has no {{mask}} slot, which a masked "
                                  f"LM needs; add {{mask}} where the label word goes")


def _words(value: Any, where: str) -> list[str]:
    words = [value] if isinstance(value, str) else value
    if not isinstance(words, list) or not words or \
            not all(isinstance(w, (str, int, float)) and str(w).strip() for w in words):
        raise ConfigError(f"{where}: label words must be a word or a non-empty list of words, "
                          f"got {value!r}")
    return [str(w).strip() for w in words]


def _verbalizer(raw: Any, where: str) -> dict[str, list[str]]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: labels must be a mapping like {{0: [terrible], 1: [great]}}")
    return {str(k): _words(v, f"{where} label {k}") for k, v in raw.items()}


def _check_pattern(pattern: Any, where: str) -> str:
    if not isinstance(pattern, str) or "{text}" not in pattern:
        raise ConfigError(f"{where}: a template must be a string containing {{text}}, got "
                          f"{pattern!r}")
    bad = [f for f in _FIELD.findall(pattern) if f not in PLACEHOLDERS]
    if bad:
        raise ConfigError(f"{where}: unknown placeholder {{{bad[0]}}}; use only {{text}} and "
                          "{mask}")
    if pattern.count("{mask}") > 1:
        raise ConfigError(f"{where}: a template has at most one {{mask}} slot")
    return pattern


def parse_prompts(raw: dict[str, Any], source: str = "") -> PromptSet:
    """Build a :class:`PromptSet` from the parsed YAML mapping (see the module docstring)."""
    where = source or "prompt file"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with labels: and templates:")
    unknown = sorted(set(raw) - {"task", "labels", "templates", "separator", "description"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; use task, labels, templates, "
                          "separator, description")
    default = _verbalizer(raw["labels"], where) if "labels" in raw else None
    entries = raw.get("templates")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: templates: must be a non-empty list")
    templates: list[Template] = []
    for i, entry in enumerate(entries):
        at = f"{where} template {i}"
        if isinstance(entry, str):
            entry = {"text": entry}
        if not isinstance(entry, dict) or set(entry) - {"name", "text", "labels"}:
            raise ConfigError(f"{at}: use a string or {{name, text, labels}}")
        pattern = _check_pattern(entry.get("text"), at)
        verbalizer = _verbalizer(entry["labels"], at) if "labels" in entry else default
        if verbalizer is None:
            raise ConfigError(f"{at}: no verbalizer; add labels: at the top or in the template")
        templates.append(Template(str(entry.get("name", f"t{i}")), pattern, verbalizer))
    names = [t.name for t in templates]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: template names must be unique, got {names}")
    labels = list(default or templates[0].verbalizer)
    return PromptSet(str(raw.get("task", Path(source).stem if source else "task")), labels,
                     templates, str(raw.get("separator", "\n\n")), source)


def load_prompts(path: str | Path) -> PromptSet:
    """Load templates and verbalizers from a YAML file.

    Args:
        path: The YAML file (format in the module docstring).

    Returns:
        The parsed, validated :class:`PromptSet`.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"prompt file {str(p)!r} does not exist; set templates=FILE.yaml "
                          "(see configs/prompts/)")
    try:
        raw = yaml.safe_load(read_text(p, ConfigError))
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0]
        raise ConfigError(f"{p}: not valid YAML ({first})") from None
    return parse_prompts(raw, str(p))
