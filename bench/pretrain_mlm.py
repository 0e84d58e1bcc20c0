"""MLM pretraining: `lmforge pretrain` vs a plain Hugging Face `Trainer` run_mlm-style script.

Both sides, in one run, on the same machine:
- same model shape (a BERT preset of lmforge, `--model-size`; the peer builds its
  `BertConfig` from the lmforge run's config.json), same WordPiece tokenizer (`--vocab`,
  trained here on the train split), same text (tiny Shakespeare, one fixed train /
  validation split written to a temp folder), same batch size, steps, learning rate, AdamW
  betas / eps, warmup, weight decay, clipping, seed and precision (`--precision`, both sides);
- the same token stream: lmforge packs the text into `--block`-token blocks, each wrapped in
  [CLS] ... [SEP]; the peer (`hf_trainer_mlm.py`, run_mlm.py's recipe) groups its text the
  same way instead of wrapping every line, and the bench checks that the two sets of
  training blocks are identical (sha256 of their ids);
- tokens counted the same way: the non-padding tokens of every training batch;
- both final models scored by the same evaluator (`lmforge evaluate`, every validation block,
  identical masks), next to the accuracy of the best constant prediction (the most frequent
  token), i.e. the plateau a masked LM sits on before it learns anything from context; the
  comparison means something only once both sides are clearly above it (`learned` in the
  results);
- each side's peak resident memory measured in its own process; the machine and its load
  average recorded.

MFU counts the same model FLOPs for both (6 x dense parameters x tokens, the attention
score/product terms, and the MLM decoder on the 15 % masked positions) against the
matrix-product peak measured here, for fp32 and for bf16.

`--scale` adds a second part: tokenizing and pretraining on the corpus repeated 1x and 10x,
comparing peak memory.

Usage: .venv/bin/python bench/pretrain_mlm.py [--steps 300] [--model-size tiny] [--lr 1e-3]
       [--batch-size 32] [--block 128] [--vocab 8000] [--precision fp32|bf16] [--scale]
       [--tag NAME] [--malloc-ablation] [--out bench/results]
Writes bench/results/pretrain_mlm[-TAG].json.
"""

from __future__ import annotations

import argparse
import hashlib
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
SHAPES = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512),
          "base": (12, 768)}  # (layers, hidden) of lmforge's presets



def measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[dict, float]:
    """Run ``cmd`` under bench/_maxrss.py; return (its JSON result, peak RSS in MiB).

    The JSON result also holds the CUDA peak memory where the command ran on a GPU."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        report = fh.name
    t0 = time.perf_counter()
    proc = subprocess.run([PY, str(ROOT / "bench" / "_maxrss.py"), report, *cmd], env=env or ENV,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    data = json.loads(Path(report).read_text())
    data["wall_seconds"] = time.perf_counter() - t0
    return data, data["maxrss_mib"]


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


def blocks_sha256(rows: list[list[int]]) -> str:
    """sha256 over blocks of ids, in order (the same function as in hf_trainer_mlm.py)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([int(t) for t in row]).encode())
    return h.hexdigest()


def lmforge_blocks(split: Path, tokenizer_dir: Path, block: int) -> dict[str, list[list[int]]]:
    """lmforge's own packed MLM blocks of both splits (what `lmforge pretrain` trains on)."""
    from lmforge.data.corpus import load_corpus
    from lmforge.data.lm import prepare_lm_dataset
    from lmforge.models.build import load_tokenizer
    from lmforge.settings import DataConfig

    tokenizer = load_tokenizer(str(tokenizer_dir))
    corpus = load_corpus(DataConfig(path=str(split), max_length=block), seed=42)
    return {name: prepare_lm_dataset(corpus[name], tokenizer, objective="mlm", max_length=block,
                                     packing=True, cache_dir=None)["input_ids"]
            for name in ("train", "validation")}


