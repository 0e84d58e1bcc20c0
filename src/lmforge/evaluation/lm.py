"""Language-model evaluation helpers."""

from __future__ import annotations

import math

from lmforge.errors import DataError

# math.exp overflows a float64 just above 709.78; anything past this is reported as inf.
_MAX_EXP_ARG = math.log(1.7976931348623157e308)


def perplexity(total_nll: float, total_tokens: int) -> float:
    """Perplexity ``exp(total_nll / total_tokens)`` from summed token negative log-likelihoods.

    Sum the NLL over tokens (not the per-batch mean loss) so that batches with different
    numbers of tokens are weighted correctly. A mean NLL too large for ``exp`` gives ``inf``
    instead of raising ``OverflowError``; a NaN NLL gives NaN.

    Args:
        total_nll: Sum of per-token negative log-likelihoods (natural log).
        total_tokens: Number of tokens that sum covers.

    Returns:
        The perplexity.

    Raises:
        DataError: ``total_tokens`` is not positive.
    """
    if total_tokens <= 0:
        raise DataError(
            f"perplexity needs at least one token, got {total_tokens}; "
            "check that the eval split is not empty or fully masked"
        )
    mean = float(total_nll) / total_tokens
    if mean > _MAX_EXP_ARG:
        return math.inf
    return math.exp(mean)
