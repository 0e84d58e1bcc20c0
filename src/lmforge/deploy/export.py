"""``lmforge export``: a fine-tuned run as a merged HF folder, an ONNX graph and int8 ONNX.

Output folder::

    OUT/hf/               merged weights (safetensors) + tokenizer + config + lmforge_task.json
    OUT/onnx/             model.onnx (dynamic batch and sequence axes) + the same side files
    OUT/onnx-int8/        model.onnx with int8 weights (quantize=int8)
    OUT/eval/<backend>/   task reports on data.path (when given)
    OUT/export_summary.json (and summary.json)   sizes, max |ONNX - PyTorch|, metrics, deltas

Every ONNX graph is run with ONNX Runtime on sample inputs of several batch sizes and
lengths and compared with PyTorch; the fp32 graph must agree within ``tolerance``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from lmforge.data.corpus import load_corpus
from lmforge.deploy.onnx_model import ONNX_FILE, OnnxTaskModel, find_onnx_folder
from lmforge.deploy.settings import ExportJob
from lmforge.errors import ConfigError, DataError, LmforgeError
from lmforge.finetuning.saved import (
    TASK_FILE,
    finetuned_model_dir,
    read_settings,
    write_settings,
)
from lmforge.finetuning.task import Task, TaskSettings, all_tasks
from lmforge.peft.io import merge_adapter as fold
from lmforge.runs import save_atomically

log = logging.getLogger(__name__)

SAMPLE_BATCH_SIZES = (1, 3, 8)


class ExportCheckError(LmforgeError):
    """The exported graph does not reproduce the PyTorch outputs."""


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Raise the given loggers ("" = root) to ERROR for the duration of the block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# ---------------------------------------------------------------------------------------------
# Hugging Face folder


def merge_adapter(model: nn.Module) -> tuple[nn.Module, bool]:
    """A PEFT model merged into its base (LoRA: ``W <- W0 + (alpha/r) B A``); others unchanged.

    Returns:
        (model, merged?): the plain ``transformers`` model after ``merge_and_unload()``.

    Raises:
        ConfigError: Prompt methods and bottleneck adapters, which cannot be merged.
    """
    merged = fold(model)
    return merged, merged is not model


def _side_files(folder: Path, model: nn.Module, tokenizer: Any, settings: TaskSettings) -> None:
    """Tokenizer, transformers config and task settings next to exported weights."""
    tokenizer.save_pretrained(folder)
    config = getattr(model, "config", None)
    # An unmerged PEFT folder (merge=false) is adapter_config.json + adapter weights; a
    # config.json there would make loaders expect full weights.
    if config is not None and not (folder / "config.json").is_file() and \
            not hasattr(model, "peft_config"):
        config.save_pretrained(folder)
    write_settings(folder, settings)


def set_label_names(model: nn.Module, task: Task, settings: TaskSettings) -> None:
    """id2label / label2id in the config so pipelines print label names, not LABEL_0."""
    labels = task.label_names(settings)
    config = getattr(model, "config", None)
    if labels and config is not None:
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}


def export_hf(model: nn.Module, tokenizer: Any, task: Task, settings: TaskSettings,
              folder: Path, merge: bool = True) -> tuple[nn.Module, bool]:
    """Write a Hugging Face folder loadable by ``transformers.pipeline`` without lmforge.

    Args:
        model: The fine-tuned model (a ``peft.PeftModel`` for adapter runs).
        tokenizer: Its tokenizer.
        task: The task object.
        settings: The task settings (saved as ``lmforge_task.json``).
        folder: Target folder (replaced atomically).
        merge: PEFT models: merge the adapter first (False: save the adapter only).

    Returns:
        (model after merging, merged?).
    """
    if merge:
        model, merged = merge_adapter(model)
    else:
        merged = False
    set_label_names(model, task, settings)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        _side_files(tmp, model, tokenizer, settings)

    save_atomically(folder, write)
    return model, merged


# ---------------------------------------------------------------------------------------------
# ONNX


class _Graph(nn.Module):
    """Fixed signature and a tuple of named outputs: what the ONNX graph's I/O becomes."""

    def __init__(self, model: nn.Module, output_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.output_names = output_names

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        out = self.model(**inputs, return_dict=True)
        return tuple(out[name] for name in self.output_names)


def _input_names(model: nn.Module, tokenizer: Any) -> list[str]:
    names = ["input_ids", "attention_mask"]
    accepted = inspect.signature(model.forward).parameters
    if "token_type_ids" in getattr(tokenizer, "model_input_names", []) and \
            "token_type_ids" in accepted:
        names.append("token_type_ids")
    return names


def _tokenize(tokenizer: Any, pairs: list[tuple[str, str | None]], max_length: int,
              names: list[str]) -> dict[str, torch.Tensor]:
    firsts = [a for a, _ in pairs]
    seconds = [b for _, b in pairs] if pairs and pairs[0][1] is not None else None
    enc = tokenizer(firsts, seconds, truncation=True, max_length=max_length, padding=True,
                    return_tensors="pt")
    return {name: enc[name] for name in names if name in enc}


def export_onnx(model: nn.Module, tokenizer: Any, task: Task, settings: TaskSettings,
                path: Path, opset: int | None = None) -> None:
    """Export an encoder task model to ``path`` with dynamic (batch, sequence) axes.

    Uses the ``torch.export``-based exporter (``dynamo=True``, needs onnxscript): it records
    the graph symbolically, so the padding-mask branch of the attention code stays in the
    graph. The TorchScript tracer (``dynamo=False``) runs the model once on the example and
    freezes Python-level decisions taken on it (e.g. transformers dropping an all-ones mask
    for SDPA), which gave |diff| ~1e-2 on padded batches in our check; the dynamo export gave
    1e-8 to 1e-6 and byte-identical files across runs.
    """
    names = _input_names(model, tokenizer)
    # Two inputs of different lengths, as the task takes them (single texts or pairs): batch
    # and sequence above 1 (sizes 0/1 get specialised).
    samples = task.sample_inputs(settings, None)
    short = ("a short one", "a context" if samples[0][1] is not None else None)
    example = _tokenize(tokenizer, [short, max(samples, key=lambda p: len(p[0]))], 32, names)
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence")
    dynamic = {name: {0: batch, 1: sequence} for name in example}
    graph = _Graph(model, task.onnx_outputs).eval()
    # The exporter prints progress lines, logs every optimisation pass and warns about merged
    # axis names; keep the CLI quiet.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            _quiet("torch.onnx", "torch.export", "onnxscript", "onnx_ir"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph, (), kwargs=example, dynamo=True,
                                    dynamic_shapes=dynamic, input_names=list(example),
                                    output_names=list(task.onnx_outputs),
                                    opset_version=opset, verbose=False)
    # Per-node metadata (FX node text, module paths of this machine) is debug info that
    # would otherwise be shipped: ~0.25 MB for a 2-layer model.
    for node in program.model.graph.all_nodes():
        node.metadata_props.clear()
    program.save(str(path))


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of the weights (activations quantized on the fly).

    Per output channel j: ``s_j = max_i |W_ij| / 63``, ``q = round(W / s)`` stored as int8
    (7 significant bits, see below); MatMuls run in integer arithmetic on activations
    quantized per batch (uint8, scale and zero point from the batch's min / max).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    large = (source.parent / (source.name + ".data")).is_file()
    # reduce_range (7-bit weights): AVX2 kernels without VNNI add u8 x s8 products pairwise
    # in int16 and saturate; per-channel scales follow each output row's range. Together
    # they cut the logit error of a 2-layer test model from 0.8 to 0.3 on an AVX2 CPU.
    with _quiet(""):  # the quantizer logs one INFO line per tensor on the root logger
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8,
                         per_channel=True, reduce_range=True, use_external_data_format=large)


