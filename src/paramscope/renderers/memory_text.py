"""A :class:`~paramscope.memory.MemoryEstimate` as text: tree, table, markdown, json or csv.

Plain aligned text (no colour) so the output is the same in a terminal, a pipe and a test. Every
renderer lays out the same rows (:func:`rows`); nothing is computed here.
"""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from paramscope import text

if TYPE_CHECKING:
    from paramscope.memory import MemoryEstimate

FORMATS = ("tree", "table", "markdown", "json", "csv")

LABELS = {
    "weights": "weights",
    "gradients": "gradients",
    "master": "fp32 master weights",
    "optimizer_state": "optimizer state",
    "buffers": "buffers",
}

CAST_LABELS = {
    "fp32": "as fp32",
    "bf16": "as bf16",
    "fp16": "as fp16",
    "fp8": "as fp8",
    "int8": "as int8 (GGML Q8_0)",
    "int4": "as int4 (GGML Q4_0)",
    "nf4": "as NF4 (bitsandbytes)",
    "nf4-dq": "as NF4 double-quant",
}


def _config(e: MemoryEstimate) -> str:
    shard = "no sharding" if e.shard == "none" else e.shard
    return f"{e.optimizer}, {e.precision}, {shard}, {e.gpus} GPU{'s' if e.gpus != 1 else ''}"


def rows(e: MemoryEstimate) -> list[tuple[str, str, int | None, int | None]]:
    """(section, item, bytes, bytes per GPU) for every figure, in display order."""
    out: list[tuple[str, str, int | None, int | None]] = [
        ("inference", "weights (as stored)", e.weights_stored, None),
        ("inference", "buffers", e.buffers, None),
        ("inference", "total (as stored)", e.inference_stored, None),
    ]
    out += [("inference", CAST_LABELS.get(k, f"as {k}"), v, None) for k, v in e.inference_as.items()]
    out += [("training", LABELS[k], v, e.per_gpu[k]) for k, v in e.training.items()]
    out.append(("training", "total", e.training_total, e.per_gpu_total))
    return out


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n} B" if n < 1024 else f"{text.human_bytes(n)} ({text.exact(n)} B)"


def _header(e: MemoryEstimate) -> list[str]:
    trainable = f"{text.exact(e.trainable)} trainable" + (" (assumed: all)" if e.trainable_assumed else "")
    return [
        f"{text.safe(e.source)} ({e.format}): {text.exact(e.parameters)} parameters, {trainable}, "
        f"{text.exact(e.frozen)} frozen",
    ]


def _footer(e: MemoryEstimate) -> list[str]:
    lines = ["formats:"]
    lines += [f"  {k}: {v}" for k, v in e.formats.items()]
    lines += [f"note: {n}" for n in e.notes]
    return lines


def _aligned(table: list[list[str]], numeric: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return [
        "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in table
    ]


def _tree(e: MemoryEstimate) -> str:
    lines = [*_header(e), "inference (model states only)"]
    inference = [r for r in rows(e) if r[0] == "inference"]
    training = [r for r in rows(e) if r[0] == "training"]
    grid = [["  " + ("└─ " if i == len(inference) - 1 else "├─ ") + item, _size(b)] for i, (_, item, b, _) in
            enumerate(inference)]
    lines += _aligned(grid, {1})
    lines.append(f"training ({_config(e)})")
    sharded = e.gpus > 1
    grid = [["", "whole model", "per GPU" if sharded else ""]]
    for i, (_, item, b, per) in enumerate(training):
        branch = "└─ " if i == len(training) - 1 else "├─ "
        grid.append(["  " + branch + item, _size(b), _size(per) if sharded else ""])
    lines += _aligned(grid, {1, 2})
    return "\n".join(lines + _footer(e)) + "\n"


def _table(e: MemoryEstimate) -> str:
    grid = [["section", "item", "bytes", "size", "per GPU bytes", "per GPU"]]
    for section, item, b, per in rows(e):
        grid.append([section, item, text.exact(b) if b is not None else "?", text.human_bytes(b),
                     "-" if per is None else text.exact(per), "-" if per is None else text.human_bytes(per)])
    lines = [*_header(e), f"training: {_config(e)}", "", *_aligned(grid, {2, 3, 4, 5}), ""]
    return "\n".join(lines + _footer(e)) + "\n"


def _markdown(e: MemoryEstimate) -> str:
    def cell(n: int | None) -> str:
        return "-" if n is None else f"{text.human_bytes(n)} ({text.exact(n)})"

    src = text.safe(e.source).replace("|", "\\|").replace("`", "\\`")
    lines = [f"## Memory: {src}", "", f"- **parameters**: {text.exact(e.parameters)}",
             f"- **trainable**: {text.exact(e.trainable)}" + (" (assumed: all)" if e.trainable_assumed else ""),
             f"- **frozen**: {text.exact(e.frozen)}", f"- **training setup**: {_config(e)}", "",
             "| section | item | bytes | per GPU |", "|---|---|---:|---:|"]
    lines += [f"| {s} | {i} | {cell(b)} | {cell(p)} |" for s, i, b, p in rows(e)]
    lines += ["", "Formats:", ""] + [f"- {k}: {v}" for k, v in e.formats.items()]
    lines += [f"\n> note: {n}" for n in e.notes]
    return "\n".join(lines) + "\n"


def _csv(e: MemoryEstimate) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "item", "bytes", "per_gpu_bytes"])
    for section, item, b, per in rows(e):
        writer.writerow([section, item, "" if b is None else b, "" if per is None else per])
    return out.getvalue()


def _json(e: MemoryEstimate) -> str:
    doc: dict[str, Any] = {"memory": e.to_dict()}
    return json.dumps(doc, indent=2, ensure_ascii=True) + "\n"


_RENDERERS = {"tree": _tree, "table": _table, "markdown": _markdown, "json": _json, "csv": _csv}


def render(estimate: MemoryEstimate, fmt: str) -> str:
    """``estimate`` in format ``fmt`` (one of :data:`FORMATS`)."""
    try:
        renderer = _RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}") from None
    return renderer(estimate)
