"""Train a WordPiece, byte-level BPE or Unigram tokenizer and save it for ``AutoTokenizer``.

The whole pipeline (normalizer, pre-tokenizer, model, post-processor, decoder) lives in
``tokenizer.json``. We save it through transformers' generic fast backend
(``TokenizersBackend``, a.k.a. ``PreTrainedTokenizerFast``) rather than a model-specific class
such as ``BertTokenizer``: in transformers 5.x those classes rebuild the normalizer and
pre-tokenizer from ``tokenizer_config.json`` kwargs on load, which would silently drop choices
made here (e.g. CJK isolation for BPE). The generic backend loads ``tokenizer.json`` verbatim.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from lmforge.data.cjk import CJK_CHAR_CLASS, cjk_isolating_pre_tokenizer
from lmforge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

VALID_KINDS: tuple[str, ...] = ("wordpiece", "bpe", "unigram")

METADATA_FILE = "lmforge_tokenizer.json"
"""File written next to ``tokenizer.json`` recording how the tokenizer was trained."""

# Learned tokens the vocabulary must leave room for beyond the specials (and, for byte-level
# BPE, beyond the 256-symbol byte alphabet); below this a tokenizer is mostly [UNK] or bytes.
_MIN_LEARNED_TOKENS = 50


@dataclass(frozen=True)
class _SpecialLayout:
    """Special tokens of one tokenizer kind, in vocabulary order (ids 0, 1, 2, ...)."""

    tokens: tuple[str, ...]
    roles: dict[str, str]  # transformers attribute ("pad_token", ...) -> token string


_SPECIALS: dict[str, _SpecialLayout] = {
    "wordpiece": _SpecialLayout(
        tokens=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
        roles={
            "pad_token": "[PAD]",
            "unk_token": "[UNK]",
            "cls_token": "[CLS]",
            "sep_token": "[SEP]",
            "mask_token": "[MASK]",
        },
    ),
    # GPT-2 convention: one <|endoftext|> doubles as bos/eos/unk (byte-level never needs unk).
    "bpe": _SpecialLayout(
        tokens=("<|endoftext|>", "<pad>", "<mask>"),
        roles={
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "pad_token": "<pad>",
            "mask_token": "<mask>",
        },
    ),
    # RoBERTa/XLM-R convention: <s> and </s> also serve as cls and sep for classification heads.
    "unigram": _SpecialLayout(
        tokens=("<pad>", "<unk>", "<s>", "</s>", "<mask>"),
        roles={
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "bos_token": "<s>",
            "eos_token": "</s>",
            "cls_token": "<s>",
            "sep_token": "</s>",
            "mask_token": "<mask>",
        },
    ),
}


def special_tokens_for(kind: str) -> tuple[str, ...]:
    """Return the special tokens of a tokenizer kind, in id order (the first has id 0).

    Args:
        kind: One of :data:`VALID_KINDS`.

    Returns:
        The special token strings.

    Raises:
        ConfigError: If ``kind`` is not a valid kind.
    """
    return _SPECIALS[_check_kind(kind)].tokens


def train_tokenizer(
    texts: Iterable[str],
    output_dir: str | Path,
    *,
    kind: str = "wordpiece",
    vocab_size: int = 8000,
    min_frequency: int = 2,
    lowercase: bool | None = None,
    split_chinese_chars: bool = True,
    model_max_length: int = 512,
    show_progress: bool = False,
) -> PreTrainedTokenizerBase:
    """Train a tokenizer on ``texts`` and save it so ``AutoTokenizer`` can load it.

    Kinds:

    * ``"wordpiece"`` (BERT): specials ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0-4), BERT
      normalizer, ``[CLS] A [SEP] B [SEP]`` with token_type_ids 0/1. Lowercases by default.
    * ``"bpe"`` (GPT-2 byte-level): specials ``<|endoftext|> <pad> <mask>`` (ids 0-2);
      ``<|endoftext|>`` is bos, eos and unk. No tokens are added on encode (causal LM).
    * ``"unigram"`` (SentencePiece style): NFKC + Metaspace, specials
      ``<pad> <unk> <s> </s> <mask>`` (ids 0-4), encodes as ``<s> A </s>``.

    Args:
        texts: Training documents or lines; blank entries are skipped. May be a generator; it
            is consumed once.
        output_dir: Directory to write ``tokenizer.json``, ``tokenizer_config.json`` and
            ``lmforge_tokenizer.json`` into (created if missing).
        kind: ``"wordpiece"``, ``"bpe"`` or ``"unigram"``.
        vocab_size: Target vocabulary size including special tokens. The trained vocabulary can
            be smaller on a small corpus.
        min_frequency: Minimum count for a merge/word to enter the vocabulary (ignored by
            Unigram, which prunes by likelihood instead).
        lowercase: Lowercase text before tokenizing. ``None`` means the kind's default: True
            for wordpiece (and then accents are stripped, as in uncased BERT), False otherwise.
        split_chinese_chars: Make every CJK ideograph its own pre-token, as BERT-Chinese does.
        model_max_length: Maximum sequence length recorded in the tokenizer config.
        show_progress: Show the ``tokenizers`` trainer's progress bars.

    Returns:
        The saved tokenizer, reloaded from ``output_dir`` (a transformers fast tokenizer).

    Raises:
        ConfigError: If ``kind`` is unknown, ``vocab_size`` too small, or an argument invalid.
        DataError: If ``texts`` contains no non-blank string.
    """
    kind = _check_kind(kind)
    layout = _SPECIALS[kind]
    _check_sizes(kind, vocab_size, min_frequency, model_max_length, len(layout.tokens))
    if lowercase is None:
        lowercase = kind == "wordpiece"
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"tokenizer output_dir {str(out)!r} is an existing file; fix: pass a directory path"
        )

    # Peek before building anything so an empty corpus fails fast with a clear message instead
    # of a trainer producing a specials-only vocabulary.
    stream = _non_blank(texts)
    first = next(stream, None)
    if first is None:
        raise DataError(
            "tokenizer training corpus has no usable text (it is empty or all blank); "
            "fix: point the tokenizer at a non-empty text file or dataset column"
        )
    corpus = itertools.chain([first], stream)

    tokenizer, trainer = _build(
        kind, vocab_size, min_frequency, lowercase, split_chinese_chars, show_progress
    )
    try:
        tokenizer.train_from_iterator(corpus, trainer=trainer)
    except Exception as exc:
        # The Unigram trainer refuses a vocab smaller than the corpus's character set.
        if "not large enough to contain all chars" in str(exc):
            raise ConfigError(
                f"tokenizer vocab_size={vocab_size} is smaller than the number of distinct "
                "characters in the corpus (unigram must keep every character); "
                "fix: raise vocab_size or use kind 'bpe' (byte-level, 256 base symbols)"
            ) from exc
        raise
    trained_size = tokenizer.get_vocab_size(with_added_tokens=True)
    if trained_size > vocab_size:
        # Only WordPiece can get here: its '##' forms of word-internal characters are added on
        # top of the alphabet, which limit_alphabet caps at vocab_size minus the specials.
        logger.warning(
            "trained %s vocabulary has %d tokens, more than vocab_size=%d, because the corpus "
            "has more distinct characters than fit; raise vocab_size to keep the cap",
            kind,
            trained_size,
            vocab_size,
        )
    _add_post_processor(kind, tokenizer)

    # Deferred: importing transformers costs seconds, and only this function needs it.
    from transformers import PreTrainedTokenizerFast

    extra: dict[str, Any] = {}
    if kind == "wordpiece":
        # The generic backend defaults to [input_ids, attention_mask]; BERT needs segment ids.
        extra["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=model_max_length,
        **layout.roles,
        **extra,
    )
    out.mkdir(parents=True, exist_ok=True)
    hf_tokenizer.save_pretrained(str(out))

    metadata = {
        "kind": kind,
        "vocab_size": vocab_size,
        "trained_vocab_size": trained_size,
        "min_frequency": min_frequency,
        "lowercase": lowercase,
        "split_chinese_chars": split_chinese_chars,
        "model_max_length": model_max_length,
        "special_tokens": list(layout.tokens),
    }
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")

    # Reload from disk so callers get exactly what later runs will load.
    return PreTrainedTokenizerFast.from_pretrained(str(out))


def _check_kind(kind: str) -> str:
    normalized = kind.strip().lower() if isinstance(kind, str) else kind
    if normalized not in VALID_KINDS:
        raise ConfigError(
            f"unknown tokenizer kind {kind!r}; fix: use one of {', '.join(VALID_KINDS)}"
        )
    return normalized


def _check_sizes(
    kind: str, vocab_size: int, min_frequency: int, model_max_length: int, n_specials: int
) -> None:
    # Byte-level BPE always keeps its 256-symbol alphabet, so a smaller vocab cannot be honoured.
    alphabet = 256 if kind == "bpe" else 0
    minimum = n_specials + alphabet + _MIN_LEARNED_TOKENS
    if not isinstance(vocab_size, int) or vocab_size < minimum:
        raise ConfigError(
            f"tokenizer vocab_size={vocab_size!r} is too small for kind {kind!r}; "
            f"fix: set vocab_size to at least {minimum}"
        )
    if not isinstance(min_frequency, int) or min_frequency < 1:
        raise ConfigError(
            f"tokenizer min_frequency={min_frequency!r} is invalid; fix: use an integer >= 1"
        )
    if not isinstance(model_max_length, int) or model_max_length < 1:
        raise ConfigError(
            f"tokenizer model_max_length={model_max_length!r} is invalid; fix: use an integer >= 1"
        )


def _non_blank(texts: Iterable[str]) -> Iterator[str]:
    if isinstance(texts, str):
        # A bare string would be iterated character by character, training a useless vocab.
        raise DataError(
            "tokenizer training corpus is a single string, not an iterable of texts; "
            "fix: pass a list of strings (e.g. text.splitlines())"
        )
    for text in texts:
        if not isinstance(text, str):
            raise DataError(
                f"tokenizer training corpus contains a {type(text).__name__}, not a str; "
                "fix: pass only strings (decode bytes, drop None values)"
            )
        if text.strip():
            yield text


def _build(
    kind: str,
    vocab_size: int,
    min_frequency: int,
    lowercase: bool,
    split_chinese_chars: bool,
    show_progress: bool,
) -> tuple[Tokenizer, trainers.Trainer]:
    specials = list(_SPECIALS[kind].tokens)
    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=split_chinese_chars,
            strip_accents=lowercase,  # uncased BERT strips accents, cased BERT keeps them
            lowercase=lowercase,
        )
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        word_piece = decoders.WordPiece(prefix="##")
        # The WordPiece decoder joins every word with a space, giving "我 爱 北 京"; drop the space
        # before each ideograph so Chinese decodes as written (at the cost of "fox我" for
        # "fox 我" in mixed text, which BERT's lossy decode never preserved reliably anyway).
        tokenizer.decoder = (
            decoders.Sequence([word_piece, decoders.Replace(Regex(f" (?={CJK_CHAR_CLASS})"), "")])
            if split_chinese_chars
            else word_piece
        )
        trainer: trainers.Trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            continuing_subword_prefix="##",
            # Uncapped, every distinct character enters the vocab, so a CJK corpus with 5000
            # characters would blow far past vocab_size; the rarest ones become [UNK] instead.
            limit_alphabet=vocab_size - len(specials),
            show_progress=show_progress,
        )
    elif kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        if lowercase:
            tokenizer.normalizer = normalizers.Lowercase()
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        # The CJK split must run before ByteLevel, which turns each ideograph into 3 byte symbols.
        tokenizer.pre_tokenizer = (
            pre_tokenizers.Sequence([cjk_isolating_pre_tokenizer(" "), byte_level])
            if split_chinese_chars
            else byte_level
        )
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
    else:  # unigram
        tokenizer = Tokenizer(models.Unigram())
        steps: list[normalizers.Normalizer] = [normalizers.NFKC()]
        if lowercase:
            steps.append(normalizers.Lowercase())
        tokenizer.normalizer = normalizers.Sequence(steps)
        metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        # After Metaspace, so a preceding space is already "▁" and stays glued to the ideograph.
        tokenizer.pre_tokenizer = (
            pre_tokenizers.Sequence([metaspace, cjk_isolating_pre_tokenizer("▁")])
            if split_chinese_chars
            else metaspace
        )
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            unk_token="<unk>",
            show_progress=show_progress,
        )
    return tokenizer, trainer


def _add_post_processor(kind: str, tokenizer: Tokenizer) -> None:
    def tid(token: str) -> int:
        token_id = tokenizer.token_to_id(token)
        assert token_id is not None, f"special token {token} missing after training"
        return token_id

    if kind == "wordpiece":
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", tid("[CLS]")), ("[SEP]", tid("[SEP]"))],
        )
    elif kind == "bpe":
        # Adds no tokens (causal LMs add <|endoftext|> while packing). It must be non-None:
        # transformers installs its own bos/eos template on a tokenizer without one.
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> $B:1 </s>:1",
            special_tokens=[("<s>", tid("<s>")), ("</s>", tid("</s>"))],
        )
