"""Renderers: a :class:`~paramscope.report.Report` in, text out. One module per format, loaded lazily.

Renderers never open files and never compute figures: they lay out what the report already holds.
"""

from __future__ import annotations

import importlib
from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType
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
    return _renderer(fmt).render(report, options or RenderOptions())


def render_chunks(report: Report, fmt: str, options: RenderOptions | None = None) -> Iterator[str]:
    """:func:`render`'s text in pieces, made as they are written, for a format whose module has a
    ``render_chunks`` (json: its output grows with the tensors, and a writer then holds one piece of it,
    never the whole); any other format is its whole text, one piece."""
    renderer = _renderer(fmt)
    chunks = getattr(renderer, "render_chunks", None)
    if chunks is None:
        return iter((renderer.render(report, options or RenderOptions()),))
    return chunks(report, options or RenderOptions())


def _renderer(fmt: str) -> ModuleType:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    return importlib.import_module(f"paramscope.renderers.{fmt}")
