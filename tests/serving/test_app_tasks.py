"""/entities, /answer and /generate (whole and streamed) on tiny untrained runs."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from lmforge.finetuning.sft.data import END_OF_TURN
from lmforge.serving import ServeJob, create_app, load_predictor
from lmforge.serving.client import iter_events
from lmforge.serving.generation import GenerateParams, stream_text
from tests.serving.conftest import served


def test_entities_have_char_offsets_into_the_text(ner_run: Path) -> None:
    predictor = load_predictor(str(ner_run), precision="fp32")
    text = "we  met mr smith\tin paris today"  # irregular spacing: offsets follow the text
    with served(create_app(predictor, ServeJob(), api_keys=[])) as client:
        response = client.post("/entities", json={"texts": [text, "   "]})
        assert response.status_code == 200
        first, blank = response.json()["results"]
        rows = client.post("/predict", json={"inputs": [text]}).json()["results"]
    assert blank == {"text": "   ", "entities": []}
    assert first["text"] == text
    # Untrained head (seeded): it tags entities, and each is a well-formed span of the text.
    assert first["entities"], "the fixture's untrained head tags nothing: checks below vacuous"
    expected = [{"start": e["start"], "end": e["end"], "label": e["type"], "score": e["score"],
                 "text": e["text"]} for e in rows[0]["entities"]]
    assert first["entities"] == expected
    for ent in first["entities"]:
        assert text[ent["start"]:ent["end"]] == ent["text"]
        assert ent["label"] in {"PER", "LOC"} and 0.0 < ent["score"] <= 1.0
    assert rows[0]["tokens"] == text.split() and len(rows[0]["tags"]) == 7
    direct = predictor.task.predict(predictor.model, predictor.tokenizer, predictor.settings,
                                    [{"text": text}])
    assert rows == json.loads(json.dumps(direct))


def test_answer_is_a_span_of_the_context(qa_run: Path) -> None:
    predictor = load_predictor(str(qa_run), precision="fp32")
    context = "smith in paris and jones in london"
    with served(create_app(predictor, ServeJob(), api_keys=[])) as client:
        response = client.post("/answer", json={"question": "where does smith live ?",
                                                "context": context})
        assert response.status_code == 200
        body = response.json()
        assert client.post("/answer", json={"question": " ", "context": context}
                           ).status_code == 422
        rows = client.post("/predict", json={"inputs": [
            {"question": "where does smith live ?", "context": context}]}).json()["results"]
    assert rows[0]["answer"] == body["answer"] and rows[0]["start"] == body["start"]
    # Untrained (seeded) head: it still answers with a span, which is a slice of the context.
    assert body["answer"] and body["start"] >= 0
    assert context[body["start"]:body["end"]] == body["answer"]


@pytest.fixture(scope="module")
def sft_predictor(sft_run: Path):
    return load_predictor(str(sft_run), precision="fp32")


def test_generate_equals_predict_and_streams(sft_predictor) -> None:
    prompt = "say red cat"
    want = sft_predictor.predict([{"prompt": prompt}])[0]["response"]
    assert want  # the fixture's seed makes the untrained model say something
    with served(create_app(sft_predictor, ServeJob(max_new_tokens=16), api_keys=[])) as client:
        whole = client.post("/generate", json={"prompt": prompt})
        assert whole.status_code == 200 and whole.json()["text"] == want
        chat = client.post("/generate", json={"messages": [{"role": "user", "content": prompt}]})
        assert chat.json()["text"] == want  # a one-message chat is the same prompt
        with client.stream("POST", "/generate", json={"prompt": prompt, "stream": True}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = list(iter_events(r.iter_lines()))
        pieces = [e["data"]["token"] for e in events if "token" in e["data"]]
        assert pieces and events[-1]["data"] == {"done": True, "text": want}
        assert END_OF_TURN not in "".join(pieces)
        assert "".join(pieces).strip() == want
        sampled = client.post("/generate", json={"prompt": prompt, "do_sample": True,
                                                 "temperature": 0.7, "top_p": 0.9,
                                                 "max_new_tokens": 4})
        assert sampled.status_code == 200 and isinstance(sampled.json()["text"], str)
        too_many = client.post("/generate", json={"prompt": prompt, "max_new_tokens": 17})
        assert too_many.status_code == 422 and too_many.json()["errors"][0]["loc"] == [
            "body", "max_new_tokens"]  # the cap is in the schema (maximum: 16)
        for body in ({}, {"prompt": "a", "messages": [{"role": "user", "content": "b"}]},
                     {"prompt": "a", "temperature": 0}, {"messages": []},
                     {"messages": [{"role": "robot", "content": "x"}]}):
            assert client.post("/generate", json=body).status_code == 422, body
        # A prompt that fills the model's 128 positions is refused up front (it used to
        # reach the embedding and fail with a 500).
        long = client.post("/generate", json={"prompt": "say red cat " * 60})
        assert long.status_code == 422 and "context length" in long.json()["detail"]
        generic = client.post("/predict", json={"inputs": [prompt]}).json()["results"]
    assert generic == [{"prompt": prompt, "response": want}]


def test_a_request_without_decoding_options_uses_the_runs_own(sft_predictor) -> None:
    saved = dataclasses.replace(sft_predictor.settings, do_sample=True, temperature=0.5,
                                top_k=7, repetition_penalty=1.3)
    params = GenerateParams.for_run(saved, 8, temperature=None, top_p=None, do_sample=None,
                                    top_k=None, repetition_penalty=None)
    assert (params.do_sample, params.temperature, params.top_k, params.repetition_penalty,
            params.top_p, params.max_new_tokens) == (True, 0.5, 7, 1.3, 1.0, 8)
    given = GenerateParams.for_run(saved, 8, temperature=2.0, do_sample=False)
    assert (given.temperature, given.do_sample, given.top_k) == (2.0, False, 7)


class _ScriptedModel:
    """Stands in for a chat model: streams fixed text pieces, marker split across two."""

    config = type("Config", (), {"is_encoder_decoder": False})()

    def generate(self, streamer: Any = None, **kwargs: Any) -> None:
        for piece in ("hel", "lo <|im", "_end|>", " never shown"):
            streamer.on_finalized_text(piece)
        streamer.on_finalized_text("", stream_end=True)


def test_stream_holds_back_and_cuts_the_end_of_turn_marker(sft_predictor) -> None:
    scripted = dataclasses.replace(sft_predictor, model=_ScriptedModel())
    pieces = list(stream_text(scripted, "hi", None, GenerateParams(max_new_tokens=4),
                              threading.Event()))
    assert "".join(pieces) == "hello "
    assert all("<" not in p for p in pieces)  # the marker's start was never sent
