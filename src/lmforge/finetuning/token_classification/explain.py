"""How ``lmforge explain`` explains an NER model: one predicted entity's tag probabilities.

:meth:`TokenClassificationTask.explain_adapter
<lmforge.finetuning.token_classification.task.TokenClassificationTask.explain_adapter>`
returns :class:`TokenClassificationAdapter`; the task-agnostic machinery is
:mod:`lmforge.explaining`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lmforge.errors import ConfigError, DataError
from lmforge.explaining.adapters import (
    Example,
    encode_inputs,
    make_example,
    required_text,
    setting,
)
from lmforge.finetuning.token_classification.data import entities_from_tags


class TokenClassificationAdapter:
    """NER: explain one predicted entity (mean probability of its words' tags)."""

    perturbation = "replace"  # the entity's positions must not move

    def __init__(self, settings: Any) -> None:
        self.labels: list[str] = list(setting(settings, "labels", []))
        self.tokens_column: str = setting(settings, "tokens_column", "tokens")
        self.text_column: str = setting(settings, "text_column", "text")
        self.max_length: int = int(setting(settings, "max_length", 128))

    def encode(self, tokenizer: Any, record: dict[str, Any], word_mode: str) -> Example:
        """Words (a tokens list, or a text split on whitespace) into an :class:`Example`."""
        if isinstance(record.get(self.tokens_column), list) and record[self.tokens_column]:
            words = [str(w) for w in record[self.tokens_column]]
        else:
            words = required_text(record, self.text_column).split()
        enc = encode_inputs(tokenizer, words, max_length=self.max_length, split_words=True)
        return make_example(record, enc, [" ".join(words)], tokenizer, "given", words)

    def resolve_targets(self, examples: list[Example], outputs: list[Any],
                        target: str | None, entity: int = 0) -> None:
        """Pick the ``entity``-th predicted entity (of type ``target`` when given)."""
        types = sorted({t.split("-", 1)[1] for t in self.labels if "-" in t})
        if target is not None and target not in types:
            raise ConfigError(f"target={target!r} is not an entity type of this model; "
                              f"types: {types}")
        for ex, logits in zip(examples, outputs, strict=True):
            probs = torch.softmax(logits.float(), -1)  # (L, C)
            words = [w.text for w in ex.words]
            firsts = [int(ex.features[w.indices[0]]) for w in ex.words]
            tags = [self.labels[int(probs[p].argmax())] for p in firsts]
            found = [e for e in entities_from_tags(words, tags)
                     if target is None or e["type"] == target]
            if entity >= len(found):
                raise DataError(f"no entity #{entity} predicted in {' '.join(words)!r} "
                                f"({len(found)} found); pick another input or entity")
            chosen = found[entity]
            span = range(chosen["start_word"], chosen["end_word"])
            pairs = [(firsts[w], self.labels.index(tags[w])) for w in span]
            ex.target = [v for pair in pairs for v in pair]
            score = float(np.mean([float(probs[p, c]) for p, c in pairs]))
            ex.prediction = {"entity": chosen["text"], "type": chosen["type"],
                             "start_word": chosen["start_word"],
                             "end_word": chosen["end_word"], "score": score,
                             "target": chosen["type"], "target_score": score}

    def logits(self, out: Any) -> torch.Tensor:
        """(B, L, C) tag logits."""
        return out.logits

    def score(self, out: Any, target: torch.Tensor) -> torch.Tensor:
        """Mean probability of the entity's tags; target (B, 2K) = (position, tag) pairs,
        padded with -1."""
        probs = torch.softmax(out.logits.float(), -1)  # (B, L, C)
        pos, tag = target[:, 0::2], target[:, 1::2]  # (B, K) each
        valid = pos >= 0
        rows = torch.arange(probs.shape[0], device=probs.device).unsqueeze(1)
        picked = probs[rows, pos.clamp(min=0), tag.clamp(min=0)] * valid  # (B, K)
        return picked.sum(1) / valid.sum(1).clamp(min=1)

    def readout_positions(self, ex: Example) -> list[int]:
        """The entity's first sub-word positions."""
        return [int(p) for p in ex.target[0::2]]
