"""Lazy imports of the optional metric libraries, with a one-line fix when one is missing.

scikit-learn, seqeval, rouge-score and sacrebleu are not core lmforge dependencies, so they are
imported only when a metric needs them: training works without them, and a missing one fails
with an actionable message instead of a bare ``ModuleNotFoundError`` at import time.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lmforge.errors import ConfigError


def require(module: str, package: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`ConfigError` naming the pip package to install.

    Args:
        module: Dotted module name, e.g. ``"sklearn.metrics"``.
        package: The pip distribution that provides it, e.g. ``"scikit-learn"``.
        purpose: What needs it, for the message, e.g. ``"classification metrics"``.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{purpose} need the '{package}' package, which is not installed; "
            f"run `pip install {package}`"
        ) from exc
