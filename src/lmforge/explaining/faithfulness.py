"""Faithfulness of attributions (ERASER, DeYoung et al. 2020) and agreement between methods.

For an input x with target probability p(x) and the top-k attributed tokens r_k:

    comprehensiveness_k = p(x) - p(x without r_k)     (high: the tokens mattered)
    sufficiency_k       = p(x) - p(r_k only)          (low: the tokens alone suffice)

with k = ceil(b * F) tokens for each bin b in {1, 5, 10, 20, 50} % of the F feature tokens
(at least one token), and AOPC = the mean over the bins. Special tokens always stay; tokens
are deleted (classification) or replaced by the baseline token (NER, QA), as in the
explanations themselves. A method is compared against random scores evaluated the same
way; agreement between two methods is the Spearman rank correlation of their token scores,
averaged over examples.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lmforge.explaining.adapters import Example
from lmforge.explaining.scoring import Scorer, perturb

BINS = (0.01, 0.05, 0.1, 0.2, 0.5)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores (ties: earlier position first)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]


def aopc(scorer: Scorer, examples: list[Example], scores: list[np.ndarray], mode: str,
         fill_id: int, bins: tuple[float, ...] = BINS) -> dict[str, Any]:
    """Comprehensiveness and sufficiency AOPC of one method over ``examples``.

    Returns:
        ``{"comprehensiveness", "sufficiency"}`` (means over examples) plus per-bin means
        and the per-example values.
    """
    rows = []
    for ex, s in zip(examples, scores, strict=True):
        n = len(ex.features)
        rows.append(perturb(ex, np.ones(n, dtype=bool), mode, fill_id))
        for b in bins:
            top = top_k(s, max(1, math.ceil(b * n)))
            keep = np.ones(n, dtype=bool)
            keep[top] = False
            rows.append(perturb(ex, keep, mode, fill_id))  # comprehensiveness: remove top
            rows.append(perturb(ex, ~keep, mode, fill_id))  # sufficiency: keep only top
    values = scorer.score(rows)
    per = 1 + 2 * len(bins)
    comp, suff = [], []
    for i in range(len(examples)):
        block = values[i * per:(i + 1) * per]
        full = block[0]
        comp.append(full - block[1::2])
        suff.append(full - block[2::2])
    comp_arr, suff_arr = np.asarray(comp), np.asarray(suff)  # (N, bins)
    return {"comprehensiveness": float(comp_arr.mean()), "sufficiency": float(suff_arr.mean()),
            "comprehensiveness_by_bin": dict(zip(map(str, bins),
                                                 comp_arr.mean(0).tolist(), strict=True)),
            "sufficiency_by_bin": dict(zip(map(str, bins), suff_arr.mean(0).tolist(),
                                           strict=True)),
            "per_example": {"comprehensiveness": comp_arr.mean(1).tolist(),
                            "sufficiency": suff_arr.mean(1).tolist()}}


def agreement(scores: dict[str, list[np.ndarray]]) -> dict[str, dict[str, float]]:
    """Mean Spearman rank correlation of token scores between every two methods."""
    from scipy.stats import spearmanr

    names = list(scores)
    table: dict[str, dict[str, float]] = {a: {} for a in names}
    for a in names:
        for b in names:
            values = []
            for x, y in zip(scores[a], scores[b], strict=True):
                if len(x) > 1 and np.ptp(x) > 0 and np.ptp(y) > 0:
                    values.append(float(spearmanr(x, y).statistic))
            table[a][b] = float(np.mean(values)) if values else float("nan")
    return table


def faithfulness_table(results: dict[str, dict[str, Any]], cost: dict[str, dict[str, float]]
                       ) -> str:
    """Markdown table: method, comprehensiveness, sufficiency, x random, seconds, calls."""
    random = results.get("random", {}).get("comprehensiveness")
    lines = ["| method | comprehensiveness AOPC (higher is better) | sufficiency AOPC "
             "(lower is better) | comprehensiveness / random | seconds / explanation | "
             "model calls / explanation |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        ratio = (f"{r['comprehensiveness'] / random:.1f}x" if random and random > 0
                 and name != "random" else "")
        c = cost.get(name, {})
        lines.append(f"| {name} | {r['comprehensiveness']:.3f} | {r['sufficiency']:.3f} | "
                     f"{ratio} | {c.get('seconds_per_example', 0.0):.3f} | "
                     f"{c.get('sequences_per_example', 0.0):.0f} |")
    return "\n".join(lines)


def agreement_table(table: dict[str, dict[str, float]]) -> str:
    """Markdown matrix of the rank correlations."""
    names = list(table)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for a in names:
        lines.append(f"| {a} | " + " | ".join(f"{table[a][b]:.2f}" for b in names) + " |")
    return "\n".join(lines)
