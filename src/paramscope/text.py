"""Text helpers shared by every renderer: exact and human numbers, and safe display of names.

Names come from files and models we do not control. A name may hold terminal escape sequences,
newlines, bidirectional overrides or lone surrogates (bytes that were not UTF-8, decoded with
``surrogateescape``: no UTF-8 writer can encode them); :func:`safe` makes every such character visible instead.

Numbers may be any int, also ones no tensor could hold (a hostile shape of 400 dimensions): they are written
without ``str(int)``, whose digit limit (``sys.set_int_max_str_digits``, process-wide) would raise.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

UNSAFE = r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
"""Characters :func:`safe` escapes (then any other of category Cf or Cc). Compiled on the first name that is not
printable ASCII (``re`` keeps it): a small file's names all are, and the compile alone costs more than reading
them."""


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(name: str) -> str:
    """``name`` with control, format and bidi characters escaped (``\\x1b``, ``\\u202e``)."""
    if name.isascii() and name.isprintable():  # none of UNSAFE in it (its ASCII part is what is not printable)
        return name
    import re

    escaped = re.sub(UNSAFE, _escape_char, name)
    if escaped.isascii():
        return escaped
    import unicodedata

    # Other invisible format characters (category Cf) are escaped too.
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cf", "Cc") else c for c in escaped
    )


LINE_LIMIT = 1_000
"""Characters of one error line, at most: a message quotes names from the input, and a 64 KiB name must not
make a 64 KiB line."""


def one_line(message: str, limit: int | None = LINE_LIMIT) -> str:
    """``message`` safe to print as one line of an error: whitespace runs (newlines too) become one
    space, control characters are escaped (:func:`safe`), and past ``limit`` characters its middle is
    cut to ``...`` — the start names the source, the end says what is wrong with it."""
    line = safe(" ".join(message.split()))
    if limit is None or len(line) <= limit:
        return line
    tail = limit // 3
    return line[: limit - tail - 3] + "..." + line[len(line) - tail:]


# ---- integers of any size

_DIRECT_BITS = 1900
"""Ints up to this many bits (572 digits) are formatted directly: under the lowest digit limit Python
accepts (640), so ``format`` cannot raise whatever the process set."""
_CHUNK_DIGITS = 600
_CHUNK = 10**_CHUNK_DIGITS
EXACT_BITS = 1 << 17
"""Past this many bits (39,457 digits) a number is shown approximately (``≈1.234e+40000``): its digits
would only be noise, and converting them costs time quadratic in their count."""


def digits(n: int) -> str:
    """The decimal digits of ``n`` (``-1234`` -> ``'-1234'``) without the int-to-string digit limit;
    approximate (``'≈1.234e+40000'``) past :data:`EXACT_BITS`."""
    if n.bit_length() <= _DIRECT_BITS:
        return f"{n:d}"
    if n.bit_length() > EXACT_BITS:
        return "≈" + _scientific(n, 3)
    sign, n = ("-", -n) if n < 0 else ("", n)
    parts: list[int] = []
    while n:  # 600 digits at a time, each one formatted under the limit
        n, low = divmod(n, _CHUNK)
        parts.append(low)
    return sign + f"{parts[-1]:d}" + "".join(f"{p:0{_CHUNK_DIGITS}d}" for p in reversed(parts[:-1]))


def _scientific(n: int, places: int) -> str:
    """``n`` as ``'1.2e+400'`` from its logarithm (math.log10 takes ints of any size)."""
    sign = "-" if n < 0 else ""
    log = math.log10(abs(n))
    exponent = math.floor(log)
    mantissa = 10 ** (log - exponent)
    if round(mantissa, places) >= 10:  # 9.9996 rounds up to the next power of ten
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{sign}{mantissa:.{places}f}e+{exponent}"


def exact(n: int | None) -> str:
    """``124439808`` -> ``'124,439,808'``; None -> ``'?'``; any int (see :func:`digits`)."""
    if n is None:
        return "?"
    if n.bit_length() <= _DIRECT_BITS:
        return f"{n:,}"
    text = digits(n)
    if text.startswith("≈"):
        return text
    sign, text = ("-", text[1:]) if text.startswith("-") else ("", text)
    head = len(text) % 3 or 3
    return sign + ",".join([text[:head]] + [text[i : i + 3] for i in range(head, len(text), 3)])


_UNITS = (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3))


def human(n: int | None) -> str:
    """``124439808`` -> ``'124.4M'``, ``6738415616`` -> ``'6.7B'``; below 1,000 the number itself."""
    if n is None:
        return "?"
    if n.bit_length() > _DIRECT_BITS:  # n / scale would overflow a float
        return _scientific(n, 1)
    for suffix, scale in _UNITS:
        if abs(n) >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


_BYTE_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def human_bytes(n: int | None) -> str:
    """``497759232`` -> ``'474.7 MiB'``; below 1 KiB, ``'512 B'``."""
    if n is None:
        return "?"
    if n.bit_length() > _DIRECT_BITS:
        return _scientific(n, 1) + " B"
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


PERCENT_DECIMALS = 1
"""Every renderer rounds a share to this many decimals, once, here: a table's "70.6%" and a JSON or CSV
file's 70.6 are the same number (rounding twice, to 2 then 1 decimals, turns 0.049 into 0.1)."""


def share(part: int, whole: int) -> float | None:
    """``part`` as a percentage of ``whole``, rounded to :data:`PERCENT_DECIMALS` (the number JSON and CSV
    write); None when there is no whole, or the part is astronomically larger than it."""
    if not whole:
        return None
    try:
        return round(100 * part / whole, PERCENT_DECIMALS)
    except OverflowError:
        return None


def percent(part: int, whole: int) -> str:
    """:func:`share` as people read it: ``'70.6%'``, or ``'-'`` where there is none."""
    return percent_of(share(part, whole))


def percent_of(value: float | None) -> str:
    """A :func:`share` already computed, shown as :func:`percent` shows it."""
    return "-" if value is None else f"{value:.{PERCENT_DECIMALS}f}%"


def root_label(source: str) -> str:
    """What a report's root row is called: a local file or directory by its name (the path is in the title),
    anything else (``hf:org/name``, a URL, a module's description) as given."""
    if source.startswith(("hf:", "http://", "https://")) or "://" in source:
        return source
    name = source.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
    return name or source


def shape(dims: tuple[int, ...] | None) -> str:
    """``(16, 3, 3, 3)`` -> ``'[16, 3, 3, 3]'``; None -> ``'uninitialized'``."""
    if dims is None:
        return "uninitialized"
    return "[" + ", ".join(digits(d) for d in dims) + "]"


def as_written(message: str) -> str:
    """A message looked up as itself: what argparse's ``gettext`` lookups are made with here (every line paramscope
    writes is English; CPython ships no translations), without gettext's cost (:mod:`paramscope.commands`,
    :mod:`paramscope.__main__`)."""
    return message


def as_written_plural(singular: str, plural: str, n: int) -> str:
    """:func:`as_written` for argparse's ``ngettext`` lookups: the English form for ``n``."""
    return singular if n == 1 else plural
