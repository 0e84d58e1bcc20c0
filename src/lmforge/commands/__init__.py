"""The commands floor: one module per ``lmforge`` command, the registry and the run context.

The stage packages below (``finetuning/``, ``pretraining/``, ``explaining/``, ...) are a
library that never imports this package; a command composes them. ``registry.py`` is the
one table of commands (the CLI, the Python API and pipelines read it), ``runner.py`` runs a
command inside its process scope and writes its lineage, ``context.py`` is what every entry
point does at its start and end (seed, run folder, saved config, summary).
"""
