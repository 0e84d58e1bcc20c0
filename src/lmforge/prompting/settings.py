"""The config of ``lmforge prompt`` (one root dataclass; sections reuse lmforge.settings)."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt
from lmforge.settings import DataConfig, ModelConfig, TrackConfig, TrainConfig

MODES = ("zero_shot", "icl", "fewshot")
SELECTIONS = ("random", "similar")
LM_KINDS = ("auto", "mlm", "causal")


@dataclass
class PromptJob:
    """``lmforge prompt``: zero-shot / in-context prompting and few-shot prompt-based tuning."""

    mode: str = opt("zero_shot", "zero_shot (cloze or label scoring), icl (k demonstrations "
                                 "per class in the prompt) or fewshot (prompt-based "
                                 "fine-tuning of a masked LM, LM-BFF / PET).")
    templates: str = opt("", "YAML file with templates and verbalizers "
                             "(e.g. configs/prompts/sst2.yaml).")
    template_names: list[str] = opt([], "Use only these templates (names or 0-based indices; "
                                        "empty: all).")
    data: DataConfig = opt(DataConfig(validation_ratio=0.1), "")
    model: ModelConfig = opt(ModelConfig(pretrained="smollm2-135m-instruct"), "")
    lm: str = opt("auto", "How the model scores labels: mlm (cloze at [MASK]), causal "
                          "(label continuation log-likelihood) or auto (from the config).")
    label_column: str = opt("label", "Column with the gold label.")
    split: str = opt("validation", "Split to evaluate on (train is the demonstration / "
                                   "few-shot pool).")
    max_examples: int | None = opt(None, "Evaluate on a seeded sample of at most N examples.")
    batch_size: int = opt(16, "Prompts per forward pass.")
    max_length: int | None = opt(None, "Longest prompt in tokens (input texts are cut to "
                                       "fit; demonstrations never are). None: the model's "
                                       "context length (max_position_embeddings), at most "
                                       "2048.")
    length_normalize: bool | None = opt(None, "Score a multi-token label word by the mean "
                                              "(true) or the sum (false) of its token "
                                              "log-probs; None: mean for masked LMs (parallel "
                                              "masks), sum for causal LMs (the likelihood).")
    chat_template: bool = opt(False, "Causal LMs: wrap the prompt in the tokenizer's chat "
                                     "template (instruction models such as SmolLM2-Instruct).")
    system_prompt: str | None = opt(None, "System message for chat_template (None: the "
                                          "template's default).")
    calibrate: bool = opt(False, "Contextual calibration (Zhao et al. 2021): divide by the "
                                 "label probabilities of content-free inputs.")
    content_free: list[str] = opt(["N/A", "", "[MASK]"], "Content-free inputs for calibrate.")
    shots: int = opt(4, "icl: demonstrations per class; fewshot: K training (and K dev) "
                        "examples per class.")
    selection: str = opt("random", "icl demonstrations: random (one seeded set for all "
                                   "inputs) or similar (nearest neighbours per input).")
    embedder: str = opt("all-minilm-l6-v2", "selection=similar: sentence encoder for the "
                                            "mean-pooled embeddings, or 'model' (the scoring "
                                            "model's last hidden states).")
    seed: int = opt(42, "Seed of demonstration sampling and of the evaluation sample.")
    seeds: list[int] = opt([13, 21, 42, 87, 100], "fewshot: one sampled K-shot train/dev set "
                                                  "and run per seed (LM-BFF's seeds).")
    baseline: bool = opt(False, "fewshot: also fine-tune a classification head on the same "
                                "samples (standard fine-tuning).")
    train: TrainConfig = opt(TrainConfig(lr=1e-5, batch_size=8, max_steps=1000, eval_every=100,
                                         warmup_ratio=0.0, weight_decay=0.0,
                                         metric_for_best="eval_accuracy",
                                         greater_is_better=True, keep_last=1, log_every=10),
                             "")
    track: TrackConfig = opt(TrackConfig(backends=["jsonl"]), "")
    output_dir: str | None = opt(None, "Run directory (default: runs/prompt-<time>).")

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_choice("selection", self.selection, SELECTIONS)
        check_choice("lm", self.lm, LM_KINDS)
        check(self.shots >= 1, "shots must be >= 1")
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check(self.max_length is None or 16 <= self.max_length <= 32768,
              "max_length must be between 16 and 32768")
        check(self.max_examples is None or self.max_examples > 0, "max_examples must be > 0")
        check(len(self.seeds) >= 1, "seeds must list at least one seed")
