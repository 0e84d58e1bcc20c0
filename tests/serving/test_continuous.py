"""Continuous batching of generations: same greedy replies as one-at-a-time ``generate``,
per-row decoding options, cancellation, and the server switch (tiny untrained models)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmforge.finetuning.generative import GenerateParams, generate_text
from lmforge.predictor import load_predictor
from lmforge.serving.app import create_app
from lmforge.serving.continuous import StopScanner, start_batching
from lmforge.serving.generation import stream_text
from lmforge.serving.settings import ServeJob
from tests.serving.conftest import CHAT_WORDS, make_run, served

PROMPTS = ["say red", "say green cat dog fish blue red", "blue",
           "say cat dog cat dog red green blue fish say red cat"]


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama chat run (2 layers, grouped-query attention, rotary positions)."""
    from lmforge.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("cb-llama")
    base = root / "base"
    texts = [f"say {a} {b} {a} <|im_start|>user <|im_end|> assistant"
             for a in CHAT_WORDS for b in CHAT_WORDS]
    tok = train_tokenizer(texts, base, kind="bpe", vocab_size=400, min_frequency=1)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(base)
    return make_run(root / "run", "sft", base, [{"prompt": "say red", "response": "red"}],
                    max_new_tokens=8)


@pytest.fixture(params=["llama", "gpt2"])
def predictor(request: pytest.FixtureRequest, llama_run: Path, sft_run: Path) -> Iterator:
    run = llama_run if request.param == "llama" else sft_run
    loaded = load_predictor(str(run), precision="fp32")
    yield loaded
    if loaded.batched is not None:
        loaded.batched.stop()


