"""A stream of experiences: load, check against the scenario, encode into one label space.

Every experience is encoded by its task's own ``setup`` / ``encode`` (columns, labels), then
its label ids are mapped into the stream's global label space and each row gets the
experience index ``task_ids``:

- ``task``: the global labels are ``"<task_id>:<label>"``, one contiguous slice per
  experience (a head per task, as output units of one linear layer);
- ``class``: the union of the (disjoint) label sets, in order of appearance (one growing
  head: classes of later experiences are masked until their experience starts);
- ``domain``: the one shared label set.

``class_masks(upto)`` gives the (E, C) boolean matrix of the classes each experience's rows
may predict once experiences ``0..upto`` have started.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch

from lmforge.continual.settings import ContinualJob, ExperienceConfig
from lmforge.data.corpus import load_corpus, sample_rows
from lmforge.errors import ConfigError, DataError
from lmforge.finetuning.settings import FinetuneJob


@dataclass
class Experience:
    """One encoded experience.

    Attributes:
        index: Position in the stream.
        name: Its name.
        task_id: Task identity (``scenario=task``), else None.
        settings: The task's own settings (local labels, columns).
        classes: Global class ids of its labels, in local label order.
        train: Encoded training rows (global ``labels``, ``task_ids``).
        eval: Encoded evaluation rows.
    """

    index: int
    name: str
    task_id: str | None
    settings: Any
    classes: list[int]
    train: datasets.Dataset
    eval: datasets.Dataset


@dataclass
class Stream:
    """The experiences in order and the global label space."""

    scenario: str
    experiences: list[Experience]
    labels: list[str]
    settings: Any = field(default=None)

    @property
    def size(self) -> int:
        """Number of experiences."""
        return len(self.experiences)

    def train_examples(self) -> int:
        """Training rows of the whole stream."""
        return sum(len(e.train) for e in self.experiences)

    def class_masks(self, upto: int) -> torch.Tensor:
        """(E, C) bool: the classes experience e's rows may predict once 0..upto started.

        Task-incremental: row e is its own slice (the task id picks the head). Class- and
        domain-incremental: every row is the classes seen so far (all, for domain).
        """
        n, c = self.size, len(self.labels)
        masks = torch.zeros(n, c, dtype=torch.bool)
        if self.scenario == "task":
            for e in self.experiences:
                masks[e.index, e.classes] = True
        else:
            seen = sorted({k for e in self.experiences[:upto + 1] for k in e.classes})
            masks[:, seen] = True
        return masks

    def distill_groups(self, upto: int) -> list[list[int]]:
        """Class groups whose old outputs LwF preserves while experience ``upto`` trains:
        each earlier task's slice (task), the classes seen before (class), all (domain)."""
        before = self.experiences[:upto]
        if not before:
            return []
        if self.scenario == "task":
            return [e.classes for e in before]
        if self.scenario == "class":
            return [sorted({k for e in before for k in e.classes})]
        return [list(range(len(self.labels)))]


def _experience_job(job: ContinualJob, exp: ExperienceConfig) -> FinetuneJob:
    # Caps are applied after the label filter (see _load_raw), so load everything here.
    data = dataclasses.replace(exp.data, max_examples=None, max_eval_examples=None)
    return FinetuneJob(data=data, model=job.model, task=exp.task, train=job.train)


def _cap(*values: int | None) -> int | None:
    given = [v for v in values if v is not None]
    return min(given) if given else None


def _load_raw(job: ContinualJob, exp: ExperienceConfig, where: str) -> dict[str, Any]:
    fjob = _experience_job(job, exp)
    raw = load_corpus(fjob.data, seed=job.train.seed)
    split = job.eval_split
    if split not in raw:
        fix = "data.validation_ratio > 0" if split == "validation" else "data.test_ratio > 0"
        raise DataError(f"{where} ({exp.name}) has no {split} split to evaluate; give the file "
                        f"or set {where}.{fix}")
    label_column = exp.task.label_column
    out = {}
    for name, part in (("train", raw["train"]), ("eval", raw[split])):
        if exp.labels and label_column in part.column_names:
            keep = set(exp.labels)
            part = part.filter(lambda row, keep=keep: str(row[label_column]) in keep,
                               desc=f"{exp.name}: labels {sorted(keep)}")
        if len(part) == 0:
            why = f" with labels {exp.labels}" if exp.labels else ""
            raise DataError(f"{where} ({exp.name}) has an empty {name} split{why}; check its "
                            "data.path and labels")
        cap = _cap(exp.data.max_examples, job.max_train_examples) if name == "train" else \
            _cap(exp.data.max_eval_examples or exp.data.max_examples, job.max_eval_examples)
        if cap is not None and len(part) > cap:
            part = sample_rows(part, cap, job.train.seed)
        out[name] = part
    return out


