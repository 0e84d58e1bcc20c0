"""``/generate``: one prompt at a time, whole or streamed token by token.

Generation requests bypass the micro-batcher: decoding is many forward passes whose number
differs per request, and batching them needs left padding and per-row stopping, while a
stream must start at once. Each request runs ``model.generate`` in a thread under the
predictor's lock (one model call at a time). Greedy settings reproduce ``lmforge predict``
exactly (same prompt rendering, stop string and decoding options).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from lmforge.finetuning.generative import GenerationSettings


@dataclass
class GenerateParams:
    """Decoding options of one ``/generate`` request."""

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    do_sample: bool = False


class _Cancelled(StoppingCriteria):
    """Stops generation once ``event`` is set (request timed out or client went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor,
                 **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)


def _inputs(predictor: Any, prompt: str | None,
            messages: list[dict[str, str]] | None) -> dict[str, torch.Tensor]:
    """Tokenized prompt exactly as the task's ``predict`` builds it (batch of one)."""
    return predictor.task.generation_inputs(predictor.tokenizer, predictor.settings, prompt,
                                            messages)


def _generate_kwargs(predictor: Any, params: GenerateParams, streaming: bool,
                     cancel: threading.Event) -> dict[str, Any]:
    # Beams only without sampling or streaming (a streamer cannot follow several beams).
    beams = predictor.settings.num_beams if not (params.do_sample or streaming) else 1
    kwargs = GenerationSettings(max_new_tokens=params.max_new_tokens, num_beams=beams,
                                do_sample=params.do_sample, temperature=params.temperature,
                                top_p=params.top_p).to_generate_kwargs()
    kwargs["stopping_criteria"] = StoppingCriteriaList([_Cancelled(cancel)])
    kwargs.update(predictor.task.generation_kwargs(predictor.tokenizer))
    return kwargs


def finish_reply(predictor: Any, text: str) -> str:
    """The reply as ``predict`` returns it (cut at the task's stop string, stripped)."""
    return predictor.task.finish_reply(text)


def generate_text(predictor: Any, prompt: str | None, messages: list[dict[str, str]] | None,
                  params: GenerateParams, cancel: threading.Event | None = None) -> str:
    """The whole generated reply for one prompt (blocking; run it in a thread).

    Args:
        predictor: A loaded generative :class:`~lmforge.predictor.Predictor`.
        prompt: The prompt text (or None with ``messages``, chat models only).
        messages: A conversation as ``{"role", "content"}`` dicts (chat models).
        params: Decoding options.
        cancel: Set it to stop generating early.

    Returns:
        The reply text.
    """
    inputs = _inputs(predictor, prompt, messages)
    kwargs = _generate_kwargs(predictor, params, False, cancel or threading.Event())
    width = inputs["input_ids"].shape[1]
    with predictor.lock, torch.no_grad(), predictor.autocast():
        out = predictor.model.generate(**inputs, **kwargs)
    if not getattr(predictor.model.config, "is_encoder_decoder", False):
        out = out[:, width:]  # a causal LM returns prompt + reply
    return finish_reply(predictor, predictor.tokenizer.decode(out[0], skip_special_tokens=True))


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
    ``cancel`` (or closing the iterator) stops the generation thread at its next step.
    """
    inputs = _inputs(predictor, prompt, messages)
    kwargs = _generate_kwargs(predictor, params, True, cancel)
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
