"""Table: one row per module (full dotted path), type, dtype or tensor, drawn for a terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from paramscope.renderers import RenderOptions
from paramscope.renderers.console import draw, footer, header
from paramscope.renderers.rows import display, table

if TYPE_CHECKING:
    from paramscope.report import Report

DEFAULT_DEPTH = 3


def render(report: Report, options: RenderOptions) -> str:
    from rich import box
    from rich.table import Table

    depth = DEFAULT_DEPTH if options.depth is None else options.depth
    columns, rows = table(report, options.by, depth)
    grid = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for column in columns:
        grid.add_column(column.title, justify="right" if column.numeric else "left", no_wrap=True)
    for row in rows:
        grid.add_row(*(display(c, v) for c, v in zip(columns, row, strict=False)))
    return draw(options, header(report), grid, *footer(report, options))
