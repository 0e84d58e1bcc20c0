"""Pieces shared by the generative tasks (seq2seq and chat SFT): loss wrapper, reducer, I/O.

Both tasks train token cross-entropy on ``labels`` (-100 = not trained). The loss is a mean
over trained tokens, so the engine's ``n`` is the number of trained tokens and the summed
negative log-likelihood (``count_nll_sum``) gives an exact corpus perplexity. Decoding of a
finished model (:func:`generate_text`) lives here too: ``lmforge predict`` and the server
share it.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import StoppingCriteria, StoppingCriteriaList

from lmforge.engine.loop import evaluate_model
from lmforge.errors import ConfigError
from lmforge.finetuning.task import Task

log = logging.getLogger(__name__)

IGNORE = -100


class TokenLossObjective(nn.Module):
    """Token cross-entropy on ``labels`` for an encoder-decoder or a causal LM.

    Args:
        model: The ``transformers`` model (saved as is).
        shift: Causal LMs predict token t+1 at position t, so logits[:, :-1] are compared with
            labels[:, 1:]; encoder-decoders already align decoder outputs with labels.
        label_smoothing: Smoothing of the training loss; the reported NLL is unsmoothed.
    """

    def __init__(self, model: nn.Module, shift: bool, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.shift = shift
        self.label_smoothing = label_smoothing

    def forward(self, labels: torch.Tensor, **inputs: torch.Tensor) -> dict[str, Any]:
        """Loss (mean over trained tokens), ``n`` trained tokens and NLL / accuracy counts."""
        if not self.shift and "decoder_input_ids" not in inputs:
            # (B, T) decoder inputs = labels shifted right (the collator had no model)
            inputs["decoder_input_ids"] = self.model.prepare_decoder_input_ids_from_labels(
                labels=labels)
        logits = self.model(**inputs).logits  # (B, T, V)
        if self.shift:
            logits, labels = logits[:, :-1], labels[:, 1:]  # (B, T-1, V), (B, T-1)
        flat_logits = logits.reshape(-1, logits.shape[-1]).float()  # (B*T, V)
        flat_labels = labels.reshape(-1)  # (B*T,)
        valid = flat_labels != IGNORE
        n = int(valid.sum())
        nll = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE, reduction="sum")
        if n == 0:
            # A batch with no trained token (possible after truncation): zero loss, not NaN.
            loss = flat_logits.sum() * 0.0
        elif self.label_smoothing > 0:
            loss = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE,
                                   label_smoothing=self.label_smoothing)
        else:
            loss = nll / n
        result = {"loss": loss, "n": n, "count_nll_sum": nll.detach(), "count_tokens": n}
        if not self.training:  # only evaluation reads it (an argmax over the vocabulary)
            result["count_correct"] = (flat_logits.argmax(-1)[valid] == flat_labels[valid]).sum()
        return result


def token_reducer(sums: dict[str, float]) -> dict[str, float]:
    """``eval_loss``, ``eval_perplexity`` and ``eval_token_accuracy`` from summed counts."""
    n = max(sums.get("n", 0.0), 1.0)
    tokens = max(sums.get("count_tokens", 0.0), 1.0)
    mean_nll = sums.get("count_nll_sum", sums.get("loss_sum", 0.0)) / tokens
    return {"eval_loss": sums.get("loss_sum", 0.0) / n,
            # exp capped so an untrained model reports a huge number, not an overflow
            "eval_perplexity": math.exp(min(mean_nll, 50.0)),
            "eval_token_accuracy": sums.get("count_correct", 0.0) / tokens,
            "eval_tokens": sums.get("count_tokens", 0.0)}


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line (UTF-8, non-ASCII kept readable)."""
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def format_table(headline: dict[str, Any]) -> str:
    """Plain-text ``key: value`` lines for the console."""
    return "\n".join(f"{k:>18}: {v:.4f}" if isinstance(v, float) else f"{k:>18}: {v}"
                     for k, v in headline.items())


class GenerativeTaskBase(Task):
    """What the seq2seq and chat SFT tasks share: token-level metrics, nothing to finalize.

    Both generate text token by token: no ONNX graph, served at ``/generate``.
    """

    generative = True

    def reducer(self, sums: dict[str, float]) -> dict[str, float]:
        """Loss, perplexity and token accuracy on the trained (target / reply) tokens."""
        return token_reducer(sums)

    def finalize(self, model: nn.Module, tokenizer: Any, settings: Any,
                 validation: Any, accelerator: Any) -> None:
        """Nothing to tune after training."""

    @staticmethod
    def token_metrics(model: nn.Module, encoded: Any, collator: Any, accelerator: Any,
                      batch_size: int, shift: bool) -> dict[str, float]:
        """Loss / perplexity / token accuracy of ``model`` on an encoded split (for reports).

        Reports run on the main process alone, so the split is not divided among processes.
        """
        return evaluate_model(TokenLossObjective(model, shift=shift), encoded, collator,
                              accelerator, batch_size=batch_size, reducer=token_reducer,
                              across_processes=False)
