"""The configs of the commands on finished runs: ``lmforge export`` and ``lmforge predict``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmforge.config import check, check_choice, opt
from lmforge.settings import PRECISIONS, DataConfig

EXPORT_FORMATS = ("all", "hf", "onnx")
QUANTIZE = ("none", "int8")


@dataclass
class ExportJob:
    """``lmforge export``: a fine-tuned run as a merged Hugging Face folder, ONNX and int8 ONNX.

    Every ONNX graph is checked against PyTorch on sample inputs; with data.path (a labeled
    file) the task metrics of PyTorch, ONNX and int8 ONNX are compared too.
    """

    run: str = opt("", "Fine-tuned run directory (or its model/ folder) to export.")
    format: str = opt("all", "all (hf, plus onnx for encoder tasks), hf (merged Hugging Face "
                             "folder) or onnx (classification, token_classification, qa).")
    quantize: str = opt("none", "none, or int8: also write onnx-int8/ with dynamic int8 "
                                "weights (ONNX Runtime quantize_dynamic).")
    merge: bool = opt(True, "PEFT runs: merge the adapter into the base weights for the hf "
                            "folder (false: save the adapter only; ONNX is always merged).")
    data: DataConfig = opt(DataConfig(path="", validation_ratio=0.0), "")
    split: str = opt("test", "Split of data.path to evaluate when it has several.")
    tolerance: float = opt(1e-4, "Largest |ONNX - PyTorch| output difference accepted for the "
                                 "fp32 ONNX model on the sample inputs.")
    opset: int | None = opt(None, "ONNX opset (None: the exporter's default).")
    num_threads: int | None = opt(None, "ONNX Runtime intra-op threads (None: torch's).")
    batch_size: int = opt(32, "Examples per batch when evaluating on data.path.")
    output_dir: str | None = opt(None, "Export folder (default: runs/export-<time>).")

    def __post_init__(self) -> None:
        check_choice("format", self.format, EXPORT_FORMATS)
        check_choice("quantize", self.quantize, QUANTIZE)
        check(self.tolerance > 0, "tolerance must be > 0")
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check(self.num_threads is None or self.num_threads >= 1, "num_threads must be >= 1")


@dataclass
class DecodingOverrides:
    """``generate.*`` of ``lmforge predict``: decoding options of a generative run.

    Each one left unset keeps what the run saved (its ``task.*`` decoding options).
    """

    max_new_tokens: int | None = opt(None, "Maximum new tokens.")
    num_beams: int | None = opt(None, "Beam size (1 = greedy).")
    do_sample: bool | None = opt(None, "Sample instead of greedy / beam search.")
    temperature: float | None = opt(None, "Softmax temperature when sampling (> 0).")
    top_p: float | None = opt(None, "Nucleus sampling mass in (0, 1].")
    top_k: int | None = opt(None, "Sample among the k most likely tokens (0: all).")
    repetition_penalty: float | None = opt(None, "> 1 discourages repeated tokens.")
    stop: list[str] | None = opt(None, "Extra stop strings.")
    seed: int | None = opt(None, "Seed for sampling (same seed, same outputs).")

    def given(self) -> dict[str, Any]:
        """The options set, without ``seed`` (applied to the run's saved settings)."""
        return {k: v for k, v in vars(self).items() if v is not None and k != "seed"}


@dataclass
class PredictJob:
    """``lmforge predict``: run a fine-tuned model on a file or stdin."""

    run: str = opt("", "Fine-tuned run directory (or its model/ folder).")
    input: str = opt("-", "Input: a text file (one text per line), a jsonl/csv/tsv file, or - "
                          "for stdin.")
    output: str = opt("-", "Where predictions go (jsonl); - for stdout.")
    text_column: str | None = opt(None, "Text column of jsonl/csv input (default: the run's).")
    top_k: int = opt(1, "Labels with scores to return per input (classification).")
    batch_size: int = opt(32, "Inputs per forward pass.")
    precision: str = opt("fp32", "PyTorch runs: fp32, bf16 (autocast), or auto (bf16 where "
                                 "the CPU / GPU has bf16 units).")
    generate: DecodingOverrides = opt(DecodingOverrides(), "")

    def __post_init__(self) -> None:
        check(self.top_k >= 1, "top_k must be >= 1")
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check_choice("precision", self.precision, PRECISIONS)

    @property
    def writes_stdout(self) -> bool:
        """True when the predictions go to stdout (then the CLI's talk goes to stderr)."""
        return self.output == "-"