def _check_labels(scenario: str, names: list[str], label_sets: list[list[str]]) -> None:
    if scenario == "class":
        for i in range(len(names)):
            for j in range(i):
                shared = sorted(set(label_sets[i]) & set(label_sets[j]))
                if shared:
                    raise ConfigError(
                        f"scenario=class needs disjoint labels, but experiences "
                        f"{names[j]!r} and {names[i]!r} share {shared[:5]}; use "
                        "scenario=task (with task ids) or split the labels with "
                        "experiences[i].labels")
    if scenario == "domain":
        first = set(label_sets[0])
        for name, labels in zip(names[1:], label_sets[1:], strict=True):
            if set(labels) != first:
                raise ConfigError(
                    f"scenario=domain needs the same labels in every experience; "
                    f"{names[0]!r} has {sorted(first)[:6]} but {name!r} has "
                    f"{sorted(labels)[:6]}; use scenario=task or class")


def load_stream(job: ContinualJob, task: Any, tokenizer: Any) -> Stream:
    """Load, check and encode every experience of ``job`` into one label space.

    Raises:
        ConfigError: The experiences disagree with the scenario (overlapping labels in
            class-incremental, different labels in domain-incremental).
        DataError: An experience is empty or lacks the split to evaluate.
    """
    raws, local = [], []
    for i, exp in enumerate(job.experiences):
        where = f"experiences[{i}]"
        if exp.task.name != job.experiences[0].task.name:
            raise ConfigError(f"{where}.task.name={exp.task.name} differs from the first "
                              "experience's; a stream trains one model and one task type")
        raw = _load_raw(job, exp, where)
        settings = task.setup(_experience_job(job, exp), raw["train"])
        if getattr(settings, "multi_label", False):
            raise ConfigError(f"{where}.task.multi_label: a continual stream learns "
                              "single-label experiences; drop multi_label")
        raws.append(raw)
        local.append(settings)
    names = [e.name for e in job.experiences]
    label_sets = [list(task.label_names(s) or []) for s in local]
    _check_labels(job.scenario, names, label_sets)
    if job.scenario == "task":
        labels = [f"{exp.task_id}:{name}" for exp, ls in zip(job.experiences, label_sets,
                                                             strict=True) for name in ls]
        classes, start = [], 0
        for ls in label_sets:
            classes.append(list(range(start, start + len(ls))))
            start += len(ls)
    else:
        labels = []
        for ls in label_sets:
            labels += [n for n in ls if n not in labels]
        if job.scenario == "domain":
            labels = label_sets[0]
        classes = [[labels.index(n) for n in ls] for ls in label_sets]
    experiences = []
    for i, (exp, raw, settings) in enumerate(zip(job.experiences, raws, local, strict=True)):
        mapping = np.asarray(classes[i], dtype=np.int64)

        def to_global(batch: dict[str, list[Any]], index: int = i,
                      table: np.ndarray = mapping) -> dict[str, Any]:
            return {"labels": table[np.asarray(batch["labels"], dtype=np.int64)].tolist(),
                    "task_ids": [index] * len(batch["labels"])}

        parts = {}
        for split in ("train", "eval"):
            encoded = task.encode(raw[split], tokenizer, settings, f"{exp.name}/{split}")
            parts[split] = encoded.map(to_global, batched=True, desc=f"{exp.name}: label ids")
        experiences.append(Experience(i, exp.name, exp.task_id, settings, classes[i],
                                      parts["train"], parts["eval"]))
    union = dataclasses.replace(local[0], labels=labels, thresholds=None)
    return Stream(job.scenario, experiences, labels, union)

