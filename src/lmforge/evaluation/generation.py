"""Text generation metrics: ROUGE (rouge-score) and corpus BLEU (sacreBLEU).

Chinese (and Japanese/Korean) text needs care. rouge-score's default tokenizer lowercases,
replaces everything outside ``[a-z0-9]`` with spaces and drops what is left, so a Chinese
summary has *no tokens* and scores 0 against anything. When any prediction or reference
contains CJK characters, every text in the call is tokenized with :class:`CJKCharTokenizer`
instead: each CJK character is one token (the usual convention for Chinese ROUGE, e.g. LCSTS),
while ASCII words and numbers are still lowercased and Porter-stemmed as the default tokenizer
does. sacreBLEU gets ``tokenize="zh"`` in that case, which also splits Chinese per character.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from lmforge.errors import DataError
from lmforge.evaluation._deps import require

# Kana, CJK Unified Ideographs (+ Extension A, compatibility) and hangul syllables.
_CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
# Detection also looks at CJK punctuation and full-width forms ("，", "。", "ａ").
_CJK_RE = re.compile(f"[\u3000-\u303f{_CJK_CHARS}\uff00-\uffef]")
# One CJK character per token, or one run of ASCII letters/digits; punctuation (ASCII or CJK)
# is dropped, as rouge-score's default tokenizer drops ASCII punctuation.
_TOKEN_RE = re.compile(f"[{_CJK_CHARS}]|[a-z0-9]+")
_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def has_cjk(text: str) -> bool:
    """Whether ``text`` contains any CJK character."""
    return _CJK_RE.search(text) is not None


def _tokens(text: str) -> list[str]:
    # NFKC folds full-width letters and digits ("ＧＰＴ４") to ASCII so they are not dropped.
    return _TOKEN_RE.findall(unicodedata.normalize("NFKC", text).lower())


class CJKCharTokenizer:
    """rouge-score tokenizer: one token per CJK character, stemmed ASCII words otherwise.

    Args:
        use_stemmer: Porter-stem ASCII words longer than 3 characters, as rouge-score does.
    """

    def __init__(self, use_stemmer: bool = True) -> None:
        self._stemmer = None
        if use_stemmer:
            porter = require("nltk.stem.porter", "rouge-score", "ROUGE")
            self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens."""
        tokens = _tokens(text)
        if self._stemmer is None:
            return tokens
        return [
            self._stemmer.stem(t) if len(t) > 3 and t.isascii() else t for t in tokens
        ]


def _references(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]
) -> list[list[str]]:
    """Validate inputs and return one list of references per prediction."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise DataError("predictions and references must be lists of strings, not one string")
    if not predictions:
        raise DataError("no predictions to evaluate; evaluate on a non-empty split")
    if len(predictions) != len(references):
        raise DataError(
            f"{len(predictions)} predictions but {len(references)} references; "
            "pass one reference (or list of references) per prediction"
        )
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    for i, r in enumerate(refs):
        if not r:
            raise DataError(f"example {i} has no reference text; drop it or add a reference")
    return refs


def _word_count(text: str, cjk: bool) -> int:
    return len(_tokens(text)) if cjk else len(text.split())


def generation_metrics(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]
) -> dict[str, Any]:
    """ROUGE-1/2/L and sacreBLEU for generated texts.

    Args:
        predictions: Generated texts.
        references: One reference per prediction, or a list of references per prediction
            (ROUGE takes the best-matching reference; BLEU uses all of them).

    Returns:
        ``rouge1``, ``rouge2``, ``rougeL``: mean F-measure over examples x 100 (stemmed,
        sentence-level LCS for L); ``bleu``: sacreBLEU corpus score (0-100); ``bleu_signature``;
        ``gen_len``: mean prediction length in words (CJK characters count as words);
        ``tokenizer``: ``"default"`` or ``"cjk-char"``; ``num_examples``.

    BLEU is a corpus statistic over 1- to 4-grams: a corpus with no matching 4-gram at all
    (e.g. only predictions shorter than 4 tokens) scores 0 even when every prediction is exact.

    Raises:
        DataError: Empty input or mismatched lengths.
    """
    refs = _references(predictions, references)
    preds = [str(p) for p in predictions]
    cjk = any(has_cjk(p) for p in preds) or any(has_cjk(r) for rs in refs for r in rs)

    rouge_scorer = require("rouge_score.rouge_scorer", "rouge-score", "ROUGE")
    tokenizer = CJKCharTokenizer(use_stemmer=True) if cjk else None
    scorer = rouge_scorer.RougeScorer(list(_ROUGE_TYPES), use_stemmer=True, tokenizer=tokenizer)
    totals = dict.fromkeys(_ROUGE_TYPES, 0.0)
    for pred, rs in zip(preds, refs, strict=True):
        scores = scorer.score(rs[0], pred) if len(rs) == 1 else scorer.score_multi(rs, pred)
        for key in _ROUGE_TYPES:
            totals[key] += scores[key].fmeasure

    sacrebleu = require("sacrebleu", "sacrebleu", "BLEU")
    bleu = sacrebleu.BLEU(tokenize="zh" if cjk else "13a")
    # sacreBLEU wants reference *streams* (the k-th reference of every example); examples with
    # fewer references are padded with None, which sacreBLEU skips.
    n_streams = max(len(rs) for rs in refs)
    streams = [[rs[k] if k < len(rs) else None for rs in refs] for k in range(n_streams)]
    score = bleu.corpus_score(preds, streams)

    n = len(preds)
    out: dict[str, Any] = {key: 100.0 * totals[key] / n for key in _ROUGE_TYPES}
    out.update(
        {
            "bleu": float(score.score),
            "bleu_signature": str(bleu.get_signature()),
            "gen_len": sum(_word_count(p, cjk) for p in preds) / n,
            "tokenizer": "cjk-char" if cjk else "default",
            "num_examples": n,
        }
    )
    return out
