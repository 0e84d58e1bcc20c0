"""``lmforge predict``: run a fine-tuned model on a file or stdin, one JSON object per input."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from typing import Any

from lmforge.deploy.settings import PredictJob
from lmforge.errors import ConfigError, DataError
from lmforge.predictor import load_predictor, read_inputs


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def apply_decoding(predictor: Any, job: PredictJob) -> None:
    """Put ``job.generate`` over the run's saved decoding options (generative runs only).

    Raises:
        ConfigError: ``generate.*`` for a run that does not generate, a ``top_k`` (labels per
            input) above 1 for one that does, or an invalid decoding option.
    """
    overrides = job.generate.given()
    if not predictor.generative:
        if overrides or job.generate.seed is not None:
            raise ConfigError(f"generate.* options apply to generative runs; this run is a "
                              f"{predictor.task_name} model (drop them)")
        return
    if job.top_k > 1:
        raise ConfigError("top_k is the number of labels a classifier returns; to sample among "
                          "the k most likely tokens use generate.top_k=K generate.do_sample=true")
    config = getattr(predictor.model, "config", None)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions",
                                                                        None)
    wanted = overrides.get("max_new_tokens")
    if limit and wanted and wanted > limit:
        raise ConfigError(f"generate.max_new_tokens={wanted} is above the model's "
                          f"{limit} positions; lower it")
    if overrides:
        predictor.settings = dataclasses.replace(predictor.settings, **overrides)
    if job.generate.seed is not None:
        import torch

        torch.manual_seed(job.generate.seed)


def run_predict(job: PredictJob, resume: bool = False) -> dict[str, Any]:
    """Predict for a file or stdin; write one JSON object per input."""
    predictor = load_predictor(job.run, precision=job.precision)
    apply_decoding(predictor, job)
    column = job.text_column or predictor.settings.text_column
    out = sys.stdout if job.output == "-" else open(job.output, "w", encoding="utf-8")  # noqa: SIM115
    count = 0
    try:
        for records in _batches(read_inputs(job.input, column), job.batch_size):
            for i, record in enumerate(records):
                problem = predictor.task.check_record(predictor.settings, record)
                if problem:  # before the model sees it: one line, not a traceback
                    raise DataError(f"input {count + i + 1} of {job.input!r}: {problem}")
            for row in predictor.predict(records, job.top_k):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
    finally:
        if out is not sys.stdout:
            out.close()
    if count == 0:
        raise DataError(f"no inputs in {job.input!r}; give one text per line")
    return {"command": "predict", "inputs": count, "output": job.output}
