"""Serving: an HTTP server with dynamic micro-batching (``lmforge serve``) and its client.

Heavy imports (FastAPI, the model backends) load only when used.
"""

from __future__ import annotations

from lmforge.lazy import lazy_getattr

__all__ = ["Client", "MicroBatcher", "Predictor", "ServeJob", "create_app", "load_predictor"]

_EXPORTS = {
    "Client": "lmforge.serving.client",
    "MicroBatcher": "lmforge.serving.batcher",
    "Predictor": "lmforge.predictor",
    "load_predictor": "lmforge.predictor",
    "ServeJob": "lmforge.serving.settings",
    "create_app": "lmforge.serving.app",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
