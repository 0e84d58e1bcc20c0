"""Classification metrics against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lmforge.errors import DataError
from lmforge.evaluation import (
    ClassificationAccumulator,
    classification_metrics,
    expected_calibration_error,
    tune_thresholds,
)


def one_hot_probs(pred: list[int], num_labels: int, top: float = 0.8) -> np.ndarray:
    """Probabilities whose argmax is ``pred`` (rest of the mass spread evenly)."""
    probs = np.full((len(pred), num_labels), (1 - top) / (num_labels - 1))
    probs[np.arange(len(pred)), pred] = top
    return probs


def test_known_confusion_matrix_by_hand():
    y_true = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 0]
    m = classification_metrics(y_true, one_hot_probs(pred, 3), ["a", "b", "c"])
    # Rows = true, cols = predicted.
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # 4 of 6 on the diagonal.
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: TP=1, predicted 2 (rows 0 and 5), true 2 -> P=1/2, R=1/2, F1=1/2
    # b: TP=2, predicted 3, true 2               -> P=2/3, R=1,   F1=2*(2/3)/(5/3)=4/5
    # c: TP=1, predicted 1, true 2               -> P=1,   R=1/2, F1=2/3
    per = m["per_class"]
    assert per["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert per["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert per["c"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    # macro P = (1/2 + 2/3 + 1)/3 = 13/18; macro F1 = (1/2 + 4/5 + 2/3)/3 = 59/90
    assert m["precision"]["macro"] == pytest.approx(13 / 18)
    assert m["f1"]["macro"] == pytest.approx(59 / 90)
    # single-label micro P = R = F1 = accuracy; equal supports make weighted == macro here.
    assert m["f1"]["micro"] == pytest.approx(4 / 6)
    assert m["f1"]["weighted"] == pytest.approx(m["f1"]["macro"])
    assert m["num_examples"] == 6
    json.dumps(m, allow_nan=False)  # plain Python, no NaN


def test_weighted_differs_from_macro_with_unequal_support():
    y_true = [0, 0, 0, 0, 1, 1]
    pred = [0, 0, 0, 1, 1, 0]
    m = classification_metrics(y_true, one_hot_probs(pred, 2), ["neg", "pos"])
    # neg: TP=3, predicted 4, true 4 -> F1=3/4; pos: TP=1, predicted 2, true 2 -> F1=1/2
    assert m["f1"]["macro"] == pytest.approx((0.75 + 0.5) / 2)  # 0.625
    assert m["f1"]["weighted"] == pytest.approx((4 * 0.75 + 2 * 0.5) / 6)  # 0.6667


def test_roc_auc_perfect_wrong_and_random():
    names = ["neg", "pos"]
    y = np.array([0, 0, 1, 1, 0, 1])
    good = np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7])
    perfect = classification_metrics(y, good, names)
    assert perfect["roc_auc"]["binary"] == 1.0
    assert perfect["pr_auc"]["binary"] == 1.0
    assert classification_metrics(y, 1 - good, names)["roc_auc"]["binary"] == 0.0

    rng = np.random.default_rng(0)
    y_rand = rng.integers(0, 2, size=20000)
    random = classification_metrics(y_rand, rng.random(20000), names)
    assert random["roc_auc"]["binary"] == pytest.approx(0.5, abs=0.02)
    # average precision of a random scorer is about the positive rate
    assert random["pr_auc"]["binary"] == pytest.approx(y_rand.mean(), abs=0.02)


def test_multiclass_one_vs_rest_auc_and_absent_class():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=300)
    probs = rng.random((300, 3)) * 0.1
    probs[np.arange(300), y] += 1.0  # the true class always scores highest
    probs /= probs.sum(axis=1, keepdims=True)
    m = classification_metrics(y, probs, ["a", "b", "c"])
    assert m["roc_auc"]["macro"] == 1.0
    assert m["roc_auc"]["per_class"] == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert m["roc_auc"]["micro"] == 1.0

    # Class "c" never occurs: its AUC is undefined -> None, excluded from the macro, noted.
    y2 = np.array([0, 1, 0, 1])
    p2 = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
    m2 = classification_metrics(y2, p2, ["a", "b", "c"])
    assert m2["roc_auc"]["per_class"]["c"] is None
    assert m2["pr_auc"]["per_class"]["c"] is None
    assert m2["roc_auc"]["macro"] == 1.0
    assert any("undefined for c" in note for note in m2["notes"])
    json.dumps(m2, allow_nan=False)


def test_ece_calibrated_and_overconfident():
    rng = np.random.default_rng(0)
    n = 50000
    conf = rng.uniform(0.5, 1.0, size=n)
    correct = rng.random(n) < conf  # right with probability equal to the confidence
    ece, bins = expected_calibration_error(conf, correct, n_bins=15)
    assert ece < 0.02
    assert sum(b["count"] for b in bins) == n
    assert bins[0]["count"] == 0 and bins[0]["accuracy"] is None  # nothing below 0.5

    # Through classification_metrics: binary, confidence 0.99, right half of the time.
    y = rng.integers(0, 2, size=n)
    pred = np.where(rng.random(n) < 0.5, y, 1 - y)
    probs = one_hot_probs(pred.tolist(), 2, top=0.99)
    m = classification_metrics(y, probs, ["neg", "pos"])
    # One filled bin: |acc - conf| = |0.5 - 0.99| = 0.49
    assert m["ece"] == pytest.approx(0.49, abs=0.01)
    assert len(m["reliability"]) == 15


def test_ece_bin_edges():
    # 0.6 sits exactly on an upper edge with 5 bins -> bin (0.4, 0.6], index 2.
    _, bins = expected_calibration_error(np.array([0.6, 1.0]), np.array([1, 0]), n_bins=5)
    assert [b["count"] for b in bins] == [0, 0, 1, 0, 1]


def test_multi_label_thresholds_and_tuning():
    names = ["x", "y"]
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    probs = np.array([[0.6, 0.2], [0.3, 0.4], [0.7, 0.45], [0.2, 0.1]])
    m = classification_metrics(y, probs, names, multi_label=True)
    # At 0.5: x is perfect, y is never predicted -> rows 0 and 3 exact, rows 1 and 2 not.
    assert m["subset_accuracy"] == 0.5
    assert m["hamming_loss"] == pytest.approx(2 / 8)
    assert m["per_class"]["x"]["f1"] == 1.0 and m["per_class"]["y"]["f1"] == 0.0
    assert m["f1"]["macro"] == pytest.approx(0.5)
    assert m["roc_auc"]["per_class"] == {"x": 1.0, "y": 1.0}

    thr = tune_thresholds(y, probs)
    assert thr.shape == (2,)
    assert thr[0] == pytest.approx(0.5)  # already optimal; ties resolve to 0.5
    assert 0.2 < thr[1] <= 0.4  # separates y's positives (0.4, 0.45) from negatives
    tuned = classification_metrics(y, probs, names, multi_label=True, thresholds=thr)
    assert tuned["f1"]["macro"] == 1.0 > m["f1"]["macro"]
    assert tuned["subset_accuracy"] == 1.0
    assert tuned["thresholds"] == pytest.approx(thr.tolist())


def test_multi_label_single_class_label_auc_is_none():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    probs = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.2]])
    m = classification_metrics(y, probs, ["x", "y"], multi_label=True, thresholds=[0.5, 0.5])
    assert m["roc_auc"]["per_class"]["y"] is None
    assert m["roc_auc"]["macro"] == 1.0


def test_accumulator_matches_direct_call_with_torch_batches():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=10)
    probs = torch.softmax(torch.tensor(rng.normal(size=(10, 3))), dim=-1)
    acc = ClassificationAccumulator(num_labels=3)
    for start in range(0, 10, 4):
        acc.update(probs[start:start + 4].to(torch.bfloat16), torch.tensor(y[start:start + 4]))
    assert len(acc) == 10
    y_all, p_all = acc.arrays()
    assert p_all.dtype == np.float32
    direct = classification_metrics(y, p_all, ["a", "b", "c"])
    assert acc.result(["a", "b", "c"]) == direct

    ml = ClassificationAccumulator(num_labels=2, multi_label=True)
    ml.update(np.array([[0.9, 0.1]]), np.array([[1, 0]]))
    ml.update(np.array([[0.2, 0.8]]), np.array([[0, 1]]))
    assert ml.result(["x", "y"])["subset_accuracy"] == 1.0


def test_errors_name_the_problem():
    names = ["a", "b", "c"]
    probs = one_hot_probs([0, 1, 2], 3)
    with pytest.raises(DataError, match="label 7 is not in the model's 3 labels"):
        classification_metrics([0, 7, 1], probs, names)
    with pytest.raises(DataError, match="probs has 3 rows but labels has 2"):
        classification_metrics([0, 1], probs, names)
    with pytest.raises(DataError, match="3 columns but there are 2 labels"):
        classification_metrics([0, 1, 1], probs, ["a", "b"])
    with pytest.raises(DataError, match="apply softmax"):
        classification_metrics([0, 1, 2], probs * 10 - 3, names)
    with pytest.raises(DataError, match="no examples"):
        classification_metrics([], np.zeros((0, 3)), names)
    with pytest.raises(DataError, match="multi-label targets have shape"):
        classification_metrics([[1, 0]], probs, names, multi_label=True)
    with pytest.raises(DataError, match="2 thresholds for 3 labels"):
        classification_metrics(np.eye(3), probs, names, multi_label=True, thresholds=[0.5, 0.5])
    acc = ClassificationAccumulator(num_labels=3)
    with pytest.raises(DataError, match="expected \\(batch, 3\\)"):
        acc.update(np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(DataError, match="no batches"):
        acc.result(names)
