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
    from paramscope.architecture import Architecture
    from paramscope.kv_cache import Inference
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


# ---- inference: the architecture card, the K/V cache and --fit ---------------------------------------

KIND_LABELS = {"full": "full attention", "sliding": "sliding window", "mla": "MLA latent",
               "recurrent": "recurrent state", "none": "no cache"}


def _runs(values: tuple[object, ...]) -> str:
    """A per-layer field in a line: ``(8, 8, 0, 8)`` as ``8 x2, 0, 8``; a repeating pattern once, with its count
    (``(sliding x5, full) x10, sliding x2``)."""
    for period in range(2, 9):
        repeats = len(values) // period
        if repeats >= 2 and all(values[i] == values[i % period] for i in range(len(values))):
            if len(set(values[:period])) == 1:
                break  # one value throughout: plain runs say it best
            tail = values[repeats * period:]
            return f"({_plain_runs(values[:period])}) x{repeats}" + (f", {_plain_runs(tail)}" if tail else "")
    return _plain_runs(values)


def _plain_runs(values: tuple[object, ...]) -> str:
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        out.append(f"{values[i]}" + (f" x{j - i + 1}" if j > i else ""))
        i = j + 1
    if len(out) > 12:
        out = [*out[:12], f"... ({len(values)} layers)"]
    return ", ".join(out)


def card_lines(card: Architecture) -> list[str]:
    """The card as ``name: value`` lines; unknown fields say so."""
    def show(value: object) -> str:
        if value is None:
            return "unknown"
        if isinstance(value, tuple):
            return _runs(value)
        return text.safe(str(value))

    lines = [f"architecture (from {show(card.source)}): {show(card.model_type)}"]
    items = [("layers", card.layers), ("hidden size", card.hidden_size), ("attention heads", card.heads),
             ("K/V heads per layer", card.kv_heads), ("head dim", card.head_dim), ("value head dim", card.v_dim),
             ("layer kinds", card.layer_kinds)]
    optional = [("sliding window", card.sliding_window), ("MLA kv_lora_rank", card.kv_lora_rank),
                ("MLA qk_rope_head_dim", card.qk_rope_head_dim), ("MLA qk_nope_head_dim", card.qk_nope_head_dim),
                ("recurrent state elements per layer", card.recurrent_state_elements), ("experts", card.experts),
                ("experts per token", card.experts_per_token), ("shared experts", card.shared_experts),
                ("expert FFN size", card.moe_ffn_size)]
    items += [(k, v) for k, v in optional if v is not None]
    items += [("FFN size", card.ffn_size), ("vocab", card.vocab_size), ("max context", card.max_context)]
    lines += [f"  {k}: {show(v)}" for k, v in items]
    if card.unknown:
        lines.append(f"  unknown: {', '.join(card.unknown)}")
    lines += [f"  note: {text.safe(n)}" for n in card.notes]
    return lines


def inference_rows(inf: Inference) -> list[tuple[str, str, int | None, str]]:
    """(section, item, bytes, formula) for the weights, each kind of layer's cache, and the total."""
    kv = inf.kv
    if kv is None:
        return [("inference", _weights_label(inf), inf.weights_bytes, "")]
    section = f"inference (context {kv.context}, batch {kv.batch}, runtime {kv.runtime}, K/V {kv.kv_dtype})"
    out: list[tuple[str, str, int | None, str]] = [(section, _weights_label(inf), inf.weights_bytes,
                                                    "parameters + buffers")]
    for line in kv.lines:
        label = KIND_LABELS[line.kind]
        if line.kind == "mla" and kv.runtime == "transformers-4":  # that runtime expands the latent per head
            label = "MLA, full per-head K/V"
        name = "recurrent state" if line.kind == "recurrent" else f"KV cache, {label}"
        out.append((section, name, line.bytes, line.formula))
    out.append((section, "total", kv.total, "weights + KV cache + recurrent state"))
    return out


def _weights_label(inf: Inference) -> str:
    if inf.weights_as is None:
        return "weights + buffers (as stored)"
    return f"weights (as {text.safe(inf.weights_as)}) + buffers"


def fit_lines(inf: Inference) -> list[str]:
    fit = inf.fit
    if fit is None:
        return []
    lines = [f"fit in {_size(fit.budget)}: after weights {_size(fit.weights_bytes)}, "
             f"{_size(max(fit.free, 0))} left for the cache" + (" (the weights alone do not fit)" if fit.free < 0
                                                                 else "")]
    if fit.max_context_unbounded:
        context = "any: the cache stops growing (sliding or recurrent layers only)"
    else:
        context = "none" if fit.max_context is None else f"{text.exact(fit.max_context)} tokens"
    lines.append(f"  longest context at batch {fit.batch}: {context}")
    if fit.model_max_context is not None and fit.max_context is not None and fit.max_context > fit.model_max_context:
        lines.append(f"    (the model's max_context is {text.exact(fit.model_max_context)})")
    batch = "none" if fit.max_batch is None else text.exact(fit.max_batch)
    lines.append(f"  largest batch at context {fit.context}: {batch}")
    return lines