@torch.no_grad()
def max_abs_diff(reference: nn.Module, candidate: nn.Module, tokenizer: Any, task: Task,
                 settings: TaskSettings, pairs: list[tuple[str, str | None]]) -> float:
    """Largest |candidate - reference| over all outputs on batches of 1, 3 and 8 inputs.

    Each batch is padded to its longest input, so lengths and padding masks vary too.
    """
    names = _input_names(reference, tokenizer)
    worst = 0.0
    for size in SAMPLE_BATCH_SIZES:
        batch = _tokenize(tokenizer, pairs[:size], settings.max_length, names)
        ref, cand = reference(**batch), candidate(**batch)
        for name in task.onnx_outputs:
            diff = (ref[name].float() - cand[name].float()).abs().max().item()
            worst = max(worst, diff)
    return worst


def _onnx_folder(folder: Path, model: nn.Module, tokenizer: Any, settings: TaskSettings,
                 make: Any, check: Any) -> float:
    """Write ``folder`` atomically: ``make(tmp/model.onnx)``, side files, then ``check``."""
    result: dict[str, float] = {}

    def write(tmp: Path) -> None:
        make(tmp / ONNX_FILE)
        _side_files(tmp, model, tokenizer, settings)
        # Checked before the folder is swapped in: a failed check leaves no bad export.
        result["diff"] = check(tmp / ONNX_FILE)

    save_atomically(folder, write)
    return result["diff"]


# ---------------------------------------------------------------------------------------------
# Evaluation on a labeled file


def labeled_split(job: ExportJob) -> Any:
    """The split ``job.split`` of ``job.data``, read whole (nothing carved out of it)."""
    corpus = load_corpus(replace(job.data, validation_ratio=0.0, test_ratio=0.0))
    if job.split in corpus:
        return corpus[job.split]
    if list(corpus) == ["train"]:
        return corpus["train"]
    raise DataError(f"split {job.split!r} not found in {job.data.path} (have {sorted(corpus)}); "
                    "set split=")


