"""Entity-level NER metrics (seqeval) and BIO <-> BIOES tag conversion.

Two matching conventions exist and papers mix them up:

* **strict** (seqeval ``mode="strict"`` with the IOB2/IOBES scheme): an entity counts only when
  its tags form a well-formed chunk (``B-X I-X``; ``S-X`` or ``B-X I-X E-X`` in BIOES) with the
  exact boundaries and type. A prediction starting with ``I-X`` is not an entity at all.
* **lenient** (seqeval's default, the ``conlleval`` Perl script's rules): ill-formed chunks are
  repaired, e.g. ``O I-X`` starts an entity.

The headline ``precision``/``recall``/``f1`` here are strict; ``*_lenient`` are reported next to
them so numbers can be compared with work that used conlleval.
"""

from __future__ import annotations

import re
from typing import Any

from lmforge.errors import ConfigError, DataError
from lmforge.evaluation._deps import require

_SCHEMES = {"BIO": "IOB2", "IOB2": "IOB2", "BIOES": "IOBES", "IOBES": "IOBES"}
_PREFIXES = {"BIO": "BI", "BIOES": "BIES"}
# "O", or a prefix with an optional entity type ("B-PER", or a bare "B" for untyped chunks).
_TAG = re.compile(r"^(?:O|([BIES])(?:-(.+))?)$")


def _scheme(scheme: str) -> str:
    """Canonical scheme name (``BIO`` or ``BIOES``)."""
    key = str(scheme).upper()
    if key not in _SCHEMES:
        raise ConfigError(f"unknown tagging scheme {scheme!r}; use 'BIO' or 'BIOES'")
    return "BIO" if _SCHEMES[key] == "IOB2" else "BIOES"


