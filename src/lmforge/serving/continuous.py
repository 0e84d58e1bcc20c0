"""Continuous batching of generations: concurrent requests share every decoding step.

Without it, each ``/generate`` (and ``/v1``) request runs its own ``model.generate`` under
the predictor's lock, so N users are served one after another. With it, one background
thread owns the decoding loop; each step is one forward pass over the active requests'
tokens; a new request joins at the next step (its prompt is prefilled in the same pass as
the others' next tokens) and a finished or cancelled one leaves at once.

The loop is transformers' own (``model.init_continuous_batching()``, its
``ContinuousBatchingManager``): requests are packed without padding into a paged KV cache
and scheduled first-in first-out. It runs on CPU with the causal LMs lmforge serves (Llama /
SmolLM2, GPT-2), in float32 and bfloat16 weights, and its float32 greedy replies equal
``model.generate``'s (``tests/serving/test_continuous.py``), so it is used rather than
rewritten. What it lacks is written here:

- **Per-row greedy or sampling.** The manager samples for every row or for none: it
  samples while a sampled request is running, a greedy row then keeping only its most
  likely token (``top_k=1``, the argmax), and takes the argmax otherwise. Temperature,
  top-p and top-k are per row (its per-request logits processors; top-k and top-p redone
  without sorting the vocabulary when they need not: a large share of a step).
- **Attention per row.** The manager packs all rows into one sequence and masks the others'
  keys, which costs (all queries) x (all keys); each row attends to its own keys here.
- **Repetition penalty per row** (:class:`_RepetitionPenalty`, a per-request processor
  over each row's prompt and generated tokens), which the manager does not offer.
- **Text, stop strings and cancellation.** Token ids become text pieces as they arrive;
  the task's stop string (a chat's end-of-turn marker) ends a row, and its token, when it
  is one token, is an end-of-sequence id of the row; setting the request's ``cancel``
  event takes the row out of the batch at the next step.
- **Sharing the model.** Each step holds the predictor's lock, so the micro-batched
  routes interleave with decoding steps, not with whole generations.

Precision: the paged cache takes the model's dtype, and bf16 autocast's keys and values
do not fit a float32 cache, so with ``precision=bf16`` (autocast over float32 weights) the
batched steps run in float32. Greedy replies equal ``generate``'s in float32; in bfloat16
(weights) a packed batch rounds differently from one row, so a reply may part from
``generate``'s after a near tie, as with any change of batch shape.

Requests the loop cannot take (beam search, an encoder-decoder model, a prompt and reply
longer than half the KV cache) run ``model.generate`` alone, as before.
``max_batch_generations=1`` turns batching off.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

PAGE_TOKENS = 64
"""Tokens per page of the paged KV cache."""

ROW_TOKENS = 256
"""KV-cache room per row on average (prompt + reply); a longer row takes more pages."""

_POLL_S = 0.05
"""How often a waiting reader checks its cancel event (seconds)."""


class StopScanner:
    """Text pieces in, pieces out, held back while they may begin a stop string.

    Args:
        stops: Strings that end the text (none are ever emitted, nor anything after).
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """What of ``held + piece`` can be emitted now ('' while a stop may be starting)."""
        if self.stopped:
            return ""
        text = self.held + piece
        found = [at for at in (text.find(s) for s in self.stops) if at >= 0]
        if found:
            self.stopped, self.held = True, ""
            return text[:min(found)]
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), keep, -1):
                if stop.startswith(text[-n:]):
                    keep = n
                    break
        self.held = text[len(text) - keep:]
        return text[:len(text) - keep]

    def flush(self) -> str:
        """The held-back end once the text is over (it began no stop string)."""
        rest, self.held = ("" if self.stopped else self.held), ""
        return rest


