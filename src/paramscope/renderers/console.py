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
    """Render ``renderables`` to a string, ANSI-coloured only when ``options.color`` is set."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=options.width or UNBOUNDED_WIDTH,
        force_terminal=options.color,
        no_color=not options.color,
        color_system="standard" if options.color else None,
        highlight=False,
        emoji=False,
        markup=False,
    )
    for item in renderables:
        console.print(item)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


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
