"""A finished model ready to predict: ``lmforge.load(...)``, ``lmforge serve`` and scripts.

A fine-tuned run (PyTorch) or an ``lmforge export`` ONNX folder (ONNX Runtime) loads into
one :class:`Predictor`. Both backends give a ``torch.nn.Module`` (for ONNX a shim around an
ORT session whose forward returns ``.logits`` / ``.start_logits`` / ``.end_logits``), so the
task's own ``predict`` turns it into rows, and the server and ``Predictor.predict`` return
exactly what ``lmforge predict`` prints.

Example::

    import lmforge
    clf = lmforge.load("runs/sst2")
    clf.predict(["a gorgeous, witty film", "a dull mess"])
    # [{'text': ..., 'label': '1', 'score': 0.97, 'top_k': [...]}, ...]
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmforge.config import nested_strings
from lmforge.data.sources import load_raw
from lmforge.deploy.onnx_model import find_onnx_folder, load_onnx_model
from lmforge.engine.precision import resolve_precision
from lmforge.errors import ConfigError, DataError
from lmforge.explaining.explainer import explain_predictor
from lmforge.finetuning.generative import GenerateParams, generate_text
from lmforge.finetuning.saved import load_finetuned
from lmforge.finetuning.task import Task, TaskSettings
from lmforge.textfiles import STDIN, read_lines

log = logging.getLogger(__name__)


@dataclass
class Predictor:
    """A loaded model with its task, ready to answer batches of raw records.

    Attributes:
        task: The :class:`~lmforge.finetuning.task.Task` object.
        settings: The task's typed settings saved with the model (``lmforge_task.json``).
        tokenizer: The model's tokenizer.
        model: The model (eval mode).
        backend: ``torch`` or ``onnx``.
        precision: What really runs: ``fp32``, ``bf16`` (torch autocast), ``onnx`` or
            ``onnx-int8``.
        source: The folder the model came from.
    """

    task: Task
    settings: TaskSettings
    tokenizer: Any
    model: nn.Module
    backend: str = "torch"
    precision: str = "fp32"
    source: str = ""
    # One forward pass at a time: the batch worker and generation threads share the model.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # The server's continuous batching of generations (lmforge.serving.continuous); None:
    # each generation runs model.generate alone.
    batched: Any = field(default=None, repr=False)

    @property
    def task_name(self) -> str:
        """The registered task name (``classification``, ``qa``, ...)."""
        return self.task.name

    @property
    def generative(self) -> bool:
        """True when the model writes text token by token (seq2seq, chat SFT)."""
        return self.task.generative

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast when that precision was chosen, else a no-op."""
        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def labels(self) -> list[str] | None:
        """The label names of classification and NER models (None for the others)."""
        return self.task.label_names(self.settings)

    def predict(self, inputs: str | dict[str, Any] | list[str | dict[str, Any]],
                top_k: int = 1) -> list[dict[str, Any]]:
        """The task's prediction rows for ``inputs`` (one forward pass, under the lock).

        Args:
            inputs: One input or a list: bare strings are texts (the run's text column),
                dicts are records with the task's input fields (e.g. ``question`` and
                ``context`` for QA, ``tokens`` for NER).
            top_k: Labels with scores per input (classification).

        Returns:
            One row per input, as ``lmforge predict`` writes them.
        """
        items = inputs if isinstance(inputs, list) else [inputs]
        records = [r if isinstance(r, dict) else self.task.record_from_text(self.settings,
                                                                             str(r))
                   for r in items]
        if not records:
            return []
        chunks = [list(range(len(records)))] if self.generative or len(records) < 3 \
            else length_chunks(self._lengths(records))
        rows: list[dict[str, Any] | None] = [None] * len(records)
        with self.lock, torch.no_grad(), self.autocast():
            for chunk in chunks:
                got = self.task.predict(self.model, self.tokenizer, self.settings,
                                        [records[i] for i in chunk], top_k)
                for i, row in zip(chunk, got, strict=True):
                    rows[i] = row
        return rows  # type: ignore[return-value]

    def _lengths(self, records: list[dict[str, Any]]) -> list[int]:
        """Tokens per record (all its strings, cut at the task's max_length)."""
        per_record = [nested_strings(r) for r in records]
        flat = [s for strings in per_record for s in strings]
        counts = iter(len(ids) for ids in self.tokenizer(
            flat, add_special_tokens=False)["input_ids"]) if flat else iter(())
        cap = getattr(self.settings, "max_length", None) or 10**9
        return [min(sum(next(counts) for _ in strings) + 2, cap) for strings in per_record]

    def explain(self, inputs: Any, methods: list[str] | None = None, target: str | None = None,
                **options: Any) -> list[dict[str, Any]]:
        """Word and token attributions per method: see :mod:`lmforge.explaining`."""
        return explain_predictor(self, inputs, methods, target, **options)

    def predict_batch(self, payloads: list[tuple[list[dict[str, Any]], int]]
                      ) -> list[list[dict[str, Any]]]:
        """Batch function of the micro-batcher: ``[(records, top_k), ...]`` -> rows per payload.

        Payloads with the same ``top_k`` share one :meth:`predict` call (the usual case: one
        forward pass for the whole batch).
        """
        results: list[list[dict[str, Any]] | None] = [None] * len(payloads)
        by_k: dict[int, list[int]] = {}
        for i, (_, top_k) in enumerate(payloads):
            by_k.setdefault(top_k, []).append(i)
        for top_k, indices in by_k.items():
            records = [r for i in indices for r in payloads[i][0]]
            rows = self.predict(records, top_k)
            start = 0
            for i in indices:
                n = len(payloads[i][0])
                results[i] = rows[start:start + n]
                start += n
        return [r if r is not None else [] for r in results]

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without special tokens (for the max_input_tokens limit)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def warmup(self) -> None:
        """Run the model once so the first real request does not pay for lazy init."""
        if self.generative:

            generate_text(self, "warm up", None, GenerateParams(max_new_tokens=1))
        else:
            self.predict([self.task.example_record(self.settings)])