def _processor_classes() -> tuple[type, type, type]:
    """(:class:`_RepetitionPenalty`, faster top-k, faster top-p), built on first use."""
    from transformers.generation.continuous_batching.cb_logits_processors import (
        ContinuousBatchingLogitsProcessor,
        ContinuousBatchingTopKLogitsWarper,
        ContinuousBatchingTopPLogitsWarper,
    )

    class _RepetitionPenalty(ContinuousBatchingLogitsProcessor):
        """CTRL's repetition penalty per row: the logit of every token already in the row
        (prompt and reply) is divided by the penalty when positive, multiplied when negative.

        The per-request tensor argument carries only the penalty; the rows' tokens are read
        from the request states when the step's arguments are prepared (the same thread,
        just before the forward pass), as ``RepetitionPenaltyLogitsProcessor`` reads them
        from ``input_ids`` in ``generate``.
        """

        supported_kwargs: dict[str, type] = {"repetition_penalty": float}
        ignored_kwargs: tuple[str, ...] = ()

        def __init__(self) -> None:
            self.rows: list[list[int]] = []

        def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
            int32_tensor.copy_(torch.ones_like(int32_tensor, dtype=torch.float32)
                               .view(dtype=torch.int32))

        def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
            self.rows = [list(r.state.initial_tokens) + list(r.state.generated_tokens)
                         for r in requests_with_new_token]
            values = [float(r.state.logit_processor_kwargs.get("repetition_penalty", 1.0))
                      for r in requests_with_new_token]
            return torch.tensor(values, dtype=torch.float32).view(dtype=torch.int32)

        def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
            penalty = tensor_arg[:scores.size(0)].view(dtype=torch.float32)  # (B,)
            if not self.rows or bool((penalty == 1.0).all()):
                return scores
            scores = scores.clone()
            for row, tokens in enumerate(self.rows[:scores.size(0)]):
                p = float(penalty[row])
                if p == 1.0 or not tokens:
                    continue
                ids = torch.tensor(sorted(set(tokens)), dtype=torch.long,
                                   device=scores.device)
                picked = scores[row, ids]
                scores[row, ids] = torch.where(picked < 0, picked * p, picked / p)
            return scores

    class _TopK(ContinuousBatchingTopKLogitsWarper):  # type: ignore[misc]
        """The same mask as transformers' per-row top-k, without sorting the vocabulary:
        sorting 32 rows of 49k logits twice a step is a large share of a SmolLM2 step on CPU."""

        def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
            k = tensor_arg[:scores.size(0)].clamp(max=scores.size(-1)).long()
            if bool((k == 1).all()):  # greedy rows: only the most likely token stays
                return scores.masked_fill(scores < scores.amax(-1, keepdim=True),
                                          self.filter_value)
            most = int(k.max())
            if most >= scores.size(-1):
                return super().__call__(scores, tensor_arg)
            kth = torch.topk(scores, most, dim=-1).values.gather(-1, (k - 1).unsqueeze(-1))
            return scores.masked_fill(scores < kth, self.filter_value)

    class _TopP(ContinuousBatchingTopPLogitsWarper):  # type: ignore[misc]
        """transformers' per-row top-p, on the rows whose top-p is below 1 only."""

        def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
            rows = tensor_arg[:scores.size(0)].view(dtype=torch.float32) < 1.0
            if not bool(rows.any()):
                return scores
            if bool(rows.all()):
                return super().__call__(scores, tensor_arg)
            picked = rows.nonzero().squeeze(-1)
            out = scores.clone()
            out[picked] = super().__call__(scores[picked], tensor_arg[picked])
            return out

    return _RepetitionPenalty, _TopK, _TopP