@dataclass
class GenerationSettings:
    """Decoding options for :func:`generate_texts` (mirrors ``model.generate`` arguments).

    Attributes:
        max_new_tokens: Tokens generated at most per output.
        num_beams: Beam width; 1 means greedy (or plain sampling with ``do_sample``).
        do_sample: Sample instead of taking the most likely token.
        temperature: Softmax temperature when sampling (> 0).
        top_p: Nucleus sampling mass in (0, 1].
        top_k: Keep the k most likely tokens when sampling; 0 disables.
        repetition_penalty: > 1 discourages repeating tokens (CTRL, Keskar et al. 2019).
        length_penalty: Beam score exponent on length; > 1 favours longer outputs.
        no_repeat_ngram_size: Forbid repeating any n-gram of this size; 0 disables.
        stop: Strings that end an output (passed as ``stop_strings`` with the tokenizer by
            the callers; the text is cut at the first one, see :meth:`cut`).
    """

    max_new_tokens: int = 128
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = [
            (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
            (self.num_beams >= 1, "num_beams must be >= 1"),
            (self.temperature > 0, "temperature must be > 0 (use do_sample=false for greedy)"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.top_k >= 0, "top_k must be >= 0 (0 disables it)"),
            (self.repetition_penalty > 0, "repetition_penalty must be > 0 (1.0 disables it)"),
            (self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size must be >= 0 (0 disables)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"generation setting invalid: {message}; got {self}")

    def to_generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.generate``.

        Only options that take effect are passed, because transformers warns about e.g. a
        temperature given without sampling or a length penalty without beams.

        Returns:
            A dict such as ``{"max_new_tokens": 128, "num_beams": 1, "do_sample": False}``.
        """
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
            "do_sample": self.do_sample,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        if self.num_beams > 1:
            kwargs["length_penalty"] = self.length_penalty
        if self.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.repetition_penalty
        if self.no_repeat_ngram_size > 0:
            kwargs["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        return kwargs

    def cut(self, text: str) -> str:
        """``text`` up to the first of the :attr:`stop` strings (generation stops there)."""
        for marker in self.stop:
            text = text.split(marker)[0]
        return text


def decoding(settings: Any) -> GenerationSettings:
    """The decoding options saved with a generative run (its task's ``GenerationOptions``)."""
    return GenerationSettings(**settings.decoding_options())


@dataclass
class GenerateParams:
    """Decoding options of one ``/generate`` request."""

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    do_sample: bool = False
    top_k: int = 50
    repetition_penalty: float = 1.0

    @classmethod
    def for_run(cls, settings: Any, max_new_tokens: int, **request: Any) -> GenerateParams:
        """A request's options over the run's saved ones: a value left None is the run's.

        Args:
            settings: The run's task settings (its ``task.*`` decoding options, if any).
            max_new_tokens: Tokens allowed for this request (already capped by the server).
            request: ``temperature``, ``top_p``, ``do_sample``, ``top_k``,
                ``repetition_penalty`` as the request gave them (None: not given).
        """
        values = {name: getattr(settings, name, getattr(cls, name))
                  for name in ("temperature", "top_p", "do_sample", "top_k",
                               "repetition_penalty")}
        values.update({k: v for k, v in request.items() if v is not None})
        return cls(max_new_tokens=max_new_tokens, **values)


class _Cancelled(StoppingCriteria):
    """Stops generation once ``event`` is set (request timed out or client went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor,
                 **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)


def generation_call(predictor: Any, prompt: str | None, messages: list[dict[str, str]] | None,
                    params: GenerateParams, streaming: bool,
                    cancel: threading.Event) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tokenized prompt, ``model.generate`` options) of one request.

    The prompt is built exactly as the task's ``predict`` builds it (batch of one); setting
    ``cancel`` stops the generation at its next step.
    """
    inputs = predictor.task.generation_inputs(predictor.tokenizer, predictor.settings, prompt,
                                              messages)
    # Beams only without sampling or streaming (a streamer cannot follow several beams).
    beams = predictor.settings.num_beams if not (params.do_sample or streaming) else 1
    kwargs = GenerationSettings(max_new_tokens=params.max_new_tokens, num_beams=beams,
                                do_sample=params.do_sample, temperature=params.temperature,
                                top_p=params.top_p, top_k=params.top_k,
                                repetition_penalty=params.repetition_penalty
                                ).to_generate_kwargs()
    kwargs["stopping_criteria"] = StoppingCriteriaList([_Cancelled(cancel)])
    kwargs.update(predictor.task.generation_kwargs(predictor.tokenizer))
    return inputs, kwargs


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
    cancel = cancel or threading.Event()
    # The server's continuous batching (lmforge.serving.continuous), when it takes the request.
    batched = predictor.batched.pieces(prompt, messages, params, cancel, streaming=False) \
        if getattr(predictor, "batched", None) is not None else None
    if batched is not None:
        return finish_reply(predictor, "".join(batched))
    inputs, kwargs = generation_call(predictor, prompt, messages, params, False, cancel)
    width = inputs["input_ids"].shape[1]
    with predictor.lock, torch.no_grad(), predictor.autocast():
        out = predictor.model.generate(**inputs, **kwargs)
    if not getattr(predictor.model.config, "is_encoder_decoder", False):
        out = out[:, width:]  # a causal LM returns prompt + reply
    return finish_reply(predictor, predictor.tokenizer.decode(out[0], skip_special_tokens=True))
