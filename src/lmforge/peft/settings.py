"""The ``peft:`` section of ``lmforge finetune``: which parameter-efficient method and its knobs.

Kept free of torch / peft imports so the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt

PEFT_METHODS = ("none", "lora", "ia3", "prefix", "prompt", "ptuning", "houlsby", "pfeiffer",
                "bitfit")
NON_LINEARITIES = ("relu", "gelu", "silu", "tanh")


@dataclass
class PeftConfig:
    """Parameter-efficient fine-tuning: train a small set of weights, keep the rest frozen."""

    method: str = opt("none", "none (full fine-tuning), lora (Hu et al. 2021), ia3 (Liu et al. "
                              "2022), prefix (Li & Liang 2021), prompt (Lester et al. 2021), "
                              "ptuning (Liu et al. 2021), houlsby / pfeiffer bottleneck adapters "
                              "(2019 / 2020) or bitfit (biases only, Ben Zaken et al. 2021).")
    r: int = opt(8, "LoRA: rank of the update B A.")
    alpha: float = opt(16.0, "LoRA: scaling numerator; the update is scaled by alpha / r.")
    dropout: float = opt(0.05, "LoRA: dropout on the input of the low-rank branch.")
    target_modules: list[str] = opt([], "LoRA / IA3: module names to adapt (empty: a default "
                                        "per architecture, e.g. query,value for BERT).")
    use_dora: bool = opt(False, "LoRA: weight-decomposed LoRA (DoRA, Liu et al. 2024).")
    use_rslora: bool = opt(False, "LoRA: rank-stabilised scaling alpha / sqrt(r) "
                                  "(Kalajdzievski 2023).")
    num_virtual_tokens: int = opt(20, "prefix / prompt / ptuning: number of virtual tokens.")
    reduction_factor: int = opt(16, "Adapters: bottleneck size = hidden size / reduction_factor.")
    non_linearity: str = opt("relu", "Adapters: activation of the bottleneck: relu, gelu, silu "
                                     "or tanh.")
    freeze_layers: int = opt(0, "Freeze the embeddings and the first N layers (method none or "
                                "bitfit).")

    def __post_init__(self) -> None:
        check_choice("peft.method", self.method, PEFT_METHODS)
        check_choice("peft.non_linearity", self.non_linearity, NON_LINEARITIES)
        check(self.r >= 1, "peft.r must be >= 1")
        check(self.alpha > 0, "peft.alpha must be > 0")
        check(0.0 <= self.dropout < 1.0, "peft.dropout must be in [0, 1)")
        check(self.num_virtual_tokens >= 1, "peft.num_virtual_tokens must be >= 1")
        check(self.reduction_factor >= 1, "peft.reduction_factor must be >= 1")
        check(self.freeze_layers >= 0, "peft.freeze_layers must be >= 0")
        check(self.freeze_layers == 0 or self.method in ("none", "bitfit"),
              f"peft.freeze_layers works with peft.method=none or bitfit; {self.method} already "
              "freezes the base model, so drop peft.freeze_layers")
        check(not (self.use_dora and self.method != "lora"),
              "peft.use_dora needs peft.method=lora")
