"""The rich console shared by the terminal renderers (tree, table): colour only when asked for."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from paramscope import text
from paramscope.renderers.rows import summary

if TYPE_CHECKING:
    from paramscope.renderers import RenderOptions
    from paramscope.report import Report

# Wide enough that a file or a pipe gets whole lines; a terminal passes its own width.
UNBOUNDED_WIDTH = 400


def draw(options: RenderOptions, *renderables: Any) -> str:
    """Render ``renderables`` to a string, ANSI-coloured only when ``options.color`` is set.

    Without colour, a borderless table (the tree) is laid out by :func:`plain_grid`, which gives rich's text
    for the tables it accepts: rich took ~10 s to lay out 30,000 rows."""
    from rich.console import Console

    width = options.width or UNBOUNDED_WIDTH
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=options.color,
        no_color=not options.color,
        color_system="standard" if options.color else None,
        highlight=False,
        emoji=False,
        markup=False,
    )
    for item in renderables:
        lines = None if options.color else plain_grid(item, width)
        if lines is None:
            console.print(item)  # written to the buffer at once: the order of the pieces is kept
        else:
            buffer.writelines(line + "\n" for line in lines)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


_AWKWARD = frozenset([*map(chr, range(0x20)), *map(chr, range(0x7F, 0xA0)), "\u2028", "\u2029"])
"""Characters rich lays out in ways of its own (line breaks, tab stops, control codes), and those a line split
would break on: a table holding one goes to rich (text.safe escapes them in names anyway)."""


def plain_grid(table: Any, width: int) -> list[str] | None:
    """The lines rich prints for ``table`` without colour (trailing spaces aside), or None when the table is not
    one this lays out: only a borderless ``rich.table.Table`` (``box=None``), no title, caption, footer,
    row styles or fixed column widths, of plain text that fits ``width`` as it is (so rich neither wraps nor
    shrinks a column). Column widths are the widest cell's (``rich.cells.cell_len``), plus padding between
    columns (none at the table's edges without ``pad_edge``); cells are justified left or right
    (right: trailing white space dropped first, as rich does)."""
    from rich.table import Table

    if type(table) is not Table or table.box is not None or table.title or table.caption or table.show_footer:
        return None
    if table.expand or table.width is not None or table.min_width is not None or table.row_styles:
        return None
    top, right, bottom, left = table.padding
    if top or bottom or table.collapse_padding or table.leading or not table.columns:
        return None
    from rich.cells import cell_len
    from rich.text import Text

    count = len(table.columns)
    grid: list[list[str]] = []
    justify: list[str] = []
    for column in table.columns:
        if column.width is not None or column.min_width is not None or column.max_width is not None or column.ratio:
            return None
        if column.justify not in ("left", "right") or column.overflow != "ellipsis":
            return None
        cells = [column.header] if table.show_header else []
        cells += column._cells
        plain = []
        for cell in cells:
            if isinstance(cell, Text):
                if cell.justify not in (None, "default") or cell.overflow is not None:
                    return None
                cell = cell.plain
            elif type(cell) is not str:
                return None
            plain.append(cell)
        grid.append(plain)
        justify.append(column.justify)
    # one pass over every cell for awkward characters and widths
    widths = []
    for plain in grid:
        if not _AWKWARD.isdisjoint("".join(plain)):
            return None
        widths.append(max(map(cell_len, plain)))
    lefts = [left if i or table.pad_edge else 0 for i in range(count)]
    rights = [right if i < count - 1 or table.pad_edge else 0 for i in range(count)]
    if sum(widths) + sum(lefts) + sum(rights) > width:
        return None
    lines = []
    for row in zip(*grid, strict=True):
        pieces = []
        for i, cell in enumerate(row):
            gap = widths[i] - (len(cell) if cell.isascii() else cell_len(cell))
            if justify[i] == "left":
                pieces.append(" " * lefts[i] + cell + " " * (gap + rights[i]))
            else:  # rich drops a right-justified cell's trailing white space (str.rstrip), and measured it with it
                stripped = cell.rstrip()
                gap += len(cell) - len(stripped) if cell.isascii() else cell_len(cell) - cell_len(stripped)
                pieces.append(" " * (lefts[i] + gap) + stripped + " " * rights[i])
        lines.append("".join(pieces))
    return lines


def header(report: Report) -> Any:
    """The summary block: source, then one line per headline figure (exact · human)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    grid.add_column(style="dim")
    title = Text(text.safe(report.source), style="bold")
    # the size label ("7B", "8x7B") once it reads like a model's name; "466" beside a toy says nothing
    size = f", {report.size_label}" if report.total >= 10**6 or report.active is not None else ""
    title.append(f"  ({report.format}{size})", style="dim")
    for label, value in summary(report):
        if label == "bytes":
            grid.add_row(label, text.exact(value), text.human_bytes(value))
        elif value is not None or label in ("trainable", "frozen"):
            human = text.human(value) if value is not None and abs(value) >= 1000 else ""
            grid.add_row(label, text.exact(value) if value is not None else "unknown", human)
    return Group(title, grid)


def footer(report: Report, options: RenderOptions) -> list[Any]:
    """Tie groups, the top-K tensors, uninitialized tensors and the source's notes, where there are any,
    each preceded by a blank line."""
    from rich.text import Text

    parts: list[Any] = []
    if report.ties:
        block = Text("Tied (counted once):", style="bold")
        for group in report.ties:
            block.append("\n  " + " = ".join(text.safe(n) for n in group))
        parts.append(block)
    if options.top:
        block = Text(f"Largest {options.top} tensors:", style="bold")
        for r in report.top(options.top):
            block.append(
                f"\n  {text.safe(r.name)}  {text.shape(r.shape)}  {text.safe(r.dtype)}  {text.both(r.numel)}"
            )
        parts.append(block)
    if report.uninitialized:
        block = Text("Uninitialized (not counted):", style="bold yellow")
        block.append("\n  " + ", ".join(text.safe(n) for n in report.uninitialized))
        parts.append(block)
    for note in report.notes:
        parts.append(Text("note: " + text.safe(note), style="yellow"))
    return [item for part in parts for item in (Text(""), part)]
