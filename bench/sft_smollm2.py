"""Dialogue SFT of SmolLM2-135M-Instruct: lmforge LoRA vs trl's SFTTrainer, full vs LoRA, zh.

Data (``bench/chat_data.py``): English BYU chit-chat conversations (4-8 alternating turns,
user / assistant), split by a hash of the conversation id, ``--train`` training and
``--dev`` held-out conversations; Chinese chatterbot-corpus exchanges (all of them, 10 %
held out).

Arms, run one after the other in this one invocation, each in its own process with
``OMP_NUM_THREADS=--threads`` (the load average at each start is recorded):

- ``lmforge_lora``: ``lmforge finetune task.name=sft model.pretrained=smollm2-135m-instruct
  peft.method=lora`` with lmforge's defaults except :data:`HP` (lr 2e-4 for LoRA, batch 8,
  max length 256, 1 epoch; see BENCHMARKS.md for why), ``task.max_new_tokens=64`` for the
  report samples, one in-loop evaluation batch, and ``train.log_every`` above the step
  count so that its one logged ``tokens_per_s`` covers training only (the window ends at the
  last step, before the final evaluation and checkpoint).
- ``trl_lora``: ``bench/trl_sft.py`` (trl's SFTTrainer; same data, lengths, batch, epoch,
  LoRA rank / alpha / dropout / targets, lr, warmup, schedule, weight decay and bf16).
- ``lmforge_full``: the lmforge command with ``peft.method=none`` and lmforge's default lr.
- ``lmforge_lora_zh``: the LoRA command on the Chinese set.

Tokens/s on both sides = non-padding input tokens of one epoch / seconds of training only.
Held-out perplexity: ONE function here (:func:`heldout_perplexity`, fp32, assistant reply
tokens as lmforge's ``prepare_sft`` masks them) applied to the base model and every saved
model; lmforge's own before / after report is recorded beside it.

Usage: .venv/bin/python bench/sft_smollm2.py [--train 400] [--dev 100] [--threads 2]
           [--arms lmforge_lora,trl_lora,lmforge_full,lmforge_lora_zh] [--work DIR]
Writes bench/results/sft_smollm2.json and bench/results/sft_smollm2_samples.jsonl.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_data import chatterbot_chinese, chitchat_conversations, write_splits  # noqa: E402
from machine import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
HP: dict[str, Any] = {"lr": 2e-4, "full_lr": 5e-5, "batch_size": 8, "max_length": 256,
                      "epochs": 1, "warmup": 0.1, "wd": 0.01, "seed": 42, "r": 8, "alpha": 16,
                      "dropout": 0.05, "targets": ["q_proj", "v_proj"], "max_new_tokens": 64}
ARMS = ("lmforge_lora", "trl_lora", "lmforge_full", "lmforge_lora_zh")


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "LMFORGE_PROGRESS": "0",
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _run(cmd: list[str], threads: int, name: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-20:])
        raise SystemExit(f"{name} failed (exit {done.returncode}):\n{tail}")
    return time.perf_counter() - t0


def run_lmforge(name: str, data: Path, work: Path, threads: int, full: bool) -> dict[str, Any]:
    """One ``lmforge finetune`` run under ``_maxrss.py``; its cost, metrics and size."""
    out, report = work / name, work / f"{name}-rss.json"
    cmd = [sys.executable, str(ROOT / "bench" / "_maxrss.py"), str(report),
           sys.executable, "-m", "lmforge", "finetune", "task.name=sft",
           f"model.pretrained={MODEL}", f"data.path={data}",
           f"peft.method={'none' if full else 'lora'}",
           f"train.lr={HP['full_lr'] if full else HP['lr']}",
           f"train.batch_size={HP['batch_size']}", f"data.max_length={HP['max_length']}",
           f"train.epochs={HP['epochs']}", f"train.num_threads={threads}",
           f"task.max_new_tokens={HP['max_new_tokens']}", "train.eval_max_batches=1",
           "train.log_every=100000", "train.keep_last=1", f"task.baseline_eval={not full}",
           "track.backends=jsonl", "track.progress=false", f"--output-dir={out}"]
    if not full:
        cmd += [f"peft.r={HP['r']}", f"peft.alpha={HP['alpha']}", f"peft.dropout={HP['dropout']}",
                f"peft.target_modules={','.join(HP['targets'])}"]
    load = os.getloadavg()[0]
    wall = _run(cmd, threads, name)
    rss = json.loads(report.read_text())
    summary = rss["summary"]
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    speed = [r for r in logged if "tokens_per_s" in r]
    if len(speed) != 1:
        raise SystemExit(f"{name}: expected one training window in metrics.jsonl, "
                         f"got {len(speed)}")
    return {
        "load_avg_1m_at_start": round(load, 2), "tokens_per_second": speed[0]["tokens_per_s"],
        "train_loss": speed[0]["train_loss"], "train_seconds_summary": summary["train_seconds"],
        "wall_seconds": round(wall, 1), "peak_rss_mib": round(rss["maxrss_mib"], 1),
        "trainable_parameters": summary.get("trainable_parameters"),
        "model_dir_bytes": _folder_bytes(out / "model"),
        "lmforge_eval_before": summary.get("validation_before_metrics"),
        "lmforge_eval_after": summary.get("validation_metrics"),
        "run_dir": str(out),
    }


def run_trl(data: Path, work: Path, threads: int) -> dict[str, Any]:
    """``bench/trl_sft.py`` with the shared hyper-parameters."""
    out = work / "trl_lora"
    hp = {**{k: HP[k] for k in ("lr", "batch_size", "max_length", "epochs", "warmup", "wd",
                                "seed", "r", "alpha", "dropout", "targets")},
          "bf16": machine_info()["cpu_bf16_units"], "group_by_length": True,
          "gradient_checkpointing": False, "model": MODEL}
    wall = _run([sys.executable, str(ROOT / "bench" / "trl_sft.py"), str(data), str(out),
                 json.dumps(hp)], threads, "trl_lora")
    summary = json.loads((out / "bench_summary.json").read_text())
    return {**summary, "settings": hp, "wall_seconds": round(wall, 1),
            "peak_rss_mib": round(summary["maxrss_mib"], 1),
            "model_dir_bytes": _folder_bytes(out / "adapter"), "run_dir": str(out)}


def token_counts(path: Path) -> dict[str, int]:
    """Input tokens and trained (reply) tokens of a split, as lmforge's ``prepare_sft`` cuts it."""
    import datasets
    from transformers import AutoTokenizer

    from lmforge.finetuning.sft.data import prepare_sft
    from lmforge.models.build import resolve_checkpoint

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    enc = prepare_sft(datasets.Dataset.from_list(rows),
                      AutoTokenizer.from_pretrained(resolve_checkpoint(MODEL)),
                      max_length=HP["max_length"])
    return {"train_tokens": sum(len(x) for x in enc["input_ids"]),
            "trained_tokens": sum(sum(v != -100 for v in x) for x in enc["labels"])}


