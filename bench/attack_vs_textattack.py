"""`lmforge attack` (char) vs TextAttack's DeepWordBug recipe: same model, same examples.

The examples are split into chunks and the attackers run interleaved chunk by chunk (lmforge,
TextAttack, ...), so both see the same machine load. TextAttack runs in its own virtual
environment (it needs transformers 4.x; `--ta-python`), as a worker process that keeps the
model loaded; only the attack calls are timed, on both sides.

Configurations:
- `lmforge (DeepWordBug settings)`: the recipe's constraints: 4 candidates per word (one per
  edit kind), stop-words untouched, Levenshtein distance <= 30, no cap on changed words.
- `lmforge (default)`: `lmforge attack` defaults: the same, but at most 25 % of the words and
  no edit-distance cap.
- `TextAttack DeepWordBug`: `DeepWordBugGao2018.build(HuggingFaceModelWrapper(...))`, the
  tokenizer's `model_max_length` set to the classifier's 128 (the wrapper pads every query to
  it); `TextAttack DeepWordBug (dynamic padding)`: the same recipe with a wrapper that pads
  each batch only to its longest query, to separate search overhead from padding.

Both sides use the same stop-word list (lmforge's, written as NLTK's `stopwords/english`,
which TextAttack reads at import time and which cannot be downloaded here).

Usage: .venv/bin/python bench/attack_vs_textattack.py --run runs/bench-rob-sst2/plain \
    --ta-python /tmp/ta-venv/bin/python --num-examples 300 --chunks 5
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


def worker(run: str, threads: int) -> None:
    """TextAttack side: read {"texts", "labels", "variant"} lines, answer one result line each."""
    import torch
    import transformers
    from textattack.attack_recipes import DeepWordBugGao2018
    from textattack.models.wrappers import HuggingFaceModelWrapper

    torch.set_num_threads(threads)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(run)
    model.eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(run)
    tokenizer.model_max_length = 128

    class DynamicPadding(HuggingFaceModelWrapper):
        def __call__(self, text_input_list: list[str]) -> torch.Tensor:
            enc = self.tokenizer(text_input_list, padding=True, truncation=True,
                                 max_length=128, return_tensors="pt")
            with torch.no_grad():
                return self.model(**enc).logits

    attacks = {"padded": DeepWordBugGao2018.build(HuggingFaceModelWrapper(model, tokenizer)),
               "dynamic": DeepWordBugGao2018.build(DynamicPadding(model, tokenizer))}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        attack = attacks[request["variant"]]
        rows = []
        t0 = time.perf_counter()
        for text, label in zip(request["texts"], request["labels"], strict=True):
            result = attack.attack(text, int(label))
            kind = type(result).__name__
            status = {"SuccessfulAttackResult": "success", "FailedAttackResult": "failed"}.get(
                kind, "skipped")
            original = result.original_result.attacked_text
            changed = len(original.all_words_diff(result.perturbed_result.attacked_text)) \
                if status == "success" else 0
            rows.append({"status": status, "queries": result.perturbed_result.num_queries,
                         "words": len(original.words), "changed": changed})
        print(json.dumps({"seconds": time.perf_counter() - t0, "rows": rows}), flush=True)


def _summary(rows: list[dict], seconds: float) -> dict:
    success = [r for r in rows if r["status"] == "success"]
    attacked = [r for r in rows if r["status"] != "skipped"]
    n = max(len(rows), 1)
    return {"examples": len(rows), "successful": len(success),
            "failed": len(attacked) - len(success), "skipped": len(rows) - len(attacked),
            "original_accuracy": len(attacked) / n,
            "accuracy_under_attack": (len(attacked) - len(success)) / n,
            "attack_success_rate": len(success) / max(len(attacked), 1),
            "avg_perturbed_word_pct": sum(100 * r["changed"] / max(r["words"], 1)
                                          for r in success) / max(len(success), 1),
            "avg_queries": sum(r["queries"] for r in attacked) / max(len(attacked), 1),
            "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True)
    parser.add_argument("--ta-python", default="/tmp/ta-venv/bin/python")
    parser.add_argument("--num-examples", type=int, default=300)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-dynamic", action="store_true")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--name", default="attack_vs_textattack")
    args = parser.parse_args()
    model_dir = str(Path(args.run) / "model") if (Path(args.run) / "model").is_dir() \
        else args.run
    if args.worker:
        worker(model_dir, args.threads)
        return
    sys.path.insert(0, str(ROOT / "bench"))
    import torch
    from machine import machine_info

    from lmforge.adversarial.attacks import CharEdits, greedy_attack
    from lmforge.adversarial.resources import STOPWORDS
    from lmforge.adversarial.targets import attack_target
    from lmforge.predictor import load_predictor

    machine = machine_info()
    torch.set_num_threads(args.threads)
    dev = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
    lines = dev.read_text(encoding="utf-8").splitlines()[1: args.num_examples + 1]
    texts = [line.rsplit("\t", 1)[0] for line in lines]
    predictor = load_predictor(model_dir, precision="fp32")
    target = attack_target(predictor)
    labels = [target.label_id(line.rsplit("\t", 1)[1]) for line in lines]

    nltk_data = Path(tempfile.mkdtemp()) / "corpora" / "stopwords"
    nltk_data.mkdir(parents=True)
    (nltk_data / "english").write_text("\n".join(sorted(STOPWORDS)) + "\n")
    env = {**os.environ, "NLTK_DATA": str(nltk_data.parents[1]), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": ""}
    proc = subprocess.Popen([args.ta_python, __file__, "--worker", "--run", model_dir,
                             "--threads", str(args.threads)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdin is not None
    while not json.loads(proc.stdout.readline()).get("ready"):
        pass

    configs = {"lmforge (DeepWordBug settings)": {"max_words_fraction": 1.0,
                                                  "max_edit_distance": 30},
               "lmforge (default)": {"max_words_fraction": 0.25, "max_edit_distance": None}}
    peers = {"TextAttack DeepWordBug": "padded"}
    if not args.skip_dynamic:
        peers["TextAttack DeepWordBug (dynamic padding)"] = "dynamic"
    rows: dict[str, list] = {name: [] for name in [*configs, *peers]}
    seconds: dict[str, float] = dict.fromkeys(rows, 0.0)
    size = -(-len(texts) // args.chunks)
    for c in range(args.chunks):
        lo, hi = c * size, min(len(texts), (c + 1) * size)
        if lo >= hi:
            break
        for name, cfg in configs.items():
            t0 = time.perf_counter()
            results = greedy_attack(target.predict_proba, texts[lo:hi], labels[lo:hi],
                                    CharEdits(4), seed=c, **cfg)
            seconds[name] += time.perf_counter() - t0
            rows[name] += [{"status": r.status, "queries": r.queries, "words": r.num_words,
                            "changed": len(r.changed)} for r in results]
        for name, variant in peers.items():
            proc.stdin.write(json.dumps({"texts": texts[lo:hi], "labels": labels[lo:hi],
                                         "variant": variant}) + "\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())
            seconds[name] += answer["seconds"]
            rows[name] += answer["rows"]
        print(f"chunk {c + 1}/{args.chunks}: " + ", ".join(
            f"{n} {s:.0f} s" for n, s in seconds.items()), flush=True)
    proc.stdin.close()
    proc.wait()
    summaries = {name: _summary(rows[name], seconds[name]) for name in rows}
    peer = summaries["TextAttack DeepWordBug"]
    for s in summaries.values():
        s["speedup_vs_textattack"] = round(peer["seconds"] / max(s["seconds"], 1e-9), 2)
    results = {"benchmark": "attack_vs_textattack", "model": model_dir,
               "examples": len(texts), "chunks": args.chunks, "threads": args.threads,
               "command": " ".join(["bench/attack_vs_textattack.py", *sys.argv[1:]]),
               "textattack_python": args.ta_python, "attackers": summaries, "machine": machine}
    out = ROOT / "bench" / "results"
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    head = ("| attacker | orig acc | acc under attack | success rate | words changed | "
            "queries / example | seconds | speed vs TextAttack |\n" + "|---" * 8 + "|")
    body = [f"| {n} | {100 * s['original_accuracy']:.1f} | "
            f"{100 * s['accuracy_under_attack']:.1f} | {100 * s['attack_success_rate']:.1f} | "
            f"{s['avg_perturbed_word_pct']:.1f} % | {s['avg_queries']:.1f} | {s['seconds']:.0f} "
            f"| {s['speedup_vs_textattack']:.2f}x |" for n, s in summaries.items()]
    (out / f"{args.name}.md").write_text(head + "\n" + "\n".join(body) + "\n")
    print(head + "\n" + "\n".join(body))


if __name__ == "__main__":
    main()
