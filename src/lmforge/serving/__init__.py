"""Serving: an HTTP server with dynamic micro-batching (``lmforge serve``) and its client.

Heavy imports (FastAPI, the model backends) load only when used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Client", "MicroBatcher", "Predictor", "ServeJob", "create_app", "load_predictor"]

_EXPORTS = {
    "Client": "lmforge.serving.client",
    "MicroBatcher": "lmforge.serving.batcher",
    "Predictor": "lmforge.predictor",
    "load_predictor": "lmforge.predictor",
    "ServeJob": "lmforge.serving.settings",
    "create_app": "lmforge.serving.app",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lmforge.serving' has no attribute {name!r}")