def heldout_perplexity(model: Any, tokenizer: Any, dev: Path, batch_size: int = 8
                       ) -> dict[str, float]:
    """Mean next-token NLL and perplexity on the assistant replies of ``dev`` (fp32).

    The labels are lmforge's ``prepare_sft`` masks (each reply and its end-of-turn marker,
    truncated at max length), the same tokens trl's ``assistant_only_loss`` trains on.
    """
    import datasets
    import torch

    from lmforge.finetuning.sft.data import prepare_sft

    rows = [json.loads(line) for line in dev.read_text(encoding="utf-8").splitlines()]
    enc = prepare_sft(datasets.Dataset.from_list(rows), tokenizer,
                      max_length=HP["max_length"], split_name="dev")
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]["input_ids"]))
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            items = [enc[i] for i in order[start:start + batch_size]]
            width = max(len(x["input_ids"]) for x in items)
            ids = torch.tensor([x["input_ids"] + [0] * (width - len(x["input_ids"]))
                                for x in items])  # (B, L)
            mask = torch.tensor([[1] * len(x["input_ids"]) + [0] * (width - len(x["input_ids"]))
                                 for x in items])  # (B, L)
            labels = torch.tensor([x["labels"] + [-100] * (width - len(x["labels"]))
                                   for x in items])  # (B, L)
            logits = model(input_ids=ids, attention_mask=mask).logits.float()  # (B, L, V)
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                ignore_index=-100, reduction="sum")
            total += float(nll)
            count += int((labels[:, 1:] != -100).sum())
    return {"loss": total / count, "perplexity": math.exp(total / count), "tokens": count}


