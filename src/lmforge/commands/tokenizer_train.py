"""``lmforge tokenizer train``: learn a vocabulary from a corpus's training split."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from lmforge.commands.context import open_run
from lmforge.data.corpus import iter_texts, load_corpus
from lmforge.tokenizer.settings import TokenizerTrainJob
from lmforge.tokenizer.train import train_tokenizer

log = logging.getLogger(__name__)


def run_tokenizer_train(job: TokenizerTrainJob, resume: bool = False) -> dict[str, Any]:
    """Train a tokenizer on ``job.data`` and save it to ``<run>/tokenizer``.

    Args:
        job: The resolved config.
        resume: Unused (tokenizer training is a single pass); accepted for CLI symmetry.

    Returns:
        The summary written to ``summary.json``.
    """
    run = open_run("tokenizer train", job, folder_prefix="tokenizer")
    run_dir = run.run_dir
    corpus = load_corpus(job.data)
    train = corpus["train"]
    t0 = time.perf_counter()
    cfg = job.tokenizer
    tokenizer = train_tokenizer(iter_texts(train, job.data.text_column), run_dir / "tokenizer",
                                kind=cfg.kind, vocab_size=cfg.vocab_size,
                                min_frequency=cfg.min_frequency, lowercase=cfg.lowercase,
                                split_chinese_chars=cfg.split_chinese_chars,
                                model_max_length=cfg.model_max_length)
    seconds = time.perf_counter() - t0
    sample = next(iter_texts(train, job.data.text_column))
    summary = run.finish({
        "kind": cfg.kind,
        "vocab_size": len(tokenizer),
        "train_rows": len(train),
        "seconds": round(seconds, 2),
        "tokenizer_dir": str(Path(run_dir) / "tokenizer"),
        "example": {"text": sample[:200],
                    "tokens": tokenizer.tokenize(sample[:200])[:40]},
    })
    log.info("tokenizer (%s, %d tokens) saved to %s", cfg.kind, len(tokenizer),
             summary["tokenizer_dir"])
    return summary