def evaluate_models(models: dict[str, nn.Module], task: Task, tokenizer: Any,
                    settings: TaskSettings, split: Any, job: ExportJob,
                    out: Path) -> dict[str, dict[str, float]]:
    """Headline metrics per backend (``task.report`` into OUT/eval/<backend>)."""
    # A copy: encoding may record facts in the settings (QA's answer check), which the
    # exported folders must not pick up from the evaluation file.
    settings = copy.deepcopy(settings)
    encoded = task.encode(split, tokenizer, settings, "evaluation")
    # fp32 on the CPU for every backend, so differences come from the export alone.
    cpu = SimpleNamespace(device=torch.device("cpu"), autocast=None)
    headlines = {}
    for name, model in models.items():
        report = task.report(model, tokenizer, settings, split, encoded, out / "eval" / name,
                             cpu, job.batch_size)
        headlines[name] = {k: float(v) for k, v in report["headline"].items()
                           if isinstance(v, (int, float))}
    return headlines


def metric_deltas(task: Task, base: dict[str, float], other: dict[str, float]) -> dict[str, float]:
    """other - base in points (the task's metric scale: fractions x 100, percentages x 1)."""
    scale = task.metric_scale
    # + 0.0 turns round()'s -0.0 into 0.0 in the JSON.
    return {k: round((other[k] - base[k]) * scale, 4) + 0.0 for k in base
            if k in other and k not in ("misaligned_answers", "skipped_examples")}


def size_mb(folder: Path, patterns: tuple[str, ...]) -> float:
    """MiB of the files of ``folder`` that match ``patterns`` (4 decimals)."""
    total = sum(f.stat().st_size for p in patterns for f in folder.glob(p) if f.is_file())
    return round(total / 2**20, 4)


# ---------------------------------------------------------------------------------------------
# The command


def _require_onnx() -> None:
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"ONNX export needs {', '.join(missing)}: pip install onnx onnxscript "
                          "onnxruntime (or use format=hf)")


def check_request(job: ExportJob) -> tuple[Task, TaskSettings]:
    """Fail fast (before loading weights) on a missing run or a format the task lacks."""
    if not job.run:
        raise ConfigError("set the run to export: lmforge export RUN_DIR --output-dir OUT")
    if find_onnx_folder(job.run) is not None:
        raise ConfigError(f"{job.run} is already an ONNX export; pass the fine-tuned run "
                          "directory")
    model_dir = finetuned_model_dir(job.run)
    saved = read_settings(model_dir)
    if saved is None:
        raise ConfigError(f"{model_dir} is not a fine-tuned lmforge model (no {TASK_FILE}); "
                          "pass a finetune run directory")
    task, settings = saved
    if not task.onnx_outputs and (job.format == "onnx" or job.quantize == "int8"):
        with_onnx = [name for name, t in all_tasks().items() if t.onnx_outputs]
        raise ConfigError(f"format=onnx / quantize=int8 support {', '.join(with_onnx)}; a "
                          f"{task.name} model generates token by token, export it with "
                          "format=hf")
    if job.format == "hf" and job.quantize == "int8":
        raise ConfigError("quantize=int8 quantizes the ONNX graph; use format=onnx or "
                          "format=all")
    if job.format != "hf" and task.onnx_outputs:
        _require_onnx()
    return task, settings


def export_onnx_variants(model: nn.Module, tokenizer: Any, task: Task, settings: TaskSettings,
                         job: ExportJob, out: Path, rows: list[dict[str, Any]] | None,
                         summary: dict[str, Any]) -> dict[str, OnnxTaskModel]:
    """Write OUT/onnx (and OUT/onnx-int8), each checked against ``model``; fill ``summary``.

    Returns:
        The loaded ONNX models by folder name, for the evaluation on data.path.
    """
    pairs = task.sample_inputs(settings, rows)

    def check(path: Path, limit: float | None) -> float:
        candidate = OnnxTaskModel(path, task, job.num_threads, config=model.config)
        diff = max_abs_diff(model, candidate, tokenizer, task, settings, pairs)
        if limit is not None and diff > limit:
            raise ExportCheckError(
                f"ONNX outputs differ from PyTorch by {diff:.3g} > tolerance={limit:g}; "
                "raise tolerance= if that is acceptable, or report the model family")
        return diff

    fp32 = out / "onnx" / ONNX_FILE
    diffs = {"onnx": _onnx_folder(
        out / "onnx", model, tokenizer, settings,
        lambda p: export_onnx(model, tokenizer, task, settings, p, job.opset),
        lambda p: check(p, job.tolerance))}
    log.info("ONNX vs PyTorch: max |diff| = %.3g (tolerance %g)", diffs["onnx"], job.tolerance)
    if job.quantize == "int8":
        diffs["onnx-int8"] = _onnx_folder(out / "onnx-int8", model, tokenizer, settings,
                                          lambda p: quantize_int8(fp32, p),
                                          lambda p: check(p, None))  # lossy: reported only
        log.info("int8 ONNX vs PyTorch: max |diff| = %.3g", diffs["onnx-int8"])
    models = {}
    for name in diffs:
        path = out / name / ONNX_FILE
        summary["formats"][name] = str(path)
        summary["size_mb"][name] = size_mb(out / name, (ONNX_FILE, ONNX_FILE + ".data"))
        models[name] = OnnxTaskModel(path, task, job.num_threads, config=model.config)
    summary["max_abs_diff"] = diffs
    summary["tolerance"] = job.tolerance
    return models