def shared_eval(run: dict[str, Any] | None, dev: Path, threads: int) -> dict[str, float]:
    """:func:`heldout_perplexity` of a saved model (None: the base model), in this process."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.finetuning.saved import load_finetuned
    from lmforge.models.build import resolve_checkpoint

    torch.set_num_threads(threads)
    source = resolve_checkpoint(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if run is None or "adapter" in run.get("kind", ""):
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        if run is not None:  # trl's saved LoRA adapter on the same base
            model = PeftModel.from_pretrained(model, str(Path(run["run_dir"]) / "adapter"))
    else:
        model = load_finetuned(run["run_dir"]).model
    return heldout_perplexity(model.float(), tokenizer, dev)


def samples(runs: dict[str, Any]) -> list[dict[str, Any]]:
    """Before / after generations of the fixed prompts, from each lmforge LoRA run."""
    rows = []
    for name, lang in (("lmforge_lora", "en"), ("lmforge_lora_zh", "zh")):
        if name not in runs:
            continue
        run = Path(runs[name]["run_dir"])
        before = (run / "eval-validation-before" / "predictions.jsonl").read_text(
            encoding="utf-8").splitlines()
        after = (run / "eval-validation" / "predictions.jsonl").read_text(
            encoding="utf-8").splitlines()
        for b, a in zip(before, after, strict=True):
            b_row, a_row = json.loads(b), json.loads(a)
            rows.append({"lang": lang, **{k: v for k, v in b_row.items()
                                          if k not in ("prediction", "output")},
                         "before": b_row.get("prediction", b_row.get("output")),
                         "after": a_row.get("prediction", a_row.get("output"))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=400, help="English training conversations")
    parser.add_argument("--dev", type=int, default=100, help="English held-out conversations")
    parser.add_argument("--zh-train", type=int, default=0, help="Chinese exchanges (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--work", default="", help="keep runs here; arms already done are reused")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    if unknown := [a for a in arms if a not in ARMS]:
        sys.exit(f"unknown arms {unknown}; choose from {list(ARMS)}")
    machine = machine_info()
    work = Path(args.work or tempfile.mkdtemp(prefix="lmforge-sft-smollm2-"))
    data = {"en": work / "data-en", "zh": work / "data-zh"}
    counts = {"en": write_splits(chitchat_conversations(), data["en"], 0.1, args.train,
                                 args.dev),
              "zh": write_splits(chatterbot_chinese(), data["zh"], 0.1, args.zh_train or None)}
    for lang, folder in data.items():
        counts[lang].update(token_counts(folder / "train.jsonl"))
    done_file = work / "runs.json"
    runs: dict[str, Any] = json.loads(done_file.read_text()) if done_file.is_file() else {}
    for arm in arms:
        if arm in runs:
            continue
        print(f"running {arm} ...", file=sys.stderr, flush=True)
        lang = "zh" if arm.endswith("_zh") else "en"
        machine = machine_info()  # the load average as this arm starts
        if arm == "trl_lora":
            runs[arm] = {"kind": "trl adapter", **run_trl(data["en"], work, args.threads)}
        else:
            runs[arm] = run_lmforge(arm, data[lang], work, args.threads, arm == "lmforge_full")
        runs[arm]["machine_at_start"] = machine
        # Scored between arms (never while one is timed), so a cut-short invocation keeps
        # every finished arm complete.
        runs[arm]["heldout"] = shared_eval(runs[arm], data[lang] / "dev.jsonl", args.threads)
        print(f"{arm}: {runs[arm]['heldout']}", file=sys.stderr, flush=True)
        done_file.write_text(json.dumps(runs, indent=2))
    evals_file = work / "base_heldout.json"
    evals: dict[str, Any] = json.loads(evals_file.read_text()) if evals_file.is_file() else {}
    for lang in ("en", "zh"):
        if f"base_{lang}" not in evals and any(
                (a in runs) and a.endswith("_zh") == (lang == "zh") for a in arms):
            evals[f"base_{lang}"] = shared_eval(None, data[lang] / "dev.jsonl", args.threads)
            evals_file.write_text(json.dumps(evals, indent=2))
    result: dict[str, Any] = {
        "machine": machine, "threads": args.threads, "hyperparameters": HP,
        "data": counts, "runs": {a: runs[a] for a in arms if a in runs}, "heldout": evals,
    }
    if "lmforge_lora" in runs and "trl_lora" in runs:
        result["tokens_per_second_ratio"] = (runs["lmforge_lora"]["tokens_per_second"]
                                             / runs["trl_lora"]["tokens_per_second"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sft_smollm2.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    with (out / "sft_smollm2_samples.jsonl").open("w", encoding="utf-8") as fh:
        for row in samples(runs):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(json.dumps({a: r["heldout"] for a, r in result["runs"].items()} | evals, indent=2),
          file=sys.stderr)


if __name__ == "__main__":
    main()
