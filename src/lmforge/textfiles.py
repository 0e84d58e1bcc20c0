"""The user's text files (and stdin), read as UTF-8 with a one-line error for other bytes.

Every command that reads a text file the user wrote reads it here: config and search-space
YAML (``-c``, ``-s``), prompt templates, the input files of ``lmforge predict`` and
``lmforge explain`` (and their stdin), API key files. A file saved in another encoding
(Latin-1, GBK, UTF-16) then ends in one line naming the file, where the first bad byte is and
how to convert it, instead of a ``UnicodeDecodeError`` traceback. Data files under
``data.path`` go through :mod:`lmforge.data.sources`, where ``data.encoding`` names their
encoding.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from lmforge.errors import DataError, LmforgeError

STDIN = "-"


def not_utf8(name: str, err: UnicodeError, line: int, column: int | None = None,
             error: type[LmforgeError] = DataError) -> LmforgeError:
    """The one-line error for a file (or stdin) whose bytes are not UTF-8.

    Args:
        name: The file ("-" for stdin).
        err: The decoding error.
        line: The line (1-based) of the first bad byte.
        column: Its byte offset in that line (0-based; default: the error's own offset).
        error: The error class to return.
    """
    bad = f"line {line}"
    if isinstance(err, UnicodeDecodeError):
        column = err.start if column is None else column
        bad += f", byte {column + 1}: 0x{err.object[err.start]:02x}"
    source = "standard input" if name == STDIN else repr(name)
    fix = ("pipe UTF-8 text in (e.g. `iconv -f latin1 -t utf-8 FILE | ...`)" if name == STDIN
           else f"save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 {name} > utf8-copy`)")
    return error(f"{source} is not UTF-8 text ({bad}); {fix}")


def read_text(path: str | Path, error: type[LmforgeError] = DataError) -> str:
    """The whole text of a UTF-8 file (a leading byte-order mark dropped).

    Raises:
        LmforgeError: (``error``) the file is not UTF-8.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1)
        raise not_utf8(str(path), err, line, column, error=error) from None


def read_lines(source: str | Path, error: type[LmforgeError] = DataError) -> Iterator[str]:
    """Lines of a UTF-8 file, or of stdin for ``"-"``, without their line ends (LF or CRLF).

    Raises:
        LmforgeError: (``error``) a line is not UTF-8; raised when that line is reached.
    """
    name = str(source)
    if name == STDIN:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # a text stream stands in for stdin (tests, notebooks)
            for number, line in enumerate(sys.stdin, 1):
                try:  # a C locale decodes bad bytes to lone surrogates (surrogateescape)
                    line.encode("utf-8")
                except UnicodeEncodeError as err:
                    raise not_utf8(name, err, number, error=error) from None
                yield line.rstrip("\r\n")
            return
        yield from _decoded(stream, name, error)
        return
    with open(source, "rb") as fh:
        yield from _decoded(fh, name, error)


def _decoded(stream: object, name: str, error: type[LmforgeError]) -> Iterator[str]:
    for number, raw in enumerate(stream, 1):  # type: ignore[call-overload]
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as err:
            raise not_utf8(name, err, number, error=error) from None
        yield text.rstrip("\r\n")
