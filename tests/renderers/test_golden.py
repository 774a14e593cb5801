"""Every renderer against golden files. Regenerate with PARAMSCOPE_UPDATE_GOLDEN=1 and review the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import paramscope
from paramscope.renderers import RenderOptions, render
from tests.conftest import FrozenBackbone, TiedLM

GOLDEN = Path(__file__).parent / "golden"


def _check(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PARAMSCOPE_UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


def _reports():
    from paramscope.examples import MyModel

    return {
        "article": paramscope.inspect(MyModel()),
        "tied": paramscope.inspect(TiedLM()),
        "frozen": paramscope.inspect(FrozenBackbone()),
    }


CASES = [
    ("article", "tree", RenderOptions(), "article.tree.txt"),
    ("article", "table", RenderOptions(), "article.table.txt"),
    ("article", "json", RenderOptions(), "article.json"),
    ("article", "csv", RenderOptions(), "article.csv"),
    ("article", "markdown", RenderOptions(), "article.md"),
    ("article", "csv", RenderOptions(by="tensor"), "article.tensors.csv"),
    ("tied", "tree", RenderOptions(top=2), "tied.tree.txt"),
    ("tied", "markdown", RenderOptions(by="tensor"), "tied.tensors.md"),
    ("frozen", "tree", RenderOptions(depth=1), "frozen.depth1.tree.txt"),
    ("frozen", "table", RenderOptions(by="type"), "frozen.by-type.table.txt"),
    ("frozen", "csv", RenderOptions(by="dtype"), "frozen.by-dtype.csv"),
]


@pytest.mark.parametrize(("model", "fmt", "options", "golden"), CASES, ids=[c[3] for c in CASES])
def test_golden(model, fmt, options, golden):
    _check(golden, render(_reports()[model], fmt, options))


COLOUR_CASES = [
    ("article", RenderOptions(color=True, width=120), "article.tree.ansi"),
    ("tied", RenderOptions(color=True, width=100, top=2), "tied.top2.tree.ansi"),
    ("frozen", RenderOptions(color=True, width=120, depth=2), "frozen.depth2.tree.ansi"),
]
"""Terminal (ANSI) trees, the golden files written by rich's own Table and Text before the plain layout of
renderers.console (where colour still goes through rich): colour output is unchanged."""


@pytest.mark.parametrize(("model", "options", "golden"), COLOUR_CASES, ids=[c[2] for c in COLOUR_CASES])
def test_colour_tree_golden(model, options, golden):
    _check(golden, render(_reports()[model], "tree", options))


def test_identical_numbered_layers_collapse_into_one_run():
    import torch
    from torch import nn

    with torch.device("meta"):
        model = nn.Sequential(*(nn.Linear(4, 4) for _ in range(3)), nn.Linear(4, 2), nn.Linear(2, 2))
    out = render(paramscope.inspect(model), "tree")
    _check("layers.tree.txt", out)
    # three Linear(4, 4) of 20 each are one row of 60; the different ones stay apart
    assert "0…2" in out and "Linear ×3" in out and "60" in out
    assert "4…" not in out


def test_print_report_draws_the_tree():
    from paramscope.examples import MyModel

    report = paramscope.inspect(MyModel())
    assert str(report) == (GOLDEN / "article.tree.txt").read_text(encoding="utf-8")


def test_colour_only_when_asked():
    report = _reports()["article"]
    assert "\x1b[" not in render(report, "tree", RenderOptions(color=False))
    assert "\x1b[" in render(report, "tree", RenderOptions(color=True, width=120))


def test_hostile_names_are_escaped_in_every_text_format():
    import torch
    from torch import nn

    model = nn.Module()
    evil = "w\x1b[2J\u202eevil"
    model.register_parameter(evil, nn.Parameter(torch.zeros(2)))
    report = paramscope.inspect(model)
    for fmt in ("tree", "table", "csv", "markdown", "json"):
        for by in ("module", "tensor"):
            out = render(report, fmt, RenderOptions(by=by))
            assert "\x1b" not in out and "\u202e" not in out, (fmt, by)
    assert "w\\x1b[2J\\u202eevil" in render(report, "tree")