def _together(predictor, params: list[GenerateParams]) -> list[str]:
    """generate_text of every prompt at once, each in its own thread (as the server runs)."""
    out: list[str] = [""] * len(params)
    start = threading.Barrier(len(params))

    def one(i: int) -> None:
        start.wait()
        out[i] = generate_text(predictor, PROMPTS[i], None, params[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(params))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_batched_greedy_equals_generate_one_at_a_time(predictor) -> None:
    params = [GenerateParams(max_new_tokens=n) for n in (12, 5, 16, 9)]
    alone = [generate_text(predictor, p, None, q) for p, q in zip(PROMPTS, params, strict=True)]
    assert any(alone)  # the seeds make the untrained models write visible text
    engine = start_batching(predictor, max_batch=8, max_new_tokens=32)
    assert engine is not None and predictor.batched is engine
    assert _together(predictor, params) == alone
    # Shared steps: far fewer forward passes than the 42 tokens asked for one at a time.
    assert engine.steps < sum(q.max_new_tokens for q in params)
    # Streamed pieces add up to the same reply.
    streamed = "".join(stream_text(predictor, PROMPTS[2], None, params[2], threading.Event()))
    assert streamed.strip() == alone[2]


def test_per_row_options_and_repetition_penalty(predictor) -> None:
    greedy = GenerateParams(max_new_tokens=12)
    penalized = GenerateParams(max_new_tokens=12, repetition_penalty=1.5)
    top1 = GenerateParams(max_new_tokens=12, do_sample=True, top_k=1, temperature=0.7)
    hot = GenerateParams(max_new_tokens=12, do_sample=True, temperature=5.0, top_k=0)
    alone = [generate_text(predictor, PROMPTS[i], None, q)
             for i, q in enumerate((greedy, penalized))]
    assert alone[0] != alone[1]  # the penalty changes this reply
    start_batching(predictor, max_batch=8, max_new_tokens=32)
    got = _together(predictor, [greedy, penalized, top1, hot])
    # Each row decodes with its own options: a hot sampled row beside them changes nothing.
    assert got[:2] == alone
    assert got[2] == generate_text(predictor, PROMPTS[2], None, GenerateParams(12))


def test_cancel_takes_the_row_out(predictor) -> None:
    engine = start_batching(predictor, max_batch=4, max_new_tokens=64)
    assert engine is not None
    cancel = threading.Event()
    pieces = stream_text(predictor, PROMPTS[0], None, GenerateParams(max_new_tokens=60,
                                                                     do_sample=True), cancel)
    next(pieces)
    cancel.set()
    assert len(list(pieces)) <= 2  # what was already decoded, then the end
    time.sleep(0.3)
    steps = engine.steps
    time.sleep(0.3)
    assert engine.steps == steps  # nothing left to decode: the row left the batch
    assert steps < 40


def test_stop_scanner_holds_back_a_split_marker() -> None:
    scanner = StopScanner(["<|im_end|>"])
    out = [scanner.feed(p) for p in ("hel", "lo <|im", "_end|>", " never")]
    assert out == ["hel", "lo ", "", ""] and scanner.stopped and scanner.flush() == ""
    plain = StopScanner(["</s>"])
    assert plain.feed("a <") == "a " and plain.flush() == "<"


def test_server_switch(llama_run: Path) -> None:
    predictor = load_predictor(str(llama_run), precision="fp32")
    want = generate_text(predictor, PROMPTS[1], None, GenerateParams(max_new_tokens=8))
    with served(create_app(predictor, ServeJob(max_batch_generations=4, max_new_tokens=16),
                           api_keys=[])) as client:
        assert predictor.batched is not None
        assert client.post("/generate", json={"prompt": PROMPTS[1], "max_new_tokens": 8}
                           ).json()["text"] == want
    assert predictor.batched is None  # stopped with the server
    with served(create_app(predictor, ServeJob(max_batch_generations=1), api_keys=[])) as c:
        assert predictor.batched is None  # off: one generate per request, as before
        assert c.post("/generate", json={"prompt": PROMPTS[1], "max_new_tokens": 8}
                      ).json()["text"] == want


def test_gate_admits_generations_while_rows_are_free() -> None:
    import asyncio

    from lmforge.serving.admission import Gate, ServeState
    from lmforge.serving.batcher import MicroBatcher
    from lmforge.serving.errors import Unavailable
    from lmforge.serving.metrics import ServerMetrics

    async def scenario() -> None:
        batcher = MicroBatcher(lambda payloads: payloads, max_queue=8)
        await batcher.start()
        gate = Gate(batcher, ServeState(ready=True), ServerMetrics(), len, None, budget_s=1.0)
        gate.generation_slots = 2
        first = gate.start_generation(10)
        await asyncio.sleep(0.05)
        first()  # measured: about 5 ms per step
        long = gate.start_generation(400)  # about 2 s of decoding
        # A free row: the next one joins at the next step, and a classification waits for
        # one step, not for the whole generation.
        second = gate.start_generation(400)
        assert gate.overloaded() == 0
        with pytest.raises(Unavailable, match="latency_budget_ms"):
            gate.start_generation(10)  # every row taken, each about 2 s from its end
        long()
        second()
        assert gate.generations == 0
        await batcher.stop()

    asyncio.run(scenario())


def test_bf16_autocast_predictor_decodes_batched_in_float32(llama_run: Path) -> None:
    # The paged cache takes the weights' dtype (float32); autocast's bf16 keys would not fit.
    want = generate_text(load_predictor(str(llama_run), precision="fp32"), PROMPTS[1], None,
                         GenerateParams(max_new_tokens=8))
    predictor = load_predictor(str(llama_run), precision="bf16")
    engine = start_batching(predictor, max_batch=2, max_new_tokens=16)
    assert engine is not None
    try:
        got = generate_text(predictor, PROMPTS[1], None, GenerateParams(max_new_tokens=8))
    finally:
        engine.stop()
    assert got == want and engine.steps > 0


def test_generate_route_takes_top_k_and_repetition_penalty(llama_run: Path) -> None:
    predictor = load_predictor(str(llama_run), precision="fp32")
    options = GenerateParams(max_new_tokens=10, repetition_penalty=1.5)
    want = generate_text(predictor, PROMPTS[0], None, options)
    with served(create_app(predictor, ServeJob(max_batch_generations=4, max_new_tokens=16),
                           api_keys=[])) as client:
        body = {"prompt": PROMPTS[0], "max_new_tokens": 10, "repetition_penalty": 1.5}
        assert client.post("/generate", json=body).json()["text"] == want
        top1 = client.post("/generate", json={**body, "do_sample": True, "top_k": 1})
        assert top1.json()["text"] == want  # sampling from one token is greedy
        assert client.post("/generate", json={**body, "top_k": -1}).status_code == 422
        assert client.get("/info").json()["max_batch_generations"] == 4
