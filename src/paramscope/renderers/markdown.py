"""Markdown: the headline figures as a list and one GitHub-flavoured table (``--by``), for READMEs and PRs."""

from __future__ import annotations

from paramscope import text
from paramscope.renderers import RenderOptions
from paramscope.renderers.rows import display, dtype_label, summary, table

TYPE_CHECKING = False

if TYPE_CHECKING:
    from paramscope.report import Report


def _escape(cell: str) -> str:
    return cell.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")


def render(report: Report, options: RenderOptions) -> str:
    lines = [f"## {_escape(text.safe(report.source))}", "", f"Format: {report.format}", ""]
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
        lines.append("| " + " | ".join(_escape(display(c, v)) for c, v in zip(columns, row, strict=False)) + " |")
    if report.ties:
        lines += ["", "Tied (counted once):", ""]
        lines += ["- " + " = ".join(f"`{_escape(text.safe(n))}`" for n in group) for group in report.ties]
    if options.top:
        lines += ["", f"Largest {options.top} tensors:", ""]
        lines += [
            f"- `{_escape(text.safe(r.name))}` {text.shape(r.shape)} {dtype_label(r)}: {text.exact(r.numel)}"
            for r in report.top(options.top)
        ]
    for note in report.notes:
        lines += ["", f"> note: {_escape(text.safe(note))}"]
    return "\n".join(lines) + "\n"
