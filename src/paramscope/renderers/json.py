"""JSON: the whole report as one document, schema ``paramscope.report/1`` (paramscope/schema/report-v1.json).

Names are written as they are (JSON escapes control characters itself); numbers are exact integers.
"""

from __future__ import annotations

import json

from paramscope.records import Role
from paramscope.renderers import RenderOptions
from paramscope.renderers.rows import percent
from paramscope.report import SCHEMA

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from paramscope.records import TensorRecord
    from paramscope.report import Report


def _tensor(record: TensorRecord, tied_to: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": record.name,
        "shape": list(record.shape) if record.shape is not None else None,
        "dtype": record.dtype,
        "role": record.role.value,
        "trainable": record.trainable if record.role is Role.PARAMETER else None,
        "numel": record.numel if record.initialized else None,
        "bytes": record.nbytes if record.initialized else None,
        "tied_to": tied_to,
    }
    if record.persistent is not None:
        entry["persistent"] = record.persistent
    if record.quant is not None:
        entry["quant"] = {
            "scheme": record.quant.scheme,
            "bits": record.quant.bits,
            "logical": record.quant.logical_numel,
            "stored_elements": record.stored_numel,
        }
    return entry


def report_to_dict(report: Report, *, depth: int | None = None, top: int | None = None) -> dict[str, Any]:
    canonical = report.canonical_name
    total = report.total
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "source": report.source,
        "format": report.format,
        "total": total,
        "stored_elements": report.stored_elements,
        "active": report.active,
        "size_label": report.size_label,
        "trainable": report.trainable,
        "frozen": report.frozen,
        "non_embedding": report.non_embedding,
        "buffers": report.buffers,
        "other": report.other,
        "bytes": report.bytes,
        "parameter_bytes": report.parameter_bytes,
        "buffer_bytes": report.buffer_bytes,
        "ties": report.ties,
        "uninitialized": report.uninitialized,
        "by_type": [
            {"type": t.type, "modules": t.modules, "parameters": t.parameters, "bytes": t.bytes}
            for t in report.by_type
        ],
        "by_dtype": [
            {"dtype": d.dtype, "parameters": d.parameters, "buffers": d.buffers, "bytes": d.bytes}
            for d in report.by_dtype
        ],
        "modules": [
            {
                "path": node.path,
                "type": node.type,
                "depth": node.depth,
                "parameters": node.parameters,
                "percent": percent(node.parameters, total),
                "trainable": node.trainable,
                "buffers": node.buffers,
                "bytes": node.bytes,
            }
            for node in report.modules(depth)
        ],
        "tensors": [
            _tensor(r, tied if (tied := canonical.get(r.name)) != r.name else None) for r in report.tensors
        ],
        "metadata": report.metadata,
        "notes": report.notes,
    }
    if top is not None:
        doc["top"] = [r.name for r in report.top(top)]
    return doc


_ROW_LISTS = frozenset({"by_type", "by_dtype", "modules", "tensors"})


def render(report: Report, options: RenderOptions) -> str:
    """Two-space indented, one module or tensor per line.

    ``json.dumps(indent=...)`` falls back to the pure-Python encoder, which took most of the time on a
    100,000-tensor checkpoint; each line here is written by the C encoder instead.
    """
    doc = report_to_dict(report, depth=options.depth, top=options.top)
    encode = json.JSONEncoder(ensure_ascii=True, default=str, separators=(", ", ": ")).encode
    parts = []
    for key, value in doc.items():
        if key in _ROW_LISTS and value:
            rows = ",\n    ".join(encode(item) for item in value)
            parts.append(f"  {encode(key)}: [\n    {rows}\n  ]")
        else:
            parts.append(f"  {encode(key)}: {encode(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
