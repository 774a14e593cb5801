"""JSON read with our limits: bounded in bytes and in nesting, UTF-8 (a leading BOM allowed), and every
failure one :class:`JSONLimitError` with a one-line reason. No project imports: any layer may use it (a
``config.json`` beside weights, a Hub config, a config named on the command line), and each caller says
which source the reason belongs to.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from os import PathLike
    from typing import Any

MAX_BYTES = 16 << 20
"""A transformers config is a few KiB; anything past this is not one (and would only cost memory)."""
MAX_DEPTH = 64
"""Nesting of dicts and lists (json's own parser recurses; composite configs nest 2-3 deep)."""
UTF8_BOM = b"\xef\xbb\xbf"
REASON_LIMIT = 300
"""Characters of the parser's own message kept in a reason (it quotes the document)."""


class JSONLimitError(ValueError):
    """The JSON could not be read within the limits; ``str()`` is the reason, one line."""


def load(path: str | PathLike[str], max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed JSON of the file at ``path`` (at most ``max_bytes`` read)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise JSONLimitError(f"cannot read: {exc.strerror or exc}") from None
    return loads(data, max_bytes, max_depth)


def loads(data: bytes, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed JSON of ``data``, refused past ``max_bytes`` or nested deeper than ``max_depth``."""
    if len(data) > max_bytes:
        raise JSONLimitError(f"larger than {max_bytes >> 20} MiB: not a transformers config")
    check_nesting(data, max_depth)
    try:
        return json.loads(data.removeprefix(UTF8_BOM).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise JSONLimitError(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:  # json.JSONDecodeError, and int strings past the digit limit
        raise JSONLimitError(f"malformed JSON: {_one_line(str(exc))}") from None
    except RecursionError:
        raise JSONLimitError("malformed JSON: nested too deeply") from None


def _one_line(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= REASON_LIMIT else line[: REASON_LIMIT - 3] + "..."


def check_nesting(data: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``max_depth`` before the (recursive) parser sees it.

    Brackets inside strings are skipped; the scan is linear and only counts, so a hostile document costs
    one pass over its bytes.
    """
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return  # cannot be deeper than the number of openers: the common case, no scan
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > max_depth:
                raise JSONLimitError(f"malformed JSON: nested deeper than {max_depth} levels")
        elif byte in (0x5D, 0x7D):
            depth -= 1
