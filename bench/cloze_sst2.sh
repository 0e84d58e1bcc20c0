#!/usr/bin/env bash
# Zero-shot cloze classification of SST-2 dev with a masked LM (no training): the three
# templates of configs/prompts/sst2.yaml, their ensemble, contextual calibration and the
# majority baseline. No MLM with a trained head installs offline here, so the model is one
# pretrained with lmforge (e.g. the tweets BERT-mini of scripts/demo-pretrain.sh).
#
# Usage: bash bench/cloze_sst2.sh MLM_RUN_DIR [TAG]   -> bench/results/cloze_sst2-TAG.md
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MODEL=${1:?usage: bash bench/cloze_sst2.sh MLM_RUN_DIR [TAG]}
TAG=${2:-$(basename "$MODEL")}
RUN=$(mktemp -d /tmp/lmforge-cloze-XXXX)
start=$(date +%s)
.venv/bin/lmforge prompt templates=configs/prompts/sst2.yaml data.path=../shared/data/sst2 \
  data.text_column=sentence model.pretrained="$MODEL" lm=mlm calibrate=true \
  max_length=128 output_dir="$RUN"
{
  echo "# SST-2 dev, zero-shot cloze with $TAG (lm=mlm, calibrate=true)"
  echo
  echo "Accuracy / macro-F1 (%) on the 872 SST-2 dev sentences; $(( $(date +%s) - start )) s."
  echo
  cat "$RUN/results.md"
} > "bench/results/cloze_sst2-$TAG.md"
cat "bench/results/cloze_sst2-$TAG.md"
