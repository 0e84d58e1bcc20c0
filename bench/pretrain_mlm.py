"""MLM pretraining: `lmforge pretrain` vs a plain Hugging Face `Trainer` run_mlm-style script.

Both sides, in one run, on the same machine:
- same model (BERT-mini, 4 layers x 256, built from the same config), same WordPiece
  tokenizer (8k, trained here on the train split), same text (tiny Shakespeare, one
  fixed train / validation split written to a temp folder), same block size (128), batch
  size (32), steps, learning rate, AdamW betas / eps, warmup, weight decay, clipping, seed;
- the peer follows `run_mlm.py`: `load_dataset("text")`, tokenize, `group_texts` into
  128-token blocks, `DataCollatorForLanguageModeling` with its defaults (15 %, 80/10/10),
  `Trainer` with its defaults (fp32 on CPU, full-vocabulary MLM logits);
- both final models are scored by the same evaluator (`lmforge evaluate`, identical
  validation blocks and masks), and each side's peak resident memory is measured in its
  own process.

MFU counts the same model FLOPs for both (6 x dense parameters x tokens, the attention
score/product terms, and the MLM decoder on the 15 % masked positions) against the
matrix-product peak measured here, for fp32 and for bf16.

A second part tokenizes and pretrains on the corpus repeated 10x and compares peak memory.

Usage: .venv/bin/python bench/pretrain_mlm.py [--steps 100] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
PY = sys.executable
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "LMFORGE_PROGRESS": "0"}
HP = {"batch_size": 32, "block": 128, "lr": 5e-4, "warmup": 0.06, "wd": 0.01, "beta2": 0.999,
      "eps": 1e-8, "seed": 42, "clip": 1.0}


def measured(cmd: list[str]) -> tuple[dict, float]:
    """Run ``cmd`` under bench/_maxrss.py; return (its JSON result, peak RSS in MiB)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        report = fh.name
    t0 = time.perf_counter()
    proc = subprocess.run([PY, str(ROOT / "bench" / "_maxrss.py"), report, *cmd], env=ENV,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    data = json.loads(Path(report).read_text())
    data["wall_seconds"] = time.perf_counter() - t0
    return data, data["maxrss_mib"]


def matmul_peak(dtype_name: str, n: int = 2048, reps: int = 5) -> float:
    """Best GFLOP/s of an n x n matrix product in ``dtype`` on this machine."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def flops_per_token(layers: int, hidden: int, vocab: int, block: int, mask_rate: float) -> float:
    """Training FLOPs per token (forward + backward = 3 x forward) of BERT MLM."""
    dense = layers * 12 * hidden * hidden  # QKV + output (4H^2) and FFN (8H^2) weights
    attention = layers * 2 * block * hidden  # QK^T and AV: 2 * T * H multiply-adds per token
    head = mask_rate * (hidden * hidden + hidden * vocab)  # transform + decoder, masked only
    return 6 * (dense + attention + head)


def write_split(work: Path) -> Path:
    """The one train / validation split both sides use (lmforge's seeded 5 % split)."""
    sys.path.insert(0, str(ROOT / "src"))
    from lmforge.data.corpus import load_corpus
    from lmforge.settings import DataConfig

    corpus = load_corpus(DataConfig(path=str(DATA), validation_ratio=0.05), seed=42)
    folder = work / "split"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "validation"):
        (folder / f"{name}.txt").write_text("\n".join(corpus[name]["text"]) + "\n")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    if not DATA.is_file():
        sys.exit(f"skipped: {DATA} not found (the shared datasets are not beside this repo)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lmforge-bench-"))
    split = write_split(work)
    lmf = [PY, "-m", "lmforge"]
    tok_run, _ = measured([*lmf, "tokenizer", "train", f"data.path={split}",
                           "tokenizer.vocab_size=8000", f"--output-dir={work / 'tok'}"])
    tokenizer = work / "tok" / "tokenizer"

    peaks = {"fp32": matmul_peak("float32"), "bf16": matmul_peak("bfloat16", n=512, reps=2)}
    common = [f"data.path={split}", f"model.tokenizer={tokenizer}", "model.size=mini",
              f"data.max_length={HP['block']}", f"train.batch_size={HP['batch_size']}",
              f"train.max_steps={args.steps}", f"train.lr={HP['lr']}",
              f"train.warmup_ratio={HP['warmup']}", f"train.weight_decay={HP['wd']}",
              f"train.adam_beta2={HP['beta2']}", f"train.adam_eps={HP['eps']}",
              f"train.seed={HP['seed']}", f"train.max_grad_norm={HP['clip']}",
              f"data.cache_dir={work / 'cache'}", "train.eval_every=100000",
              "train.eval_max_batches=1", "track.progress=false", "train.log_every=10"]
    # Tokenize once outside the timed run, so both sides time training only.
    measured([*lmf, "pretrain", *common, "train.max_steps=1", f"--output-dir={work / 'warm'}"])
    ours, ours_rss = measured([*lmf, "pretrain", *common, f"--output-dir={work / 'lmforge'}"])
    peer, peer_rss = measured([PY, str(ROOT / "bench" / "hf_trainer_mlm.py"), str(split),
                               str(tokenizer), str(work / "peer"), str(args.steps),
                               json.dumps(HP)])
    scores = {}
    for name, model_dir in (("lmforge", work / "lmforge" / "model"), ("peer", work / "peer")):
        result, _ = measured([*lmf, "evaluate", f"run={model_dir}", f"data.path={split}",
                              "split=validation", "batch_size=32",
                              f"data.max_length={HP['block']}", f"data.cache_dir={work / 'cache'}",
                              f"output_dir={work / ('eval-' + name)}"])
        scores[name] = result["summary"]
    summary = ours["summary"]
    ours_tps = summary["tokens_per_second"]
    peer_tps = peer["summary"]["tokens_per_second"]
    fpt = flops_per_token(4, 256, 8000, HP["block"], 0.15)
    rows = {
        "lmforge": {"tokens_per_s": ours_tps, "train_seconds": summary["train_seconds"],
                    "tokens": summary["tokens_seen"], "peak_rss_mib": ours_rss,
                    "val_loss": scores["lmforge"]["eval_loss"],
                    "val_accuracy": scores["lmforge"]["eval_token_accuracy"],
                    "precision": summary["precision"]},
        "hf_trainer": {"tokens_per_s": peer_tps, "train_seconds": peer["summary"]["train_seconds"],
                       "tokens": peer["summary"]["tokens"], "peak_rss_mib": peer_rss,
                       "val_loss": scores["peer"]["eval_loss"],
                       "val_accuracy": scores["peer"]["eval_token_accuracy"],
                       "precision": "fp32"},
    }
    for row in rows.values():
        achieved = row["tokens_per_s"] * fpt / 1e9
        row["gflops"] = achieved
        row["mfu_vs_fp32_peak"] = achieved / peaks["fp32"]
        row["mfu_vs_bf16_peak"] = achieved / peaks["bf16"]
    result = {"steps": args.steps, "hyperparameters": HP, "matmul_peak_gflops": peaks,
              "flops_per_token": fpt, "rows": rows, "speedup": ours_tps / peer_tps,
              "tokenizer_seconds": tok_run["summary"]["seconds"]}
    if not args.skip_scale:
        result["scale"] = scale_benchmark(work, tokenizer)
    (out / "pretrain_mlm.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def scale_benchmark(work: Path, tokenizer: Path) -> dict:
    """Tokenize + pretrain (20 steps) on the corpus x1 and x10: peak memory should stay flat."""
    text = DATA.read_text()
    rows = {}
    for factor in (1, 10):
        folder = work / f"scale{factor}"
        folder.mkdir()
        (folder / "train.txt").write_text(text * factor)
        t0 = time.perf_counter()
        _, tok_rss = measured([PY, "-m", "lmforge", "tokenizer", "train",
                               f"data.path={folder / 'train.txt'}", "tokenizer.vocab_size=8000",
                               f"--output-dir={folder / 'tok'}"])
        run, rss = measured([PY, "-m", "lmforge", "pretrain", f"data.path={folder / 'train.txt'}",
                             f"model.tokenizer={tokenizer}", "model.size=mini",
                             "data.max_length=128", "train.batch_size=32", "train.max_steps=20",
                             "train.eval_max_batches=2", f"data.cache_dir={folder / 'cache'}",
                             "track.progress=false", f"--output-dir={folder / 'run'}"])
        rows[f"x{factor}"] = {"corpus_mib": len(text.encode()) * factor / 2**20,
                              "train_blocks": run["summary"]["train_examples"],
                              "tokenizer_peak_rss_mib": tok_rss, "pretrain_peak_rss_mib": rss,
                              "seconds": time.perf_counter() - t0}
    return rows


if __name__ == "__main__":
    main()
