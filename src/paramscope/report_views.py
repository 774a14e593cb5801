"""The registry of a report's views: how :class:`paramscope.report.Report` is shown, by name.

``text`` (the tree ``str()`` gives), ``dict`` (the JSON document), ``html`` (Jupyter's summary) and ``pandas``
(DataFrames), filled from above by :mod:`paramscope.renderers.views`, so that the report never imports the code
that draws it. A module of its own, below the report: ``import paramscope`` registers the views without
importing the report (and the pipeline, records and rules under it), which the command line then imports
with its collector settings in place (``paramscope.__main__``), and ``--version`` never.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

VIEWS: dict[str, Callable[..., Any]] = {}
