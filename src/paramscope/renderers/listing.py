"""A Hub repository of several GGUF models (its quantizations), listed for the user to pick one: one row per
model (a split model's parts are one row) with its quantization, file size, parameters and bits per weight,
each from its own header (:meth:`paramscope.sources.hub._Hub.gguf_listing`; the parameters counted as the
model's own report would, ties applied, by :func:`paramscope.pipeline.settle`).

The same columns in every format: a text table for people (tree, table), ``{"source", "files"}`` in JSON
(schema ``paramscope.listing/1``, ``paramscope/schema/listing-v1.json``), CSV and Markdown tables escaped as
the report's are, and an HTML page. Names are untrusted (the Hub's file names, a header's type): text goes
through :func:`paramscope.text.safe` and each format's own escapes.
"""

from __future__ import annotations

FORMAT = "gguf-listing"
"""The report format of a listing (:data:`paramscope.sources.hub.GGUF_LISTING`)."""
SCHEMA = "paramscope.listing/1"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from paramscope.report import Report

COLUMNS = (("file", "file"), ("quantization", "quantization"), ("bytes", "size"), ("parameters", "parameters"),
           ("bits_per_weight", "bits/weight"))
"""(row key, heading) in order: what a user picks a quantization by."""
_NUMERIC = frozenset({"bytes", "parameters", "bits_per_weight", "parts"})


def is_listing(report: Report) -> bool:
    return report.format == FORMAT


def rows(report: Report) -> list[dict[str, Any]]:
    return list(report.metadata.get("gguf.files") or [])


def headline(report: Report) -> str:
    """What the listing is and how to pick from it."""
    from paramscope.text import safe

    listed = rows(report)
    source = safe(report.source)
    readable = [row for row in listed if not row.get("error")] or listed
    example = f"{source}:{safe(readable[0]['file'])}" if readable else f"{source}:FILE"
    return (f"{len(listed)} GGUF models in {source}; name one to read it: {example} "
            f"(or {source} --file FILE)")


def _bpw(value: Any) -> str:
    return "?" if value is None else f"{value:.2f}"


def _file(row: dict[str, Any]) -> str:
    from paramscope.text import safe

    parts = row.get("parts") or 1
    return safe(row["file"]) + (f" (+{parts - 1} parts)" if parts > 1 else "")


def _notes(report: Report) -> list[str]:
    """The report's notes, after one for each file that could not be read."""
    from paramscope.text import one_line

    failed = [f"{row['file']}: not read: {one_line(str(row['error']), 500)}"
              for row in rows(report) if row.get("error")]
    return [*failed, *report.notes]


def text(report: Report) -> str:
    """The table for people: sizes in binary units with the exact bytes, parameters exact."""
    from paramscope.text import exact, human_bytes, safe

    cells = [[_file(r), safe(str(r.get("quantization") or "?")), f"{human_bytes(r.get('bytes'))}",
              exact(r.get("parameters")), _bpw(r.get("bits_per_weight"))] for r in rows(report)]
    headings = [title for _, title in COLUMNS]
    widths = [max([len(h)] + [len(c[k]) for c in cells]) for k, h in enumerate(headings)]
    right = [key in _NUMERIC for key, _ in COLUMNS]

    def line(values: list[str]) -> str:
        cells = (v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True))
        return "  ".join(cells).rstrip()

    lines = [headline(report), "", line(headings), line(["-" * w for w in widths])]
    lines += [line(c) for c in cells]
    lines += [f"note: {safe(note)}" for note in _notes(report)]
    return "\n".join(lines) + "\n"


def document(report: Report) -> dict[str, Any]:
    """The JSON document: what was listed and one object per model."""
    keys = ("file", "parts", "quantization", "bytes", "parameters", "bits_per_weight", "tensors", "error")
    return {"schema": SCHEMA, "source": report.source, "format": FORMAT,
            "files": [{key: row.get(key) for key in keys} for row in rows(report)],
            "metadata": {k: v for k, v in report.metadata.items() if k != "gguf.files"},
            "notes": list(report.notes)}


def json_text(report: Report) -> str:
    import json

    return json.dumps(document(report), indent=2, ensure_ascii=False) + "\n"


def csv_text(report: Report) -> str:
    from paramscope.renderers.csv import _cell

    keys = ("file", "parts", "quantization", "bytes", "parameters", "bits_per_weight", "error")
    lines = [",".join(keys)]
    lines += [",".join(_cell(row.get(key)) for key in keys) for row in rows(report)]
    return "\n".join(lines) + "\n"


def markdown_text(report: Report) -> str:
    from paramscope.renderers.markdown import _escape, _name
    from paramscope.text import exact, human_bytes

    lines = [f"## {_name(report.source)}", "", _name(headline(report)), ""]
    lines.append("| " + " | ".join(title for _, title in COLUMNS) + " |")
    lines.append("|" + "|".join("---:" if key in _NUMERIC else "---" for key, _ in COLUMNS) + "|")
    for row in rows(report):
        lines.append("| " + " | ".join([
            _name(_file(row)), _name(str(row.get("quantization") or "?")),
            _escape(f"{human_bytes(row.get('bytes'))} ({exact(row.get('bytes'))})"),
            _escape(exact(row.get("parameters"))), _escape(_bpw(row.get("bits_per_weight")))]) + " |")
    for note in _notes(report):
        lines += ["", f"> note: {_name(note)}"]
    return "\n".join(lines) + "\n"


def html_text(report: Report) -> str:
    from html import escape

    from paramscope.text import exact, human_bytes, safe

    head = "".join(f"<th>{escape(title)}</th>" for _, title in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in (
            _file(row), safe(str(row.get("quantization") or "?")), human_bytes(row.get("bytes")),
            exact(row.get("parameters")), _bpw(row.get("bits_per_weight")))) + "</tr>\n"
        for row in rows(report))
    notes = "".join(f"<p>note: {escape(safe(note))}</p>\n" for note in _notes(report))
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>"
            f"{escape(safe(report.source))}</title></head><body>\n<p>{escape(headline(report))}</p>\n"
            f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n{notes}</body></html>\n")


_BY_FORMAT = {"tree": text, "table": text, "json": json_text, "csv": csv_text, "markdown": markdown_text,
              "html": html_text}


def render(report: Report, fmt: str) -> str:
    """The listing in ``fmt`` (one of :data:`paramscope.renderers.FORMATS`)."""
    return _BY_FORMAT[fmt](report)
