"""The config of ``lmforge explain``."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt

METHOD_NAMES = ("ig", "gradxinput", "rollout", "occlusion", "lime", "shap", "random")


@dataclass
class ExplainJob:
    """``lmforge explain``: why did the model say that? Word and token attributions per method
    (Integrated Gradients, Gradient x Input, attention rollout, occlusion, LIME, SHAP) as
    jsonl, an HTML page and a PNG; with evaluate=true, their faithfulness (ERASER
    comprehensiveness / sufficiency AOPC against random attributions) and agreement.
    """

    run: str = opt("", "Fine-tuned run directory (or its model/ folder; ONNX folders take "
                       "occlusion, lime and shap only).")
    input: str = opt("-", "Inputs: a text file (one text per line), a jsonl/csv/tsv file with "
                          "the task's columns, or - for stdin.")
    text_column: str | None = opt(None, "Text column of jsonl/csv input (default: the run's).")
    limit: int | None = opt(None, "Explain only the first N inputs (e.g. a dev sample).")
    methods: list[str] = opt(["ig", "gradxinput", "rollout", "occlusion", "lime", "shap"],
                             "Methods: ig, gradxinput, rollout, occlusion, lime, shap, random.")
    target: str | None = opt(None, "Label (classification) or entity type (NER) to explain; "
                                   "default: the predicted one.")
    entity: int = opt(0, "NER: which predicted entity to explain (0 = the first).")
    words: str = opt("auto", "Merging sub-words into words: auto (jieba for Chinese text, "
                             "else the tokenizer's words), tokenizer or jieba.")
    n_steps: int = opt(32, "IG: steps of the path integral (Riemann / Gauss-Legendre points).")
    internal_batch_size: int = opt(64, "IG: most sequences in one forward/backward pass "
                                       "(bounds memory; several examples share a pass).")
    baseline: str = opt("pad", "Baseline token for IG and for replaced tokens: pad or mask.")
    lime_samples: int = opt(1000, "LIME: perturbed samples per explanation (LIME's own "
                                  "default is 5000).")
    shap_evals: int = opt(500, "SHAP: max_evals of the Partition explainer per explanation.")
    batch_size: int = opt(64, "Perturbed sequences per forward pass.")
    seed: int = opt(0, "Seed of LIME's sampling and of the random baseline.")
    evaluate: bool = opt(False, "Also measure faithfulness (comprehensiveness / sufficiency "
                                "AOPC vs random) and rank agreement; writes faithfulness.md.")
    token_level: bool = opt(True, "Write token scores too (word scores are always written).")
    html: bool = opt(True, "Write explanations.html (self-contained).")
    html_max_examples: int = opt(100, "Most examples on the HTML page.")
    png_example: int | None = opt(0, "Index of the example drawn as example.png (None: none).")
    output_dir: str | None = opt(None, "Run directory (default: runs/explain-<time>).")
    report: bool = opt(True, "Write report.html into the run folder at the end (the run "
                             "report of `lmforge report`).")

    def __post_init__(self) -> None:
        for name in self.methods:
            check_choice("methods", name, METHOD_NAMES)
        check(bool(self.methods), "methods must name at least one method")
        check_choice("words", self.words, ("auto", "tokenizer", "jieba"))
        check_choice("baseline", self.baseline, ("pad", "mask"))
        for name in ("n_steps", "internal_batch_size", "lime_samples", "shap_evals",
                     "batch_size", "html_max_examples"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1 (got {getattr(self, name)})")
        check(self.limit is None or self.limit >= 1, "limit must be >= 1 (or None)")
        check(self.entity >= 0, "entity must be >= 0")

