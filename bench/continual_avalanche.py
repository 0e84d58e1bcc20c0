"""Peer: Avalanche's Naive, Replay and EWC against lmforge on the same five-experience stream.

Both sides get the same encoded rows (this script builds the stream with lmforge's own loader
from `configs/stream5-continual.yaml`, so samples, tokenization and label spaces are
identical), the same MiniLM-L6 with the same seeded classification head, AdamW with the same
learning rate, weight decay, linear warmup / decay per experience, batch size and epochs,
replay memory (10 % of the stream, balanced per experience, 16 memory rows per batch) and
EWC settings (online, lambda 1e5, decay 0.9). The accuracy matrix of both sides is computed
by the same evaluation code (masked argmax over the task's own classes).

Avalanche is used as its HF example does: a `MultiTaskModule` (per-task output slice of the
classification head), task-aware classification datasets, and its `Naive`, `Replay`
(`ReplayPlugin`) and `EWC` (`EWCPlugin`) strategies with an `LRSchedulerPlugin`. Inputs are
padded to data.max_length because Avalanche's replay loader concatenates mini-batches with
torch.cat (lmforge pads each batch to its longest row).

Avalanche needs torchvision; run this with a scratch venv that has avalanche-lib and a
torchvision matching our torch (see BENCHMARKS.md), never the project venv:

    /tmp/aval/bin/python bench/continual_avalanche.py --side avalanche --strategy naive
    .venv/bin/python bench/continual_avalanche.py --interleave   # both sides, all strategies

Writes bench/results/continual_avalanche.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))  # the peer venv sees lmforge's dependencies, not its install
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "LMFORGE_PROGRESS": "0"}
CONFIG = "configs/stream5-continual.yaml"
# Extra overrides for both sides (quick checks): LMFORGE_BENCH_OVERRIDES="max_train_examples=16"
OVERRIDES = shlex.split(os.environ.get("LMFORGE_BENCH_OVERRIDES", ""))
LMFORGE = {"naive": ["strategy.name=naive"],
           "replay": ["strategy.name=replay", "strategy.buffer_size=10%",
                      "strategy.buffer_policy=per_experience"],
           "ewc": ["strategy.name=ewc", "strategy.ewc_lambda=1e5", "strategy.ewc_decay=0.9"]}


def _job(extra: list[str]):  # noqa: ANN202 - lmforge types
    from lmforge.config import build_config
    from lmforge.continual.settings import ContinualJob

    return build_config(ContinualJob, str(ROOT / CONFIG), extra)


def run_avalanche(strategy: str, threads: int, out: Path) -> dict:
    """Train the stream with Avalanche; return the accuracy matrix and times."""
    import torch

    # The PyPI torchvision wheel is built against CUDA torch; its C ops do not load with the
    # CPU torch. Avalanche only needs torchvision's Python transforms: declare the two op
    # schemas its import registers fakes for.
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
    from avalanche.benchmarks.scenarios.task_aware import with_task_labels
    from avalanche.benchmarks.utils.classification_dataset import (
        _make_taskaware_classification_dataset,
    )
    from avalanche.models import MultiTaskModule
    from avalanche.training import EWC, Naive, Replay
    from avalanche.training.plugins import LRSchedulerPlugin
    from transformers import get_scheduler

    from lmforge.continual.metrics import stream_metrics
    from lmforge.continual.stream import load_stream
    from lmforge.finetuning.task import get_task
    from lmforge.models.build import load_tokenizer, resolve_checkpoint

    torch.set_num_threads(threads)
    t_wall = time.perf_counter()
    job = _job(OVERRIDES)
    task = get_task("classification")
    source = resolve_checkpoint(job.model.pretrained)
    tokenizer = load_tokenizer(source)
    stream = load_stream(job, task, tokenizer)
    width = max(e.data.max_length for e in job.experiences)
    pad = tokenizer.pad_token_id

    class Rows(torch.utils.data.Dataset):
        def __init__(self, encoded, classes):
            self.ids = encoded["input_ids"]
            first = classes[0]
            self.y = [int(v) - first for v in encoded["labels"]]

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i):
            ids = self.ids[i][:width]
            x = torch.full((2, width), pad, dtype=torch.long)
            x[0, :len(ids)] = torch.tensor(ids)
            x[1] = 0
            x[1, :len(ids)] = 1
            return x, self.y[i]

    train = [_make_taskaware_classification_dataset(
        Rows(e.train, e.classes), task_labels=e.index,
        targets=Rows(e.train, e.classes).y) for e in stream.experiences]
    bench = with_classes_timeline(with_task_labels(benchmark_from_datasets(train=train)))
    torch.manual_seed(job.train.seed)
    hf, _ = task.load_model(source, stream.settings, job.model)

    class Heads(MultiTaskModule):
        """The classification model; task t answers with its own slice of the head."""

        def __init__(self) -> None:
            super().__init__()
            self.hf = hf
            self.max_class_label = max(len(e.classes) for e in stream.experiences)

        def forward_single_task(self, x, task_label):
            logits = self.hf(input_ids=x[:, 0], attention_mask=x[:, 1]).logits
            cls = stream.experiences[int(task_label)].classes
            return logits[:, cls[0]:cls[-1] + 1]

    model = Heads()
    cfg = job.train
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps)
    steps = max(1, -(-len(stream.experiences[0].train) // cfg.batch_size)) * int(cfg.epochs)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=int(cfg.warmup_ratio *
                                                                          steps),
                              num_training_steps=steps)
    common = dict(criterion=torch.nn.CrossEntropyLoss(), train_mb_size=cfg.batch_size,
                  train_epochs=int(cfg.epochs), eval_mb_size=job.eval_batch_size,
                  device="cpu", evaluator=None,
                  plugins=[LRSchedulerPlugin(scheduler, reset_scheduler=True, reset_lr=True,
                                             step_granularity="iteration")])
    memory = int(round(0.10 * stream.train_examples()))
    if strategy == "naive":
        strat = Naive(model=model, optimizer=optimizer, **common)
    elif strategy == "replay":
        strat = Replay(model=model, optimizer=optimizer, mem_size=memory, **common)
    else:
        strat = EWC(model=model, optimizer=optimizer, ewc_lambda=1e5, mode="online",
                    decay_factor=0.9, keep_importance_data=False, **common)

    @torch.no_grad()
    def row() -> list[float]:
        model.eval()
        accs = []
        for e in stream.experiences:
            ds = Rows(e.eval, e.classes)
            right = 0
            for start in range(0, len(ds), job.eval_batch_size):
                items = [ds[i] for i in range(start, min(len(ds), start + job.eval_batch_size))]
                x = torch.stack([it[0] for it in items])
                y = torch.tensor([it[1] for it in items])
                right += int((model.forward_single_task(x, e.index).argmax(-1) == y).sum())
            accs.append(right / len(ds))
        model.train()
        return accs

    initial = row()
    matrix, train_seconds = [], 0.0
    for exp in bench.train_stream:
        t0 = time.perf_counter()
        strat.train(exp)
        train_seconds += time.perf_counter() - t0
        matrix.append(row())
    return {"accuracy_matrix": matrix, "initial_accuracy": initial,
            **stream_metrics(matrix, initial), "train_seconds": round(train_seconds, 1),
            "wall_seconds_inside": round(time.perf_counter() - t_wall, 1),
            "memory_examples": memory if strategy == "replay" else None}


def run_side(python: str, side: str, strategy: str, threads: int, out: Path) -> dict:
    """One side and strategy in its own process; wall time and peak RSS from os.wait4."""
    out.mkdir(parents=True, exist_ok=True)
    if side == "lmforge":
        cmd = [".venv/bin/lmforge", "continual", "-c", CONFIG, *LMFORGE[strategy], *OVERRIDES,
               f"train.num_threads={threads}", "track.progress=false",
               f"--output-dir={out / 'lmforge'}"]
    else:
        cmd = [python, "bench/continual_avalanche.py", "--side", "avalanche", "--strategy",
               strategy, "--threads", str(threads), "--out", str(out / "avalanche.json")]
    t0 = time.perf_counter()
    with open(out / f"{side}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
    result = {"command": shlex.join(cmd), "exit_code": os.waitstatus_to_exitcode(status),
              "wall_seconds": round(time.perf_counter() - t0, 1),
              "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}
    source = out / "lmforge" / "summary.json" if side == "lmforge" else out / "avalanche.json"
    if result["exit_code"] == 0 and source.is_file():
        data = json.loads(source.read_text())
        keys = ("accuracy_matrix", "initial_accuracy", "average_accuracy", "bwt", "fwt",
                "forgetting", "train_seconds")
        result.update({k: data.get(k) for k in keys})
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=["avalanche"], help="internal: run one side")
    parser.add_argument("--strategy", default="naive")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="")
    parser.add_argument("--peer-python", default="/tmp/w12/aval/bin/python")
    parser.add_argument("--strategies", default="naive,replay,ewc")
    parser.add_argument("--name", default="continual_avalanche",
                        help="results file name (several invocations can run side by side)")
    parser.add_argument("--combine", default="",
                        help="comma-separated results names to merge into --name, then exit")
    parser.add_argument("--merge", action="store_true",
                        help="keep the strategies of an earlier results file")
    parser.add_argument("--parallel", action="store_true",
                        help="run each strategy's two sides at the same time (shared machine)")
    args = parser.parse_args()
    if args.side:
        result = run_avalanche(args.strategy, args.threads, Path(args.out))
        Path(args.out).write_text(json.dumps(result, indent=2))
        return
    from machine import machine_info

    if args.combine:  # several side-by-side invocations -> one results file
        parts = [json.loads((ROOT / "bench" / "results" / f"{n}.json").read_text())
                 for n in args.combine.split(",")]
        merged = {k: v for part in parts for k, v in part["results"].items()}
        args.commands = [part["command"] for part in parts]
        write(parts[0]["machine"], merged, args)
        return
    info = machine_info()
    runs = ROOT / "runs" / "bench-continual-avalanche"
    previous = ROOT / "bench" / "results" / f"{args.name}.json"
    # Strategies measured by an earlier invocation are kept (--merge).
    results: dict[str, dict] = json.loads(previous.read_text())["results"] \
        if args.merge and previous.is_file() else {}
    for strategy in [s.strip() for s in args.strategies.split(",")]:
        out = runs / strategy
        if args.parallel:  # both sides side by side: same load for both
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(2) as pool:
                futures = {side: pool.submit(run_side, args.peer_python, side, strategy,
                                             args.threads, out)
                           for side in ("lmforge", "avalanche")}
                results[strategy] = {side: f.result() for side, f in futures.items()}
        else:  # interleaved: lmforge then Avalanche for each strategy
            results[strategy] = {side: run_side(args.peer_python, side, strategy,
                                                args.threads, out)
                                 for side in ("lmforge", "avalanche")}
        print(strategy, json.dumps({s: {k: r.get(k) for k in ("average_accuracy",
                                                                "wall_seconds")}
                                    for s, r in results[strategy].items()}), flush=True)
        write(info, results, args)


def write(info: dict, results: dict, args: argparse.Namespace) -> None:
    """Raw JSON and the markdown table rendered from it."""
    out = ROOT / "bench" / "results"
    info = {**info, "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}
    data = {"benchmark": "continual_avalanche", "config": CONFIG,
            "command": shlex.join([sys.executable, *sys.argv]), "machine": info,
            "results": results}
    if getattr(args, "commands", None):
        data["commands"] = args.commands  # the side-by-side invocations combined here
    (out / f"{args.name}.json").write_text(json.dumps(data, indent=2))
    lines = ["| strategy | side | avg. accuracy | BWT | forgetting | train time (s) | "
             "wall time (s) | peak RSS (MiB) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for strategy, sides in results.items():
        for side, r in sides.items():
            if r.get("average_accuracy") is None:
                lines.append(f"| {strategy} | {side} | failed (exit {r['exit_code']}) "
                             "| | | | | |")
                continue
            lines.append(f"| {strategy} | {side} | {r['average_accuracy']:.3f} | "
                         f"{r['bwt']:+.3f} | {r['forgetting']:.3f} | "
                         f"{r['train_seconds']:.0f} | {r['wall_seconds']:.0f} | "
                         f"{r['peak_rss_mib']:.0f} |")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