def _inference_text(inf: Inference | None) -> list[str]:
    """The inference section as aligned lines (tree and table share it)."""
    if inf is None:
        return []
    lines: list[str] = []
    if inf.show_card and inf.card is not None:
        lines += card_lines(inf.card)
    rows_ = inference_rows(inf)
    if inf.kv is not None or inf.weights_as is not None:
        lines.append(rows_[0][0])
        grid = [["  " + ("└─ " if i == len(rows_) - 1 else "├─ ") + item, _size(b), formula]
                for i, (_, item, b, formula) in enumerate(rows_)]
        lines += _aligned(grid, {1})
        if inf.kv is not None:
            lines += [f"note: {n}" for n in inf.kv.notes]
    lines += fit_lines(inf)
    return lines


def _tree(e: MemoryEstimate, inf: Inference | None = None) -> str:
    lines = [*_header(e), *_inference_text(inf), "inference (model states only)"]
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


def _table(e: MemoryEstimate, inf: Inference | None = None) -> str:
    grid = [["section", "item", "bytes", "size", "per GPU bytes", "per GPU"]]
    for section, item, b, per in rows(e):
        grid.append([section, item, text.exact(b) if b is not None else "?", text.human_bytes(b),
                     "-" if per is None else text.exact(per), "-" if per is None else text.human_bytes(per)])
    lines = [*_header(e), *_inference_text(inf), f"training: {_config(e)}", "", *_aligned(grid, {2, 3, 4, 5}), ""]
    return "\n".join(lines + _footer(e)) + "\n"


def _markdown(e: MemoryEstimate, inf: Inference | None = None) -> str:
    def cell(n: int | None) -> str:
        return "-" if n is None else f"{text.human_bytes(n)} ({text.exact(n)})"

    src = text.safe(e.source).replace("|", "\\|").replace("`", "\\`")
    lines = [f"## Memory: {src}", "", f"- **parameters**: {text.exact(e.parameters)}",
             f"- **trainable**: {text.exact(e.trainable)}" + (" (assumed: all)" if e.trainable_assumed else ""),
             f"- **frozen**: {text.exact(e.frozen)}", f"- **training setup**: {_config(e)}", "",
             "| section | item | bytes | per GPU |", "|---|---|---:|---:|"]
    lines += [f"| {s} | {i} | {cell(b)} | {cell(p)} |" for s, i, b, p in rows(e)]
    if inf is not None:
        lines += _inference_markdown(inf, cell)
    lines += ["", "Formats:", ""] + [f"- {k}: {v}" for k, v in e.formats.items()]
    lines += [f"\n> note: {n}" for n in e.notes]
    return "\n".join(lines) + "\n"


def _inference_markdown(inf: Inference, cell: Any) -> list[str]:
    lines: list[str] = []
    if inf.show_card and inf.card is not None:
        lines += ["", "```", *card_lines(inf.card), "```"]
    if inf.kv is not None or inf.weights_as is not None:
        lines += ["", "| section | item | bytes | formula |", "|---|---|---:|---|"]
        lines += [f"| {s} | {i} | {cell(b)} | {f.replace('|', '/')} |" for s, i, b, f in inference_rows(inf)]
    if inf.fit is not None:
        lines += ["", *[f"- {line.strip()}" for line in fit_lines(inf)]]
    return lines


def _csv(e: MemoryEstimate, inf: Inference | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "item", "bytes", "per_gpu_bytes"])
    for section, item, b, per in rows(e):
        writer.writerow([section, item, "" if b is None else b, "" if per is None else per])
    if inf is not None:
        for section, item, b, formula in inference_rows(inf):
            writer.writerow([section, f"{item}: {formula}" if formula else item, "" if b is None else b, ""])
    return out.getvalue()


def _json(e: MemoryEstimate, inf: Inference | None = None) -> str:
    doc: dict[str, Any] = {"memory": e.to_dict()}
    if inf is not None:
        doc["memory"]["inference"] = inf.to_dict()
        if inf.card is not None:
            doc["architecture"] = inf.card.to_dict()
    return json.dumps(doc, indent=2, ensure_ascii=True) + "\n"


_RENDERERS = {"tree": _tree, "table": _table, "markdown": _markdown, "json": _json, "csv": _csv}


def render(estimate: MemoryEstimate, fmt: str, *, inference: Inference | None = None) -> str:
    """``estimate`` in format ``fmt`` (one of :data:`FORMATS`), with the inference options' card, K/V cache and
    fit (:class:`paramscope.kv_cache.Inference`) when given."""
    try:
        renderer = _RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}") from None
    return renderer(estimate, inference)
