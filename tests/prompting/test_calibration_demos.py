"""Contextual calibration on a hand case; demonstration selection (seeded, balanced, nearest)."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.errors import DataError
from lmforge.prompting.calibration import calibrate, content_free_prior
from lmforge.prompting.demos import format_demos, nearest_per_class, sample_per_class
from lmforge.prompting.templates import parse_prompts


def test_calibration_hand_case() -> None:
    p_cf = content_free_prior(np.array([[0.7, 0.3], [0.9, 0.1]]))
    np.testing.assert_allclose(p_cf, [0.8, 0.2])
    q = calibrate(np.array([[0.6, 0.4], [0.8, 0.2]]), p_cf)
    # W = diag(p_cf)^-1: [0.6/0.8, 0.4/0.2] = [0.75, 2.0] -> / 2.75
    np.testing.assert_allclose(q, [[0.75 / 2.75, 2.0 / 2.75], [0.5, 0.5]])
    # The prompt's bias towards label 0 flips the first prediction after calibration.
    assert q[0].argmax() == 1
    with pytest.raises(DataError, match="content-free"):
        content_free_prior(np.zeros((0, 2)))


def test_random_selection_is_seeded_and_balanced() -> None:
    labels = ["a"] * 10 + ["b"] * 5 + ["c"] * 7
    first = sample_per_class(labels, ["a", "b", "c"], 3, seed=1)
    assert first == sample_per_class(labels, ["a", "b", "c"], 3, seed=1)
    assert first != sample_per_class(labels, ["a", "b", "c"], 3, seed=2)
    assert sorted(labels[i] for i in first) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert len(set(first)) == 9
    other = sample_per_class(labels, ["a", "b", "c"], 2, seed=1, exclude=first)
    assert not set(other) & set(first)
    with pytest.raises(DataError, match="only 5 available"):
        sample_per_class(labels, ["a", "b", "c"], 6, seed=1)


def test_similar_selection_picks_nearest_neighbours_per_class() -> None:
    pool = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [-1.0, 0.0], [0.7, 0.7]])
    labels = ["x", "y", "x", "y", "y"]
    query = np.array([[1.0, 0.05], [0.0, 2.0]])
    picked = nearest_per_class(query, pool, labels, ["x", "y"], k=1)
    # query 0: nearest x is row 0 (cos ~1), nearest y is row 4 (cos ~0.74); most similar last
    assert picked[0] == [4, 0]
    # query 1: nearest y is row 1 (cos 1), nearest x is row 2 (cos ~0.11)
    assert picked[1] == [2, 1]
    assert nearest_per_class(query, pool, labels, ["x", "y"], k=2)[0][-1] == 0


def test_demonstrations_use_the_template_and_gold_word() -> None:
    t = parse_prompts({"labels": {0: ["bad"], 1: ["good", "fine"]},
                       "templates": ["{text} It was {mask}."]}).templates[0]
    assert format_demos(t, ["Dull.", "Fun."], ["0", "1"], "\n") == \
        "Dull. It was bad.\nFun. It was good.\n"
    assert format_demos(t, [], [], "\n") == ""
