"""Continued causal-LM pretraining of SmolLM2-135M: `lmforge pretrain` vs the `Trainer`'s run_clm.

Both sides, in one invocation, one after the other, on the same machine:
- the same starting weights: the builtin `smollm2-135m-instruct` (the Q4_1 GGUF converted
  once into a float32 folder, lmforge.models.gguf); lmforge gets the builtin name, the peer
  (`hf_trainer_clm.py`, run_clm.py's recipe) the converted folder;
- the same text: tiny Shakespeare cut once, at the first blank line after 90 % of the
  characters (nanoGPT's contiguous 90 / 10 split, so no held-out speech is seen in training);
  both sides train on the first part, the last part is held out;
- packing on both sides into `--block`-token blocks: lmforge's own (lines joined by newlines,
  an EOS token between blank-line-separated paragraphs), the peer's run_clm `group_texts`
  (lines with their line breaks, concatenated, remainder dropped);
- the same steps, batch size, learning rate, schedule, AdamW betas / eps, weight decay,
  clipping and seed, passed explicitly to both. The defaults are `lmforge pretrain`'s (lr
  5e-4, linear decay after one warmup step (its 6 % of a short run), weight decay 0.01, betas
  0.9 / 0.98, eps 1e-6, clip 1.0): what a user's `lmforge pretrain` runs without training
  options, and a rate that moves the model in the few steps a shared 2-core CPU affords
  (`--lr 5e-5 --warmup-steps 0 --wd 0 --beta2 0.999 --eps 1e-8` gives run_clm's
  `TrainingArguments` defaults instead); precision is what lmforge's `train.precision=auto`
  picks on this machine (bf16 autocast where the CPU has bf16 units, else fp32), and the peer
  then uses the same (`TrainingArguments(bf16=...)`);
- `--threads` torch threads on each side (OMP_NUM_THREADS and lmforge's train.num_threads);
- tokens counted the same way (non-padding tokens of the training batches) and timed the same
  way: the whole training call (lmforge's train_seconds, which includes its end-of-run
  checkpoint save; the peer's `trainer.train()`), and a steady-state rate over the
  `--window`-step windows after the first (lmforge's logged windows; a callback on the peer);
- held-out perplexity computed by one function for all three models (before, lmforge after,
  peer after): exp of the mean next-token loss, float32, over the first `--eval-blocks` blocks
  of the held-out text packed the run_clm way (the plain text with its line breaks, no special
  tokens; lmforge's model never saw its paragraph EOS there, so this set does not favour it);
- the 1-minute load average at the start of each side (the machine is shared).

`--rounds N` repeats the timed pair (lmforge, Trainer, lmforge, Trainer, ...) so the ratio is
less sensitive to load changes; perplexity is measured on the first round's models.

Usage: .venv/bin/python bench/pretrain_clm_smollm2.py [--steps 12] [--batch-size 8]
       [--block 256] [--lr 5e-4] [--warmup-steps 1] [--wd 0.01] [--beta2 0.98] [--eps 1e-6]
       [--window 4] [--eval-blocks 16] [--rounds 1] [--threads 2] [--tag NAME]
Writes bench/results/pretrain_clm_smollm2[-TAG].json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from pretrain_mlm import DATA, ENV, PY, ROOT, measured

MODEL = "smollm2-135m-instruct"


def write_split(work: Path) -> tuple[Path, str]:
    """Train folder (train.txt only) and the held-out text: a contiguous 90 / 10 cut."""
    text = DATA.read_text(encoding="utf-8")
    cut = text.index("\n\n", int(len(text) * 0.9)) + 2
    folder = work / "split"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text(text[:cut], encoding="utf-8")
    return folder, text[cut:]


def heldout_blocks(text: str, tokenizer, block: int, count: int) -> list[list[int]]:  # noqa: ANN001
    """The held-out text packed as run_clm packs it: lines with their breaks, no specials."""
    ids = tokenizer(text.splitlines(keepends=True))["input_ids"]
    stream = [t for row in ids for t in row]
    blocks = [stream[i:i + block] for i in range(0, len(stream) - block + 1, block)]
    return blocks[:count]


def perplexity(model_dir: str, blocks: list[list[int]], batch_size: int) -> dict[str, float]:
    """exp(mean next-token NLL) of a causal LM over full blocks, float32, no dropout."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(blocks), batch_size):
            ids = torch.tensor(blocks[i:i + batch_size])  # (B, T)
            loss = model(input_ids=ids, labels=ids).loss  # mean over B * (T - 1) targets
            n = ids.shape[0] * (ids.shape[1] - 1)
            nll += float(loss) * n
            count += n
    del model
    return {"loss": nll / count, "perplexity": math.exp(nll / count), "tokens": count}


