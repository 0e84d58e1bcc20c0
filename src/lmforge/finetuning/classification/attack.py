"""What ``lmforge attack`` attacks in a classifier: the class probabilities of the first text.

:meth:`ClassificationTask.attack_target
<lmforge.finetuning.classification.task.ClassificationTask.attack_target>` returns
:class:`ClassificationTarget`; the attacks themselves are task-agnostic
(:mod:`lmforge.adversarial`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lmforge.adversarial.targets import settings_dict
from lmforge.errors import DataError


class ClassificationTarget:
    """Single-label classification: perturb the first text, keep the pair text fixed.

    Args:
        predictor: A loaded :class:`~lmforge.predictor.Predictor`.
        batch_size: Texts per forward pass.
    """

    def __init__(self, predictor: Any, batch_size: int = 64) -> None:
        info = settings_dict(predictor)
        self.predictor, self.batch_size = predictor, batch_size
        self.labels: list[str] = list(info["labels"])
        self.text_column: str = info.get("text_column") or "text"
        self.pair_column: str | None = info.get("text_pair_column")
        self.label_column: str = info.get("label_column") or "label"
        self.max_length: int = int(info.get("max_length") or 128)
        self.pairs: list[str] = []
        self.forward_calls = 0

    @property
    def vocab_chars(self) -> list[str]:
        """Single-character tokens of the model's vocabulary (for the Chinese attack)."""
        return [t for t in self.predictor.tokenizer.get_vocab() if len(t) == 1]

    def label_id(self, value: Any) -> int:
        """The label id of a gold label as it appears in the data."""
        name = str(value)
        if name not in self.labels:
            raise DataError(f"label {name!r} is not one of the model's labels {self.labels}")
        return self.labels.index(name)

    def read(self, rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[int]]:
        """Texts and label ids of labeled rows; remembers the pair texts of sentence pairs."""
        for column in (self.text_column, self.label_column, self.pair_column):
            if column and rows and column not in rows[0]:
                raise DataError(f"column {column!r} not in the attacked data (columns: "
                                f"{', '.join(rows[0])}); set text_column / label_column")
        texts = [str(r[self.text_column]) for r in rows]
        self.pairs = [str(r[self.pair_column]) for r in rows] if self.pair_column else []
        return texts, [self.label_id(r[self.label_column]) for r in rows]

    @torch.no_grad()
    def predict_proba(self, texts: list[str], owners: list[int] | None = None) -> np.ndarray:
        """Class probabilities (N, C), batched by similar length; ``owners`` picks the pair
        text of each input (sentence-pair models)."""
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        model, tokenizer = self.predictor.model, self.predictor.tokenizer
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = [texts[i] for i in idx]
            pairs = [self.pairs[owners[i] if owners else i] for i in idx] if self.pairs \
                else None
            enc = tokenizer(batch, pairs, truncation=True, max_length=self.max_length,
                            padding=True, return_tensors="pt")
            with self.predictor.autocast():
                logits = model(**enc).logits.float()
            out[idx] = torch.softmax(logits, -1).numpy()
            self.forward_calls += 1
        return out
