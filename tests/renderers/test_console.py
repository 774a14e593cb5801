"""The plain layout of renderers.console (Grid, Styled, Stack, plain_grid) is rich's without colour: byte for byte, on
random tables and texts and on the tree; and the default tree imports nothing of rich."""

import io
import random

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from paramscope.renderers import RenderOptions, console
from paramscope.renderers.console import UNBOUNDED_WIDTH, Grid, Stack, Styled, cell_len, draw, plain_grid

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


def _rich_only(monkeypatch):
    """draw() as it was before the plain layout: every piece laid out by rich."""
    for kind in (Grid, Styled, Stack):
        monkeypatch.setattr(kind, "plain_lines", lambda self, width: None)
    monkeypatch.setattr(console, "plain_grid", lambda table, width: None)


def test_a_wide_tree_is_the_tree_rich_draws(monkeypatch):
    """3,000 tensors at one level (the 30,000 that took rich ~10 s, made small): the fast layout's tree is rich's."""
    from paramscope.records import Inventory, Role, TensorRecord
    from paramscope.renderers import tree
    from paramscope.report import Report

    records = [TensorRecord(f"t{i}", (i % 7 + 1, 3), "float32", Role.PARAMETER if i % 5 else Role.BUFFER)
               for i in range(3000)]
    report = Report(Inventory("wide.safetensors", "safetensors", records))
    drawn = tree.render(report, RenderOptions())
    _rich_only(monkeypatch)
    assert tree.render(report, RenderOptions()) == drawn
    assert drawn.count("\n") > 3000


def random_grid(rng: random.Random) -> Grid:
    """A grid as the tree draws it (header, padding 1) or as the summary does (no header, collapsed padding 2),
    of random words (wide, accented, odd spaces, trailing spaces, empty columns)."""
    header = rng.random() < 0.5
    grid = Grid(header=header, padding=1 if header else 2)
    columns = rng.randint(1, 6)
    for _ in range(columns):
        grid.add_column(rng.choice(["module", "%", "type / shape", "", "漢字"]) if header else "",
                        justify=rng.choice(["left", "right"]), style=rng.choice([None, "cyan", "bold"]))
    empty = rng.randrange(columns) if rng.random() < 0.3 else None
    for _ in range(rng.randint(0, 30)):
        cells = []
        for i in range(columns):
            word = "" if i == empty else "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
            cells.append(Styled(word[:3], "dim").append(word[3:], rng.choice([None, "", "magenta"]))
                         if rng.random() < 0.5 else word)
        grid.add_row(*cells)
    return grid


@pytest.mark.parametrize("seed", range(60))
def test_random_grids_are_laid_out_as_rich_lays_them_out(seed, monkeypatch):
    grid = random_grid(random.Random(seed))
    plain = grid.plain_lines(UNBOUNDED_WIDTH)
    assert plain is not None  # the plain layout took it
    drawn = draw(RenderOptions(), grid)
    assert drawn == rich_text(grid.to_rich())
    assert drawn == "\n".join(line.rstrip() for line in plain) + "\n"


@pytest.mark.parametrize("seed", range(30))
def test_random_texts_are_laid_out_as_rich_lays_them_out(seed):
    rng = random.Random(seed)
    text = Styled("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 20))), rng.choice(["", "bold"]))
    for _ in range(rng.randint(0, 5)):
        text.append(rng.choice(["\n  ", " ", ""]) + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 30))),
                    rng.choice([None, "dim"]))
    width = rng.choice([20, 40, UNBOUNDED_WIDTH])
    lines = text.plain_lines(width)
    assert (lines is None) == any(cell_len(line) > width for line in text.plain.split("\n"))
    assert draw(RenderOptions(width=width), text) == rich_text(text.to_rich(), width)


def test_what_the_plain_layout_refuses_goes_to_rich():
    grid = Grid()
    grid.add_column("a")
    grid.add_column("b", justify="right")
    grid.add_row("x" * 30, Styled("y" * 30))
    assert grid.plain_lines(61) is None  # 30 + 1 + 1 + 30 = 62 columns: rich would wrap
    assert grid.plain_lines(62) is not None
    for width in (61, 62):
        assert draw(RenderOptions(width=width), grid) == rich_text(grid.to_rich(), width)
    tab = Stack(Styled("title"), Styled("a\tb"))
    assert tab.plain_lines(UNBOUNDED_WIDTH) is None
    assert draw(RenderOptions(), tab) == rich_text(tab.to_rich())


def test_cell_len_is_richs():
    from rich.cells import cell_len as rich_cell_len

    for character in sorted(console._NARROW) + list(ALPHABET) + ["\u0301", "\u200b"]:
        assert cell_len(character) == rich_cell_len(character), repr(character)
    assert cell_len("│   ├── 0…31 ×32 → tied") == 23


def test_headers_and_footers_are_richs(monkeypatch):
    """The summary grid (rich's Table.grid: collapsed padding) and the footer's blocks, on a report with ties,
    notes, top tensors and a name wider than the line: plain and rich alike."""
    import paramscope
    from tests.conftest import TiedLM

    report = paramscope.inspect(TiedLM())
    drawn = {width: console.draw(RenderOptions(width=width, top=3), console.header(report),
                                 *console.footer(report, RenderOptions(top=3))) for width in (30, UNBOUNDED_WIDTH)}
    _rich_only(monkeypatch)
    for width, text in drawn.items():
        assert console.draw(RenderOptions(width=width, top=3), console.header(report),
                            *console.footer(report, RenderOptions(top=3))) == text


def test_the_default_tree_imports_no_rich(tmp_path):
    """A file or a pipe gets the tree without rich (its import costs more than reading a small checkpoint)."""
    import subprocess
    import sys

    from tests.sources._st_helpers import write_sparse

    write_sparse(tmp_path / "m.safetensors", [("a.b.w", "F32", (3, 4)), ("a.c.w", "BF16", (3,)), ("h.w", "F32", (2,))])
    child = ("import sys; from paramscope.cli import main; code = main(sys.argv[1:]); "
             "print(code, sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))")
    done = subprocess.run([sys.executable, "-c", child, str(tmp_path / "m.safetensors")], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout + done.stderr
    assert "a.b.w" not in done.stdout and "└── w" in done.stdout  # the tree was drawn
