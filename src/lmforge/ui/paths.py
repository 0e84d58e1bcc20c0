"""Every path the UI touches, resolved inside its root (no ``../``, no symlink out)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from lmforge.errors import ConfigError


class OutsideRoot(ConfigError):
    """A path given to the UI names something outside its root."""


def resolve_under(root: Path, relative: str) -> Path:
    """``root / relative``, refused unless it stays inside ``root`` once resolved.

    Args:
        root: The UI's root folder (resolved).
        relative: A path relative to the root, with ``/`` separators.

    Returns:
        The resolved path (symlinks followed), inside ``root``.

    Raises:
        OutsideRoot: ``relative`` is absolute, has a ``..`` part, or resolves (through a
            symlink) outside ``root``.
    """
    text = relative.replace("\\", "/").strip()
    parts = PurePosixPath(text).parts
    if not text or text.startswith("/") or ".." in parts or "\x00" in text or \
            (parts and ":" in parts[0]):
        raise OutsideRoot(f"path {relative!r} is not a folder under the UI's root")
    path = (root / Path(*parts)).resolve()
    if path != root and not path.is_relative_to(root):
        raise OutsideRoot(f"path {relative!r} leads outside the UI's root")
    return path


def relative_name(root: Path, path: Path) -> str:
    """``path`` as the UI names it: relative to ``root`` with ``/`` separators."""
    return path.relative_to(root).as_posix() if path != root else "."
