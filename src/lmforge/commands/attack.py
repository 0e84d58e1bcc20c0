"""``lmforge attack RUN``: attack a fine-tuned classifier and report its robustness.

Writes into the run directory: ``summary.json`` (the numbers of every attack),
``config.yaml``, ``robustness.json`` (the same report; also next to the model unless
``write_to_model=false``, where ``lmforge serve`` shows it at ``GET /info``),
``attack-NAME/adversarial.jsonl`` (every successful adversarial example),
``attacks.html`` (the examples with the changed words highlighted) and, unless
``report=false``, the run report ``report.html`` (as ``lmforge report`` writes it).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from lmforge.adversarial.attacks import (
    ZH_STOPWORDS,
    CharEdits,
    ChineseCharSwap,
    SynonymSwap,
    chinese_words,
    english_words,
    greedy_attack,
    summarize,
)
from lmforge.adversarial.report import text_table, write_html, write_jsonl
from lmforge.adversarial.resources import STOPWORDS, load_glove, load_wordnet
from lmforge.adversarial.settings import AttackJob
from lmforge.adversarial.targets import attack_target
from lmforge.commands.context import open_run
from lmforge.config import load_yaml
from lmforge.data.corpus import load_corpus
from lmforge.errors import ConfigError, DataError
from lmforge.predictor import load_predictor
from lmforge.runs import write_json
from lmforge.settings import DataConfig

log = logging.getLogger(__name__)
REPORT_FILE = "robustness.json"
ATTACKS_PAGE = "attacks.html"
"""The attack's own page (every adversarial example, changed words highlighted); the run's
``report.html`` is the run report every command writes."""


def _run_dir_of(run: str) -> Path:
    """The finetune run directory of ``run`` (which may be its model/ folder)."""
    path = Path(run)
    return path.parent if path.name == "model" else path


def _data_rows(job: AttackJob, target: Any) -> list[dict[str, Any]]:
    """The first ``num_examples`` labeled rows to attack (default: the run's own dev split)."""
    seed, ratio = 42, 0.1
    path, fmt = job.data, None
    saved = _run_dir_of(job.run) / "config.yaml"
    if saved.is_file():
        config = load_yaml(str(saved))
        data = config.get("data", {})
        seed = int(config.get("train", {}).get("seed", seed))
        ratio = float(data.get("validation_ratio", ratio))
        if not path:
            path, fmt = data.get("path", ""), data.get("format")
    if not path:
        raise ConfigError("set data=FILE_OR_FOLDER to attack (the run has no config.yaml "
                          "naming its data)")
    is_file = Path(path).is_file()
    corpus = load_corpus(DataConfig(path=path, format=fmt, validation_ratio=0.0 if is_file
                                    else ratio), seed=seed)
    split = "train" if is_file else job.split
    if split not in corpus:
        raise DataError(f"split {job.split!r} not in {path} (splits: {', '.join(corpus)}); "
                        "set split=... or pass a file")
    rows = corpus[split].select(range(min(job.num_examples, len(corpus[split]))))
    return [dict(r) for r in rows]


def _transformation(name: str, job: AttackJob, target: Any) -> tuple[Any, Any, frozenset[str]]:
    """(transformation, word splitter, stop-words) of attack ``name``."""
    stop = STOPWORDS if job.skip_stopwords else frozenset()
    if name == "char":
        return CharEdits(job.candidates_per_word), english_words, stop
    if name == "synonym":
        return (SynonymSwap(load_wordnet(job.wordnet), load_glove(job.glove), job.max_synonyms,
                            job.min_similarity), english_words, stop)
    if name == "zh-char":
        return (ChineseCharSwap(target.vocab_chars, job.candidates_per_word), chinese_words,
                ZH_STOPWORDS if job.skip_stopwords else frozenset())
    raise ConfigError(f"unknown attack {name!r}; choose char, synonym or zh-char")


def run_attack(job: AttackJob, resume: bool = False) -> dict[str, Any]:
    """Run every attack of ``job`` on the first ``num_examples`` examples.

    Returns:
        The summary (also written to ``summary.json``), with a TextAttack-style ``table``.
    """
    if not job.run:
        raise ConfigError("set the model to attack: lmforge attack RUN_DIR")
    if not Path(job.run).expanduser().exists():  # the run is named before any resource
        raise ConfigError(f"run {job.run!r} does not exist; pass a finetune run directory "
                          "(or its model/ folder, or an ONNX export): lmforge attack RUN_DIR")
    if "synonym" in job.attacks:  # fail fast, before the model loads
        load_wordnet(job.wordnet)
        load_glove(job.glove)

    predictor = load_predictor(job.run, precision=job.precision, threads=job.threads)
    target = attack_target(predictor, job.batch_size)
    rows = _data_rows(job, target)
    if job.text_column:
        target.text_column = job.text_column
    if job.label_column:
        target.label_column = job.label_column
    texts, labels = target.read(rows)
    if not texts:
        raise DataError("no examples to attack; check data and split")
    run = open_run("attack", job)
    run_dir = run.run_dir
    sections, reports = [], {}
    for name in job.attacks:
        transformation, splitter, stop = _transformation(name, job, target)
        calls = target.forward_calls
        t0 = time.perf_counter()
        results = greedy_attack(target.predict_proba, texts, labels, transformation,
                                splitter=splitter, max_words_fraction=job.max_words_fraction,
                                max_edit_distance=job.max_edit_distance if name == "char"
                                else None, stopwords=stop, seed=job.seed)
        seconds = time.perf_counter() - t0
        summary = {**summarize(results), "seconds": round(seconds, 2),
                   "forward_calls": target.forward_calls - calls}
        if name == "zh-char":
            summary["candidates"] = transformation.source
        folder = run_dir / f"attack-{name}"
        folder.mkdir(exist_ok=True)
        summary["adversarial_examples"] = write_jsonl(folder / "adversarial.jsonl", results,
                                                      target.labels)
        reports[name] = summary
        sections.append((name, summary, results))
        log.info("%s: accuracy %.3f -> %.3f under attack (%.1f s)", name,
                 summary["original_accuracy"], summary["accuracy_under_attack"], seconds)
    write_html(run_dir / ATTACKS_PAGE, f"lmforge attack: {predictor.source}", sections,
               target.labels)
    report = {"model": predictor.source, "data": job.data or "the run's validation split",
              "examples": len(texts), "attacks": reports,
              "settings": {"max_words_fraction": job.max_words_fraction,
                           "max_edit_distance": job.max_edit_distance,
                           "candidates_per_word": job.candidates_per_word,
                           "min_similarity": job.min_similarity,
                           "skip_stopwords": job.skip_stopwords},
              "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(run_dir / REPORT_FILE, report)
    if job.write_to_model and Path(predictor.source).is_dir():
        write_json(Path(predictor.source) / REPORT_FILE, report)
    summary = run.finish({"model": predictor.source, "examples": len(texts), "attacks": reports,
                          "attacks_html": str(run_dir / ATTACKS_PAGE)})
    return {**summary, "table": "\n".join(text_table(n, s) for n, s in reports.items())}
