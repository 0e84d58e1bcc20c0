"""Adversarial training vs plain fine-tuning, measured by `lmforge attack` (issue 11, bench 1-2).

Fine-tunes MiniLM-L6 (`model.pretrained=all-minilm-l6-v2`) once per method (plain, FGM, PGD,
FreeLB, ...) with the same data, seed and hyperparameters, then attacks the first N dev
sentences of each model with the character attack (DeepWordBug-style) and the synonym attack.
No external peer: the comparison is plain fine-tuning vs the adversarial methods.

Usage:
    .venv/bin/python bench/robustness.py --task sst2 --epochs 1 --num-examples 500
    .venv/bin/python bench/robustness.py --task agnews --max-train 4000 --methods plain freelb

``--reuse`` keeps a method's run when its summary.json is already there (a long benchmark
can be run in phases: ``--phase train`` then ``--phase all --reuse``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from machine import machine_info  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "LMFORGE_PROGRESS": "0"}
TASKS = {"sst2": {"text_column": "sentence", "dev": "dev.tsv"},
         "agnews": {"text_column": "text", "dev": None}}
# Per-example L2 bounds on MiniLM's word embeddings (token norms ~1.1, so a 25-token sentence
# has norm ~5.5). A first try with epsilon 1.0 / alpha 0.3 kept FGM and FreeLB at chance level.
FREELB = ["train.adversarial=freelb", "adv.epsilon=0.3", "adv.alpha=0.1", "adv.steps=2",
          "adv.init_mag=0.1"]
PGD = ["train.adversarial=pgd", "adv.epsilon=0.3", "adv.alpha=0.1", "adv.steps=2"]
CHAR_AUG = ["data.augment=char", "aug.char_rate=0.15"]
METHODS = {
    "plain": [],
    "fgm": ["train.adversarial=fgm", "adv.epsilon=0.2"],
    "pgd": PGD,
    "freelb": FREELB,
    "rdrop": ["train.adversarial=rdrop", "adv.rdrop_alpha=1.0"],
    "char-aug": CHAR_AUG,
    # Embedding-space perturbation and character noise defend against different things
    # (small moves of the input vectors vs words split into other word pieces): both at once.
    "pgd+char-aug": [*PGD, *CHAR_AUG],
    "freelb+char-aug": [*FREELB, *CHAR_AUG],
    # Tried after the rows above, on the same 200 dev sentences: larger budgets.
    "freelb+char-aug-2ep": [*FREELB, *CHAR_AUG, "train.epochs=2"],
    "freelb-e0.6+char-aug0.25": ["train.adversarial=freelb", "adv.epsilon=0.6", "adv.alpha=0.2",
                                 "adv.steps=2", "adv.init_mag=0.1", "data.augment=char",
                                 "aug.char_rate=0.25"],
}
HP = ["train.batch_size=32", "train.lr=1e-4", "train.warmup_ratio=0.1", "train.seed=42",
      "data.max_length=128", "train.group_by_length=true", "train.adam_beta2=0.999",
      "train.adam_eps=1e-8", "train.eval_every=0", "train.num_threads=1", "track.progress=false"]


def prepare_data(task: str, work: Path, max_train: int | None) -> Path:
    """Copy (a head of) the shared train split and the dev split into ``work``."""
    src = ROOT.parent / "shared" / "data" / task
    if not src.is_dir():
        sys.exit(f"skipped: {src} not found (the shared datasets are not beside this repo)")
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = (src / "train.tsv").read_text(encoding="utf-8").splitlines()
    if max_train:
        lines = lines[: max_train + 1]
    (data / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if TASKS[task]["dev"]:
        (data / "dev.tsv").write_text((src / TASKS[task]["dev"]).read_text(encoding="utf-8"),
                                      encoding="utf-8")
    return data


def train(method: str, data: Path, out: Path, epochs: float, reuse: bool,
          text_column: str) -> dict:
    """Fine-tune one method (or reuse its finished run); return its summary and command."""
    cmd = [sys.executable, "-m", "lmforge", "finetune", f"data.path={data}",
           f"task.text_column={text_column}", "model.pretrained=all-minilm-l6-v2",
           f"train.epochs={epochs}", *HP, *METHODS[method], f"--output-dir={out}"]
    if not (reuse and (out / "summary.json").is_file()):
        shutil.rmtree(out, ignore_errors=True)  # finetune refuses a folder holding a run
        subprocess.run(cmd, env=ENV, check=True, capture_output=True)
    summary = json.loads((out / "summary.json").read_text())
    return {"command": " ".join(cmd[1:]), "summary": summary}


def attack(run: Path, data: Path, out: Path, num_examples: int, attacks: list[str],
           reuse: bool) -> dict:
    """`lmforge attack` on the first ``num_examples`` dev sentences."""
    cmd = [sys.executable, "-m", "lmforge", "attack", str(run), f"data={data}",
           "split=validation", f"num_examples={num_examples}", "threads=1",
           f"attacks=[{','.join(attacks)}]", "write_to_model=false", f"--output-dir={out}"]
    if not (reuse and (out / "summary.json").is_file()):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=ENV, check=True, capture_output=True)
        print(f"  attacked {run.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return {"command": " ".join(cmd[1:]), "summary": json.loads((out / "summary.json")
                                                                .read_text())}


def render(results: dict) -> str:
    """The markdown table of the results file."""
    attacks = results["attacks"]
    head = ["method", "clean dev acc", "extra fwd / bwd per step"]
    for name in attacks:
        head += [f"acc under {name}", f"{name} success", f"{name} queries"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, row in results["methods"].items():
        s = row["train"]["summary"]
        adv = s.get("adversarial", {})
        cells = [method, f"{100 * s['validation_metrics']['accuracy']:.1f}",
                 f"{adv.get('extra_forward_per_step', 0):g} / "
                 f"{adv.get('extra_backward_per_step', 0):g}"]
        for name in attacks:
            rep = row["attack"]["summary"]["attacks"][name]
            cells += [f"{100 * rep['accuracy_under_attack']:.1f}",
                      f"{100 * rep['attack_success_rate']:.1f}",
                      f"{rep['avg_queries']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=sorted(TASKS), default="sst2")
    parser.add_argument("--methods", nargs="+", default=["plain", "fgm", "pgd", "freelb"],
                        choices=sorted(METHODS))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--num-examples", type=int, default=500)
    parser.add_argument("--attacks", nargs="+", default=["char", "synonym"])
    parser.add_argument("--phase", choices=["train", "all"], default="all")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--work", default=None, help="where runs go (default runs/bench-rob-TASK)")
    parser.add_argument("--name", default=None, help="results file name")
    args = parser.parse_args()
    machine = machine_info()  # at the start: the load average before our own runs
    work = Path(args.work or ROOT / "runs" / f"bench-rob-{args.task}")
    data = prepare_data(args.task, work, args.max_train)
    results: dict = {"benchmark": "robustness", "task": args.task, "epochs": args.epochs,
                     "max_train": args.max_train, "num_examples": args.num_examples,
                     "attacks": args.attacks, "hyperparameters": HP,
                     "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                     "methods": {}}
    for method in args.methods:
        print(f"{method}: training", flush=True)
        row = {"train": train(method, data, work / method, args.epochs, args.reuse,
                              TASKS[args.task]["text_column"])}
        if args.phase == "all":
            row["attack"] = attack(work / method, data, work / f"attack-{method}",
                                   args.num_examples, args.attacks, args.reuse)
        results["methods"][method] = row
    if args.phase != "all":
        return
    results["machine"] = machine
    name = args.name or f"robustness_{args.task}"
    out = ROOT / "bench" / "results"
    (out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / f"{name}.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
