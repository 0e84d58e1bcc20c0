"""Black-box adversarial attacks on text classifiers: greedy search by word importance.

Every attack is a *transformation* (how one word may be perturbed) plus constraints, run by one
search (:func:`greedy_attack`), the "greedy with word importance ranking" of DeepWordBug (Gao
et al. 2018), PWWS (Ren et al. 2019) and TextFooler (Jin et al. 2020):

1. Rank the words an attack may touch by their leave-one-out importance,
   I(w_i) = p_y(x) - p_y(x without w_i).
2. Walk down the ranking; at each word, query all its candidate replacements, keep the one
   that lowers p_y the most, and stop as soon as the prediction leaves y (success), when the
   budget of changed words is spent, or when the ranking ends (failure).

The queries of all examples still under attack are gathered into shared batches (one model
call scores the candidates of many examples), which is where attack libraries that score one
candidate list per example lose most of their time.

Transformations:
- :class:`CharEdits` (DeepWordBug): swap two neighbouring letters, substitute, delete or insert
  one letter at a random position of the word.
- :class:`SynonymSwap` (PWWS / TextFooler style): WordNet synonyms whose GloVe cosine
  similarity to the word is at least ``min_similarity``, most similar first.
- :class:`ChineseCharSwap`: replace one character of a (jieba) word by a homophone (same
  pinyin without tone, via ``pypinyin``) or, without pypinyin, by a random character of the
  model's vocabulary; homophones are the typos a pinyin input method makes.
"""

from __future__ import annotations

import logging
import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmforge.adversarial.resources import STOPWORDS, WordNet, WordVectors

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_ZH_STOP = ("的 了 是 在 和 也 就 都 而 及 与 着 或 一个 没有 我们 你们 他们 这 那 "
            "之 很 吗 呢 吧 啊 把 被 让 给 对 从 到 又 还")
ZH_STOPWORDS = frozenset(_ZH_STOP.split())


