"""POST /explain on a served classifier: word scores, server limits in the schema and 422
beyond them, bad input (422)."""

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
        # Over the server's limits: 422 naming the field (the schema states both limits).
        over = client.post("/explain", json={"text": "good", "method": "lime", "budget": 17})
        assert over.status_code == 422 and "budget" in over.json()["detail"]
        off = client.post("/explain", json={"text": "good", "method": "shap"})
        assert off.status_code == 422 and "method" in off.json()["detail"]
        for bad in ({"text": "good", "budget": 0}, {"text": ""}, {"text": "good",
                                                                  "target": "maybe"},
                    {"text": "good", "method": "magic"}, {"text": "a", "texts": ["b"]},
                    {"text": "good", "text_pair": "x"}):
            assert client.post("/explain", json=bad).status_code == 422, bad
        schema = client.get("/openapi.json").json()
        request = schema["components"]["schemas"]["ExplainRequest"]["properties"]
        assert request["budget"]["maximum"] == 16
        assert request["method"]["enum"] == ["ig", "occlusion", "lime"]
        assert "text_pair" not in request  # a single-text model takes no pairs
        assert request["target"]["enum"] == ["neg", "pos"]
        assert request["text"]["pattern"]  # blank texts are refused by the schema
        # Text the tokenizer drops entirely (a zero-width space): a prediction, no words.
        wordless = client.post("/explain", json={"texts": ["\u200b", "good"], "tokens": True,
                                                 "method": "occlusion"})
        assert wordless.status_code == 200, wordless.text
        first, second = wordless.json()["results"]
        assert first["words"] == [] and first["tokens"] == [] and first["label"] in {"neg", "pos"}
        assert [w["word"] for w in second["words"]] == ["good"]
