"""User-facing errors.

Every problem a user can cause (a wrong config key, a missing file or column, an empty
dataset, a NaN loss) is raised as :class:`LmforgeError` with one line that names the problem
and the fix. The CLI prints that line and exits with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations


class LmforgeError(Exception):
    """A problem in the user's input or run, with a one-line message naming the fix."""

    exit_code: int = 2


class ConfigError(LmforgeError):
    """A config file or ``key=value`` override is invalid."""


class DataError(LmforgeError):
    """A dataset is missing, empty, or lacks a required column."""


class NonFiniteLossError(LmforgeError):
    """The training loss became NaN or infinite."""
