"""``/generate``, streamed: the reply token by token (the whole reply is
:func:`lmforge.finetuning.generative.generate_text`, which ``lmforge predict`` uses too).

Generation requests bypass the micro-batcher: decoding is many forward passes whose number
differs per request. The server batches them its own way (:mod:`.continuous`: concurrent
generations share each decoding step); without it (``max_batch_generations=1``, or a
request it cannot take) each request runs ``model.generate`` in a thread under the
predictor's lock (one model call at a time). Greedy settings reproduce ``lmforge predict``
exactly either way (same prompt rendering, stop string and decoding options).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import torch
from transformers import TextIteratorStreamer

from lmforge.finetuning.generative import (
    GenerateParams,
    finish_reply,
    generate_text,
    generation_call,
)

__all__ = ["GenerateParams", "finish_reply", "generate_text", "stream_text"]


def _safe_split(buffer: str, stop: str) -> tuple[str, str]:
    """(text that cannot begin the stop string, text held back until it is known)."""
    for keep in range(min(len(stop) - 1, len(buffer)), 0, -1):
        if stop.startswith(buffer[-keep:]):
            return buffer[:-keep], buffer[-keep:]
    return buffer, ""


def stream_text(predictor: Any, prompt: str | None, messages: list[dict[str, str]] | None,
                params: GenerateParams, cancel: threading.Event) -> Iterator[str]:
    """Yield the reply piece by piece as the model produces it (blocking iterator).

    ``model.generate`` runs in its own thread and feeds a ``TextIteratorStreamer``; the task's
    stop string (a chat model's end-of-turn marker) is held back and never yielded. Setting
    ``cancel`` (or closing the iterator) stops the generation thread at its next step. With
    the server's continuous batching on, the pieces come from the shared decoding loop
    instead (:mod:`.continuous`).
    """
    batched = predictor.batched.pieces(prompt, messages, params, cancel, streaming=True) \
        if getattr(predictor, "batched", None) is not None else None
    if batched is not None:
        yield from batched
        return
    inputs, kwargs = generation_call(predictor, prompt, messages, params, True, cancel)
    streamer = TextIteratorStreamer(predictor.tokenizer, skip_prompt=True,
                                    skip_special_tokens=True, timeout=None)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with predictor.lock, torch.no_grad(), predictor.autocast():
                predictor.model.generate(**inputs, **kwargs, streamer=streamer)
        except BaseException as err:  # noqa: BLE001 - re-raised in the consumer
            errors.append(err)
            streamer.end()

    thread = threading.Thread(target=work, name="lmforge-generate", daemon=True)
    thread.start()
    stop = predictor.task.stop_string
    buffer = ""
    try:
        for piece in streamer:
            if not stop:
                if piece:
                    yield piece
                continue
            buffer += piece
            if stop in buffer:
                head = buffer.split(stop)[0]
                if head:
                    yield head
                buffer = ""
                cancel.set()
                break
            ready, buffer = _safe_split(buffer, stop)
            if ready:
                yield ready
        if buffer and not cancel.is_set():
            yield buffer
    finally:
        # The streamer's queue is unbounded, so the thread never blocks on it: once
        # cancelled it ends at its next decoding step.
        cancel.set()
        thread.join()
    if errors:
        raise errors[0]