def english_words(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of ``text`` (letters / digits, inner apostrophes)."""
    return [m.span() for m in _WORD.finditer(text)]


def chinese_words(text: str) -> list[tuple[int, int]]:
    """Spans of the jieba words of ``text`` that hold at least one CJK character."""
    import jieba

    logging.getLogger("jieba").setLevel(logging.WARNING)
    return [(start, end) for word, start, end in jieba.tokenize(text) if _CJK.search(word)]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert / delete / substitute, cost 1 each)."""
    if a == b:
        return 0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


class CharEdits:
    """DeepWordBug's four character edits; ``k`` candidates cycle through them in order."""

    name = "char"
    OPS = ("swap", "substitute", "delete", "insert")

    def __init__(self, k: int = 4, letters: str = string.ascii_lowercase) -> None:
        self.k, self.letters = k, letters

    def eligible(self, word: str) -> bool:
        """Words of two or more letters (a one-letter edit of "a" is no typo)."""
        return len(word) >= 2

    def edit(self, word: str, op: str, rng: random.Random) -> str:
        """Apply edit ``op`` at a random position of ``word``."""
        n = len(word)
        if op == "swap" and n >= 2:
            i = rng.randrange(n - 1)
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        if op == "substitute":
            i = rng.randrange(n)
            return word[:i] + rng.choice(self.letters.replace(word[i].lower(), "")) + word[i + 1:]
        if op == "delete" and n >= 2:
            i = rng.randrange(n)
            return word[:i] + word[i + 1:]
        i = rng.randrange(n + 1)
        return word[:i] + rng.choice(self.letters) + word[i:]

    def candidates(self, word: str, rng: random.Random) -> list[str]:
        """Up to ``k`` distinct edited versions of ``word``."""
        out: dict[str, None] = {}
        for t in range(self.k * 3):  # a few retries when an edit changes nothing
            if len(out) >= self.k:
                break
            cand = self.edit(word, self.OPS[t % len(self.OPS)], rng)
            if cand != word:
                out[cand] = None
        return list(out)


class SynonymSwap:
    """WordNet synonyms under a GloVe cosine-similarity threshold, most similar first."""

    name = "synonym"

    def __init__(self, wordnet: WordNet, vectors: WordVectors, k: int = 20,
                 min_similarity: float = 0.5) -> None:
        self.wordnet, self.vectors = wordnet, vectors
        self.k, self.min_similarity = k, min_similarity
        self._cache: dict[str, list[str]] = {}

    def eligible(self, word: str) -> bool:
        """Words with at least one acceptable synonym."""
        return bool(self._synonyms(word.lower()))

    def _synonyms(self, word: str) -> list[str]:
        if word not in self._cache:
            options = self.wordnet.synonyms(word)
            sims = self.vectors.similarity(word, options) if options else np.zeros(0)
            order = np.argsort(-sims, kind="stable")
            self._cache[word] = [options[i] for i in order
                                 if sims[i] >= self.min_similarity][: self.k]
        return self._cache[word]

    def candidates(self, word: str, rng: random.Random) -> list[str]:
        """The synonyms, in the word's case (title case kept)."""
        found = self._synonyms(word.lower())
        if word[:1].isupper():
            return [s.capitalize() for s in found]
        return found


class ChineseCharSwap:
    """One character of a Chinese word replaced by a homophone or a random vocabulary char."""

    name = "zh-char"

    def __init__(self, vocab_chars: Sequence[str], k: int = 4) -> None:
        self.k = k
        self.chars = sorted(c for c in vocab_chars if len(c) == 1 and _CJK.match(c))
        self.homophones: dict[str, list[str]] | None = None
        try:
            from pypinyin import Style, lazy_pinyin
        except ImportError:
            self.source = "random vocabulary characters (pip install pypinyin for homophones)"
            return
        groups: dict[str, list[str]] = {}
        for char in self.chars:
            groups.setdefault(lazy_pinyin(char, style=Style.NORMAL)[0], []).append(char)
        self.homophones = {c: [o for o in groups[p] if o != c] for p, cs in groups.items()
                           for c in cs}
        self.source = "homophones (pypinyin), within the model's vocabulary"

    def eligible(self, word: str) -> bool:
        """Words with a CJK character."""
        return bool(_CJK.search(word))

    def candidates(self, word: str, rng: random.Random) -> list[str]:
        """Up to ``k`` words with one character replaced."""
        positions = [i for i, c in enumerate(word) if _CJK.match(c)]
        if self.homophones is not None:  # characters with a homophone first
            positions = [i for i in positions if self.homophones.get(word[i])] or positions
        out: dict[str, None] = {}
        for _ in range(self.k * 4):
            if len(out) >= self.k or not positions:
                break
            i = rng.choice(positions)
            pool = self.homophones.get(word[i]) if self.homophones is not None else None
            if not pool:
                pool = self.chars
            if not pool:
                break
            out[word[:i] + rng.choice(pool) + word[i + 1:]] = None
        out.pop(word, None)
        return list(out)


@dataclass
class AttackResult:
    """One example's attack: ``status`` is success, failed or skipped (already wrong)."""

    status: str
    original: str
    perturbed: str
    label: int
    original_pred: int
    original_score: float
    perturbed_pred: int
    perturbed_score: float
    num_words: int
    changed: list[int] = field(default_factory=list)
    words: list[tuple[str, str]] = field(default_factory=list)  # (original, perturbed)
    queries: int = 0


@dataclass
class _State:
    index: int
    text: str
    spans: list[tuple[int, int]]
    current: list[str]
    label: int
    prob: float
    original_prob: float = 0.0
    order: list[int] = field(default_factory=list)
    pointer: int = 0
    changed: list[int] = field(default_factory=list)
    edits: int = 0
    queries: int = 1
    result: AttackResult | None = None

    def render(self, replace: dict[int, str] | None = None) -> str:
        """The text with the current words (and ``replace``) put into the original spans."""
        parts, last = [], 0
        for i, (start, end) in enumerate(self.spans):
            parts.append(self.text[last:start])
            parts.append(replace[i] if replace and i in replace else self.current[i])
            last = end
        parts.append(self.text[last:])
        return "".join(parts)


# (texts, index of the example each text belongs to) -> class probabilities (N, C)
Predict = Callable[[list[str], list[int]], np.ndarray]


def greedy_attack(predict: Predict, texts: Sequence[str], labels: Sequence[int],
                  transformation: Any, *, splitter: Callable[[str], list[tuple[int, int]]]
                  = english_words, max_words_fraction: float = 0.25,
                  max_edit_distance: int | None = None, stopwords: frozenset[str] = STOPWORDS,
                  seed: int = 0) -> list[AttackResult]:
    """Attack every example with greedy search by leave-one-out word importance.

    Args:
        predict: (texts, example index of each) -> class probabilities (N, C); called with
            the texts of many examples at once.
        texts: The inputs.
        labels: Their gold label ids.
        transformation: ``candidates(word, rng)`` and ``eligible(word)`` (see the classes).
        splitter: Text -> word spans.
        max_words_fraction: Change at most this share of the words (at least one).
        max_edit_distance: Cap on the summed character edit distance (char attacks).
        stopwords: Words never touched (empty to allow all).
        seed: Seeds one ``random.Random`` per example (random character edits).

    Returns:
        One :class:`AttackResult` per example, in order.
    """
    states = _initial_states(predict, texts, labels, splitter)
    active = [s for s in states if s.result is None]
    _rank_words(predict, active, transformation, stopwords)
    rngs = {s.index: random.Random(seed * 1_000_003 + s.index) for s in active}
    while active:
        # One query batch per round: each example's candidates for its next word.
        owners = [(state, word_index, cand) for state in active
                  for word_index, cand in _next_candidates(
                      state, transformation, rngs[state.index], max_words_fraction,
                      max_edit_distance)]
        if not owners:
            for state in active:
                _finish(state, "failed", None)
            break
        scores = predict([state.render({word_index: cand}) for state, word_index, cand in owners],
                         [state.index for state, _, _ in owners])
        active = _keep_best(active, owners, scores, max_words_fraction)
    return [s.result for s in states if s.result is not None]


def _initial_states(predict: Predict, texts: Sequence[str], labels: Sequence[int],
                    splitter: Callable[[str], list[tuple[int, int]]]) -> list[_State]:
    """One state per example; those the model already gets wrong are skipped."""
    probs = predict(list(texts), list(range(len(texts))))  # (N, C)
    states: list[_State] = []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        spans = splitter(text)
        state = _State(i, text, spans, [text[s:e] for s, e in spans], int(label),
                       float(probs[i, label]), float(probs[i, label]))
        pred = int(probs[i].argmax())
        if pred != label:
            state.result = AttackResult("skipped", text, text, int(label), pred,
                                        float(probs[i, pred]), pred, float(probs[i, pred]),
                                        len(spans), queries=1)
        states.append(state)
    return states


def _budget(state: _State, max_words_fraction: float) -> int:
    return max(1, int(max_words_fraction * len(state.spans)))


def _next_candidates(state: _State, transformation: Any, rng: random.Random,
                     max_words_fraction: float,
                     max_edit_distance: int | None) -> list[tuple[int, str]]:
    """The next word (by importance) that has candidates, with them; ``[]`` when none is left
    or the example has used its budget of changed words."""
    while state.pointer < len(state.order) and \
            len(state.changed) < _budget(state, max_words_fraction):
        word_index = state.order[state.pointer]
        state.pointer += 1
        word = state.current[word_index]
        cands = [c for c in transformation.candidates(word, rng) if c != word]
        if max_edit_distance is not None:
            original = state.text[slice(*state.spans[word_index])]
            base = state.edits - edit_distance(original, word)
            cands = [c for c in cands
                     if base + edit_distance(original, c) <= max_edit_distance]
        if cands:
            return [(word_index, cand) for cand in cands]
    return []


def _keep_best(active: list[_State], owners: list[tuple[_State, int, str]],
               scores: np.ndarray, max_words_fraction: float) -> list[_State]:
    """Apply each example's best candidate if it lowers the gold label's probability; finish
    the examples that flipped or ran out of words, and return those still under attack."""
    best: dict[int, tuple[float, int, str, np.ndarray]] = {}
    for (state, word_index, cand), row in zip(owners, scores, strict=True):
        state.queries += 1
        p = float(row[state.label])
        if state.index not in best or p < best[state.index][0]:
            best[state.index] = (p, word_index, cand, row)
    still = []
    for state in active:
        if state.index in best:
            p, word_index, cand, row = best[state.index]
            if p < state.prob:
                original = state.text[slice(*state.spans[word_index])]
                state.edits += edit_distance(original, cand) - edit_distance(
                    original, state.current[word_index])
                state.current[word_index] = cand
                state.prob = p
                if word_index not in state.changed:
                    state.changed.append(word_index)
            if int(row.argmax()) != state.label:
                _finish(state, "success", row)
                continue
        if state.pointer >= len(state.order) or \
                len(state.changed) >= _budget(state, max_words_fraction):
            _finish(state, "failed", None)
        else:
            still.append(state)
    return still


def _rank_words(predict: Predict, states: list[_State], transformation: Any,
                stopwords: frozenset[str]) -> None:
    """Leave-one-out importance of every word an attack may touch (one batch for all)."""
    texts, owners = [], []
    for state in states:
        for i, word in enumerate(state.current):
            if word.lower() in stopwords or not transformation.eligible(word):
                continue
            texts.append(state.render({i: ""}))
            owners.append((state, i))
    scores = predict(texts, [s.index for s, _ in owners]) if texts \
        else np.zeros((0, 1))
    importance: dict[int, list[tuple[float, int]]] = {}
    for (state, i), row in zip(owners, scores, strict=True):
        state.queries += 1
        importance.setdefault(state.index, []).append((state.prob - float(row[state.label]), i))
    for state in states:
        ranked = sorted(importance.get(state.index, []), key=lambda t: (-t[0], t[1]))
        state.order = [i for _, i in ranked]


def _finish(state: _State, status: str, row: np.ndarray | None) -> None:
    pred = int(row.argmax()) if row is not None else state.label
    score = float(row[pred]) if row is not None else state.prob
    state.result = AttackResult(
        status, state.text, state.render() if status == "success" else state.text,
        state.label, state.label, state.original_prob, pred, score, len(state.spans),
        sorted(state.changed),
        [(state.text[slice(*state.spans[i])], state.current[i]) for i in sorted(state.changed)]
        if status == "success" else [], state.queries)


def summarize(results: Sequence[AttackResult]) -> dict[str, float]:
    """TextAttack's summary numbers for a list of results."""
    success = [r for r in results if r.status == "success"]
    failed = [r for r in results if r.status == "failed"]
    attacked = len(success) + len(failed)
    total = max(len(results), 1)
    return {
        "examples": len(results), "successful": len(success), "failed": len(failed),
        "skipped": len(results) - attacked,
        "original_accuracy": attacked / total,
        "accuracy_under_attack": len(failed) / total,
        "attack_success_rate": len(success) / attacked if attacked else 0.0,
        "avg_perturbed_word_pct": float(np.mean([100 * len(r.changed) / max(r.num_words, 1)
                                                 for r in success])) if success else 0.0,
        "avg_words_per_input": float(np.mean([r.num_words for r in results]))
        if results else 0.0,
        "avg_queries": float(np.mean([r.queries for r in success + failed]))
        if attacked else 0.0,
    }
