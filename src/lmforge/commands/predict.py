"""``lmforge predict``: run a fine-tuned model on a file or stdin, one JSON object per input."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

from lmforge.deploy.settings import PredictJob
from lmforge.errors import DataError
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


def run_predict(job: PredictJob, resume: bool = False) -> dict[str, Any]:
    """Predict for a file or stdin; write one JSON object per input."""
    predictor = load_predictor(job.run, precision=job.precision)
    column = job.text_column or predictor.settings.text_column
    out = sys.stdout if job.output == "-" else open(job.output, "w", encoding="utf-8")  # noqa: SIM115
    count = 0
    try:
        for records in _batches(read_inputs(job.input, column), job.batch_size):
            for row in predictor.predict(records, job.top_k):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
    finally:
        if out is not sys.stdout:
            out.close()
    if count == 0:
        raise DataError(f"no inputs in {job.input!r}; give one text per line")
    return {"command": "predict", "inputs": count, "output": job.output}
