"""16-shot classification: prompt-based fine-tuning (LM-BFF / PET) vs standard fine-tuning.

Tasks: `sst2` (English movie reviews, template `it_was` of configs/prompts/sst2.yaml) and
`chnsenticorp` (Chinese hotel reviews, template `zong_zhi` of configs/prompts/chnsenticorp.yaml,
for a Chinese masked LM such as the one `bench/zh_bert_mini.sh` pretrains).

LM-BFF protocol (Gao et al. 2021): per seed, K=16 training and K=16 development examples
per class sampled from SST-2 train; the dev set picks the best checkpoint (every 100 of 1000
steps, batch 8); accuracy and macro-F1 on the full SST-2 dev set (872), mean and std over
seeds 13, 21, 42, 87, 100. Both methods see exactly the same samples and hyperparameters.
The evaluation split is the task's dev file (SST-2: 872 sentences; ChnSentiCorp: 776 reviews).

Model choice: no masked LM with a trained MLM head installs offline here. The default,
MiniLM-L6 (`all-minilm-l6-v2`, a BERT trained as a sentence embedder), loaded into
`BertForMaskedLM` has its decoder tied to the trained word embeddings, but the head's
transform layer (dense + LayerNorm) is new and random, so the label words do not give
prompt-based fine-tuning the head start they give LM-BFF's RoBERTa-large. `--model RUN_DIR`
takes a masked LM pretrained with `lmforge pretrain` instead (trained head, small model),
e.g. the BERT-mini of `scripts/demo-pretrain.sh` (tweets).

Usage: .venv/bin/python bench/fewshot.py [--task sst2|chnsenticorp] [--shots 16]
       [--seeds 13,21,42,87,100]
       [--steps 1000] [--eval-every 100] [--lr 1e-5] [--max-eval N] [--template it_was]
       [--model all-minilm-l6-v2|MLM_RUN_DIR] [--tag NAME]
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
TASKS = {  # name -> (data folder, text column, default template)
    "sst2": ("sst2", "sentence", "it_was"),
    "chnsenticorp": ("chnsenticorp", "text", "zong_zhi"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=sorted(TASKS), default="sst2")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--seeds", default="13,21,42,87,100")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--max-eval", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--template", default=None, help="default: the task's first")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    folder, column, default_template = TASKS[args.task]
    data = DATA / folder
    template = args.template or default_template
    if not data.is_dir():
        sys.exit(f"skipped: {data} not found (the shared datasets are not beside this repo)")

    from lmforge.commands.prompt import run_prompt
    from lmforge.config import build_config
    from lmforge.prompting.settings import PromptJob

    run_dir = Path(tempfile.mkdtemp(prefix="lmforge-fewshot-"))
    overrides = [f"data.path={data}", f"data.text_column={column}", "mode=fewshot",
                 f"templates={ROOT / 'configs' / 'prompts' / f'{args.task}.yaml'}",
                 f"template_names=[{template}]", f"model.pretrained={args.model}",
                 f"shots={args.shots}", f"seeds=[{args.seeds}]", "baseline=true",
                 f"train.max_steps={args.steps}", f"train.eval_every={args.eval_every}",
                 f"train.batch_size={args.batch_size}", f"train.lr={args.lr}",
                 f"max_length={args.max_length}", "track.progress=false",
                 f"output_dir={run_dir}"]
    if args.max_eval:
        overrides.append(f"max_examples={args.max_eval}")
    summary = run_prompt(build_config(PromptJob, None, overrides))  # "seconds": its wall time
    summary["settings"] = vars(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"fewshot_{args.task}" + (f"-{args.tag}" if args.tag else "")
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2, default=str))
    table = (run_dir / "results.md").read_text()
    md = [f"# {args.task}, {args.shots} examples per class, {len(args.seeds.split(','))} "
          f"seeds ({args.model}, template {template}, {args.steps} steps, lr {args.lr})", "",
          f"Accuracy / macro-F1 (%) on {summary['examples']} {args.task} dev examples, mean "
          "and std over seeds.", "", table,
          f"Wall time {summary['seconds']:.1f} s."]
    (out / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
