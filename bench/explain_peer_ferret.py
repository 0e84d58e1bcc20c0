"""lmforge explain vs ferret-xai on the same model and SST-2 dev sentences, in one run.

ferret-xai 0.4.2 (the latest on PyPI) pins transformers<5, numpy<2, captum<0.8 and
shap<0.45, which lmforge's stack (transformers 5, numpy 2) cannot satisfy, so it is installed
without its dependencies next to lmforge and runs on lmforge's versions:

    .venv/bin/python -m pip install --no-deps --target .cache/ferret ferret-xai==0.4.2 \
        seaborn opencv-python-headless

Its package ``__init__`` imports the Thermostat dataset loader (spaCy, jsonnet), which is not
needed here, so the explainer and evaluator modules are imported directly. Both sides get the
same sentences, the same target (the predicted class), the same budgets (IG steps, LIME
samples, SHAP max_evals) and the same AOPC bins; sentence blocks alternate between the two.

Reported per method: AOPC comprehensiveness / sufficiency of (a) ferret's explanation scored
by ferret's evaluator, (b) lmforge's explanation scored by lmforge's evaluator, (c) lmforge's
explanation scored by ferret's evaluator (the same scores through both metric
implementations), and the seconds per explanation of each explainer.

Usage: .venv/bin/python bench/explain_peer_ferret.py --run runs/sst2-minilm [--n 50]
Writes bench/results/explain_peer_ferret.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FERRET = ROOT / ".cache" / "ferret"
BINS = [0.01, 0.05, 0.1, 0.2, 0.5]


def import_ferret() -> dict:
    """ferret's explainers and AOPC evaluators, without its package __init__."""
    sys.path.insert(0, str(FERRET))
    pkg = types.ModuleType("ferret")
    pkg.__path__ = [str(FERRET / "ferret")]
    sys.modules["ferret"] = pkg
    from ferret.evaluators import utils_from_soft_to_discrete as discrete
    from ferret.evaluators.faithfulness_measures import (
        AOPC_Comprehensiveness_Evaluation,
        AOPC_Sufficiency_Evaluation,
    )
    from ferret.explainers.explanation import Explanation
    from ferret.explainers.gradient import GradientExplainer, IntegratedGradientExplainer
    from ferret.explainers.lime import LIMEExplainer
    from ferret.explainers.shap import SHAPExplainer

    def top_k(scores, k, only_pos=True):  # ferret's function; `array == []` fails on numpy 2
        order = np.array(scores).argsort()[-k:][::-1]
        ids = [i for i in order if scores[i] > 0] if only_pos else list(order)
        return ids or None

    discrete._get_id_tokens_top_k = top_k
    return {"ig": IntegratedGradientExplainer, "gradxinput": GradientExplainer,
            "lime": LIMEExplainer, "shap": SHAPExplainer, "Explanation": Explanation,
            "comp": AOPC_Comprehensiveness_Evaluation, "suff": AOPC_Sufficiency_Evaluation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--n-steps", type=int, default=32)
    parser.add_argument("--lime-samples", type=int, default=500)
    parser.add_argument("--shap-evals", type=int, default=500)
    parser.add_argument("--methods", default="ig,gradxinput,lime,shap")
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--name", default="explain_peer_ferret")
    parser.add_argument("--finish-from", default=None,
                        help="JSON dump of a run's per-sentence values taken while it ran "
                             "(the sentences it had finished); writes the results from it")
    args = parser.parse_args()
    if args.finish_from:
        dump = json.loads(Path(args.finish_from).read_text())
        finish(args, dump["machine"], dump["options"], dump["methods"], dump["values"],
               dump["seconds"], dump["n"], dump["command"])
        return

    from bench.explain_sst2 import dev_sentences
    from bench.machine import machine_info
    from lmforge.explaining.explainer import Explainer
    from lmforge.explaining.faithfulness import aopc
    from lmforge.explaining.methods import Options
    from lmforge.predictor import load_predictor

    machine = machine_info()
    fx = import_ferret()
    predictor = load_predictor(args.run, precision="fp32")
    model, tok = predictor.model, predictor.tokenizer
    methods = args.methods.split(",")
    sentences = dev_sentences(args.n)
    opts = Options(n_steps=args.n_steps, lime_samples=args.lime_samples,
                   shap_evals=args.shap_evals, seed=0)
    ferret_calls = {"ig": {"n_steps": args.n_steps}, "gradxinput": {},
                    "lime": {"num_samples": args.lime_samples},
                    "shap": {"max_evals": args.shap_evals}}
    eval_args = {"remove_first_last": True, "only_pos": False,
                 "removal_args": {"remove_tokens": True, "based_on": "perc",
                                  "thresholds": BINS}}
    comp_eval, suff_eval = fx["comp"](model, tok), fx["suff"](model, tok)
    explainers = {m: (fx[m](model, tok, multiply_by_inputs=True) if m in ("ig", "gradxinput")
                      else fx[m](model, tok)) for m in methods}
    seconds = {side: dict.fromkeys(methods, 0.0) for side in ("ferret", "lmforge")}
    values: dict[str, dict[str, list[float]]] = {
        k: {f"{m}/{c}": [] for m in methods for c in ("comp", "suff")}
        for k in ("ferret", "lmforge", "lmforge_scored_by_ferret")}
    lm_explainer = Explainer(predictor, opts)
    column = predictor.settings.text_column
    for start in range(0, len(sentences), args.block):
        part = sentences[start:start + args.block]
        records = [{column: s} for s in part]
        examples = lm_explainer.encode(records)
        targets = [predictor.labels.index(e.prediction["label"]) for e in examples]
        for m in methods:
            # ferret, one sentence at a time (its API).
            t = time.perf_counter()
            fexp = [explainers[m](s, target=c, **ferret_calls[m]) for s, c in zip(
                part, targets, strict=True)]
            seconds["ferret"][m] += time.perf_counter() - t
            for e, c in zip(fexp, targets, strict=True):
                values["ferret"][f"{m}/comp"].append(
                    comp_eval.compute_evaluation(e, c, **eval_args).score)
                values["ferret"][f"{m}/suff"].append(
                    suff_eval.compute_evaluation(e, c, **eval_args).score)
            # lmforge, the block at once.
            t = time.perf_counter()
            scores = lm_explainer.explain(records, [m]).scores[m]
            seconds["lmforge"][m] += time.perf_counter() - t
            res = aopc(lm_explainer.scorer, examples, scores, "delete",
                       lm_explainer.context.fill_id, tuple(BINS))
            values["lmforge"][f"{m}/comp"].extend(res["per_example"]["comprehensiveness"])
            values["lmforge"][f"{m}/suff"].extend(res["per_example"]["sufficiency"])
            for e, s, c, text in zip(examples, scores, targets, part, strict=True):
                padded = np.r_[0.0, s, 0.0]  # [CLS] ... [SEP], as ferret's tokens
                ours = fx["Explanation"](text, [tok.cls_token, *e.tokens, tok.sep_token],
                                         padded, "lmforge " + m, c)
                values["lmforge_scored_by_ferret"][f"{m}/comp"].append(
                    comp_eval.compute_evaluation(ours, c, **eval_args).score)
                values["lmforge_scored_by_ferret"][f"{m}/suff"].append(
                    suff_eval.compute_evaluation(ours, c, **eval_args).score)
        print(f"{start + len(part)}/{len(sentences)} sentences", flush=True)
    finish(args, machine, opts, methods, values, seconds, len(sentences))


def finish(args, machine, opts, methods, values, seconds, n, command=None) -> None:
    """Write the JSON and markdown results from the per-sentence values and timings."""
    summary = {k: {key: float(np.mean(v)) for key, v in d.items()} for k, d in values.items()}
    spread = {k: {key: float(np.std(v) / np.sqrt(len(v))) for key, v in d.items()}
              for k, d in values.items()}
    results = {"command": command or " ".join(sys.argv), "machine": machine, "n": n,
               "methods": methods, "bins": BINS,
               "options": opts if isinstance(opts, dict) else vars(opts),
               "ferret_version": "0.4.2", "aopc": summary, "standard_error": spread,
               "seconds_per_explanation": {s: {m: v / n for m, v in d.items()}
                                           for s, d in seconds.items()}}
    lines = [f"# lmforge explain vs ferret-xai 0.4.2, SST-2 dev (first {n} sentences)", "",
             "| method | ferret comp. | lmforge comp. | lmforge scores, ferret metric comp. | "
             "ferret suff. | lmforge suff. | lmforge scores, ferret metric suff. | "
             "ferret s / expl. | lmforge s / expl. |", "|---|" + "---:|" * 8]
    sec = results["seconds_per_explanation"]
    for m in methods:
        lines.append(
            f"| {m} | {summary['ferret'][m + '/comp']:.3f} | {summary['lmforge'][m + '/comp']:.3f}"
            f" | {summary['lmforge_scored_by_ferret'][m + '/comp']:.3f} | "
            f"{summary['ferret'][m + '/suff']:.3f} | {summary['lmforge'][m + '/suff']:.3f} | "
            f"{summary['lmforge_scored_by_ferret'][m + '/suff']:.3f} | "
            f"{sec['ferret'][m]:.3f} | {sec['lmforge'][m]:.3f} |")
    out = ROOT / "bench" / "results"
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
