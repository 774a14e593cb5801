"""Renderers: a :class:`~paramscope.report.Report` in, text out. One module per format, loaded lazily.

Renderers never open files and never compute figures: they lay out what the report already holds.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from paramscope.report import Report

FORMATS = ("tree", "table", "json", "csv", "markdown")
GROUPINGS = ("module", "type", "dtype", "tensor")
Grouping = Literal["module", "type", "dtype", "tensor"]


@dataclass(frozen=True)
class RenderOptions:
    """How to lay a report out.

    ``depth``: module levels shown (None: the format's default — 3 for tree/table, all for data
    formats). ``by``: the grouping of rows. ``top``: also list the K largest tensors. ``color``: ANSI
    colour (the CLI sets it only for a terminal without NO_COLOR). ``width``: terminal width.
    """

    depth: int | None = None
    by: Grouping = "module"
    top: int | None = None
    color: bool = False
    width: int | None = None


def render(report: Report, fmt: str, options: RenderOptions | None = None) -> str:
    """``report`` as text in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    renderer = importlib.import_module(f"paramscope.renderers.{fmt}")
    return renderer.render(report, options or RenderOptions())
