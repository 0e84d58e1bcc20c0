"""Tiny fine-tuned runs and app helpers for the serving tests (offline, CPU, seconds)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from fastapi.testclient import TestClient
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from lmforge.cli import main
from lmforge.finetuning.saved import write_settings
from lmforge.finetuning.settings import FinetuneJob
from lmforge.finetuning.task import get_task, task_config
from tests.finetuning.conftest import save_word_encoder

POSITIVE = ["good", "great", "lovely", "wonderful"]
NEGATIVE = ["bad", "awful", "boring", "terrible"]
FILLER = ["the", "film", "was", "really", "a", "story", "and", "very"]
NER_WORDS = ["mr", "smith", "jones", "in", "paris", "london", "we", "met", "today"]
CHAT_WORDS = ["red", "green", "blue", "cat", "dog", "fish"]


def sentences(count: int, seed: int) -> list[tuple[str, str]]:
    """(text, label) pairs: a sentence with one positive or one negative word."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        label = rng.choice(["neg", "pos"])
        words = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if label == "pos" else NEGATIVE)]
        rng.shuffle(words)
        out.append((" ".join(words), label))
    return out


@pytest.fixture(scope="session")
def cls_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classification run made by `lmforge finetune` (a few steps: plumbing, not accuracy)."""
    root = tmp_path_factory.mktemp("serve-cls")
    encoder = save_word_encoder(root / "encoder", POSITIVE + NEGATIVE + FILLER)
    data = root / "data"
    data.mkdir()
    rows = "\n".join(f"{t},{label}" for t, label in sentences(64, 0))
    (data / "train.csv").write_text("text,label\n" + rows + "\n")
    run = root / "run"
    assert main(["finetune", f"--output-dir={run}", f"data.path={data}",
                 f"model.pretrained={encoder}", "train.max_steps=4", "train.batch_size=16",
                 "train.lr=5e-3", "track.progress=false", "track.backends=[jsonl]"]) == 0
    return run


def make_run(root: Path, task_name: str, base: Path, rows: list[dict[str, Any]],
             **task_options: Any) -> Path:
    """A run folder (model/ + lmforge_task.json) as `lmforge finetune` saves it, untrained.

    The task's own setup / load_model / save path is used, so serving sees exactly what a
    fine-tuned run holds; only the training steps are skipped.
    """
    from lmforge.finetuning.sft.data import ensure_chat_template

    job = FinetuneJob(task=task_config(task_name, **task_options))
    task = get_task(task_name)
    settings = task.setup(job, datasets.Dataset.from_list(rows))
    torch.manual_seed(0)
    model, _ = task.load_model(str(base), settings)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if task_name == "sft":
        ensure_chat_template(tokenizer)
    out = root / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_settings(out, settings)
    return root


@pytest.fixture(scope="session")
def ner_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained-head) NER run with PER / LOC tags."""
    root = tmp_path_factory.mktemp("serve-ner")
    encoder = save_word_encoder(root / "encoder", NER_WORDS)
    rows = [{"tokens": ["mr", "smith", "in", "paris"], "tags": ["O", "B-PER", "O", "B-LOC"]},
            {"tokens": ["we", "met", "jones"], "tags": ["O", "O", "B-PER"]}]
    return make_run(root / "run", "token_classification", encoder, rows)


@pytest.fixture(scope="session")
def qa_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained-head) extractive QA run."""
    root = tmp_path_factory.mktemp("serve-qa")
    encoder = save_word_encoder(root / "encoder", NER_WORDS + ["where", "does", "live", "?"])
    rows = [{"id": "0", "question": "where does smith live ?", "context": "smith in paris",
             "answers": {"text": ["paris"], "answer_start": [9]}}]
    return make_run(root / "run", "qa", encoder, rows, doc_stride=32)


@pytest.fixture(scope="session")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 chat run (default chat template, untrained: replies are arbitrary)."""
    from lmforge.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("serve-sft")
    base = root / "base"
    texts = [f"say {a} {b} {a} <|im_start|>user <|im_end|> assistant"
             for a in CHAT_WORDS for b in CHAT_WORDS]
    tok = train_tokenizer(texts, base, kind="bpe", vocab_size=400, min_frequency=1)
    # Untrained: with this seed greedy decoding gives visible characters (seeds 0-2 give
    # only newlines, which strip to an empty reply and would make the checks vacuous).
    torch.manual_seed(3)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=1,
                               n_head=4, bos_token_id=tok.bos_token_id,
                               eos_token_id=tok.eos_token_id)).save_pretrained(base)
    rows = [{"prompt": "say red cat", "response": "red cat"}]
    return make_run(root / "run", "sft", base, rows, max_new_tokens=8)


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    """Poll /ready until 200 (warm-up runs in the background after startup)."""
    deadline = time.monotonic() + timeout
    while (response := client.get("/ready")).status_code != 200:
        assert response.json()["status"] != "failed", response.json()["detail"]
        assert time.monotonic() < deadline, "server never became ready"
        time.sleep(0.02)


@contextmanager
def served(app: Any) -> Iterator[TestClient]:
    """A TestClient with the app's lifespan running and the model warmed up."""
    with TestClient(app) as client:
        wait_ready(client)
        yield client


@contextmanager
def live_server(app: Any, **options: Any) -> Iterator[int]:
    """Run ``app`` under a real uvicorn server in a thread; yield its loopback port.

    The socket is bound here (port 0) and handed to uvicorn, so no other process can take
    the port in between. ``options`` go to ``uvicorn.Config`` (e.g. ``timeout_keep_alive``).
    """
    import socket
    import threading

    import uvicorn

    from lmforge.serving.protocol import IdleTimeoutProtocol

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning", http=IdleTimeoutProtocol, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


def raw_request(path: str, body: bytes, content_type: str = "application/json",
                length: int | None = None) -> bytes:
    """An HTTP/1.1 POST as bytes (``length`` overrides Content-Length)."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
            ).encode() + body


def read_reply(sock: Any) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one response on a blocking socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


class Gated:
    """A predictor whose forward passes wait until :meth:`open` (deterministic queues).

    ``texts`` lists the inputs of every batch that really ran.
    """

    def __init__(self, predictor: Any) -> None:
        import dataclasses
        import threading

        self.gate = threading.Event()
        self.started = threading.Event()
        self.texts: list[list[str]] = []
        self.predictor = dataclasses.replace(predictor)
        run = predictor.predict_batch
        column = predictor.settings.text_column

        def predict_batch(payloads: list[Any]) -> list[Any]:
            self.texts.append([r[column] for records, _ in payloads for r in records])
            self.started.set()
            assert self.gate.wait(60), "gate never opened"
            return run(payloads)

        self.predictor.predict_batch = predict_batch  # type: ignore[method-assign]

    def open(self) -> None:
        """Let every waiting and future batch run."""
        self.gate.set()
