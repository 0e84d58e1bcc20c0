"""The OpenAI-compatible routes, called with the official ``openai`` client on a live server
(a tiny untrained GPT-2 chat run: the replies are arbitrary but deterministic)."""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmforge.finetuning.sft.data import chat_prompt
from lmforge.serving import ServeJob, create_app, load_predictor
from lmforge.serving.generation import GenerateParams
from lmforge.serving.openai_api import _Reply, served_name
from tests.serving.conftest import live_server

openai = pytest.importorskip("openai")

KEY = "openai-test-key-0123"
PROMPT = "say red cat"
CAP = 16  # the server's max_new_tokens
USER = [{"role": "user", "content": PROMPT}]


@pytest.fixture(scope="module")
def sft_predictor(sft_run: Path) -> Any:
    return load_predictor(str(sft_run), precision="fp32")


@contextmanager
def serving(predictor: Any, **settings: Any) -> Iterator[tuple[Any, str]]:
    """(app, base URL of its /v1 routes) on a live loopback server with the model ready."""
    app = create_app(predictor, ServeJob(max_new_tokens=CAP, **settings), api_keys=[KEY])
    with live_server(app) as port:
        deadline = time.monotonic() + 60
        while app.state.status.status != "ready":
            assert time.monotonic() < deadline, "the model never became ready"
            time.sleep(0.02)
        yield app, f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def server(sft_predictor: Any) -> Iterator[tuple[Any, str]]:
    with serving(sft_predictor) as served:
        yield served


def client(base_url: str, key: str = KEY) -> Any:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)


def streamed(chunks: Any, chat: bool) -> tuple[str, list[Any]]:
    """(the text of a stream's chunks, the chunks)."""
    chunks = list(chunks)
    pieces = [(c.choices[0].delta.content if chat else c.choices[0].text) or ""
              for c in chunks if c.choices]
    return "".join(pieces), chunks


def test_models_lists_the_served_model(server: tuple[Any, str], sft_run: Path) -> None:
    api = client(server[1])
    models = api.models.list().data
    assert [m.id for m in models] == [served_name(str(sft_run))] == ["run"]
    assert models[0].object == "model" and api.models.retrieve("run").id == "run"
    with pytest.raises(openai.NotFoundError) as err:
        api.models.retrieve("gpt-4o")
    assert "not served here" in err.value.response.json()["detail"]


def test_chat_reply_equals_generate_whole_and_streamed(server: tuple[Any, str],
                                                       sft_predictor: Any) -> None:
    want = sft_predictor.predict([{"prompt": PROMPT}])[0]["response"]
    assert want  # the fixture's seed makes the untrained model say something
    api = client(server[1])
    whole = api.chat.completions.create(model="run", messages=USER)
    choice = whole.choices[0]
    assert whole.object == "chat.completion" and whole.model == "run"
    assert whole.id.startswith("chatcmpl-") and len(whole.choices) == 1
    assert choice.message.role == "assistant" and choice.message.content == want
    assert choice.finish_reason in ("stop", "length")
    tokenizer = sft_predictor.tokenizer
    prompt_ids = tokenizer(chat_prompt(tokenizer, USER), add_special_tokens=False)["input_ids"]
    usage = whole.usage
    assert usage.prompt_tokens == len(prompt_ids)
    assert 1 <= usage.completion_tokens <= CAP
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    text, chunks = streamed(api.chat.completions.create(
        model="run", messages=USER, stream=True, stream_options={"include_usage": True}),
        chat=True)
    assert text == want  # the chunks add up to the whole reply
    with_choices = [c for c in chunks if c.choices]
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in with_choices] == \
        [None] * (len(with_choices) - 1) + [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == usage  # include_usage's chunk


def test_completion_streams_the_same_text_and_caps_max_tokens(server: tuple[Any, str],
                                                              sft_predictor: Any) -> None:
    want = sft_predictor.predict([{"prompt": PROMPT}])[0]["response"]
    api = client(server[1])
    # A chat model reads the prompt as one user turn (as /generate does); the completion is
    # the text as generated (not stripped).
    whole = api.completions.create(model="run", prompt=PROMPT)  # the run's max_new_tokens
    assert whole.object == "text_completion" and whole.id.startswith("cmpl-")
    assert whole.choices[0].text.strip() == want
    over = api.completions.create(model="run", prompt=PROMPT, max_tokens=10_000)
    capped = api.completions.create(model="run", prompt=[PROMPT], max_tokens=CAP)
    assert over.choices[0].text == capped.choices[0].text  # cut to max_new_tokens
    assert over.usage.completion_tokens <= CAP < 10_000
    text, chunks = streamed(api.completions.create(model="run", prompt=PROMPT, stream=True),
                            chat=False)
    assert text == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.object == "text_completion" for c in chunks)


