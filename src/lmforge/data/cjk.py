"""CJK character handling shared by the tokenizer pipelines.

BERT-Chinese splits every CJK ideograph into its own token because Chinese has no spaces, so
"words" found by whitespace pre-tokenization would be whole clauses. The ranges below are the
same ones ``BertNormalizer(handle_chinese_chars=True)`` uses, so the BPE and Unigram pipelines
isolate exactly the characters the WordPiece pipeline does.
"""

from __future__ import annotations

from tokenizers import Regex, pre_tokenizers

# (first, last) code points, inclusive; mirrors BERT's ``_is_chinese_char``. Hangul, Hiragana and
# Katakana are deliberately absent: those scripts use spaces or build words from several symbols.
CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

CJK_CHAR_CLASS: str = "[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in CJK_RANGES) + "]"
"""A regex character class matching one CJK ideograph (usable by ``re`` and Oniguruma)."""


def is_cjk_char(char: str) -> bool:
    """Return whether ``char`` is a CJK ideograph that BERT-style tokenizers split on.

    Args:
        char: A single character.

    Returns:
        True if the character's code point lies in one of :data:`CJK_RANGES`.
    """
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def cjk_isolating_pre_tokenizer(space_marker: str) -> pre_tokenizers.PreTokenizer:
    """Build a pre-tokenizer that makes every CJK ideograph its own pre-token.

    The optional leading ``space_marker`` stays attached to the character (``" 我"`` rather than
    ``" "`` + ``"我"``) so a space before Chinese text does not become a lone token. Splitting
    never changes the text, so byte-level and Metaspace decoding still round-trip exactly.

    Args:
        space_marker: The space symbol at the point this runs: ``" "`` before ByteLevel, ``"▁"``
            after Metaspace.

    Returns:
        A ``tokenizers`` Split pre-tokenizer with ``isolated`` behaviour.
    """
    return pre_tokenizers.Split(Regex(f"{space_marker}?{CJK_CHAR_CLASS}"), behavior="isolated")
