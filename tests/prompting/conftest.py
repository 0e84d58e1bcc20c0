"""Tiny fixtures for the prompting tests: a word-level vocabulary, a 1-layer BERT MLM, a
1-layer Llama and a small sentiment corpus (train / dev), all built offline."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    LlamaConfig,
    LlamaForCausalLM,
)

from tests.finetuning.conftest import word_tokenizer

POSITIVE = ["good", "great", "fun", "nice", "lovely"]
NEGATIVE = ["bad", "terrible", "boring", "awful", "dull"]
NOUNS = ["movie", "film", "plot", "cast", "story"]
TEMPLATE_WORDS = ["it", "was", "review", "sentiment", "negative", "positive", "the", "and",
                  "very", "n/a", "all", "is", ".", ":", "/"]
# "terrible" is left out on purpose: it becomes two pieces, terr + ##ible (multi-token word).
VOCAB = sorted({*POSITIVE, *NEGATIVE, *NOUNS, *TEMPLATE_WORDS, "terr", "##ible"} - {"terrible"})


def save_mlm(root: Path) -> Path:
    """A 1-layer BERT masked LM (hidden 32) with the word vocabulary."""
    tok = word_tokenizer(VOCAB)
    tok.save_pretrained(root)
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=64,
                               max_position_embeddings=128)).save_pretrained(root)
    return root


def save_llama(root: Path) -> Path:
    """A 1-layer Llama causal LM (hidden 32) with the same vocabulary and a chat template."""
    tok = word_tokenizer(VOCAB)
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} / "
                         "{% endfor %}{% if add_generation_prompt %}assistant : {% endif %}")
    tok.save_pretrained(root)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2,
                                 intermediate_size=64, max_position_embeddings=256,
                                 pad_token_id=0)).save_pretrained(root)
    return root


def sentences(n: int, seed: int) -> list[tuple[str, int]]:
    """Short reviews: label 1 uses positive words, label 0 negative ones."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = POSITIVE if label else NEGATIVE
        rows.append((f"the {rng.choice(NOUNS)} was very {rng.choice(words)} and "
                     f"{rng.choice(words)}", label))
    return rows


@pytest.fixture(scope="session")
def mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with the tiny BERT MLM and its tokenizer."""
    return save_mlm(tmp_path_factory.mktemp("mlm"))


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with the tiny Llama and its tokenizer."""
    return save_llama(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="session")
def sentiment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.tsv (40 rows) and dev.tsv (12 rows), columns sentence / label."""
    root = tmp_path_factory.mktemp("sent")
    for name, n, seed in (("train", 40, 0), ("dev", 12, 1)):
        lines = ["sentence\tlabel", *(f"{s}\t{y}" for s, y in sentences(n, seed))]
        (root / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


PROMPTS_YAML = """\
task: tiny
labels: {0: [bad], 1: [good]}
templates:
  - name: it_was
    text: "{text} . it was {mask} ."
  - name: review
    text: "review : {text} sentiment : {mask}"
    labels: {0: [negative, terrible], 1: [positive]}
"""


@pytest.fixture()
def prompts_file(tmp_path: Path) -> Path:
    """Two templates, one with a per-template verbalizer that has a two-token word."""
    path = tmp_path / "tiny.yaml"
    path.write_text(PROMPTS_YAML, encoding="utf-8")
    return path
