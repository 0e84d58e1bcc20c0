"""The served app in-process on a tiny classification run: endpoints, limits, auth, batching."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest

from lmforge.cli import main
from lmforge.predictor import Predictor
from lmforge.serving import ServeJob, create_app, load_predictor
from tests.serving.conftest import sentences, served

KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def predictor(cls_run: Path) -> Predictor:
    return load_predictor(str(cls_run), precision="fp32")


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_endpoints_health_ready_metrics_docs(predictor: Predictor) -> None:
    with served(create_app(predictor, ServeJob(), api_keys=[])) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json() == {"status": "ready", "task": "classification"}
        one = client.post("/classify", json={"text": "the film was great", "top_k": 2})
        assert one.status_code == 200
        result = one.json()["results"][0]
        assert result["label"] in {"neg", "pos"} and len(result["top_k"]) == 2
        assert sum(s["score"] for s in result["top_k"]) == pytest.approx(1.0, abs=1e-5)
        many = client.post("/classify", json={"texts": ["a good story", "a bad story"]})
        assert [r["text"] for r in many.json()["results"]] == ["a good story", "a bad story"]
        # Only the loaded task's route is mounted.
        assert client.post("/answer", json={"question": "q", "context": "c"}).status_code == 404
        assert client.post("/generate", json={"prompt": "x"}).status_code == 404
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/classify", "/predict", "/health", "/ready", "/metrics"} <= set(paths)
        metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert _metric(text, "lmforge_requests_total",
                       '{endpoint="/classify",status="200"}') == 2
        assert _metric(text, "lmforge_request_latency_seconds_count",
                       '{endpoint="/classify"}') == 2
        assert "lmforge_batch_size_bucket" in text and "lmforge_queue_depth" in text
        assert 'lmforge_model_info{backend="torch",precision="fp32",task="classification"}' \
            in text


def test_bad_requests_limits_and_api_keys(predictor: Predictor, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# team keys\nfile-key-0123456789\n")
    monkeypatch.setenv("LMFORGE_TEST_KEYS", "env-key-0123456789")
    cfg = ServeJob(api_keys=[KEY], api_key_file=str(key_file), api_key_env="LMFORGE_TEST_KEYS",
                   max_items=3, max_input_chars=50, max_input_tokens=6, max_body_bytes=2048)
    with served(create_app(predictor, cfg)) as client:
        auth = {"X-API-Key": KEY}
        # /health and /ready need no key; predictions and metrics do.
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        missing = client.post("/classify", json={"text": "good"})
        assert missing.status_code == 401 and "missing" in missing.json()["detail"]
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/classify", json={"text": "good"}, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong API key"
        assert client.get("/metrics").status_code == 401
        for header in (auth, {"Authorization": "Bearer file-key-0123456789"},
                       {"X-API-Key": "env-key-0123456789"}):
            assert client.post("/classify", json={"text": "good"}, headers=header
                               ).status_code == 200
        # Malformed or truncated JSON, bytes that are not UTF-8, wrong fields: 422 with a
        # one-line detail and each problem listed.
        for raw in (b'{"text": ', b'{"text": "good"', b"\xff\xfe", b"not json", b""):
            bad = client.post("/classify", content=raw,
                              headers={**auth, "content-type": "application/json"})
            assert bad.status_code == 422, raw
            assert "\n" not in bad.json()["detail"] and bad.json()["detail"], raw
        assert "not valid JSON" in client.post(
            "/classify", content=b'{"text": ', headers={**auth, "content-type":
                                                        "application/json"}).json()["detail"]
        for body in ({"txt": "good"}, {"text": "a", "texts": ["b"]}, {"text": "a", "top_k": 0},
                     {"text": 5}, {"text": "a", "text_pair": "b"}, {}, {"text": None},
                     {"text": "a", "top_k": True}, {"text": "a", "top_k": "2"}, [1, 2]):
            response = client.post("/classify", json=body, headers=auth)
            assert response.status_code == 422, body
            assert isinstance(response.json()["detail"], str), body
            assert all({"loc", "msg", "type"} <= set(e) for e in response.json()["errors"])
        # JSON Schema's integers include 2.0.
        assert client.post("/classify", json={"text": "a", "top_k": 2.0}, headers=auth
                           ).status_code == 200
        missing = client.post("/predict", json={"inputs": [{"other": "x"}]}, headers=auth)
        assert missing.status_code == 422 and missing.json()["detail"] == (
            "inputs.0.text: field required")
        # Over a limit: 422 naming it (413 for the body size, refused before parsing).
        cases = {"max_input_chars": {"text": "good " * 20},
                 "max_items": {"texts": ["good"] * 4},
                 "max_input_tokens": {"text": "good good good good good good good"}}
        for limit, body in cases.items():
            response = client.post("/classify", json=body, headers=auth)
            assert response.status_code == 422, limit
            assert response.json()["limit"] == limit and limit in response.json()["detail"]
        huge = client.post("/classify", json={"texts": ["x"] * 1000}, headers=auth)
        assert huge.status_code == 413 and huge.json()["limit"] == "max_body_bytes"
        # The schema states the limits the server enforces.
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        assert schema["ClassifyRequest"]["properties"]["texts"]["maxItems"] == 3
        assert schema["ClassifyRequest"]["properties"]["text"]["maxLength"] == 50
        assert schema["PredictRequest"]["properties"]["inputs"]["maxItems"] == 3
        assert schema["ClassificationInput"]["properties"]["text"]["maxLength"] == 50
        assert set(client.get("/openapi.json").json()["components"]["securitySchemes"]) == {
            "APIKey", "Bearer"}
        text = client.get("/metrics", headers=auth).text
        assert _metric(text, "lmforge_requests_total", '{endpoint="/classify",status="401"}') == 2
        assert _metric(text, "lmforge_requests_total", '{endpoint="/classify",status="413"}') == 1


def test_concurrent_requests_are_batched(predictor: Predictor) -> None:
    # The batch closes on size (16 inputs), not on time: a window long enough for any machine
    # makes the grouping independent of how fast the 16 requests arrive.
    app = create_app(predictor, ServeJob(max_wait_ms=60_000, max_batch_size=16,
                                         request_timeout_s=120), api_keys=[])

    async def scenario() -> tuple[list[dict], str]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                while (await client.get("/ready")).status_code != 200:
                    await asyncio.sleep(0.02)
                texts = [t for t, _ in sentences(16, 5)]
                responses = await asyncio.gather(*(client.post("/classify", json={"text": t})
                                                   for t in texts))
                metrics = (await client.get("/metrics")).text
        return [r.json()["results"][0] for r in responses], metrics

    results, metrics = asyncio.run(scenario())
    assert len(results) == 16
    batches = _metric(metrics, "lmforge_batch_size_count")
    inputs = _metric(metrics, "lmforge_batch_size_sum")
    # 16 single-text requests (the warm-up bypasses the batcher) in one forward pass.
    assert inputs == 16
    assert batches == 1
    assert _metric(metrics, "lmforge_batch_size_bucket", '{le="1.0"}') == 0
    # Each request still got its own text's prediction back.
    texts = [t for t, _ in sentences(16, 5)]
    assert [r["text"] for r in results] == texts


def test_served_predictions_equal_lmforge_predict(cls_run: Path, predictor: Predictor,
                                                  tmp_path: Path) -> None:
    texts = [t for t, _ in sentences(12, 7)]
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(texts) + "\n")
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(cls_run), f"input={inputs}", f"output={out}", "top_k=2"]) == 0
    expected = [json.loads(line) for line in out.read_text().splitlines()]
    with served(create_app(predictor, ServeJob(max_wait_ms=50), api_keys=[])) as client:
        generic = client.post("/predict", json={"inputs": texts, "top_k": 2}).json()["results"]
        classify = client.post("/classify", json={"texts": texts, "top_k": 2}).json()["results"]
        single = [client.post("/classify", json={"text": t, "top_k": 2}).json()["results"][0]
                  for t in texts[:3]]
    for got in (generic, classify, single):
        for row, want in zip(got, expected, strict=False):
            assert row["text"] == want["text"] and row["label"] == want["label"]
            assert [s["label"] for s in row["top_k"]] == [s["label"] for s in want["top_k"]]
            # Padding to a different batch width may move the last float bits only.
            assert row["score"] == pytest.approx(want["score"], abs=1e-5)
    assert generic == expected  # same batch as `lmforge predict` here: identical rows
