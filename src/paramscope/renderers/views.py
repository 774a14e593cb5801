"""The report's views, registered from the renderers' side: :data:`paramscope.report_views.VIEWS` is filled
here, so ``str(report)``, ``report.to_dict()``, ``report._repr_html_()`` and ``report.to_pandas()`` work
while :mod:`paramscope.report` imports no renderer. ``import paramscope`` loads this module; each view
imports its renderer on first use, so loading it costs nothing.
"""

from __future__ import annotations

from paramscope.report_views import VIEWS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from paramscope.report import Report


def text(report: Report) -> str:
    from paramscope.renderers import RenderOptions, listing, render

    if listing.is_listing(report):  # a repository of several GGUF models: its table to pick one from
        return listing.text(report)
    return render(report, "tree", RenderOptions(color=False))


def to_dict(report: Report, depth: int | None = None) -> dict[str, Any]:
    from paramscope.renderers import listing
    from paramscope.renderers.json import report_to_dict

    if listing.is_listing(report):
        return listing.document(report)
    return report_to_dict(report, depth=depth)


def html(report: Report) -> str:
    from paramscope.renderers.html import notebook_html

    return notebook_html(report)


def pandas(report: Report) -> Any:
    from paramscope.frames import to_pandas

    return to_pandas(report)


VIEWS.update(text=text, dict=to_dict, html=html, pandas=pandas)