def test_max_tokens_reached_is_finish_reason_length(server: tuple[Any, str],
                                                    sft_predictor: Any) -> None:
    api = client(server[1])
    long = api.completions.create(model="run", prompt=PROMPT, max_tokens=CAP).choices[0].text
    short = api.completions.create(model="run", prompt=PROMPT, max_tokens=1)
    assert short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 1
    assert short.choices[0].text and long.startswith(short.choices[0].text)  # greedy prefix
    text, chunks = streamed(api.completions.create(model="run", prompt=PROMPT, max_tokens=1,
                                                   stream=True), chat=False)
    assert text == short.choices[0].text and chunks[-1].choices[0].finish_reason == "length"


def test_stop_strings_end_the_reply_before_them(server: tuple[Any, str]) -> None:
    api = client(server[1])
    full = api.completions.create(model="run", prompt=PROMPT).choices[0].text
    visible = full.strip()
    assert len(visible) >= 3, "the fixture's reply is too short to cut"
    stop = visible[len(visible) // 2:len(visible) // 2 + 2]
    want = full[:full.find(stop)]
    for stops in (stop, ["never-written", stop]):
        cut = api.completions.create(model="run", prompt=PROMPT, stop=stops)
        assert cut.choices[0].text == want and cut.choices[0].finish_reason == "stop"
        text, chunks = streamed(api.completions.create(model="run", prompt=PROMPT,
                                                       stop=stops, stream=True), chat=False)
        assert text == want and chunks[-1].choices[0].finish_reason == "stop"
    chat = api.chat.completions.create(model="run", messages=USER, stop=stop)
    assert chat.choices[0].message.content == want.strip()  # cut, then stripped


def test_bad_requests_are_422_in_the_servers_error_shape(server: tuple[Any, str]) -> None:
    api = client(server[1])
    with pytest.raises(openai.UnprocessableEntityError) as err:
        api.chat.completions.create(model="run", messages=USER, n=2)
    body = err.value.response.json()
    assert body["detail"].startswith("n: n=2 is not supported") and body["errors"]
    with pytest.raises(openai.UnprocessableEntityError) as err:
        api.completions.create(model="run", prompt=PROMPT, logprobs=2)
    assert "logprobs=2 is not supported" in err.value.response.json()["detail"]
    bad_messages: list[Any] = ["hi", [], [{"role": "robot", "content": "x"}],
                               [{"role": "user"}], [{"content": "x"}],
                               [{"role": "user", "content": [{"type": "image_url"}]}]]
    with httpx.Client(base_url=server[1], headers={"Authorization": f"Bearer {KEY}"},
                      timeout=60) as http:
        for messages in bad_messages:
            response = http.post("/chat/completions", json={"model": "run",
                                                             "messages": messages})
            assert response.status_code == 422, messages
            assert set(response.json()) == {"detail", "errors"}, messages
        for body in ({"prompt": PROMPT, "max_tokens": 0}, {"prompt": PROMPT, "temperature": 3},
                     {"prompt": PROMPT, "stop": ""}, {"prompt": ["a", "b"]}, {}):
            assert http.post("/completions", json=body).status_code == 422, body
        # Unknown fields are ignored, as vLLM does; options that ask for nothing are fine.
        fine = http.post("/completions", json={"prompt": PROMPT, "max_tokens": 2,
                                               "some_new_option": 1, "logprobs": None,
                                               "presence_penalty": 0, "seed": 7,
                                               "n": None, "stream": None})
        assert fine.status_code == 200, fine.text
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="gpt-4o", messages=USER)
    with pytest.raises(openai.UnprocessableEntityError) as err:  # over n_positions=128
        api.completions.create(model="run", prompt="red cat " * 100)
    assert "context length" in err.value.response.json()["detail"]


