"""Few-shot prompt-based fine-tuning of a masked LM (LM-BFF, Gao et al. 2021; PET, Schick &
Schütze 2021), and standard fine-tuning on the same samples as the baseline.

The classifier is the MLM itself, read through the template and the verbalizer: with h the
hidden state at the [MASK] of T(x) and w_v the output embedding of label word v(y),

    p(y | x) = exp(w_v(y) . h) / sum_y' exp(w_v(y') . h)          L = -log p(y_gold | x)

so no new parameters are needed and the pretrained head starts the task well-posed. A
label with several (single-token) words uses log mean_w exp(logit_w).

Protocol (LM-BFF, section 3): for each seed, K training and K development examples per
class are sampled from the training set; the development set picks the best checkpoint
(evaluated every ``train.eval_every`` steps); results are the mean and the standard deviation
(population, as LM-BFF's ``np.std``) over the seeds on the full evaluation split.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmforge.data.collators import pad_batch
from lmforge.engine.hooks import StepHook
from lmforge.engine.loop import Engine
from lmforge.engine.precision import make_accelerator
from lmforge.errors import ConfigError
from lmforge.finetuning.classification.data import (
    ClassificationCollator,
    predict_probabilities,
    prepare_classification,
)
from lmforge.finetuning.classification.objective import (
    ClassificationObjective,
    classification_reducer,
)
from lmforge.models.build import resolve_checkpoint
from lmforge.prompting.demos import sample_per_class
from lmforge.prompting.report import label_metrics, markdown_table
from lmforge.prompting.scoring import (
    Encoder,
    label_token_ids,
    prompt_max_length,
    template_parts,
)
from lmforge.prompting.templates import Template
from lmforge.runs import write_json
from lmforge.tracking import build_loggers

log = logging.getLogger(__name__)


def label_word_matrix(encoder: Encoder, template: Template,
                      labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, W) token ids of each label's words and a (C, W) mask; words must be one token."""
    words = label_token_ids(encoder, template, labels)
    for y, label_words in zip(labels, words, strict=True):
        for w, ids in zip(template.verbalizer[y], label_words, strict=True):
            if len(ids) != 1:
                raise ConfigError(f"label word {w!r} of template {template.name!r} is "
                                  f"{len(ids)} tokens; prompt-based fine-tuning needs "
                                  "one-token words (pick another word)")
    width = max(len(lw) for lw in words)
    ids = torch.zeros((len(labels), width), dtype=torch.long)
    mask = torch.zeros((len(labels), width), dtype=torch.bool)
    for c, label_words in enumerate(words):
        for j, w in enumerate(label_words):
            ids[c, j], mask[c, j] = w[0], True
    return ids, mask


MLM_HEADS = ("cls", "lm_head")  # BERT-family / RoBERTa-family heads: hidden -> vocab logits


def mask_position_logits(model: nn.Module, input_ids: torch.Tensor,
                         attention_mask: torch.Tensor, mask_pos: torch.Tensor) -> torch.Tensor:
    """(B, V) vocabulary logits at one position per row.

    The MLM head (transform + a V-way decoder, V ~ 30k-50k) dominates the cost of a short
    prompt if it runs on every token, so for BERT- and RoBERTa-style models the encoder
    runs alone and the head only on the (B, H) mask states. Other architectures fall back
    to the full ``logits`` (same numbers, more work).
    """
    rows = torch.arange(len(mask_pos), device=input_ids.device)
    head = next((getattr(model, n) for n in MLM_HEADS if isinstance(getattr(model, n, None),
                                                                   nn.Module)), None)
    base = getattr(model, "base_model", None)
    if head is not None and base is not None and base is not model:
        hidden = base(input_ids=input_ids, attention_mask=attention_mask)[0]  # (B, T, H)
        return head(hidden[rows, mask_pos][:, None])[:, 0]  # (B, V)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, T, V)
    return logits[rows, mask_pos]


