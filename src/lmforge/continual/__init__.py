"""Continual learning: a stream of experiences, strategies as engine hooks, forgetting metrics.

``lmforge continual -c stream.yaml`` (see :mod:`lmforge.commands.continual` and docs/continual.md).
"""
