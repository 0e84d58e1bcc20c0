"""The config of ``lmforge export``."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt
from lmforge.settings import DataConfig

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
