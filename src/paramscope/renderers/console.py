"""The terminal renderers' drawing (tree, table): plain strings without colour, rich only for colour.

A file or a pipe gets text laid out here, byte for byte what rich prints without colour, so that the default
tree imports nothing of rich (its import costs more than reading a small checkpoint). :class:`Styled` and
:class:`Grid` hold what rich's ``Text`` and borderless ``Table`` would, and become those only for colour, or for
what the plain layout does not do (a line rich would wrap, a control character): then rich lays it out.
"""

from __future__ import annotations

import io

from paramscope import text
from paramscope.renderers.rows import summary

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from paramscope.renderers import RenderOptions
    from paramscope.report import Report

# Wide enough that a file or a pipe gets whole lines; a terminal passes its own width.
UNBOUNDED_WIDTH = 400

_AWKWARD = frozenset([*map(chr, range(0x20)), *map(chr, range(0x7F, 0xA0)), "\u2028", "\u2029"])
"""Characters rich lays out in ways of its own (line breaks, tab stops, control codes), and those a line split
would break on: text holding one goes to rich (text.safe escapes them in names anyway)."""

_NARROW = frozenset([*map(chr, range(0x20, 0x7F)), *"├└│─…×→·"])
"""Characters one column wide to rich (``rich.cells.cell_len``): printable ASCII and those the renderers draw
with. Text of other characters is measured by rich.cells itself."""


def cell_len(line: str) -> int:
    """Terminal columns of ``line`` as rich counts them."""
    if line.isascii() or _NARROW.issuperset(line):
        return len(line)
    from rich.cells import cell_len as rich_cell_len

    return rich_cell_len(line)


class Styled:
    """Text with rich's ``Text`` styling: a base style over it all, then pieces each with a style of its own
    (``Styled(a, "dim").append(b)`` is ``Text(a, style="dim")`` then ``.append(b)``)."""

    __slots__ = ("parts", "style")

    def __init__(self, first: str = "", style: str = "") -> None:
        self.style = style
        self.parts: list[tuple[str, str | None]] = [(first, None)]

    def append(self, piece: str, style: str | None = None) -> Styled:
        self.parts.append((piece, style))
        return self

    @property
    def plain(self) -> str:
        return "".join([piece for piece, _ in self.parts])

    def to_rich(self) -> Any:
        from rich.text import Text

        (first, _), *rest = self.parts
        out = Text(first, style=self.style)
        for piece, style in rest:
            out.append(piece, style=style)
        return out

    def plain_lines(self, width: int) -> list[str] | None:
        """Its lines as rich prints them without colour, or None where rich would wrap one (wider than
        ``width``) or a character is awkward."""
        lines = self.plain.split("\n")
        for line in lines:
            if not _AWKWARD.isdisjoint(line) or cell_len(line) > width:
                return None
        return lines


class Grid:
    """A borderless rich ``Table`` of plain or :class:`Styled` cells: ``Grid()`` is the tree's
    ``Table(box=None, pad_edge=False, show_header=True, header_style="bold", padding=(0, 1))`` and
    ``Grid(header=False, padding=2)`` is ``Table.grid(padding=(0, 2))`` (no header, padding collapsed)."""

    def __init__(self, header: bool = True, padding: int = 1) -> None:
        self.header = header
        self.padding = padding
        self.columns: list[tuple[str, dict[str, Any]]] = []
        self.rows: list[list[str | Styled]] = []

    def add_column(self, title: str = "", **options: Any) -> None:
        """rich's ``add_column`` (only ``justify`` matters without colour)."""
        self.columns.append((title, options))

    def add_row(self, *cells: str | Styled) -> None:
        self.rows.append(list(cells))

    def to_rich(self) -> Any:
        from rich.table import Table

        if self.header:
            table = Table(box=None, pad_edge=False, show_header=True, header_style="bold",
                          padding=(0, self.padding))
        else:
            table = Table.grid(padding=(0, self.padding))
        for title, options in self.columns:
            table.add_column(title, **options)
        for row in self.rows:
            table.add_row(*[cell.to_rich() if isinstance(cell, Styled) else cell for cell in row])
        return table

    def plain_lines(self, width: int) -> list[str] | None:
        """The lines rich prints for :meth:`to_rich` without colour (trailing spaces aside), or None where the
        table does not fit ``width`` as it is (rich would wrap or shrink a column) or holds an awkward
        character. Columns are as wide as their widest cell, plus padding between them (none at the edges;
        a grid's collapsed padding is one side only); cells are justified left or right (right: trailing white
        space dropped first, as rich does)."""
        count = len(self.columns)
        if not count:
            return None
        grid = [[title] if self.header else [] for title, _ in self.columns]
        for row in self.rows:
            for i, cell in enumerate(row):
                grid[i].append(cell.plain if type(cell) is Styled else cell)
        pad = self.padding
        lefts = [pad if i and self.header else 0 for i in range(count)]  # a grid collapses: max(0, left - right)
        rights = [pad if i < count - 1 else 0 for i in range(count)]
        widths = []
        for i, plain in enumerate(grid):
            if not _AWKWARD.isdisjoint("".join(plain)):
                return None
            widths.append(max(map(cell_len, plain), default=0))
            if not widths[-1] + lefts[i] + rights[i]:  # rich gives an empty column one column
                widths[-1] = 1
        if sum(widths) + sum(lefts) + sum(rights) > width:
            return None
        justify = [options.get("justify", "left") for _, options in self.columns]
        lines = []
        for row in zip(*grid, strict=True):
            pieces = []
            for i, cell in enumerate(row):
                gap = widths[i] - cell_len(cell)
                if justify[i] == "left":
                    pieces.append(" " * lefts[i] + cell + " " * (gap + rights[i]))
                else:  # rich drops a right-justified cell's trailing white space (str.rstrip), and measured it with it
                    stripped = cell.rstrip()
                    gap += cell_len(cell) - cell_len(stripped)
                    pieces.append(" " * (lefts[i] + gap) + stripped + " " * rights[i])
            lines.append("".join(pieces))
        return lines