def _per_sequence_sdpa(sdpa: Any) -> Any:
    """SDPA for the manager's packed batches, one sequence at a time.

    The manager packs every row's queries and keys into one sequence and masks the other
    rows' keys out, so plain SDPA costs (all queries) x (all keys): at 32 decoding rows of
    110 tokens, as much as the rest of the model. Attending each row to its own keys costs
    (its queries) x (its keys) and gives the same result. Calls without the packed layout
    go to ``sdpa`` unchanged.
    """

    def attend(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, dropout: float = 0.0,
               scaling: float | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
        cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
        if isinstance(cu_k, dict):
            cu_k = next(iter(cu_k.values())) if len(cu_k) == 1 else None
        if cu_q is None or cu_k is None or attention_mask is None or query.shape[0] != 1 \
                or attention_mask.dim() != 4:
            return sdpa(module, query, key, value, attention_mask, dropout=dropout,
                        scaling=scaling, **kwargs)
        gqa = query.shape[1] != key.shape[1]
        qs, ks = cu_q.tolist(), cu_k.tolist()
        outs = []
        for i in range(len(qs) - 1):
            q0, q1, k0, k1 = qs[i], qs[i + 1], ks[i], ks[i + 1]
            # One new token sees all its row's keys: no mask needed.
            mask = None if q1 - q0 == 1 else attention_mask[:, :, q0:q1, k0:k1]
            outs.append(F.scaled_dot_product_attention(
                query[:, :, q0:q1], key[:, :, k0:k1], value[:, :, k0:k1], attn_mask=mask,
                scale=scaling, enable_gqa=gqa))
        return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None

    return attend


class ContinuousGenerator:
    """The server's batched decoding loop for one predictor.

    Args:
        predictor: A loaded generative :class:`~lmforge.predictor.Predictor` (causal LM).
        max_batch: Most generations decoded together (more wait for a free row).
        row_tokens: KV-cache room per row on average (prompt + reply tokens): the cache
            holds ``max_batch * row_tokens`` tokens, its pages given to rows as they grow
            (a row that finds none free waits, or is evicted and prefilled again later).
            A request longer than half the cache runs alone.
    """

    def __init__(self, predictor: Any, max_batch: int, row_tokens: int) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.row_tokens = row_tokens
        positions = getattr(predictor.model.config, "max_position_embeddings", None) or \
            getattr(predictor.model.config, "n_positions", None) or 10**9
        self.longest = min(max_batch * row_tokens // 2, int(positions))
        self.manager: Any = None
        self._queues: dict[str, queue.Queue[Any]] = {}
        self._ids = itertools.count()
        self._router: threading.Thread | None = None
        self._closed = threading.Event()
        self.eos = self._eos_ids()
        self.steps = 0  # forward passes run (for tests and /metrics-style checks)
        self.step_seconds = 0.0  # time spent in them
        self._sampling = 0  # sampled requests added and not ended
        self._count_lock = threading.Lock()

    @staticmethod
    def unsupported(predictor: Any) -> str | None:
        """Why ``predictor`` cannot be batched (None: it can)."""
        model = predictor.model
        if getattr(model.config, "is_encoder_decoder", False):
            return "an encoder-decoder model"
        if not hasattr(model, "init_continuous_batching"):
            return f"{type(model).__name__} has no continuous batching in transformers"
        if predictor.backend != "torch":
            return f"the {predictor.backend} backend"
        return None

    def _eos_ids(self) -> list[int]:
        """End-of-sequence ids: the model's, and the task's stop string when it is one token."""
        config = self.predictor.model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else \
            self.predictor.model.config.eos_token_id
        ids = [int(i) for i in (eos if isinstance(eos, list) else [eos]) if i is not None]
        stop = self.predictor.task.stop_string
        if stop:
            tokens = self.predictor.tokenizer(stop, add_special_tokens=False)["input_ids"]
            if len(tokens) == 1 and tokens[0] not in ids:
                ids.append(int(tokens[0]))
        return ids or [-1]

    def start(self) -> None:
        """Build the manager and start its decoding thread and the output router."""
        from transformers import ContinuousBatchingConfig, GenerationConfig

        predictor = self.predictor
        # Every processor must exist at creation to be set per request: sampling on, and
        # temperature / top-k / top-p away from their "off" values (each row sets its own).
        generation = GenerationConfig(do_sample=True, temperature=0.5, top_k=50, top_p=0.5,
                                      max_new_tokens=16, eos_token_id=self.eos)
        pages = -(-self.row_tokens // PAGE_TOKENS)
        cb = ContinuousBatchingConfig(
            page_size=PAGE_TOKENS, num_blocks=self.max_batch * pages + 1,
            max_batch_tokens=max(512, 2 * self.max_batch), max_requests_per_batch=self.max_batch,
            use_cuda_graph=False, use_async_batching=False, per_request_processors=True,
            auto_switch_to_flash=False)
        manager = predictor.model.init_continuous_batching(generation_config=generation,
                                                           continuous_batching_config=cb)
        processors = manager.logit_processor
        penalty, top_k, top_p = _processor_classes()
        for processor in processors.logits_processor:
            for fast in (top_k, top_p):
                if type(processor) is fast.__mro__[1]:
                    processor.__class__ = fast  # same state, cheaper __call__
        # First, as in generate: the penalty acts on the logits before temperature / top-k.
        processors.logits_processor.insert(0, penalty())
        processors.tensors_required += 1
        processors.supported_keys["repetition_penalty"] = float
        processors.do_processing = True
        step = manager._generation_step
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        attend = _per_sequence_sdpa(ALL_ATTENTION_FUNCTIONS["sdpa"])

        def locked_step() -> None:
            # One model call at a time: the micro-batcher's forward passes take turns with
            # decoding steps (not with whole generations). Only these steps see the
            # per-sequence SDPA (other calls would fall through to SDPA anyway).
            with predictor.lock:
                began = time.perf_counter()
                # No row samples: argmax, as sampling from one kept token would give.
                manager.batch_processor.model_runner.do_sample = self._sampling > 0
                ALL_ATTENTION_FUNCTIONS["sdpa"] = attend
                try:
                    step()
                finally:
                    del ALL_ATTENTION_FUNCTIONS["sdpa"]
                self.step_seconds += time.perf_counter() - began
            self.steps += 1

        manager._generation_step = locked_step
        manager.start()
        self.manager = manager
        self._router = threading.Thread(target=self._route, name="lmforge-cb-router",
                                        daemon=True)
        self._router.start()

    def stop(self) -> None:
        """Stop decoding (unfinished requests fail) and the router."""
        self._closed.set()
        if self.predictor.batched is self:
            self.predictor.batched = None
        if self.manager is not None:
            self.manager.stop(block=True, timeout=30, hard_stop=True)
        if self._router is not None:
            self._router.join(timeout=5)

    def _route(self) -> None:
        """Hand each output of the manager's shared queue to its request's queue."""
        while not self._closed.is_set():
            out = self.manager.get_result(timeout=_POLL_S)
            if out is None:
                if not self.manager.is_running():
                    self._closed.wait(_POLL_S)  # stopped or crashed: readers notice
                continue
            inbox = self._queues.get(out.request_id)
            if inbox is not None:
                inbox.put(out)

    def pieces(self, prompt: str | None, messages: list[dict[str, str]] | None, params: Any,
               cancel: threading.Event, streaming: bool) -> Iterator[str] | None:
        """The reply's pieces from the batch, or None when the request must run alone.

        A request runs alone when it asks for beam search (the run's ``num_beams`` > 1, as
        ``generate_text`` uses it for a greedy whole reply), or prompt + reply exceed
        :attr:`longest`, or the loop is not running.
        """
        beams = getattr(self.predictor.settings, "num_beams", 1) or 1
        if (beams > 1 and not streaming and not params.do_sample) or self.manager is None \
                or not self.manager.is_running():
            return None
        inputs = self.predictor.task.generation_inputs(
            self.predictor.tokenizer, self.predictor.settings, prompt, messages)
        ids = inputs["input_ids"][0].tolist()
        if len(ids) + int(params.max_new_tokens) > self.longest:
            return None
        stop = self.predictor.task.stop_string
        return self.stream(ids, params, cancel, [stop] if stop else [])

    def stream(self, input_ids: list[int], params: Any, cancel: threading.Event,
               stops: list[str]) -> Iterator[str]:
        """The reply's text pieces as the batch produces them (blocking iterator).

        Args:
            input_ids: The tokenized prompt.
            params: :class:`~lmforge.finetuning.generative.GenerateParams`.
            cancel: Set it (or close the iterator) to take the row out at the next step.
            stops: Strings that end the reply (never yielded).
        """
        request_id = f"lmforge-{next(self._ids)}"
        inbox: queue.Queue[Any] = queue.Queue()
        self._queues[request_id] = inbox
        sample = bool(params.do_sample)
        top_k = int(getattr(params, "top_k", 50) or 0) if sample else 1
        options = {"temperature": float(params.temperature) if sample else 1.0,
                   "top_p": float(params.top_p) if sample else 1.0,
                   # 0 turns top-k off in generate; here it means the whole vocabulary
                   "top_k": top_k if top_k > 0 else int(self.predictor.model.config.vocab_size),
                   "repetition_penalty": float(getattr(params, "repetition_penalty", 1.0))}
        finished = False
        with self._count_lock:
            self._sampling += sample  # before the row can be scheduled
        try:
            added = self.manager.add_request(list(input_ids), request_id=request_id,
                                             max_new_tokens=int(params.max_new_tokens),
                                             streaming=True, eos_token_id=self.eos, **options)
            if added is None:
                raise RuntimeError("the batched generation loop is not accepting requests")
            yield from self._pieces(request_id, inbox, cancel, StopScanner(stops))
            finished = True
        finally:
            self._queues.pop(request_id, None)
            if not finished or cancel.is_set():
                self.manager.cancel_request(request_id)
            with self._count_lock:
                self._sampling -= sample

    def _pieces(self, request_id: str, inbox: queue.Queue[Any], cancel: threading.Event,
                scanner: StopScanner) -> Iterator[str]:
        tokenizer = self.predictor.tokenizer
        sent = ""
        while not cancel.is_set():
            try:
                out = inbox.get(timeout=_POLL_S)
            except queue.Empty:
                if not self.manager.is_running():
                    raise RuntimeError("the batched generation loop stopped") from None
                continue
            while not out.is_finished() and not inbox.empty():
                out = inbox.get_nowait()  # a slow reader skips to the newest tokens
            if out.error:
                raise RuntimeError(f"batched generation failed: {out.error}")
            text = tokenizer.decode(out.generated_tokens, skip_special_tokens=True)
            # An unfinished multi-byte character decodes to U+FFFD: wait for its next byte.
            if text.endswith("\ufffd") and not out.is_finished():
                continue
            # (Were the decoded start ever to change, what was sent stays sent.)
            piece = scanner.feed(text[len(sent):])
            sent = text
            if piece:
                yield piece
            if scanner.stopped:
                cancel.set()  # the row leaves the batch (stream() cancels it)
                return
            if out.is_finished():
                rest = scanner.flush()
                if rest:
                    yield rest
                return


def start_batching(predictor: Any, max_batch: int, max_new_tokens: int
                   ) -> ContinuousGenerator | None:
    """Batch the predictor's generations from now on (None: off or not possible).

    Args:
        predictor: The served predictor (its ``batched`` is set while the loop runs).
        max_batch: ``max_batch_generations``; 1 turns batching off.
        max_new_tokens: The server's cap on a reply, to size the KV cache.
    """
    if max_batch <= 1 or not predictor.generative:
        return None
    reason = ContinuousGenerator.unsupported(predictor)
    if reason is not None:
        log.info("generations run one at a time: no continuous batching for %s", reason)
        return None
    # Pages go to rows as they grow, so the average row, not the longest, sizes the cache
    # (float32 SmolLM2-135M: 46 KB per token, 32 rows x 256 tokens = 377 MB).
    engine = ContinuousGenerator(predictor, max_batch, min(max_new_tokens + 128, ROW_TOKENS))
    engine.start()
    predictor.batched = engine
    return engine
