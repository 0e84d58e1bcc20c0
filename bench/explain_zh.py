"""A Chinese explanation (ChnSentiCorp): HTML page and PNG with jieba words.

The model is a run of ``lmforge finetune`` on ChnSentiCorp (the command line is recorded in
the results); the inputs are the first ``--n`` dev reviews of at most ``--max-chars``
characters. Sub-word tokens (single characters for Chinese) are merged into jieba words.

Usage: .venv/bin/python bench/explain_zh.py --run runs/zh-minilm [--n 4]
Writes bench/results/explain_zh.{json,md,html,png}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEV = ROOT.parent / "shared" / "data" / "chnsenticorp" / "dev.tsv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-chars", type=int, default=40)
    parser.add_argument("--methods", default="ig,gradxinput,occlusion,lime,shap")
    parser.add_argument("--lime-samples", type=int, default=200)
    parser.add_argument("--shap-evals", type=int, default=200)
    parser.add_argument("--model-note", default="")
    args = parser.parse_args()

    import lmforge
    from bench.machine import machine_info
    from lmforge.explaining.render import cjk_font

    machine = machine_info()
    rows = [line.split("\t") for line in DEV.read_text(encoding="utf-8").splitlines()[1:]]
    chosen = [(t, y) for t, y in rows if len(t) <= args.max_chars][:args.n]
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "zh.jsonl"
        inputs.write_text("\n".join(json.dumps({"text": t}, ensure_ascii=False)
                                    for t, _ in chosen) + "\n", encoding="utf-8")
        out = Path(tmp) / "out"
        result = lmforge.explain(run=args.run, input=str(inputs), output_dir=str(out),
                                 methods=args.methods.split(","), words="auto",
                                 lime_samples=args.lime_samples, shap_evals=args.shap_evals)
        results_dir = ROOT / "bench" / "results"
        shutil.copy(out / "explanations.html", results_dir / "explain_zh.html")
        shutil.copy(out / "example.png", results_dir / "explain_zh.png")
        explained = [json.loads(line) for line in
                     (out / "explanations.jsonl").read_text(encoding="utf-8").splitlines()]
    examples = [{"text": r["input"]["text"], "gold": y, "prediction": r["prediction"],
                 "words": r["words"], "tokens": r["tokens"],
                 "word_scores": {m: v["word_scores"] for m, v in r["methods"].items()}}
                for r, (_, y) in zip(explained, chosen, strict=True)]
    summary = {"command": " ".join(sys.argv), "machine": machine, "run": args.run,
               "model_note": args.model_note, "png_font": cjk_font(),
               "cost": result.summary["cost"], "examples": examples}
    (ROOT / "bench" / "results" / "explain_zh.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    lines = ["# Chinese explanation (ChnSentiCorp)", "", args.model_note, "",
             "| # | review | gold | predicted (p) | jieba words | top word (IG) |",
             "|---|---|---|---|---:|---|"]
    for k, e in enumerate(examples):
        ig = e["word_scores"].get("ig") or next(iter(e["word_scores"].values()))
        top = e["words"][max(range(len(ig)), key=ig.__getitem__)]
        p = e["prediction"]
        lines.append(f"| {k} | {e['text']} | {e['gold']} | {p['label']} ({p['score']:.3f}) | "
                     f"{len(e['words'])} (from {len(e['tokens'])} tokens) | {top} |")
    (ROOT / "bench" / "results" / "explain_zh.md").write_text("\n".join(lines) + "\n",
                                                               encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
