#!/usr/bin/env bash
# A Chinese-capable encoder built with lmforge alone, then fine-tuned on ChnSentiCorp against
# the plain Trainer peer (MiniLM's English vocabulary turns 65 % of the Chinese tokens into
# [UNK], so the MiniLM row of the ChnSentiCorp benchmark measures nothing about Chinese).
#
# 1. corpus: the *train* texts of ChnSentiCorp (hotel reviews) and waimai (food-delivery
#    reviews) from ../shared/data, one text per line, in a temp folder (dev stays unseen);
# 2. tokenizer: WordPiece with every CJK character its own token (as BERT-Chinese);
# 3. pretraining: BERT-mini (4 x 256) masked LM with Chinese whole-word masking (jieba word
#    boundaries, as Chinese-BERT-wwm, Cui et al. 2021);
# 4. fine-tuning: bench/finetune_tasks.py --task chnsenticorp --model <that run> (lmforge and the
#    hf_trainer_cls.py peer, same data and hyperparameters: all 6,212 training reviews,
#    3 epochs, lr 1e-4). Extra arguments go to that script (later ones win, e.g.
#    `--max-train 1500 --epochs 1 --lr 5e-5` for the MiniLM row's settings).
#
# Usage: [PRETRAIN_EPOCHS=3] bash bench/zh_bert_mini.sh [finetune_tasks.py options]
#        (about 35 min on 2 CPU cores: 14 pretraining, 8 lmforge, 11 the peer)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
EPOCHS=${PRETRAIN_EPOCHS:-3}
DATA=../shared/data
WORK=$(mktemp -d /tmp/lmforge-zh-XXXX)
LMF=.venv/bin/lmforge

mkdir -p "$WORK/corpus"
for set in chnsenticorp waimai; do
  tail -n +2 "$DATA/$set/train.tsv" | cut -f1
done > "$WORK/corpus/train.txt"
echo "corpus: $(wc -l < "$WORK/corpus/train.txt") training texts in $WORK/corpus"

$LMF tokenizer train data.path="$WORK/corpus" tokenizer.kind=wordpiece tokenizer.vocab_size=6000 \
  tokenizer.split_chinese_chars=true --output-dir "$WORK/tokenizer"
start=$(date +%s)
$LMF pretrain data.path="$WORK/corpus" data.max_length=128 data.validation_ratio=0.05 \
  model.family=bert model.size=mini model.tokenizer="$WORK/tokenizer" \
  objective.name=mlm objective.whole_word_mask=true objective.chinese_word_segmenter=jieba \
  train.epochs="$EPOCHS" train.batch_size=32 train.lr=1e-3 train.warmup_ratio=0.06 \
  train.log_every=50 train.eval_max_batches=20 track.progress=false \
  --output-dir "$WORK/pretrain"
echo "pretraining wall time: $(( $(date +%s) - start )) s"
.venv/bin/python bench/finetune_tasks.py --task chnsenticorp --model "$WORK/pretrain" \
  --tag zh-bert-mini --epochs 3 --lr 1e-4 "$@"