def constant_token_accuracy(blocks: list[list[int]], special: set[int]) -> float:
    """Share of the most frequent maskable token: what predicting it everywhere scores."""
    from collections import Counter

    counts = Counter(t for row in blocks for t in row if t not in special)
    return max(counts.values()) / sum(counts.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--model-size", default="tiny", choices=sorted(SHAPES))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block", type=int, default=128, help="tokens per packed block")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=float, default=0.06, help="warmup ratio")
    parser.add_argument("--vocab", type=int, default=8000, help="WordPiece vocabulary size")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="both sides (the peer: TrainingArguments(bf16=True))")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scale", action="store_true", help="also run the 1x / 10x corpus part")
    parser.add_argument("--malloc-ablation", action="store_true",
                        help="also run lmforge with LMFORGE_MALLOC=release (a fixed 128 KiB "
                             "mmap threshold, see lmforge/engine/memory.py)")
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if not DATA.is_file():
        sys.exit(f"skipped: {DATA} not found (the shared datasets are not beside this repo)")
    sys.path.insert(0, str(ROOT / "bench"))
    from machine import machine_info

    hp = {"batch_size": args.batch_size, "block": args.block, "lr": args.lr,
          "warmup": args.warmup, "wd": 0.01, "beta2": 0.999, "eps": 1e-8, "seed": args.seed,
          "clip": 1.0, "precision": args.precision}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lmforge-bench-"))
    split = write_split(work)
    lmf = [PY, "-m", "lmforge"]
    tok_run, _ = measured([*lmf, "tokenizer", "train", f"data.path={split}",
                           f"tokenizer.vocab_size={args.vocab}", f"--output-dir={work / 'tok'}"])
    tokenizer = work / "tok" / "tokenizer"
    blocks = lmforge_blocks(split, tokenizer, args.block)
    from lmforge.models.build import load_tokenizer

    special = set(load_tokenizer(str(tokenizer)).all_special_ids)

    import torch
    from mfu import matmul_peak, measured_peaks

    # The same peaks as bench/speed_finetune.py (CPU or GPU); where bf16 is emulated, its slow
    # peak is still measured (one small product) so the JSON shows why MFU against it means
    # nothing.
    peaks = {k: v / 1e9 for k, v in measured_peaks().items()}
    peaks.setdefault("bf16", matmul_peak(torch.bfloat16, repeats=2,
                                         shapes=((512, 512, 512),)) / 1e9)
    common = [f"data.path={split}", f"model.tokenizer={tokenizer}",
              f"model.size={args.model_size}", f"data.max_length={hp['block']}",
              f"train.batch_size={hp['batch_size']}", f"train.max_steps={args.steps}",
              f"train.lr={hp['lr']}", f"train.warmup_ratio={hp['warmup']}",
              f"train.weight_decay={hp['wd']}", f"train.adam_beta2={hp['beta2']}",
              f"train.adam_eps={hp['eps']}", f"train.seed={hp['seed']}",
              f"train.max_grad_norm={hp['clip']}", f"train.precision={args.precision}",
              f"data.cache_dir={work / 'cache'}", "train.eval_every=100000",
              "train.eval_max_batches=1", "track.progress=false", "train.log_every=10"]
    # Tokenize once outside the timed run, so both sides time training only.
    measured([*lmf, "pretrain", *common, "train.max_steps=1", f"--output-dir={work / 'warm'}"])
    load = {"lmforge": round(os.getloadavg()[0], 2)}
    ours, ours_rss = measured([*lmf, "pretrain", *common, f"--output-dir={work / 'lmforge'}"])
    load["hf_trainer"] = round(os.getloadavg()[0], 2)
    peer, peer_rss = measured([PY, str(ROOT / "bench" / "hf_trainer_mlm.py"), str(split),
                               str(tokenizer), str(work / "peer"), str(args.steps),
                               json.dumps(hp), str(work / "lmforge" / "model")])
    ablation = None
    if args.malloc_ablation:
        load["lmforge_malloc_release"] = round(os.getloadavg()[0], 2)
        run, rss = measured([*lmf, "pretrain", *common, f"--output-dir={work / 'malloc'}"],
                            env={**ENV, "LMFORGE_MALLOC": "release"})
        ablation = {"env": "LMFORGE_MALLOC=release", "peak_rss_mib": rss,
                    "tokens_per_s": run["summary"]["tokens_per_second"],
                    "train_seconds": run["summary"]["train_seconds"]}
    scores = {}
    for name, model_dir in (("lmforge", work / "lmforge" / "model"), ("peer", work / "peer")):
        result, _ = measured([*lmf, "evaluate", f"run={model_dir}", f"data.path={split}",
                              "split=validation", "batch_size=32",
                              f"data.max_length={hp['block']}",
                              f"data.cache_dir={work / 'cache'}", "precision=fp32",
                              f"output_dir={work / ('eval-' + name)}"])
        scores[name] = result["summary"]
    summary, psum = ours["summary"], peer["summary"]
    layers, hidden = SHAPES[args.model_size]
    fpt = flops_per_token(layers, hidden, args.vocab, hp["block"], 0.15)
    metrics = [json.loads(x) for x in (work / "lmforge" / "metrics.jsonl").read_text()
               .splitlines()]
    rows = {
        "lmforge": {"tokens_per_s": summary["tokens_per_second"],
                    "train_seconds": summary["train_seconds"], "tokens": summary["tokens_seen"],
                    "peak_rss_mib": ours_rss, "cuda_max_allocated_mib": ours.get(
                        "cuda_max_allocated_mib"), "val_loss": scores["lmforge"]["eval_loss"],
                    "val_accuracy": scores["lmforge"]["eval_token_accuracy"],
                    "precision": summary["precision"], "parameters": summary["parameters"],
                    "train_loss": [{"step": m["step"], "loss": m["train_loss"]}
                                   for m in metrics if "train_loss" in m]},
        "hf_trainer": {"tokens_per_s": psum["tokens_per_second"],
                       "train_seconds": psum["train_seconds"], "tokens": psum["tokens"],
                       "peak_rss_mib": peer_rss, "cuda_max_allocated_mib": peer.get(
                           "cuda_max_allocated_mib"), "val_loss": scores["peer"]["eval_loss"],
                       "val_accuracy": scores["peer"]["eval_token_accuracy"],
                       "precision": psum["precision"], "train_loss": psum["train_loss"]},
    }
    for row in rows.values():
        achieved = row["tokens_per_s"] * fpt / 1e9
        row["gflops"] = achieved
        row["mfu_vs_fp32_peak"] = achieved / peaks["fp32"]
        row["mfu_vs_bf16_peak"] = achieved / peaks["bf16"]
    constant = constant_token_accuracy(blocks["validation"], special)
    ours_sha = blocks_sha256(blocks["train"])
    result = {
        "command": " ".join(["python", "bench/pretrain_mlm.py", *sys.argv[1:]]),
        "machine": machine_info(), "load_avg_1m_before": load,
        "steps": args.steps, "model_size": args.model_size, "vocab_size": args.vocab,
        "hyperparameters": hp, "matmul_peak_gflops": peaks, "flops_per_token": fpt,
        "token_stream": {"train_blocks": len(blocks["train"]),
                         "peer_train_blocks": psum["train_blocks"],
                         "validation_blocks": len(blocks["validation"]),
                         "lmforge_sha256": ours_sha, "peer_sha256": psum["blocks_sha256"],
                         "identical": ours_sha == psum["blocks_sha256"]},
        "constant_token_accuracy": constant,
        # "Learned something": masked accuracy at least 1.5x the constant prediction's.
        "learned": all(r["val_accuracy"] >= 1.5 * constant for r in rows.values()),
        "rows": rows, "speedup": rows["lmforge"]["tokens_per_s"] / rows["hf_trainer"][
            "tokens_per_s"],
        "tokenizer_seconds": tok_run["summary"]["seconds"]}
    if ablation is not None:
        result["lmforge_malloc_release"] = ablation
    if args.scale:
        result["scale"] = scale_benchmark(work, tokenizer)
    name = "pretrain_mlm" + (f"-{args.tag}" if args.tag else "")
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    for side, row in rows.items():
        print(side, {k: v for k, v in row.items() if k != "train_loss"})
    if not result["token_stream"]["identical"]:
        print("WARNING: the two sides trained on different blocks", file=sys.stderr)
    if not result["learned"]:
        print(f"WARNING: a side is not clearly above the constant prediction ({constant:.3f});"
              " train longer before comparing losses", file=sys.stderr)


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
