"""CSV: one row per module, type, dtype or tensor (``--by``), exact raw numbers, a header row."""

from __future__ import annotations

import csv
import io

from paramscope.renderers import RenderOptions
from paramscope.renderers.rows import table
from paramscope.text import safe

TYPE_CHECKING = False

if TYPE_CHECKING:
    from paramscope.report import Report


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return "x".join(str(d) for d in value)
    if isinstance(value, str):
        return safe(value)
    return value


def render(report: Report, options: RenderOptions) -> str:
    columns, rows = table(report, options.by, options.depth)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.title for c in columns])
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()
