"""lmforge: a transformer language model from theory to practice."""

from __future__ import annotations

__version__ = "0.1.0"

from lmforge.errors import ConfigError, DataError, LmforgeError, NonFiniteLossError

__all__ = ["ConfigError", "DataError", "LmforgeError", "NonFiniteLossError", "__version__"]
