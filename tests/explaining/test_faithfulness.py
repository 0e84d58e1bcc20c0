"""AOPC arithmetic on a model whose output is known exactly (no network, no weights)."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.explaining.adapters import Example
from lmforge.explaining.faithfulness import BINS, agreement, aopc, top_k


class CountScorer:
    """'Model': p = (number of kept token ids >= 10) / 10, on the ids it receives."""

    def score(self, rows):
        return np.asarray([float((np.asarray(ids) >= 10).sum()) / 10 for ids, _, _ in rows])


def _example(ids: list[int]) -> Example:
    seq = np.asarray([1, *ids, 2])  # [CLS] ... [SEP]
    return Example({}, seq, None, np.arange(1, len(seq) - 1), [str(i) for i in ids], [])


def test_aopc_removes_ceil_of_each_bin_and_averages() -> None:
    ex = _example([11, 12, 3, 4, 5, 6, 7, 8, 9, 13])  # 10 tokens, 3 "important"
    perfect = np.asarray([3, 2, 0, 0, 0, 0, 0, 0, 0, 1.0])
    result = aopc(CountScorer(), [ex], [perfect], "delete", 0)
    # k = ceil(b * 10) = 1, 1, 1, 2, 5 tokens: the top ones carry 1, 1, 1, 2, 3 units.
    assert result["comprehensiveness"] == pytest.approx(np.mean([.1, .1, .1, .2, .3]))
    assert result["sufficiency"] == pytest.approx(np.mean([.2, .2, .2, .1, 0.0]))
    reversed_scores = -perfect
    worse = aopc(CountScorer(), [ex], [reversed_scores], "delete", 0)
    assert worse["comprehensiveness"] < result["comprehensiveness"]
    assert list(result["comprehensiveness_by_bin"]) == [str(b) for b in BINS]


def test_replace_mode_keeps_positions_and_top_k_breaks_ties_by_position() -> None:
    ex = _example([11, 3, 12])
    result = aopc(CountScorer(), [ex], [np.asarray([1.0, 0.0, 0.5])], "replace", 0)
    assert result["comprehensiveness"] == pytest.approx(np.mean([.1, .1, .1, .1, .2]))
    assert top_k(np.asarray([0.5, 0.5, 1.0]), 2).tolist() == [2, 0]


def test_agreement_is_spearman_between_methods() -> None:
    a = [np.asarray([1.0, 2.0, 3.0]), np.asarray([3.0, 1.0, 2.0])]
    b = [np.asarray([10.0, 20.0, 30.0]), np.asarray([-3.0, -1.0, -2.0])]
    table = agreement({"a": a, "b": b})
    assert table["a"]["a"] == pytest.approx(1.0)
    assert table["a"]["b"] == pytest.approx(0.0)  # mean of +1 and -1
