"""Text helpers shared by every renderer: exact and human numbers, and safe display of names.

Names come from files and models we do not control. A name may hold terminal escape sequences,
newlines or bidirectional overrides; :func:`safe` makes every such character visible instead.
"""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(name: str) -> str:
    """``name`` with control, format and bidi characters escaped (``\\x1b``, ``\\u202e``)."""
    escaped = _UNSAFE.sub(_escape_char, name)
    if escaped.isascii():
        return escaped
    # Other invisible format characters (category Cf) are escaped too.
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cf", "Cc") else c for c in escaped
    )


def one_line(message: str, limit: int | None = None) -> str:
    """``message`` safe to print as one line of an error: whitespace runs (newlines too) become one
    space, control characters are escaped (:func:`safe`), and past ``limit`` characters it is cut
    with ``...``."""
    line = safe(" ".join(message.split()))
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."


def exact(n: int | None) -> str:
    """``124439808`` -> ``'124,439,808'``; None -> ``'?'``."""
    return "?" if n is None else f"{n:,}"


_UNITS = (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3))


def human(n: int | None) -> str:
    """``124439808`` -> ``'124.4M'``, ``6738415616`` -> ``'6.7B'``; below 1,000 the number itself."""
    if n is None:
        return "?"
    for suffix, scale in _UNITS:
        if abs(n) >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


_BYTE_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def human_bytes(n: int | None) -> str:
    """``497759232`` -> ``'474.7 MiB'``; below 1 KiB, ``'512 B'``."""
    if n is None:
        return "?"
    for suffix, scale in _BYTE_UNITS:
        if abs(n) >= scale:
            return f"{n / scale:.1f} {suffix}"
    return f"{n} B"


def both(n: int | None) -> str:
    """Exact and human form side by side: ``'124,439,808 · 124.4M'``."""
    if n is None:
        return "?"
    if abs(n) < 1000:
        return exact(n)
    return f"{exact(n)} · {human(n)}"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def shape(dims: tuple[int, ...] | None) -> str:
    """``(16, 3, 3, 3)`` -> ``'[16, 3, 3, 3]'``; None -> ``'uninitialized'``."""
    if dims is None:
        return "uninitialized"
    return "[" + ", ".join(str(d) for d in dims) + "]"