def steady_rate(window_rates: list[float]) -> float | None:
    """Tokens/s over the 10-step windows after the first (harmonic mean: equal-token windows)."""
    rest = window_rates[1:]
    return statistics.harmonic_mean(rest) if rest else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block", type=int, default=256, help="tokens per packed block")
    parser.add_argument("--lr", type=float, default=5e-4, help="lmforge pretrain's default")
    parser.add_argument("--warmup-steps", type=int, default=1)
    parser.add_argument("--wd", type=float, default=0.01, help="weight decay")
    parser.add_argument("--beta2", type=float, default=0.98)
    parser.add_argument("--eps", type=float, default=1e-6)
    parser.add_argument("--window", type=int, default=4, help="steps per timing window")
    parser.add_argument("--eval-blocks", type=int, default=16, help="held-out blocks scored")
    parser.add_argument("--rounds", type=int, default=1, help="timed (lmforge, Trainer) pairs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if not DATA.is_file():
        sys.exit(f"skipped: {DATA} not found (the shared datasets are not beside this repo)")
    sys.path.insert(0, str(ROOT / "src"))
    import torch
    from machine import machine_info

    from lmforge.models.build import load_tokenizer, resolve_checkpoint

    torch.set_num_threads(args.threads)
    model_dir = resolve_checkpoint(MODEL)  # converts once; cached afterwards
    tokenizer = load_tokenizer(model_dir)
    hp = {"batch_size": args.batch_size, "block": args.block, "lr": args.lr,
          "warmup_steps": args.warmup_steps, "wd": args.wd, "beta2": args.beta2,
          "eps": args.eps, "seed": args.seed, "clip": 1.0, "scheduler": "linear",
          "window": args.window}
    env = {**ENV, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lmforge-clm-bench-"))
    print(f"work folder: {work}", flush=True)
    split, heldout = write_split(work)
    blocks = heldout_blocks(heldout, tokenizer, args.block, args.eval_blocks)
    common = ["objective.name=clm", f"model.pretrained={MODEL}", f"data.path={split}",
              "data.validation_ratio=0", f"data.max_length={args.block}", "data.packing=true",
              f"train.batch_size={args.batch_size}", f"train.max_steps={args.steps}",
              f"train.lr={hp['lr']}", f"train.warmup_steps={hp['warmup_steps']}",
              f"train.weight_decay={hp['wd']}",
              f"train.adam_beta2={hp['beta2']}", f"train.adam_eps={hp['eps']}",
              f"train.max_grad_norm={hp['clip']}", "train.scheduler=linear",
              f"train.seed={hp['seed']}", "train.precision=auto",
              f"train.num_threads={args.threads}", f"train.log_every={args.window}",
              f"data.cache_dir={work / 'cache'}", "track.progress=false", "track.report=false"]
    rounds, load = [], []
    for r in range(1, args.rounds + 1):
        load.append({"lmforge": round(os.getloadavg()[0], 2)})
        run_dir = work / f"lmforge-r{r}"
        ours, ours_rss = measured([PY, "-m", "lmforge", "pretrain", *common,
                                   f"--output-dir={run_dir}"], env=env)
        summary = ours["summary"]
        hp["precision"] = summary["precision"]
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # 1.6 GB each
        windows = [json.loads(x)["tokens_per_s"] for x in
                   (run_dir / "metrics.jsonl").read_text().splitlines() if "tokens_per_s" in x]
        load[-1]["hf_trainer"] = round(os.getloadavg()[0], 2)
        peer_dir = work / f"peer-r{r}"
        peer, peer_rss = measured([PY, str(ROOT / "bench" / "hf_trainer_clm.py"), str(split),
                                   model_dir, str(peer_dir), str(args.steps), json.dumps(hp)],
                                  env=env)
        psum = peer["summary"]
        rows = {
            "lmforge": {"tokens_per_s": summary["tokens_per_second"],
                        "steady_tokens_per_s": steady_rate(windows),
                        "window_tokens_per_s": windows,
                        "train_seconds": summary["train_seconds"],
                        "tokens": summary["tokens_seen"], "peak_rss_mib": ours_rss,
                        "precision": summary["precision"],
                        "train_blocks": summary["train_examples"],
                        "model_dir": str(run_dir / "model")},
            "hf_trainer": {"tokens_per_s": psum["tokens_per_second"],
                           "steady_tokens_per_s": steady_rate(psum["window_tokens_per_s"]),
                           "window_tokens_per_s": psum["window_tokens_per_s"],
                           "train_seconds": psum["train_seconds"], "tokens": psum["tokens"],
                           "peak_rss_mib": peer_rss, "precision": psum["precision"],
                           "train_blocks": psum["train_blocks"], "train_loss": psum[
                               "train_loss"], "model_dir": str(peer_dir)},
        }
        rows["lmforge"]["train_loss"] = [
            {"step": m["step"], "loss": m["train_loss"]}
            for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "train_loss" in m]
        rows["speedup"] = rows["lmforge"]["tokens_per_s"] / rows["hf_trainer"]["tokens_per_s"]
        rows["steady_speedup"] = (rows["lmforge"]["steady_tokens_per_s"] or math.nan) / (
            rows["hf_trainer"]["steady_tokens_per_s"] or math.nan)
        rounds.append(rows)
        # Kept in the work folder (not removed when a later part fails).
        (work / "rounds.json").write_text(json.dumps(rounds, indent=2))
        print(f"round {r}: lmforge {rows['lmforge']['tokens_per_s']:.1f} tok/s, Trainer "
              f"{rows['hf_trainer']['tokens_per_s']:.1f} tok/s, x{rows['speedup']:.2f}",
              flush=True)
    ppl = {}
    for side, folder in (("before", model_dir), ("lmforge", rounds[0]["lmforge"]["model_dir"]),
                         ("hf_trainer", rounds[0]["hf_trainer"]["model_dir"])):
        ppl[side] = perplexity(folder, blocks, args.batch_size)
        print(side, ppl[side], flush=True)
    ours_tokens = sum(r["lmforge"]["tokens"] for r in rounds)
    ours_seconds = sum(r["lmforge"]["train_seconds"] for r in rounds)
    peer_tokens = sum(r["hf_trainer"]["tokens"] for r in rounds)
    peer_seconds = sum(r["hf_trainer"]["train_seconds"] for r in rounds)
    result = {
        "command": " ".join(["python", "bench/pretrain_clm_smollm2.py", *sys.argv[1:]]),
        "machine": machine_info(), "threads": args.threads,
        "load_avg_1m_at_start": load,
        "load_over_2": any(v > 2 for row in load for v in row.values()),
        "model": MODEL, "model_dir": model_dir, "steps": args.steps, "hyperparameters": hp,
        "hyperparameters_source": "lmforge pretrain defaults" if (args.lr, args.wd) == (
            5e-4, 0.01) else "set on the command line", "peer_script": "bench/hf_trainer_clm.py",
        "split": {"train_chars": len(DATA.read_text(encoding="utf-8")) - len(heldout),
                  "heldout_chars": len(heldout), "eval_blocks": len(blocks),
                  "eval_tokens": ppl["before"]["tokens"]},
        "perplexity": ppl, "rounds": rounds,
        "tokens_per_s": {"lmforge": ours_tokens / ours_seconds,
                         "hf_trainer": peer_tokens / peer_seconds},
        "speedup": (ours_tokens / ours_seconds) / (peer_tokens / peer_seconds),
        "speedups_per_round": [r["speedup"] for r in rounds],
        "steady_speedups_per_round": [r["steady_speedup"] for r in rounds],
    }
    name = "pretrain_clm_smollm2" + (f"-{args.tag}" if args.tag else "")
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