def test_sampling_runs_and_keys_are_required(server: tuple[Any, str]) -> None:
    api = client(server[1])
    sampled = api.chat.completions.create(model="run", messages=USER, temperature=0.7,
                                          top_p=0.9, max_tokens=4, seed=1)
    assert isinstance(sampled.choices[0].message.content, str)
    wrong = client(server[1], key="wrong-key-0123456789")
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="run", messages=USER)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    # Without a key (the openai client always sends one).
    with httpx.Client(base_url=server[1], timeout=60) as http:
        for path, body in (("/chat/completions", {"messages": USER}),
                           ("/completions", {"prompt": PROMPT})):
            response = http.post(path, json=body)
            assert response.status_code == 401 and "missing API key" in response.json()["detail"]
        assert http.get("/models").status_code == 401


def test_prompt_only_model_refuses_chat(sft_predictor: Any) -> None:
    task = copy.copy(sft_predictor.task)
    task.accepts_messages = False  # as a seq2seq model
    with serving(dataclasses.replace(sft_predictor, task=task)) as (_, base_url):
        api = client(base_url)
        with pytest.raises(openai.UnprocessableEntityError) as err:
            api.chat.completions.create(model="run", messages=USER)
        assert "takes a prompt, not messages" in err.value.response.json()["detail"]
        assert api.completions.create(model="run", prompt=PROMPT, max_tokens=2).choices


def test_abandoned_streams_and_timeouts_release_the_model(sft_predictor: Any) -> None:
    with serving(sft_predictor, request_timeout_s=1e-4) as (app, base_url):
        api = client(base_url)
        with pytest.raises(openai.InternalServerError) as err:  # 504, whole reply
            api.completions.create(model="run", prompt=PROMPT)
        assert err.value.status_code == 504 and "request_timeout_s" in \
            err.value.response.json()["detail"]
        with pytest.raises(openai.APIError, match="request_timeout_s"):  # in the stream
            list(api.chat.completions.create(model="run", messages=USER, stream=True))
        stream = api.completions.create(model="run", prompt=PROMPT, stream=True)
        stream.close()  # left before reading
        gate = app.state.gate
        deadline = time.monotonic() + 30
        while gate.generations:
            assert time.monotonic() < deadline, "a generation kept its charge"
            time.sleep(0.02)


class _ScriptedModel:
    """Stands in for the model: streams fixed pieces (a stop string split across two)."""

    config = type("Config", (), {"is_encoder_decoder": False})()

    def generate(self, streamer: Any = None, **kwargs: Any) -> None:
        for piece in ("\n  hel", "lo wo", "rld  ", "\n"):
            streamer.on_finalized_text(piece)
        streamer.on_finalized_text("", stream_end=True)


def test_stop_strings_held_back_across_pieces_and_chat_stripped(sft_predictor: Any) -> None:
    scripted = dataclasses.replace(sft_predictor, model=_ScriptedModel())

    def run(stops: list[str], strip: bool) -> tuple[list[str], _Reply]:
        reply = _Reply(scripted, "hi", None, GenerateParams(max_new_tokens=4), stops, strip, 3)
        return list(reply.pieces(threading.Event())), reply

    pieces, reply = run(["o w"], strip=False)
    assert "".join(pieces) == "\n  hell" and reply.stopped
    assert all("o" not in p for p in pieces)  # "o" might begin the stop: held back
    assert reply.finish_reason() == "stop"
    pieces, reply = run(["xyz"], strip=True)
    assert "".join(pieces) == "hello world" and not reply.stopped
    assert pieces[-1] == "rld"  # trailing whitespace held back, then dropped
    pieces, _ = run(["\n  h"], strip=True)
    assert pieces == []  # stopped before any text
