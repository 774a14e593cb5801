"""console.plain_grid lays out borderless tables as rich does: byte for byte, on random tables and the tree."""

import io
import random

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from paramscope.renderers import RenderOptions
from paramscope.renderers.console import UNBOUNDED_WIDTH, draw, plain_grid

ALPHABET = "abcXYZ019 .-_│├└──…×→%,漢字🙂é\xa0\u3000"  # box-drawing, ellipsis, wide, accented, odd spaces


def rich_text(table: Table, width: int = UNBOUNDED_WIDTH) -> str:
    """What draw() gave before plain_grid: rich's own layout, trailing spaces stripped."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, no_color=True, color_system=None,
                      highlight=False, emoji=False, markup=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def random_table(rng: random.Random) -> Table:
    padding = (0, rng.randint(0, 3))
    table = Table(box=None, pad_edge=rng.random() < 0.5, show_header=rng.random() < 0.7, header_style="bold",
                  padding=padding)
    columns = rng.randint(1, 6)
    for _ in range(columns):
        table.add_column(rng.choice(["module", "%", "type / shape", "", "漢字"]),
                         justify=rng.choice(["left", "right"]), no_wrap=rng.random() < 0.5,
                         style=rng.choice([None, "cyan"]))
    for _ in range(rng.randint(0, 30)):
        cells = []
        for _ in range(columns):
            word = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
            cells.append(Text(word, style="dim") if rng.random() < 0.5 else word)
        table.add_row(*cells)
    return table


@pytest.mark.parametrize("seed", range(40))
def test_random_tables_are_laid_out_as_rich_lays_them_out(seed):
    rng = random.Random(seed)
    table = random_table(rng)
    lines = plain_grid(table, UNBOUNDED_WIDTH)
    assert lines is not None  # the fast layout took it
    assert draw(RenderOptions(), table) == rich_text(table)


def test_a_table_wider_than_the_console_goes_to_rich():
    table = Table(box=None, pad_edge=False, padding=(0, 1))
    table.add_column("a")
    table.add_column("b", justify="right")
    table.add_row("x" * 30, "y" * 30)
    assert plain_grid(table, 60) is None  # 30 + 1 + 1 + 30 = 62 columns: rich would wrap
    assert plain_grid(table, 62) is not None
    assert draw(RenderOptions(width=60), table) == rich_text(table, 60)
    assert draw(RenderOptions(width=62), table) == rich_text(table, 62)


@pytest.mark.parametrize("cell", ["a\tb", "a\nb", "a\rb", "a\x1bb", "a\x85b", "a\u2028b"])
def test_tabs_and_line_breaks_go_to_rich(cell):
    table = Table(box=None)
    table.add_column("c")
    table.add_row(cell)
    assert plain_grid(table, UNBOUNDED_WIDTH) is None
    assert draw(RenderOptions(), table) == rich_text(table)


def test_tables_with_borders_or_collapsed_padding_go_to_rich():
    from rich import box

    assert plain_grid(Table(box=box.SIMPLE_HEAD), 80) is None
    assert plain_grid(Table.grid(padding=(0, 2)), 80) is None  # collapse_padding
    assert plain_grid("not a table", 80) is None


def test_a_wide_tree_is_the_tree_rich_draws(tmp_path):
    """3,000 tensors at one level (the 30,000 that took rich ~10 s, made small): the fast layout's tree is rich's."""
    from paramscope.records import Inventory, Role, TensorRecord
    from paramscope.renderers import tree
    from paramscope.renderers.console import plain_grid as fast
    from paramscope.report import Report

    records = [TensorRecord(f"t{i}", (i % 7 + 1, 3), "float32", Role.PARAMETER if i % 5 else Role.BUFFER)
               for i in range(3000)]
    report = Report(Inventory("wide.safetensors", "safetensors", records))
    drawn = tree.render(report, RenderOptions())
    import paramscope.renderers.console as console

    console.plain_grid = lambda table, width: None  # rich's own layout, for comparison
    try:
        expected = tree.render(report, RenderOptions())
    finally:
        console.plain_grid = fast
    assert drawn == expected
    assert drawn.count("\n") > 3000
