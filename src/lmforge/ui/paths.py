"""Every path the UI touches, resolved inside its root (no ``../``, no symlink out)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from lmforge.config import nested_strings, parse_overrides
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


def check_option_paths(pairs: list[str], workdir: Path, allowed: list[Path]) -> None:
    """Refuse a started run's ``key=value`` options that name files outside ``allowed``.

    A started run works in ``workdir`` (the root: a relative ``inputs/train.csv`` is read
    from there). A value is taken for a path, and must resolve (symlinks followed)
    inside one of ``allowed``, when it is absolute, starts with ``~``, has a ``..`` part, or
    names something that exists; other values (``bert-base-uncased``, a column name) name
    no local file and pass. Strings inside a list or mapping value are checked alike. URLs
    are refused: a run started from the UI reads local files only.

    Raises:
        OutsideRoot: The first option that leads outside, naming it and the allowed folders.
    """
    for pair in pairs:
        key = pair.partition("=")[0]
        # Read as the CLI reads it (a YAML value), so a list of paths is checked path by path.
        for item in nested_strings(parse_overrides([pair])):
            _check_one(key, item.strip(), workdir, allowed)


def _check_one(key: str, text: str, workdir: Path, allowed: list[Path]) -> None:
    if not text:
        return
    folders = ", ".join(str(a) for a in allowed)
    if "://" in text:
        raise OutsideRoot(f"{key}={text!r}: a run started from the UI reads local files only; "
                          f"give a path under {folders}")
    plain = text.replace("\\", "/")
    candidate = Path(plain).expanduser()
    path = (candidate if candidate.is_absolute() else workdir / candidate).resolve()
    looks_like_path = candidate.is_absolute() or plain.startswith("~") or \
        ".." in PurePosixPath(plain).parts or path.exists() or path.is_symlink()
    if looks_like_path and not any(path == a or path.is_relative_to(a) for a in allowed):
        raise OutsideRoot(f"{key}={text!r} leads outside the folders the UI may use "
                          f"({folders}); move the file there, or start lmforge ui with "
                          "data_roots=[FOLDER] to allow another folder")
