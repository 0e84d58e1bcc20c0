"""On-the-fly training-data augmentation (``data.augment=eda|char|eda+char``).

Each training batch gets ``aug.n_aug`` augmented copies of every example, drawn afresh every
epoch from the engine's seeded per-batch ``torch.Generator`` (so a resumed run sees exactly the
same augmented texts). Only the training split carries the raw text the augmenter needs, so
dev and test batches pass through unchanged.

EDA (Wei & Zou 2019) makes one augmented sentence with one of four operations, each changing
n = max(1, alpha * words) words:

- SR, synonym replacement: n random non-stop-words with a synonym -> a random WordNet synonym;
- RI, random insertion: n times, a synonym of a random word inserted at a random position;
- RS, random swap: n times, two random words swap places;
- RD, random deletion: every word is dropped with probability alpha (at least one is kept).

``char`` applies one DeepWordBug character edit (swap / substitute / delete / insert) to each
word of two or more letters with probability ``aug.char_rate``; ``eda+char`` does both.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import torch

from lmforge.adversarial.attacks import CharEdits
from lmforge.adversarial.resources import STOPWORDS, load_wordnet
from lmforge.errors import ConfigError

AUG_TEXT, AUG_PAIR = "_aug_text", "_aug_pair"  # raw-text columns added to the training split


class TextAugmenter:
    """EDA and / or character noise on whitespace-separated words.

    Args:
        method: ``eda``, ``char`` or ``eda+char``.
        alpha: EDA's share of changed words.
        char_rate: Probability that a word gets a character edit.
        wordnet: Synonym source for EDA (``synonyms(word) -> list``); needed for ``eda``.
    """

    def __init__(self, method: str, alpha: float = 0.1, char_rate: float = 0.1,
                 wordnet: Any = None) -> None:
        self.method, self.alpha, self.char_rate = method, alpha, char_rate
        self.wordnet, self.stopwords, self.chars = wordnet, STOPWORDS, CharEdits(1)
        if "eda" in method and wordnet is None:
            raise ConfigError("data.augment=eda needs WordNet synonyms")

    def __call__(self, text: str, rng: random.Random) -> str:
        """One augmented version of ``text``."""
        words = text.split()
        if not words:
            return text
        if "eda" in self.method:
            words = self.eda(words, rng)
        if "char" in self.method:
            words = [self.chars.edit(w, rng.choice(self.chars.OPS), rng)
                     if len(w) >= 2 and w.isalpha() and rng.random() < self.char_rate else w
                     for w in words]
        return " ".join(words)

    def _synonyms(self, word: str) -> list[str]:
        return self.wordnet.synonyms(word) if word.lower() not in self.stopwords else []

    def eda(self, words: list[str], rng: random.Random) -> list[str]:
        """One of the four EDA operations, picked uniformly."""
        words = list(words)
        n = max(1, int(self.alpha * len(words)))
        op = rng.choice(("sr", "ri", "rs", "rd"))
        if op == "sr":
            positions = [i for i, w in enumerate(words) if self._synonyms(w)]
            rng.shuffle(positions)
            for i in positions[:n]:
                words[i] = rng.choice(self._synonyms(words[i]))
        elif op == "ri":
            for _ in range(n):
                options = [s for w in words for s in self._synonyms(w)][:200]
                if not options:
                    break
                words.insert(rng.randrange(len(words) + 1), rng.choice(options))
        elif op == "rs" and len(words) >= 2:
            for _ in range(n):
                i, j = rng.sample(range(len(words)), 2)
                words[i], words[j] = words[j], words[i]
        elif op == "rd" and len(words) > 1:
            kept = [w for w in words if rng.random() > self.alpha]
            words = kept or [rng.choice(words)]
        return words


class AugmentingCollator:
    """Wraps a task collator: adds ``n_aug`` augmented copies of each training example.

    Examples without the raw-text column (dev / test) pass through unchanged.
    """

    def __init__(self, inner: Any, augmenter: TextAugmenter, tokenizer: Any, max_length: int,
                 n_aug: int = 1) -> None:
        self.inner, self.augmenter, self.tokenizer = inner, augmenter, tokenizer
        self.max_length, self.n_aug = max_length, n_aug

    def __call__(self, examples: list[dict[str, Any]],
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Augment (with ``generator``'s randomness only), tokenize the copies, collate all."""
        base = [{k: v for k, v in ex.items() if k not in (AUG_TEXT, AUG_PAIR)}
                for ex in examples]
        if not examples or AUG_TEXT not in examples[0] or generator is None:
            return self.inner(base, generator)
        rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in base[0]]
        extra = []
        for ex, row in zip(examples, base, strict=True):
            for _ in range(self.n_aug):
                text = self.augmenter(str(ex[AUG_TEXT]), rng)
                pair = self.augmenter(str(ex[AUG_PAIR]), rng) if AUG_PAIR in ex else None
                enc = self.tokenizer(text, pair, truncation=True, max_length=self.max_length)
                extra.append({**{k: enc[k] for k in keys},
                              **({"labels": row["labels"]} if "labels" in row else {})})
        return self.inner(base + extra, generator)


def with_augmentation(job: Any, raw_train: Any, encoded_train: Any, collator: Any,
                      tokenizer: Any, task: Any, settings: Any,
                      tasks: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """(training split, collator) with ``data.augment`` applied; unchanged for ``none``.

    The task says which of its input columns may be rewritten word by word without changing
    the label (:meth:`~lmforge.finetuning.task.Task.rewritable_columns`). ``tasks`` (every
    registered task by name) only names the tasks that would work in the error message: this
    module sits below the task registry and does not import it.

    Raises:
        ConfigError: The task has no such column (tags or answer spans are tied to the
            exact words), or WordNet is missing for EDA.
    """
    method = job.data.augment
    if method == "none":
        return encoded_train, collator
    columns = task.rewritable_columns(settings)
    if not columns:
        free_text = [n for n, t in (tasks or {}).items() if t.rewritable_columns(
            t.settings_class(task=n, text_column="text"))]
        raise ConfigError(f"data.augment={method} works with tasks whose labels do not depend "
                          f"on the exact words ({', '.join(free_text)}), not {job.task.name}")
    wordnet = None
    if "eda" in method:
        wordnet = load_wordnet(job.aug.wordnet)
    augmenter = TextAugmenter(method, job.aug.alpha, job.aug.char_rate, wordnet)
    if len(raw_train) != len(encoded_train):
        raise ConfigError("data.augment: the training split changed size when encoded")
    train = encoded_train.add_column(AUG_TEXT, [str(t) for t in raw_train[columns[0]]])
    if len(columns) > 1:
        train = train.add_column(AUG_PAIR, [str(t) for t in raw_train[columns[1]]])
    return train, AugmentingCollator(collator, augmenter, tokenizer, settings.max_length,
                                     job.aug.n_aug)
