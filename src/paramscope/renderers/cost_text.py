"""A :class:`~paramscope.training.TrainingCost` as text: every line names its formula and its inputs.

:func:`cost_json` is the JSON ``memory`` (training peak, component by component) and ``compute``
sections, as plain values, for renderers/json.py to place in its document.
"""

from __future__ import annotations

import csv
import io
import json

from paramscope.text import safe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from paramscope.training import TrainingCost

FORMATS = ("tree", "table", "markdown", "json", "csv")


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{int(n):,d} B"


def _flops(n: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if n >= scale:
            return f"{n / scale:,.3f} {unit}"
    return f"{int(n):,d} FLOP"


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:,.2f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:,.2f} h"
    return f"{seconds:,.1f} s"


def rows(cost: TrainingCost) -> list[tuple[str, str, str, str]]:
    """(section, component, value, formula and inputs) for every line of the table."""
    a, c, m = cost.activations, cost.compute, cost.memory
    shape = ", ".join(f"{k}={v:,d}" for k, v in a.shape.items())
    inputs = (f"s={a.seq}, b={a.micro_batch}, L={a.layers}, {shape}, {a.width} B/element, recompute={a.recompute}, "
              f"attention={a.attention}, tp={a.tp}, sp={'on' if a.sp else 'off'}")
    out = [("memory", "model states / GPU", _size(cost.states_per_gpu),
            f"{m.optimizer}, {m.precision}, {m.shard} over {m.gpus} GPU(s)" + (f", ÷ tp={a.tp}" if a.tp > 1 else ""))]
    for term in a.terms:
        scope = {"layer": "per layer", "model": "model", "recompute": "recompute"}[term.scope]
        out.append(("memory", f"  {term.name} ({scope})", _size(term.bytes), f"{term.formula} × {term.width} B"))
    out.append(("memory", "activations / layer", _size(a.per_layer), "sum of the per-layer terms"))
    out.append(("memory", "activation peak", _size(a.peak), f"{a.formula}; {inputs}"))
    out.append(("memory", "peak / GPU", _size(cost.peak), "model states / GPU + activation peak"))
    for line in c.lines:
        if line.name == "training time (s)":
            out.append(("compute", "training time", _duration(line.value), line.formula))
        elif line.name == "matmul parameters":
            out.append(("compute", line.name, f"{int(line.value):,d}", line.formula))
        else:
            out.append(("compute", line.name, _flops(line.value), line.formula))
    return out


def cost_json(cost: TrainingCost) -> dict[str, Any]:
    """``{"memory": {...}, "compute": {...}}``: the training peak's components in bytes, the FLOPs figures."""
    a, c = cost.activations, cost.compute
    return {
        "memory": {
            "states_per_gpu": cost.states_per_gpu,
            "activations": a.to_dict(),
            "peak_per_gpu": cost.peak,
            "notes": [*cost.notes, *a.notes],
        },
        "compute": c.to_dict(),
    }


def _table(cost: TrainingCost) -> str:
    body = rows(cost)
    widths = [max(len(r[i]) for r in body) for i in (1, 2)]
    lines = [f"training cost of {safe(cost.memory.source)}"]
    section = None
    for sec, name, value, formula in body:
        if sec != section:
            lines.append(f"{sec}:")
            section = sec
        lines.append(f"  {name:<{widths[0]}}  {value:>{widths[1]}}  {formula}")
    lines += [f"note: {safe(n)}" for n in (*cost.notes, *cost.activations.notes, *cost.compute.notes)]
    return "\n".join(lines) + "\n"


def _markdown(cost: TrainingCost) -> str:
    lines = ["| section | component | value | formula and inputs |", "|---|---|---|---|"]
    lines += [f"| {s} | {n.strip()} | {v} | {f.replace('|', '/')} |" for s, n, v, f in rows(cost)]
    return "\n".join(lines) + "\n"


def _csv(cost: TrainingCost) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("section", "component", "value", "formula"))
    writer.writerows((s, n.strip(), v, f) for s, n, v, f in rows(cost))
    return buffer.getvalue()


def _json(cost: TrainingCost) -> str:
    return json.dumps(cost_json(cost), indent=2, ensure_ascii=True) + "\n"


_RENDERERS = {"tree": _table, "table": _table, "markdown": _markdown, "json": _json, "csv": _csv}


def render(cost: TrainingCost, fmt: str) -> str:
    """``cost`` in one of :data:`FORMATS`."""
    return _RENDERERS[fmt](cost)