class PromptObjective(nn.Module):
    """Cross-entropy over the label words' logits at the [MASK] of a ``*ForMaskedLM``.

    Args:
        model: The masked LM (saved as is).
        word_ids: (C, W) label word ids.
        word_mask: (C, W) which entries are real words.
    """

    def __init__(self, model: nn.Module, word_ids: torch.Tensor, word_mask: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("word_ids", word_ids, persistent=False)
        self.register_buffer("word_mask", word_mask, persistent=False)

    def label_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     mask_pos: torch.Tensor) -> torch.Tensor:
        """(B, C) label logits: log mean_w exp(logit of word w) at the mask position."""
        at_mask = mask_position_logits(self.model, input_ids, attention_mask, mask_pos)
        words = at_mask.float()[:, self.word_ids]  # (B, C, W)
        words = words.masked_fill(~self.word_mask, float("-inf"))
        return torch.logsumexp(words, -1) - self.word_mask.sum(-1).log()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                mask_pos: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Loss, and the counts that :func:`classification_reducer` turns into metrics."""
        logits = self.label_logits(input_ids, attention_mask, mask_pos)
        num_labels = logits.shape[-1]
        pred = logits.argmax(-1)
        out: dict[str, Any] = {"loss": F.cross_entropy(logits, labels), "n": labels.shape[0],
                               "count_correct": (pred == labels).sum()}
        for c in range(num_labels):
            out[f"count_tp_{c}"] = ((pred == c) & (labels == c)).sum()
            out[f"count_fp_{c}"] = ((pred == c) & (labels != c)).sum()
            out[f"count_fn_{c}"] = ((pred != c) & (labels == c)).sum()
        return out


def prompt_collator(pad_id: int) -> Any:
    """Pad ``input_ids``; stack ``mask_pos`` and ``labels``."""
    def collate(examples: list[dict[str, Any]], generator: Any = None) -> dict[str, torch.Tensor]:
        return pad_batch(examples, pad_id, pad_to_multiple_of=8)
    return collate


def encode_prompts(encoder: Encoder, template: Template, texts: list[str],
                   label_ids: list[int]) -> datasets.Dataset:
    """Rows ``{input_ids, mask_pos, labels}``: T(x) with one [MASK] in the slot."""
    mask_id = encoder.tokenizer.mask_token_id
    rows = []
    for x, y in zip(texts, label_ids, strict=True):
        ids, at = encoder.encode(template_parts(template), x, [mask_id])
        rows.append({"input_ids": ids, "mask_pos": at, "labels": y})
    return datasets.Dataset.from_list(rows)


class KeepBest(StepHook):
    """Keep a CPU copy of the weights at the best evaluation (LM-BFF's model selection)."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] | None = None

    def on_evaluate(self, engine: Engine, metrics: dict[str, float]) -> None:
        """Snapshot when the engine has just recorded a new best."""
        if engine.state.best_step == engine.state.global_step:
            model = engine.accelerator.unwrap_model(engine.model)
            self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def restore(self, model: nn.Module) -> None:
        """Load the best weights back (no-op when there was no evaluation)."""
        if self.state is not None:
            model.load_state_dict(self.state)


@torch.no_grad()
def _prompt_probs(objective: PromptObjective, ds: datasets.Dataset, collator: Any,
                  batch_size: int) -> np.ndarray:
    objective.eval()
    out = []
    for start in range(0, len(ds), batch_size):
        rows = ds[start:start + batch_size]
        batch = collator([dict(zip(rows, v, strict=True)) for v in zip(*rows.values(),
                                                                        strict=True)])
        logits = objective.label_logits(batch["input_ids"], batch["attention_mask"],
                                        batch["mask_pos"])
        out.append(torch.softmax(logits, -1).numpy())
    return np.concatenate(out)


def _train(objective: nn.Module, job: Any, seed: int, train_ds: Any, dev_ds: Any,
           collator: Any, run_dir: Path, accelerator: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(job.train)
    cfg.seed = seed
    hook = KeepBest()
    loggers = build_loggers(run_dir, job.track.backends, project=job.track.project,
                            run_name=run_dir.name)
    engine = Engine(objective, cfg, train_ds, collator, run_dir, eval_dataset=dev_ds,
                    eval_reducer=classification_reducer, hooks=[hook], loggers=loggers,
                    accelerator=accelerator, show_progress=job.track.progress)
    try:
        result = engine.train()
    finally:
        loggers.close()
    hook.restore(accelerator.unwrap_model(engine.model))
    # Checkpoints only serve resuming; K-shot runs are short, so they are not kept.
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return {"steps": result.state.global_step, "best_step": result.state.best_step,
            "best_dev": result.state.best_metric}


def run_seed(job: Any, seed: int, source: dict[str, Any], template: Template,
             labels: list[str], train: dict[str, list], test: dict[str, list], run_dir: Path,
             accelerator: Any, baseline: bool) -> dict[str, Any]:
    """One LM-BFF seed: sample K+K per class, prompt-tune (and fine-tune), evaluate on test.

    Args:
        job: The :class:`~lmforge.prompting.settings.PromptJob`.
        seed: Sampling and training seed.
        source: ``{"folder", "tokenizer"}`` of the masked LM.
        template: The template and verbalizer trained through.
        labels: Label names (id order).
        train: ``{"text": [...], "label": [...]}`` pool (label names).
        test: The evaluation split in the same form.
        run_dir: This seed's folder.
        accelerator: Shared ``Accelerator``.
        baseline: Also run standard fine-tuning on the same samples.

    Returns:
        ``{"train_rows", "dev_rows", "prompt": {...}, "baseline": {...}}`` with test metrics.
    """
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    k = job.shots
    tr_idx = sample_per_class(train["label"], labels, k, seed)
    dev_idx = sample_per_class(train["label"], labels, k, seed + 1, exclude=tr_idx)
    label2id = {y: i for i, y in enumerate(labels)}
    tr_x, dev_x = ([train["text"][i] for i in idx] for idx in (tr_idx, dev_idx))
    tr_y, dev_y = ([label2id[train["label"][i]] for i in idx] for idx in (tr_idx, dev_idx))
    test_y = np.array([label2id[y] for y in test["label"]])
    tokenizer = source["tokenizer"]
    pad_id = tokenizer.pad_token_id or 0
    out: dict[str, Any] = {"seed": seed, "train_rows": tr_idx, "dev_rows": dev_idx}

    torch.manual_seed(seed)
    mlm = AutoModelForMaskedLM.from_pretrained(source["folder"])
    encoder = Encoder(tokenizer, prompt_max_length(job.max_length, mlm))
    word_ids, word_mask = label_word_matrix(encoder, template, labels)
    objective = PromptObjective(mlm, word_ids, word_mask)
    collator = prompt_collator(pad_id)
    info = _train(objective, job, seed, encode_prompts(encoder, template, tr_x, tr_y),
                  encode_prompts(encoder, template, dev_x, dev_y), collator,
                  run_dir / "prompt", accelerator)
    probs = _prompt_probs(objective, encode_prompts(encoder, template, test["text"],
                                                    list(test_y)), collator, job.batch_size)
    out["prompt"] = {**info, **label_metrics(test_y, probs, labels)}

    if baseline:
        torch.manual_seed(seed)
        clf = AutoModelForSequenceClassification.from_pretrained(
            source["folder"], num_labels=len(labels))

        def enc(x: list[str], y: Any, name: str) -> datasets.Dataset:
            raw = datasets.Dataset.from_dict({"text": list(x), "label": [str(v) for v in y]})
            return prepare_classification(raw, tokenizer, {str(i): i for i in range(len(labels))},
                                          max_length=encoder.max_length, split_name=name)

        objective_b = ClassificationObjective(clf)
        collator_b = ClassificationCollator(tokenizer)
        info_b = _train(objective_b, job, seed, enc(tr_x, tr_y, "train"),
                        enc(dev_x, dev_y, "dev"), collator_b, run_dir / "baseline", accelerator)
        test_enc = enc(test["text"], test_y, "test")
        probs_b = np.concatenate([p for p, _ in predict_probabilities(
            clf, test_enc, collator_b, batch_size=job.batch_size)])
        out["baseline"] = {**info_b, **label_metrics(test_y, probs_b, labels)}
    return out


def mean_std(runs: list[dict[str, Any]], method: str) -> dict[str, float]:
    """Mean and population std over seeds of accuracy and macro-F1 of ``method``."""
    out: dict[str, float] = {}
    for metric in ("accuracy", "macro_f1"):
        values = np.array([r[method][metric] for r in runs if method in r])
        if len(values):
            out[f"{metric}_mean"] = float(values.mean())
            out[f"{metric}_std"] = float(values.std())
    return out


def run_fewshot_mode(job: Any, prompts: Any, train: dict[str, list], test: dict[str, list],
                     labels: list[str], majority: dict[str, Any], run_dir: Path,
                     t0: float) -> tuple[dict[str, Any], str]:
    """``mode=fewshot``: every seed with the first selected template; mean/std over seeds.

    Returns:
        The summary (the command writes it) and the markdown table of the results.
    """
    from transformers import AutoTokenizer

    if not job.model.pretrained:
        raise ConfigError("mode=fewshot needs a masked LM: set model.pretrained=FOLDER")
    prompts.check_masked()
    template = prompts.templates[0]
    folder = resolve_checkpoint(job.model.pretrained)
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_checkpoint(job.model.tokenizer) if job.model.tokenizer else folder)
    if tokenizer.mask_token_id is None:
        raise ConfigError(f"{job.model.pretrained!r} has no mask token; mode=fewshot trains a "
                          "masked LM (e.g. a BERT / RoBERTa checkpoint)")
    source = {"folder": folder, "tokenizer": tokenizer}
    accelerator, precision = make_accelerator(job.train.precision)
    runs = []
    for seed in job.seeds:
        log.info("fewshot seed %d: %d-shot prompt-based fine-tuning%s", seed, job.shots,
                 " + baseline" if job.baseline else "")
        runs.append(run_seed(job, seed, source, template, labels, train, test,
                             run_dir / f"seed-{seed}", accelerator, job.baseline))
        write_json(run_dir / "runs.json", {"runs": runs})
    summary: dict[str, Any] = {
        "mode": "fewshot",
        "model": job.model.pretrained,
        "template": template.name, "shots_per_class": job.shots, "seeds": list(job.seeds),
        "precision": precision, "examples": len(test["text"]), "labels": labels,
        "majority": majority, "prompt": mean_std(runs, "prompt"),
    }
    if job.baseline:
        summary["baseline"] = mean_std(runs, "baseline")
    summary["runs"] = [{"seed": r["seed"], **{m: {k: r[m][k] for k in ("accuracy", "macro_f1",
                                                                         "best_dev", "steps")}
                                               for m in ("prompt", "baseline") if m in r}}
                       for r in runs]
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    rows = [{"method": f"prompt-based fine-tuning ({template.name})", **summary["prompt"]}]
    if job.baseline:
        rows.append({"method": "fine-tuning (classification head)", **summary["baseline"]})
    rows.append({"method": f"majority class ({majority['label']})",
                 "accuracy_mean": majority["accuracy"], "macro_f1_mean": majority["macro_f1"]})
    table = markdown_table(rows, ["method", "accuracy_mean", "accuracy_std", "macro_f1_mean",
                                  "macro_f1_std"])
    (run_dir / "results.md").write_text(table + "\n", encoding="utf-8")
    return summary, table
