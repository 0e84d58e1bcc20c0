"""``lmforge prompt``: zero-shot and in-context prompting, calibration, and few-shot
prompt-based fine-tuning, reported per template and as an ensemble.

    lmforge prompt templates=configs/prompts/sst2.yaml data.path=../shared/data/sst2 \\
        data.text_column=sentence mode=icl shots=4 calibrate=true chat_template=true
    lmforge prompt mode=fewshot model.pretrained=MLM_FOLDER shots=16 baseline=true ...
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np

from lmforge.commands.context import open_run
from lmforge.data.corpus import load_corpus
from lmforge.errors import ConfigError, DataError
from lmforge.finetuning.classification.data import collect_label_names
from lmforge.prompting.calibration import calibrate, content_free_prior
from lmforge.prompting.demos import (
    format_demos,
    load_embedder,
    mean_pooled_embeddings,
    nearest_per_class,
    sample_per_class,
)
from lmforge.prompting.fewshot import run_fewshot_mode
from lmforge.prompting.report import (
    constant_baseline,
    label_metrics,
    majority_baseline,
    markdown_table,
)
from lmforge.prompting.scoring import (
    Encoder,
    causal_scores,
    cloze_scores,
    label_probs,
    lm_kind,
    load_lm,
    prompt_max_length,
)
from lmforge.prompting.settings import PromptJob
from lmforge.prompting.templates import PromptSet, Template, load_prompts

log = logging.getLogger(__name__)


def load_task_data(job: PromptJob) -> tuple[dict[str, list], dict[str, list], list[str]]:
    """(train pool, evaluation split, label names); each split as ``{"text", "label"}``."""
    raw = load_corpus(job.data, seed=job.seed)
    if "train" not in raw:
        raise DataError(f"{job.data.path} has no train split, which prompting draws "
                        "demonstrations / few-shot samples from; add train.* to the folder")
    if job.split not in raw:
        raise DataError(f"split {job.split!r} not found (splits: {', '.join(raw)}); set split= "
                        "or data.validation_ratio > 0 to carve one from train")
    text_col, label_col = job.data.text_column, job.label_column
    for name in ("train", job.split):
        for col, key in ((text_col, "data.text_column"), (label_col, "label_column")):
            if col not in raw[name].column_names:
                raise DataError(f"column {col!r} not in {name} (columns: "
                                f"{', '.join(raw[name].column_names)}); set {key}")
    labels = collect_label_names(raw["train"], label_col)

    def rows(split: Any) -> dict[str, list]:
        return {"text": ["" if t is None else str(t) for t in split[text_col]],
                "label": [str(y) for y in split[label_col]]}

    train, test = rows(raw["train"]), rows(raw[job.split])
    unknown = sorted(set(test["label"]) - set(labels))
    if unknown:
        raise DataError(f"labels {unknown} of {job.split} never occur in train; fix the data")
    if job.max_examples and len(test["text"]) > job.max_examples:
        keep = np.sort(np.random.default_rng(job.seed).choice(len(test["text"]),
                                                              job.max_examples, replace=False))
        test = {k: [v[i] for i in keep] for k, v in test.items()}
    return train, test, labels


class Scorer:
    """Scores one template for a list of inputs with the loaded model (mlm or causal)."""

    def __init__(self, job: PromptJob, model: Any, tokenizer: Any, kind: str,
                 labels: list[str]) -> None:
        self.job, self.model, self.kind, self.labels = job, model, kind, labels
        self.encoder = Encoder(tokenizer, prompt_max_length(job.max_length, model))

    def probs(self, template: Template, texts: list[str],
              contexts: list[str] | None = None) -> np.ndarray:
        """(N, C) label probabilities p(y | x) under ``template``."""
        job = self.job
        # None: mean for cloze (the n masks are predicted independently, so a sum would
        # punish long words), sum for causal LMs (the exact log-likelihood; a mean inflates
        # words whose later tokens are predictable, e.g. ab|brev|iation)
        normalize = job.length_normalize if job.length_normalize is not None \
            else self.kind == "mlm"
        if self.kind == "mlm":
            scores = cloze_scores(self.model, self.encoder, template, self.labels, texts,
                                  contexts, batch_size=job.batch_size,
                                  length_normalize=normalize)
        else:
            scores = causal_scores(self.model, self.encoder, template, self.labels, texts,
                                   contexts, batch_size=job.batch_size,
                                   length_normalize=normalize,
                                   chat=job.chat_template, system_prompt=job.system_prompt)
        return label_probs(scores)


def _contexts(job: PromptJob, prompts: PromptSet, train: dict[str, list], test: dict[str, list],
              labels: list[str], model: Any, tokenizer: Any) -> tuple[Any, list[int]]:
    """Demonstrations: (per-template function -> contexts, the shared random sample)."""
    if job.mode != "icl":
        return None, []
    shared = sample_per_class(train["label"], labels, job.shots, job.seed)
    neighbours: list[list[int]] | None = None
    if job.selection == "similar":
        emb_model, emb_tok = (model, tokenizer) if job.embedder == "model" \
            else load_embedder(job.embedder)
        t0 = time.perf_counter()
        pool = mean_pooled_embeddings(emb_model, emb_tok, train["text"], job.batch_size)
        query = mean_pooled_embeddings(emb_model, emb_tok, test["text"], job.batch_size)
        neighbours = nearest_per_class(query, pool, train["label"], labels, job.shots)
        log.info("embedded %d + %d texts in %.1fs", len(pool), len(query),
                 time.perf_counter() - t0)

    def build(template: Template) -> tuple[list[str], str]:
        def demo(idx: list[int]) -> str:
            return format_demos(template, [train["text"][i] for i in idx],
                                [train["label"][i] for i in idx], prompts.separator)
        fixed = demo(shared)
        per_input = [demo(n) for n in neighbours] if neighbours is not None \
            else [fixed] * len(test["text"])
        return per_input, fixed

    return build, shared


def run_prompt(job: PromptJob, resume: bool = False) -> dict[str, Any]:
    """Run ``lmforge prompt`` (see the module docstring) and write ``summary.json``.

    Args:
        job: The resolved config.
        resume: Unused (prompting runs are not resumable; fewshot seeds are short).

    Returns:
        The summary written to ``run_dir/summary.json``.
    """
    if not job.templates:
        raise ConfigError("no templates given: set templates=FILE.yaml (e.g. "
                          "configs/prompts/sst2.yaml)")
    prompts = load_prompts(job.templates).select(job.template_names)
    t0 = time.perf_counter()
    train, test, labels = load_task_data(job)
    prompts.check_labels(labels)
    run = open_run("prompt", job)
    run_dir = run.run_dir
    label2id = {y: i for i, y in enumerate(labels)}
    y_true = np.array([label2id[y] for y in test["label"]])
    majority = majority_baseline(train["label"], y_true, labels)
    if job.mode == "fewshot":

        summary, table = run_fewshot_mode(job, prompts, train, test, labels, majority,
                                          run_dir, t0)
        return {**run.finish(summary), "table": table}  # summary.json has no table

    if lm_kind(job.model, job.lm) == "mlm":  # fail before the weights load
        prompts.check_masked()
        if job.chat_template:
            raise ConfigError("chat_template=true needs a causal (instruction) model; set "
                              "chat_template=false for a masked LM")
    model, tokenizer, kind = load_lm(job.model, job.lm)
    scorer = Scorer(job, model, tokenizer, kind, labels)
    build, shared = _contexts(job, prompts, train, test, labels, model, tokenizer)
    results: dict[str, dict[str, Any]] = {}
    all_probs, all_cal = [], []
    for template in prompts.templates:
        contexts, fixed = build(template) if build else (None, "")
        probs = scorer.probs(template, test["text"], contexts)
        all_probs.append(probs)
        entry: dict[str, Any] = label_metrics(y_true, probs, labels)
        if job.calibrate:
            # Same prompt as the inputs see; with per-input (similar) demonstrations the
            # content-free prompt uses the shared seeded random sample instead.
            cf = scorer.probs(template, list(job.content_free), [fixed] * len(job.content_free)
                              if fixed else None)
            p_cf = content_free_prior(cf)
            cal = calibrate(probs, p_cf)
            all_cal.append(cal)
            entry["p_cf"] = [round(float(p), 6) for p in p_cf]
            entry.update({f"calibrated_{k}": v
                          for k, v in label_metrics(y_true, cal, labels).items()})
        results[template.name] = entry
    ensemble: dict[str, Any] = label_metrics(y_true, np.mean(all_probs, axis=0), labels)
    if job.calibrate:
        ensemble.update({f"calibrated_{k}": v for k, v in
                         label_metrics(y_true, np.mean(all_cal, axis=0), labels).items()})
    _write_predictions(run_dir, test, labels, np.mean(all_cal or all_probs, axis=0))
    summary = {
        "mode": job.mode,
        "model": job.model.pretrained, "lm": kind,
        "chat_template": job.chat_template, "calibrate": job.calibrate,
        "shots_per_class": job.shots if job.mode == "icl" else 0,
        "selection": job.selection if job.mode == "icl" else None,
        "demonstration_rows": shared, "examples": len(y_true), "labels": labels,
        "majority": majority, "constant": constant_baseline(y_true, labels),
        "templates": results, "ensemble": ensemble,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    table = results_table(summary)
    (run_dir / "results.md").write_text(table + "\n", encoding="utf-8")
    return {**run.finish(summary), "table": table}  # the CLI prints it; summary.json has none


def results_table(summary: dict[str, Any]) -> str:
    """Markdown rows: each template, the ensemble, the train-majority and best-constant
    baselines."""
    rows = [{"prompt": name, **m} for name, m in summary["templates"].items()]
    rows.append({"prompt": "ensemble (mean p)", **summary["ensemble"]})
    rows.append({"prompt": f"majority class of train ({summary['majority']['label']})",
                 **summary["majority"]})
    if "constant" in summary:
        rows.append({"prompt": f"best constant on these examples ({summary['constant']['label']})",
                     **summary["constant"]})
    cols = ["prompt", "accuracy", "macro_f1"]
    if summary.get("calibrate"):
        cols += ["calibrated_accuracy", "calibrated_macro_f1"]
    return markdown_table(rows, cols)


def _write_predictions(run_dir: Any, test: dict[str, list], labels: list[str],
                       probs: np.ndarray) -> None:
    with open(run_dir / "predictions.jsonl", "w", encoding="utf-8") as f:
        for text, gold, p in zip(test["text"], test["label"], probs, strict=True):
            f.write(json.dumps({"text": text, "label": gold,
                                "predicted": labels[int(np.argmax(p))],
                                "probs": [round(float(v), 6) for v in p]},
                               ensure_ascii=False) + "\n")
