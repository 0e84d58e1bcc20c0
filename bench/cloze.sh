#!/usr/bin/env bash
# Zero-shot cloze classification with a masked LM (no training) on a dev set: every template
# of configs/prompts/TASK.yaml, their ensemble, contextual calibration and the majority
# baseline. No MLM with a trained head installs offline here, so the model is one pretrained
# with lmforge: the tweets BERT-mini of scripts/demo-pretrain.sh for sst2, the Chinese
# BERT-mini of bench/zh_bert_mini.sh for chnsenticorp.
#
# Usage: bash bench/cloze.sh sst2|chnsenticorp MLM_RUN_DIR [TAG]
#        -> bench/results/cloze_TASK-TAG.json (lmforge prompt's summary.json) and .md
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
TASK=${1:?usage: bash bench/cloze.sh sst2|chnsenticorp MLM_RUN_DIR [TAG]}
MODEL=${2:?usage: bash bench/cloze.sh sst2|chnsenticorp MLM_RUN_DIR [TAG]}
TAG=${3:-$(basename "$MODEL")}
case $TASK in
  sst2) COLUMN=sentence ;;
  chnsenticorp) COLUMN=text ;;
  *) echo "unknown task $TASK (sst2 or chnsenticorp)" >&2; exit 2 ;;
esac
RUN=$(mktemp -d /tmp/lmforge-cloze-XXXX)
start=$(date +%s)
.venv/bin/lmforge prompt templates="configs/prompts/$TASK.yaml" data.path="../shared/data/$TASK" \
  data.text_column="$COLUMN" model.pretrained="$MODEL" lm=mlm calibrate=true \
  max_length=128 output_dir="$RUN"
{
  echo "# $TASK dev, zero-shot cloze with $TAG (lm=mlm, calibrate=true)"
  echo
  echo "Accuracy / macro-F1 (%) on the $TASK dev set; $(( $(date +%s) - start )) s."
  echo
  cat "$RUN/results.md"
} > "bench/results/cloze_$TASK-$TAG.md"
cp "$RUN/summary.json" "bench/results/cloze_$TASK-$TAG.json"
cat "bench/results/cloze_$TASK-$TAG.md"
