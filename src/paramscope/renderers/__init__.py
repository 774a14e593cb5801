"""Renderers: a :class:`~paramscope.report.Report` in, text out. One module per format, loaded lazily.

Renderers never open files and never compute figures: they lay out what the report already holds.
"""

from __future__ import annotations

import importlib
from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    from paramscope.report import Report

    Grouping = Literal["module", "type", "dtype", "tensor"]

FORMATS = ("tree", "table", "json", "csv", "markdown", "html")
GROUPINGS = ("module", "type", "dtype", "tensor")

_Options = namedtuple("_Options", "depth by top color width", defaults=(None, "module", None, False, None))


class RenderOptions(_Options):
    """How to lay a report out.

    ``depth``: module levels shown (None: the format's default — 3 for tree/table, all for data
    formats). ``by``: the grouping of rows. ``top``: also list the K largest tensors. ``color``: ANSI
    colour (the CLI sets it only for a terminal without NO_COLOR). ``width``: terminal width.
    """

    __slots__ = ()
    depth: int | None
    by: Grouping
    top: int | None
    color: bool
    width: int | None


def render(report: Report, fmt: str, options: RenderOptions | None = None) -> str:
    """``report`` as text in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    renderer = importlib.import_module(f"paramscope.renderers.{fmt}")
    return renderer.render(report, options or RenderOptions())
