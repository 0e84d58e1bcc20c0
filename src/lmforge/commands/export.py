"""``lmforge export``: a fine-tuned run as a merged HF folder, ONNX and int8 ONNX, each checked.

What is written and checked is described in :mod:`lmforge.deploy.export`, which does the work.
"""

from __future__ import annotations

import logging
from typing import Any

from lmforge.commands.context import open_run
from lmforge.deploy.export import (
    SAMPLE_BATCH_SIZES,
    check_request,
    evaluate_models,
    export_hf,
    export_onnx_variants,
    labeled_split,
    merge_adapter,
    metric_deltas,
    set_label_names,
    size_mb,
)
from lmforge.deploy.settings import ExportJob
from lmforge.finetuning.saved import load_finetuned

log = logging.getLogger(__name__)


def run_export(job: ExportJob, resume: bool = False) -> dict[str, Any]:
    """Export a fine-tuned run (see the module docstring for what is written and checked).

    Args:
        job: The resolved config.
        resume: Unused (an export is re-run from scratch).

    Returns:
        The summary written to ``export_summary.json``.

    Raises:
        ConfigError: A missing run, or ONNX asked for a generative (seq2seq / sft) task.
        ExportCheckError: The fp32 ONNX outputs differ from PyTorch by more than
            ``tolerance``.
    """
    task, _ = check_request(job)
    want_onnx = job.format in ("all", "onnx") and bool(task.onnx_outputs)
    if job.format == "all" and not task.onnx_outputs:
        log.warning("a %s run has no ONNX export (it generates token by token); writing hf "
                    "only", task.name)
    run = load_finetuned(job.run)
    model, tokenizer, settings = run.model, run.tokenizer, run.settings
    model.eval()
    run = open_run("export", job)
    out = run.run_dir
    split = labeled_split(job) if job.data.path else None
    rows = [split[i] for i in range(min(len(split), max(SAMPLE_BATCH_SIZES)))] \
        if split is not None else None
    # The reference is evaluated before merging, so a PEFT run's own forward is scored.
    headlines = evaluate_models({"pytorch": model}, task, tokenizer, settings, split, job, out) \
        if split is not None else {}
    summary: dict[str, Any] = {
        "run": job.run, "task": task.name,
        "output_dir": str(out), "formats": {}, "merged_adapter": False,
        "size_mb": {"pytorch": round(sum(p.numel() * p.element_size()
                                         for p in model.parameters()) / 2**20, 4)}}
    if job.format in ("all", "hf"):
        model, summary["merged_adapter"] = export_hf(model, tokenizer, task, settings,
                                                     out / "hf", merge=job.merge)
        summary["formats"]["hf"] = str(out / "hf")
        summary["size_mb"]["hf"] = size_mb(out / "hf", ("*.safetensors",))
        log.info("wrote %s (merged adapter: %s)", out / "hf", summary["merged_adapter"])
    if want_onnx:
        if hasattr(model, "peft_config"):  # a PeftModel: ONNX gets the merged weights
            model, merged = merge_adapter(model)
            summary["merged_adapter"] = summary["merged_adapter"] or merged
        set_label_names(model, task, settings)
        onnx_models = export_onnx_variants(model, tokenizer, task, settings, job, out, rows,
                                           summary)
        if split is not None:
            headlines.update(evaluate_models(onnx_models, task, tokenizer, settings, split,
                                             job, out))
    if headlines:
        summary["evaluated_on"] = job.data.path
        summary["examples"] = len(split)
        for name, headline in headlines.items():
            summary[f"metrics_{name.replace('-', '_')}"] = headline
            if name != "pytorch":
                summary[f"delta_points_{name.replace('-', '_')}"] = metric_deltas(
                    task, headlines["pytorch"], headline)
    # summary.json is the run-directory contract's name; export_summary.json the older one.
    return run.finish(summary, copies=("export_summary.json",))
