"""The config of ``lmforge tokenizer train``."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt
from lmforge.settings import DataConfig

TOKENIZER_KINDS = ("wordpiece", "bpe", "unigram")


@dataclass
class TokenizerConfig:
    """How a new tokenizer is trained."""

    kind: str = opt("wordpiece", "wordpiece (BERT), bpe (byte-level, GPT-2) or unigram "
                                 "(SentencePiece-style).")
    vocab_size: int = opt(8000, "Target vocabulary size including special tokens.")
    min_frequency: int = opt(2, "Minimum count for a merge / piece to enter the vocabulary.")
    lowercase: bool | None = opt(None, "Lowercase text (default: true for wordpiece, else false).")
    split_chinese_chars: bool = opt(True, "Split every CJK character into its own token "
                                          "(as BERT-Chinese does).")
    model_max_length: int = opt(512, "Maximum sequence length recorded in the tokenizer.")

    def __post_init__(self) -> None:
        check_choice("tokenizer.kind", self.kind, TOKENIZER_KINDS)
        check(self.vocab_size >= 100, "tokenizer.vocab_size must be >= 100")
        check(self.min_frequency >= 1, "tokenizer.min_frequency must be >= 1")


@dataclass
class TokenizerTrainJob:
    """``lmforge tokenizer train``: learn a vocabulary from a corpus."""

    data: DataConfig = opt(DataConfig(), "")
    tokenizer: TokenizerConfig = opt(TokenizerConfig(), "")
    output_dir: str | None = opt(None, "Run directory (default: runs/tokenizer-<time>).")
