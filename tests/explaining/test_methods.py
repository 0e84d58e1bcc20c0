"""Every method on a tiny classifier that learned its sentiment words, plus NER, QA, pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmforge.errors import ConfigError, DataError
from lmforge.explaining.explainer import Explainer
from lmforge.explaining.methods import DEFAULT_METHODS, Options
from lmforge.explaining.scoring import perturb
from lmforge.predictor import Predictor, load_predictor
from tests.serving.conftest import NEGATIVE, POSITIVE, sentences

TEXTS = [t for t, _ in sentences(6, 11)]
SMALL = Options(n_steps=16, lime_samples=80, shap_evals=40, seed=3)


@pytest.fixture(scope="module")
def explained(sentiment: Predictor):
    explainer = Explainer(sentiment, SMALL)
    result = explainer.explain([{"text": t} for t in TEXTS], DEFAULT_METHODS)
    return explainer, result


def test_each_method_puts_the_sentiment_word_first(explained) -> None:
    _, result = explained
    for name in DEFAULT_METHODS:
        scores = result.scores[name]
        assert [len(s) for s in scores] == [len(e.features) for e in result.examples]
        top = [ex.tokens[int(np.argmax(s))] for ex, s in zip(result.examples, scores,
                                                              strict=True)]
        # Attention rollout traces where attention flows, not what the output depends on
        # (Jain & Wallace 2019): on this tiny model its top token is the sentiment word in
        # about half the sentences and an intensifier next to it ("really", "very") in the
        # others, depending on the training seed's random stream (measured: 3 of 6 under
        # two different streams, while every attribution method found 5-6 of 6).
        need = 3 if name == "rollout" else 5
        assert sum(t in POSITIVE + NEGATIVE for t in top) >= need, (name, top)
        assert result.cost[name]["seconds"] > 0


def test_ig_completeness_and_occlusion_by_hand(explained) -> None:
    explainer, result = explained
    ex = result.examples[0]
    n = len(ex.features)
    full, base = explainer.scorer.score([
        perturb(ex, np.ones(n, bool), "delete", 0),
        perturb(ex, np.zeros(n, bool), "replace", explainer.context.fill_id)])
    # IG sums to f(x) - f(baseline) (Sundararajan et al. 2017), up to the quadrature error.
    assert result.scores["ig"][0].sum() == pytest.approx(full - base, abs=0.03)
    drop_first = explainer.scorer.score([perturb(ex, np.r_[False, np.ones(n - 1, bool)],
                                                 "delete", 0)])[0]
    assert result.scores["occlusion"][0][0] == pytest.approx(full - drop_first, abs=1e-6)
    # LIME's samples are scored in batches, not one call per sample.
    assert result.cost["lime"]["forward_passes"] < result.cost["lime"]["sequences"] / 10


def test_faithfulness_beats_random_and_agreement(explained) -> None:
    explainer, result = explained
    evaluation = explainer.evaluate(result)
    faith = evaluation["faithfulness"]
    random = faith["random"]["comprehensiveness"]
    for name in ("ig", "occlusion", "lime", "shap"):
        assert faith[name]["comprehensiveness"] > 2 * random, (name, faith[name], random)
        assert faith[name]["sufficiency"] < faith["random"]["sufficiency"]
    assert evaluation["agreement"]["ig"]["ig"] == pytest.approx(1.0)
    assert set(faith["ig"]["comprehensiveness_by_bin"]) == {"0.01", "0.05", "0.1", "0.2",
                                                            "0.5"}


def test_wordless_input_keeps_its_prediction_and_gets_no_scores(sentiment: Predictor) -> None:
    # U+200B survives the blank-text check but the tokenizer drops it: no word to score.
    explainer = Explainer(sentiment, SMALL)
    records = [{"text": TEXTS[0]}, {"text": "\u200b"}, {"text": TEXTS[1]}]
    result = explainer.explain(records, DEFAULT_METHODS)
    wordy, wordless = result.examples[0], result.examples[1]
    assert len(wordless.features) == 0 and wordless.words == []
    assert wordless.prediction["label"] in {"neg", "pos"}
    for name in DEFAULT_METHODS:
        assert [len(s) for s in result.scores[name]] == [len(e.features)
                                                         for e in result.examples]
    # The others are explained as if alone.
    alone = explainer.explain([records[0]], ["occlusion"]).scores["occlusion"][0]
    np.testing.assert_allclose(result.scores["occlusion"][0], alone, atol=1e-6)
    assert len(wordy.features) > 0
    evaluation = explainer.evaluate(result)
    assert evaluation["examples"] == 2
    with pytest.raises(DataError, match="at least one input with words"):
        explainer.evaluate(explainer.explain([records[1]], ["occlusion"]))


def test_target_label_and_bad_inputs(sentiment: Predictor) -> None:
    rows = sentiment.explain(TEXTS[0], methods=["occlusion"], target="neg")
    assert rows[0]["prediction"]["target"] == "neg"
    assert len(rows[0]["methods"]["occlusion"]["word_scores"]) == len(rows[0]["words"])
    with pytest.raises(ConfigError, match="not a label"):
        sentiment.explain(TEXTS[0], methods=["occlusion"], target="maybe")
    with pytest.raises(DataError, match="empty"):
        sentiment.explain("   ", methods=["occlusion"])
    with pytest.raises(ConfigError, match="n_steps must be >= 1"):
        sentiment.explain(TEXTS[0], methods=["ig"], n_steps=0)
    with pytest.raises(ConfigError, match="did you mean 'lime'"):
        sentiment.explain(TEXTS[0], methods=["lim"])


def test_pair_ner_and_qa_targets(pair_run: Path, ner_run: Path, qa_run: Path) -> None:
    methods = ["ig", "rollout", "occlusion", "shap"]
    opts = {"n_steps": 8, "shap_evals": 30}
    pair = load_predictor(str(pair_run), precision="fp32")
    row = pair.explain({"text": "good film", "other": "a boring story"}, methods, **opts)[0]
    assert row["word_segments"] == [0, 0, 1, 1, 1]

    ner = load_predictor(str(ner_run), precision="fp32")
    words = ["mr", "smith", "met", "jones", "in", "paris"]
    row = ner.explain({"tokens": words}, methods, **opts)[0]
    assert row["prediction"]["type"] in {"PER", "LOC"} and row["words"] == words
    with pytest.raises(ConfigError, match="not an entity type"):
        ner.explain({"tokens": words}, ["occlusion"], target="ORG")
    with pytest.raises(DataError, match="no entity #99"):
        ner.explain({"tokens": words}, ["occlusion"], entity=99)

    qa = load_predictor(str(qa_run), precision="fp32")
    record = {"question": "where does smith live ?", "context": "smith met jones in paris"}
    row = qa.explain(record, methods, **opts)[0]
    assert row["prediction"]["answer"] in record["context"]
    assert len(row["methods"]["ig"]["token_scores"]) == len(row["tokens"])
    with pytest.raises(ConfigError, match="target= is for"):
        qa.explain(record, ["occlusion"], target="x")
    # A context the tokenizer reduces to nothing has no span to explain: one clear line.
    with pytest.raises(DataError, match="context has no token left"):
        qa.explain({"question": "where ?", "context": "\u200b"}, ["occlusion"])
