"""The config of ``lmforge evaluate``."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt
from lmforge.settings import PRECISIONS, DataConfig


@dataclass
class EvaluateJob:
    """``lmforge evaluate``: perplexity / masked-token accuracy of a pretrained run."""

    run: str = opt("", "Run directory (or model folder) to evaluate.")
    data: DataConfig = opt(DataConfig(path=""), "")
    split: str = opt("validation", "Split to evaluate when data.path is a multi-split source.")
    batch_size: int = opt(32, "Examples per batch.")
    max_batches: int | None = opt(None, "Evaluate at most this many batches.")
    precision: str = opt("auto", "auto (bf16 where the CPU/GPU has bf16 units), bf16, fp16 "
                                 "(GPU only) or fp32.")
    seed: int = opt(1234, "Seed of the evaluation masks (fixed so runs compare).")
    output_dir: str | None = opt(None, "Where summary.json goes (default: the run directory).")

    def __post_init__(self) -> None:
        check_choice("precision", self.precision, PRECISIONS)
        check(self.batch_size >= 1, "batch_size must be >= 1")
