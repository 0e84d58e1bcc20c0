"""Continual learning: a stream of experiences, strategies as engine hooks, forgetting metrics.

``lmforge continual -c stream.yaml`` (see :mod:`lmforge.continual.run` and docs/continual.md).
"""