class Stack:
    """Pieces drawn one under the other (rich's ``Group``)."""

    def __init__(self, *items: Styled | Grid) -> None:
        self.items = items

    def to_rich(self) -> Any:
        from rich.console import Group

        return Group(*[item.to_rich() for item in self.items])

    def plain_lines(self, width: int) -> list[str] | None:
        lines: list[str] = []
        for item in self.items:
            more = item.plain_lines(width)
            if more is None:
                return None
            lines += more
        return lines


_OURS = (Styled, Grid, Stack)


def draw(options: RenderOptions, *renderables: Any) -> str:
    """Render ``renderables`` (:class:`Styled`, :class:`Grid`, :class:`Stack` or rich renderables) to a string,
    ANSI-coloured only when ``options.color`` is set.

    Without colour, ours are laid out here and a borderless rich table by :func:`plain_grid`, each giving rich's
    text: rich is imported only for what neither lays out (and took ~10 s to lay out 30,000 rows)."""
    width = options.width or UNBOUNDED_WIDTH
    buffer = io.StringIO()
    console = None
    for item in renderables:
        lines = None
        if not options.color:
            lines = item.plain_lines(width) if isinstance(item, _OURS) else plain_grid(item, width)
        if lines is None:
            if console is None:
                console = _console(options, buffer, width)
            console.print(item.to_rich() if isinstance(item, _OURS) else item)  # written at once: order is kept
        else:
            buffer.writelines(line + "\n" for line in lines)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _console(options: RenderOptions, buffer: io.StringIO, width: int) -> Any:
    from rich.console import Console

    return Console(
        file=buffer,
        width=width,
        force_terminal=options.color,
        no_color=not options.color,
        color_system="standard" if options.color else None,
        highlight=False,
        emoji=False,
        markup=False,
    )


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


def header(report: Report) -> Stack:
    """The summary block: source, then one line per headline figure (exact · human)."""
    grid = Grid(header=False, padding=2)
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    grid.add_column(style="dim")
    title = Styled(text.safe(report.source), style="bold")
    # the size label ("7B", "8x7B") once it reads like a model's name; "466" beside a toy says nothing
    size = f", {report.size_label}" if report.total >= 10**6 or report.active is not None else ""
    title.append(f"  ({report.format}{size})", style="dim")
    for label, value in summary(report):
        if label == "bytes":
            grid.add_row(label, text.exact(value), text.human_bytes(value))
        elif value is not None or label in ("trainable", "frozen"):
            human = text.human(value) if value is not None and abs(value) >= 1000 else ""
            grid.add_row(label, text.exact(value) if value is not None else "unknown", human)
    return Stack(title, grid)


def footer(report: Report, options: RenderOptions) -> list[Styled]:
    """Tie groups, the top-K tensors, uninitialized tensors and the source's notes, where there are any,
    each preceded by a blank line."""
    parts: list[Styled] = []
    if report.ties:
        block = Styled("Tied (counted once):", style="bold")
        for group in report.ties:
            block.append("\n  " + " = ".join(text.safe(n) for n in group))
        parts.append(block)
    if options.top:
        block = Styled(f"Largest {options.top} tensors:", style="bold")
        for r in report.top(options.top):
            block.append(
                f"\n  {text.safe(r.name)}  {text.shape(r.shape)}  {text.safe(r.dtype)}  {text.both(r.numel)}"
            )
        parts.append(block)
    if report.uninitialized:
        block = Styled("Uninitialized (not counted):", style="bold yellow")
        block.append("\n  " + ", ".join(text.safe(n) for n in report.uninitialized))
        parts.append(block)
    for note in report.notes:
        parts.append(Styled("note: " + text.safe(note), style="yellow"))
    return [item for part in parts for item in (Styled(""), part)]