def _split(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``."""
    match = _TAG.match(tag)
    if match is None:
        raise DataError(f"tag {tag!r} is not a BIO/BIOES tag; tags look like 'O', 'B-PER', 'I-PER'")
    return (match.group(1) or "O"), (match.group(2) or "")


def _check_tags(seqs: list[list[str]], scheme: str, side: str) -> None:
    allowed = _PREFIXES[scheme]
    for i, seq in enumerate(seqs):
        for tag in seq:
            prefix, _ = _split(tag)
            if prefix != "O" and prefix not in allowed:
                raise DataError(
                    f"{side} sequence {i} has tag {tag!r}, which is not in the {scheme} scheme; "
                    "pass scheme='BIOES' or convert the tags with convert_scheme"
                )


def ner_metrics(
    true_tags: list[list[str]], pred_tags: list[list[str]], scheme: str = "BIO"
) -> dict[str, Any]:
    """Entity-level precision/recall/F1 with strict matching, plus per-type scores.

    Args:
        true_tags: Gold tag sequences, one list of tags per sentence.
        pred_tags: Predicted tag sequences, aligned token for token with ``true_tags``.
        scheme: ``"BIO"`` (IOB2) or ``"BIOES"`` (IOBES).

    Returns:
        ``precision``, ``recall``, ``f1`` (entity-level, strict, micro over entities),
        ``precision_lenient``, ``recall_lenient``, ``f1_lenient`` (conlleval rules),
        ``accuracy`` (token-level, including ``O`` tokens), ``per_type``
        (``{type: {precision, recall, f1, support}}``, strict; support = gold entities),
        ``num_sequences`` and ``num_tokens``.

    Raises:
        ConfigError: Unknown scheme.
        DataError: Empty input, mismatched lengths, or tags outside the scheme.
    """
    name = _scheme(scheme)
    true_tags = [list(s) for s in true_tags]
    pred_tags = [list(s) for s in pred_tags]
    if not true_tags:
        raise DataError("no sequences to evaluate; evaluate on a non-empty split")
    if len(true_tags) != len(pred_tags):
        raise DataError(
            f"{len(true_tags)} gold sequences but {len(pred_tags)} predicted; "
            "pass one predicted sequence per gold sequence"
        )
    for i, (t, p) in enumerate(zip(true_tags, pred_tags, strict=True)):
        if len(t) != len(p):
            raise DataError(
                f"sequence {i} has {len(t)} gold tags but {len(p)} predicted; align predictions "
                "to words (e.g. keep the first sub-token's tag) before scoring"
            )
    _check_tags(true_tags, name, "gold")
    _check_tags(pred_tags, name, "predicted")

    metrics = require("seqeval.metrics", "seqeval", "NER metrics")
    schemes = require("seqeval.scheme", "seqeval", "NER metrics")
    scheme_cls = schemes.IOB2 if name == "BIO" else schemes.IOBES
    strict = {"mode": "strict", "scheme": scheme_cls, "zero_division": 0}
    report = metrics.classification_report(true_tags, pred_tags, output_dict=True, **strict)
    per_type = {
        key: {
            "precision": float(v["precision"]),
            "recall": float(v["recall"]),
            "f1": float(v["f1-score"]),
            "support": int(v["support"]),
        }
        for key, v in report.items()
        if not key.endswith(" avg")
    }
    return {
        "precision": float(metrics.precision_score(true_tags, pred_tags, **strict)),
        "recall": float(metrics.recall_score(true_tags, pred_tags, **strict)),
        "f1": float(metrics.f1_score(true_tags, pred_tags, **strict)),
        "precision_lenient": float(
            metrics.precision_score(true_tags, pred_tags, zero_division=0)
        ),
        "recall_lenient": float(metrics.recall_score(true_tags, pred_tags, zero_division=0)),
        "f1_lenient": float(metrics.f1_score(true_tags, pred_tags, zero_division=0)),
        "accuracy": float(metrics.accuracy_score(true_tags, pred_tags)),
        "per_type": per_type,
        "num_sequences": len(true_tags),
        "num_tokens": sum(len(s) for s in true_tags),
    }


def bio_to_bioes(tags: list[str]) -> list[str]:
    """Convert one BIO (IOB2) sequence to BIOES.

    A chunk's last token becomes ``E-X`` (``S-X`` for single-token chunks). An ``I-X`` that
    does not continue an ``X`` chunk is treated as a chunk start, as conlleval does, so
    slightly ill-formed gold data converts to a well-formed sequence.

    Args:
        tags: Tags of one sentence.

    Returns:
        The BIOES tags.
    """
    parts = [_split(t) for t in tags]
    out: list[str] = []
    for i, (prefix, kind) in enumerate(parts):
        if prefix == "O":
            out.append("O")
            continue
        if prefix not in "BI":
            raise DataError(
                f"tag {tags[i]!r} is not a BIO tag; use convert_scheme() for BIOES input"
            )
        prev = parts[i - 1] if i else ("O", "")
        begins = prefix == "B" or prev[0] == "O" or prev[1] != kind
        nxt = parts[i + 1] if i + 1 < len(parts) else ("O", "")
        continues = nxt[0] == "I" and nxt[1] == kind
        suffix = f"-{kind}" if kind else ""
        if begins:
            out.append(("B" if continues else "S") + suffix)
        else:
            out.append(("I" if continues else "E") + suffix)
    return out


def bioes_to_bio(tags: list[str]) -> list[str]:
    """Convert one BIOES sequence to BIO (IOB2): ``S-X`` -> ``B-X``, ``E-X`` -> ``I-X``.

    Args:
        tags: Tags of one sentence.

    Returns:
        The BIO tags.
    """
    out = []
    for tag in tags:
        prefix, kind = _split(tag)
        mapped = {"S": "B", "E": "I"}.get(prefix, prefix)
        out.append("O" if mapped == "O" else mapped + (f"-{kind}" if kind else ""))
    return out


def convert_scheme(tags: list[str], to: str = "BIOES") -> list[str]:
    """Convert one tag sequence to ``to`` (``"BIO"`` or ``"BIOES"``), whichever it is in now.

    The current scheme is inferred: any ``E-``/``S-`` tag means BIOES (every BIOES entity has
    one), otherwise BIO. An all-``O`` sequence is the same in both.

    Args:
        tags: Tags of one sentence.
        to: Target scheme.

    Returns:
        The converted tags.

    Raises:
        ConfigError: Unknown target scheme.
    """
    target = _scheme(to)
    is_bioes = any(_split(t)[0] in "ES" for t in tags)
    if target == "BIOES":
        return list(tags) if is_bioes else bio_to_bioes(tags)
    return bioes_to_bio(tags) if is_bioes else list(tags)
