"""Lazy package attributes (PEP 562): a package names its public objects without importing
the modules that define them, so ``lmforge --help`` and ``import lmforge`` do not load torch.

Usage, in a package's ``__init__.py``::

    __getattr__ = lazy_getattr(__name__, {"train_tokenizer": "lmforge.tokenizer.train"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that imports ``where[name]`` on first use of ``name``.

    Args:
        package: The package's ``__name__`` (for the error message).
        where: Public name -> the module that defines it.

    Returns:
        The function to assign to the package's ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name]), name)

    return __getattr__
