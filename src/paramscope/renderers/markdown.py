"""Markdown: the headline figures as a list and one GitHub-flavoured table (``--by``), for READMEs and PRs."""

from __future__ import annotations

import re

from paramscope import text
from paramscope.renderers import RenderOptions
from paramscope.renderers.rows import display, dtype_label, summary, table

TYPE_CHECKING = False

if TYPE_CHECKING:
    from paramscope.report import Report


# Names are untrusted. In text and table cells, Markdown's own syntax (| ends a cell, ` opens code, \\ escapes)
# is backslash-escaped and HTML's (<script>, <img onerror>, &entities;) written as entities, so nothing in a
# name becomes markup. Brackets, which only links and images need, are escaped in names but not in the
# shapes ("[16, 3]") of numeric cells.
_MARKDOWN = {"\\": "\\\\", "|": "\\|", "`": "\\`", "<": "&lt;", ">": "&gt;", "&": "&amp;"}
_LINKS = {"[": "\\[", "]": "\\]"}
_CELL = str.maketrans(_MARKDOWN)
_NAME = str.maketrans({**_MARKDOWN, **_LINKS})


def _escape(cell: str) -> str:
    """A cell of numbers, shapes or labels paramscope wrote."""
    return cell.translate(_CELL)


def _name(value: str) -> str:
    """Untrusted text (a name, a type, a note) as inert Markdown."""
    return text.safe(value).translate(_NAME)


def _code(value: str) -> str:
    """A name as a code span, shown verbatim: inside one nothing is markup and escapes are not read, so the
    fence is one backtick longer than the longest run of backticks in the name (CommonMark's rule)."""
    value = text.safe(value)
    longest = max((len(run) for run in re.findall("`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") or not value.strip(" ") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def render(report: Report, options: RenderOptions) -> str:
    lines = [f"## {_name(report.source)}", "", f"Format: {report.format}", ""]
    for label, value in summary(report):
        if value is None and label not in ("trainable", "frozen"):
            continue
        shown = text.human_bytes(value) if label == "bytes" else text.exact(value)
        exact = f" ({text.exact(value)})" if label == "bytes" and value is not None else ""
        lines.append(f"- **{label}**: {shown if value is not None else 'unknown'}{exact}")
    columns, rows = table(report, options.by, options.depth)
    lines += ["", "| " + " | ".join(c.title for c in columns) + " |"]
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_name(display(c, v)) if c.kind == "text" else _escape(display(c, v))
                                       for c, v in zip(columns, row, strict=False)) + " |")
    if report.ties:
        lines += ["", "Tied (counted once):", ""]
        lines += ["- " + " = ".join(_code(n) for n in group) for group in report.ties]
    if options.top:
        lines += ["", f"Largest {options.top} tensors:", ""]
        lines += [
            f"- {_code(r.name)} {text.shape(r.shape)} {_name(dtype_label(r))}: {text.exact(r.numel)}"
            for r in report.top(options.top)
        ]
    for note in report.notes:
        lines += ["", f"> note: {_name(note)}"]
    return "\n".join(lines) + "\n"
