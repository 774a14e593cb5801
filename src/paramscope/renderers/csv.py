"""CSV: one row per module, type, dtype or tensor (``--by``), exact raw numbers, a header row.

Text cells hold names from files we do not control. A spreadsheet reads a cell that starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return as a formula (CSV injection), so such a cell is
neutralised as OWASP recommends: a leading ``'`` and the cell quoted. Numbers are written as numbers
and never prefixed: only text (names, types, dtypes, shapes) can carry a formula.
"""

from __future__ import annotations

from paramscope.renderers import RenderOptions
from paramscope.renderers.rows import table
from paramscope.text import digits, safe

TYPE_CHECKING = False

if TYPE_CHECKING:
    from paramscope.report import Report

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""OWASP's list of first characters that make a spreadsheet evaluate a cell."""
_NEEDS_QUOTES = frozenset(',"\r\n')


def _text(value: str) -> str:
    """A text cell, neutralised and quoted as the CSV rules (RFC 4180) and OWASP require."""
    value = safe(value)
    formula = value.startswith(FORMULA_STARTS)
    if formula:
        value = "'" + value
    if formula or not _NEEDS_QUOTES.isdisjoint(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return _text("x".join(digits(d) for d in value))
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return digits(value)  # any size: no int-to-string digit limit
    return str(value)  # a float (percent)


def render(report: Report, options: RenderOptions) -> str:
    columns, rows = table(report, options.by, options.depth)
    lines = [",".join(_text(c.title) for c in columns)]
    lines.extend(",".join(_cell(v) for v in row) for row in rows)
    return "\n".join(lines) + "\n"