CHUNK_OVERHEAD_TOKENS = 48
"""Cost of one more forward pass, in padded tokens (Python overhead, smaller matrices)."""


def length_chunks(lengths: list[int], overhead: int = CHUNK_OVERHEAD_TOKENS
                  ) -> list[list[int]]:
    """Split a batch into forward passes of similar lengths, to compute less padding.

    A pass over inputs padded to their longest one costs about ``overhead + n * longest``
    token positions. Sorted by length, the split that minimizes the total is found by
    dynamic programming over the cut points (n <= a few hundred: microseconds). SST-2
    sentences (25 tokens on average, up to 55) padded together waste about half the work.

    Args:
        lengths: Tokens per input.
        overhead: Fixed cost of a pass, in token positions.

    Returns:
        Lists of input indices, one per pass (shortest inputs first).
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j sorted inputs
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]
        for i in range(j):
            cost = best[i] + overhead + (j - i) * longest
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks = []
    j = n
    while j > 0:
        chunks.append(order[cut[j]:j])
        j = cut[j]
    return chunks[::-1]


def _load_torch(source: str, precision: str) -> Predictor:
    if (Path(source) / "model.onnx").is_file():
        raise ConfigError(f"{source} is an ONNX export; serve it with backend=onnx")
    run = load_finetuned(source)
    run.model.eval()
    resolved = resolve_precision(precision, torch.device("cpu"))
    return Predictor(run.task, run.settings, run.tokenizer, run.model, "torch", resolved,
                     run.model_dir)


def _load_onnx(source: str, threads: int | None) -> Predictor:
    # load_onnx_model says in one line when onnxruntime is missing
    model, tokenizer, task, settings = load_onnx_model(source, num_threads=threads)
    path = str(getattr(model, "path", source))
    # The export writes the quantized graph to onnx-int8/ (see lmforge export).
    kind = "onnx-int8" if "int8" in Path(path).parent.name else "onnx"
    return Predictor(task, settings, tokenizer, model, "onnx", kind, str(Path(path).parent))


def load_predictor(source: str | Path, backend: str = "auto", precision: str = "auto",
                   threads: int | None = None) -> Predictor:
    """Load a fine-tuned run (torch) or an ONNX export folder (onnx) to predict with.

    Args:
        source: Run directory, its ``model/`` folder, or an ONNX export folder.
        backend: ``torch``, ``onnx``, or ``auto`` (onnx for an export folder holding
            ``model.onnx``, torch otherwise).
        precision: torch only: ``auto`` (bf16 where the CPU has native bf16), ``fp32``,
            ``bf16``.
        threads: torch intra-op threads (None: leave torch's default).

    Returns:
        The :class:`Predictor`.

    Raises:
        ConfigError: A missing run, a folder that is not a fine-tuned model, or an ONNX
            backend that is not installed.
    """
    if not source:
        raise ConfigError("set the model to load: a finetune run directory or an ONNX export "
                          "folder (lmforge serve RUN_DIR, lmforge.load(RUN_DIR))")
    source = str(source)
    if backend == "auto":

        backend = "onnx" if find_onnx_folder(source) is not None else "torch"
    if backend not in ("torch", "onnx"):
        raise ConfigError(f"backend={backend!r} is not valid; choose torch, onnx or auto")
    if threads:
        torch.set_num_threads(threads)
    predictor = _load_torch(source, precision) if backend == "torch" \
        else _load_onnx(source, threads)
    log.info("loaded %s (%s task) with %s / %s", predictor.source, predictor.task_name,
             predictor.backend, predictor.precision)
    return predictor


def read_inputs(source: str, text_column: str) -> Iterator[dict[str, Any]]:
    """Records from stdin / a text file (one text per line) / a jsonl, csv, tsv file.

    Raises:
        DataError: The file is missing, or it (or stdin) is not UTF-8 text.
    """
    if source != STDIN:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"input file {source!r} not found; pass input=FILE or input=- for "
                            "stdin")
        if path.suffix in (".jsonl", ".json", ".csv", ".tsv", ".parquet"):
            if path.suffix != ".parquet":
                for _ in read_lines(path):  # a non-UTF-8 file: one line naming the byte
                    pass
            split = next(iter(load_raw(str(path)).values()))
            yield from split
            return
    yield from ({text_column: line} for line in read_lines(source) if line.strip())
