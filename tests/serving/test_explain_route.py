"""POST /explain on a served classifier: word scores, server limits (413), bad input (422)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.predictor import Predictor
from lmforge.serving import ServeJob, create_app, load_predictor
from tests.serving.conftest import served


@pytest.fixture(scope="module")
def predictor(cls_run: Path) -> Predictor:
    return load_predictor(str(cls_run), precision="fp32")


def test_explain_route_scores_words_within_server_limits(predictor: Predictor) -> None:
    cfg = ServeJob(explain_max_budget=16, explain_methods=["ig", "occlusion", "lime"])
    with served(create_app(predictor, cfg, api_keys=[])) as client:
        ok = client.post("/explain", json={"text": "the film was great", "method": "ig",
                                           "budget": 8, "tokens": True})
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["method"] == "ig" and body["budget"] == 8 and body["model_calls"] >= 8
        result = body["results"][0]
        assert [w["word"] for w in result["words"]] == ["the", "film", "was", "great"]
        assert result["label"] in {"neg", "pos"} and len(result["tokens"]) == 4
        many = client.post("/explain", json={"texts": ["a good story", "bad"],
                                             "method": "occlusion", "target": "pos"})
        assert many.status_code == 200 and "budget" not in many.json()
        assert [r["target"] for r in many.json()["results"]] == ["pos", "pos"]
        over = client.post("/explain", json={"text": "good", "method": "lime", "budget": 17})
        assert over.status_code == 413 and over.json()["limit"] == "explain_max_budget"
        off = client.post("/explain", json={"text": "good", "method": "shap"})
        assert off.status_code == 413 and off.json()["limit"] == "explain_methods"
        for bad in ({"text": "good", "budget": 0}, {"text": ""}, {"text": "good",
                                                                  "target": "maybe"},
                    {"text": "good", "method": "magic"}, {"text": "a", "texts": ["b"]},
                    {"text": "good", "text_pair": "x"}):
            assert client.post("/explain", json=bad).status_code == 422, bad
        schema = client.get("/openapi.json").json()
        assert "ExplainRequest" in schema["components"]["schemas"]
        assert "413" in schema["paths"]["/explain"]["post"]["responses"]
