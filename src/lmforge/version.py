"""lmforge's version, on the lowest floor so that any module may report it."""

__version__ = "0.1.0"
