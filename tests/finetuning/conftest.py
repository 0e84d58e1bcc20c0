"""Shared helpers for the fine-tuning end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast


def word_tokenizer(words: Iterable[str]) -> PreTrainedTokenizerFast:
    """A BERT-style tokenizer over a fixed vocabulary: specials, then ``words`` in order.

    No training, so token ids never change between runs.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                         *words])}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]",
                                   unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   mask_token="[MASK]")


def save_word_encoder(root: Path, words: Iterable[str]) -> Path:
    """Save a tiny BERT encoder (no task head) with a fixed word-level vocabulary to ``root``.

    The vocabulary is written out rather than trained: WordPiece training orders tied
    entries differently from run to run, which would change token ids and test outcomes.
    Hidden 64 / 4 heads: at 32 / 2 heads a random-init encoder sometimes sits on a loss
    plateau for hundreds of steps depending on the seed.
    """
    tok = word_tokenizer(sorted({w.lower() for w in words}))
    tok.save_pretrained(root)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=128)).save_pretrained(root)
    return root
