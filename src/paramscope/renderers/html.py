"""HTML: one self-contained page (``--format html -o report.html``) and the compact Jupyter summary.

The page works offline: plotly's own offline bundle is embedded once, the figures travel as one JSON
block, and a small hand-written script (``assets/report.js``) draws a treemap of parameters by module
(area = parameters; colour by trainable/frozen or by dtype; click to zoom; hover for exact counts) and
a searchable, sortable, paginated tensor table. The summary, tie groups, per-dtype and per-type figures
are plain HTML, so they read even with scripts off.

Figures come from :class:`~paramscope.report.Report` (and :mod:`paramscope.renderers.rows`); nothing is
counted here. Plotly figures are not built in Python: ``plotly.graph_objects`` validation is far too
slow for a 20,000-module tree, and the page needs only plotly's JavaScript.

Names are hostile input. In HTML they are escaped; in the JSON block ``<``, ``>`` and ``&`` are written
as ``\\u003c`` escapes so no name can close the ``<script>`` element; in the browser they reach the DOM
only through ``textContent``, and plotly only entity-escaped. Control and bidi characters are made
visible by :func:`paramscope.text.safe` first, as in every renderer.

Elements carry ids and ``data-value`` attributes with exact integers (``<dd id="total"
data-value="87018">``) so that tests, and anyone scraping the page, read the numbers unambiguously.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from paramscope import text
from paramscope.errors import require
from paramscope.gcpause import paused_gc
from paramscope.records import Role
from paramscope.renderers import RenderOptions
from paramscope.renderers.rows import TENSOR_COLUMNS, display, summary, table, tensor_rows

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from paramscope.renderers import Grouping
    from paramscope.report import ModuleNode, Report

ASSETS = Path(__file__).parent / "assets"
DATA_SCHEMA = "paramscope.html/1"

# Summary label -> element id (other roles get "other-<role>").
SUMMARY_IDS = {
    "parameters": "total",
    "stored elements": "stored-elements",
    "active per token": "active",
    "trainable": "trainable",
    "frozen": "frozen",
    "non-embedding": "non-embedding",
    "buffers": "buffers",
    "bytes": "bytes",
}
# Beyond this many nodes the treemap opens three levels deep rather than all of them: drawing 50,000
# tiles at once takes seconds, and tiles that small cannot be read anyway. Zooming shows the rest.
FULL_DEPTH_NODES = 2_000
OPEN_DEPTH = 3
# The treemap gets at most this many nodes, and a module at most this many children (see _Tree.budgeted).
TREEMAP_NODES = 4_000
TREEMAP_FAN_OUT = 300
TIE_GROUPS_SHOWN = 1_000
METADATA_KEYS_SHOWN = 200
METADATA_VALUE_CHARS = 300
NOTEBOOK_MODULES = 12
NOTEBOOK_TIES = 5
# JavaScript numbers are exact up to 2**53; larger counts travel as strings so nothing is rounded.
_JS_SAFE = 2**53


def _num(n: int | None) -> int | str | None:
    return n if n is None or n <= _JS_SAFE else str(n)


def _e(value: object) -> str:
    """A name or value as HTML text: control characters made visible, then escaped."""
    return html.escape(text.safe(str(value)), quote=True)


def _plotly_js(source: str) -> str:
    """plotly.js's offline bundle, read from the plotly package's data without building any figure."""
    plotly = require("plotly", extra="html", source=source, purpose="the HTML report")
    try:
        bundle = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text(encoding="utf-8")
    except OSError:  # an unusual layout of the package: ask plotly itself
        from plotly.offline import get_plotlyjs

        bundle = get_plotlyjs()
    return bundle.replace("</script", "<\\/script")  # cannot occur in today's bundle; never let it close the tag


def _merge_dtype(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None or a == b:
        return a
    return "mixed"


class _Tree:
    """The module tree with each module's directly-held parameter tensors as leaves, one list per column.

    Each node's value is its ``parameters`` from the report, so plotly's ``branchvalues="total"`` holds
    by construction. Built in one preorder pass (a parent before its children), linear time.
    """

    COLUMNS = ("parent", "label", "path", "kind", "type", "shape", "value", "trainable", "dtype")

    def __init__(self, report: Report, depth: int | None) -> None:
        self.parent: list[int] = []
        self.label: list[str] = []
        self.path: list[str] = []
        self.kind: list[str] = []  # "m" module, "t" tensor, "o" the rest of a module's children, lumped
        self.type: list[str | None] = []
        self.shape: list[list[int] | None] = []
        self.value: list[int] = []
        self.trainable: list[int | None] = []
        self.dtype: list[str | None] = []
        self.children: list[list[int]] = []
        modules: list[int] = []
        stack: list[tuple[ModuleNode, int]] = [(report.tree(depth), -1)]
        while stack:
            node, up = stack.pop()
            index = self._add(up, _safe_label(node.name) if node.path else text.safe(node.type or "model"),
                              text.safe(node.path) if node.path else "(root)", "m",
                              text.safe(node.type) if node.type else None, None,
                              node.parameters, node.trainable, None)
            modules.append(index)
            for record in node.tensors:
                if record.role is not Role.PARAMETER or not record.initialized:
                    continue
                numel = record.numel
                if not numel:
                    continue
                self._add(index, _safe_label(record.name.rpartition(".")[2]), text.safe(record.name), "t", None,
                          list(record.shape), numel,  # type: ignore[arg-type]
                          None if record.trainable is None else (numel if record.trainable else 0), record.dtype)
                self.dtype[index] = _merge_dtype(self.dtype[index], record.dtype)
            stack.extend((child, index) for child in reversed(node.children))
        for index in reversed(modules):  # children before parents: the dtype summary bubbles up
            up = self.parent[index]
            if up >= 0:
                self.dtype[up] = _merge_dtype(self.dtype[up], self.dtype[index])

    def _add(self, parent: int, label: str, path: str, kind: str, type: str | None, shape: list[int] | None,
             value: int, trainable: int | None, dtype: str | None) -> int:
        index = len(self.parent)
        self.parent.append(parent)
        self.label.append(label)
        self.path.append(path)
        self.kind.append(kind)
        self.type.append(type)
        self.shape.append(shape)
        self.value.append(value)
        self.trainable.append(trainable)
        self.dtype.append(dtype)
        self.children.append([])
        if parent >= 0:
            self.children[parent].append(index)
        return index

    def budgeted(self, budget: int, fan_out: int) -> dict[str, list[Any]]:
        """At most ``budget`` nodes, the largest first, as JSON columns.

        Plotly lays out every node it is given, and tens of thousands of tiles take it tens of seconds;
        tiles that small cannot be read anyway. So the largest modules are opened first (a heap on
        parameters); a module shows at most ``fan_out`` children, and the children that do not fit
        become one "... N more" tile of their summed size, so areas stay exact. Zero-parameter modules
        (buffers only) would have no area and are left out; the tensor table lists everything.
        """
        import heapq

        out: dict[str, list[Any]] = {c: [] for c in self.COLUMNS}
        new_index: dict[int, int] = {}

        def emit(old: int, parent: int) -> None:
            new_index[old] = len(out["parent"])
            for column in self.COLUMNS:
                out[column].append(getattr(self, column)[old])
            out["parent"][-1] = parent

        emit(0, -1)
        left = budget - 1
        heap = [(-self.value[0], 0)]
        while heap and left > 0:
            _, old = heapq.heappop(heap)
            kids = sorted((k for k in self.children[old] if self.value[k] > 0), key=self.value.__getitem__,
                          reverse=True)
            room = min(left, fan_out)
            shown = kids if len(kids) <= room else kids[: room - 1]
            for k in shown:
                emit(k, new_index[old])
                if self.children[k]:
                    heapq.heappush(heap, (-self.value[k], k))
            rest = kids[len(shown):]
            if rest:
                self._lump(out, new_index[old], self.path[old], rest)
            left -= len(shown) + (1 if rest else 0)
        out["value"] = [_num(v) for v in out["value"]]
        out["trainable"] = [_num(v) for v in out["trainable"]]
        return out

    def _lump(self, out: dict[str, list[Any]], parent: int, where: str, rest: list[int]) -> None:
        value = sum(self.value[k] for k in rest)
        trains = [self.trainable[k] for k in rest]
        dtype: str | None = None
        for k in rest:
            dtype = _merge_dtype(dtype, self.dtype[k])
        label = f"… {text.exact(len(rest))} more"
        row = (parent, label, f"{where}: {label} (smallest children, lumped)", "o", None, None, value,
               None if None in trains else sum(trains), dtype)  # type: ignore[arg-type]
        for column, item in zip(self.COLUMNS, row, strict=True):
            out[column].append(item)


def _safe_label(name: str) -> str:
    return text.safe(name) if name else "(unnamed)"


def _data(report: Report, depth: int | None) -> dict[str, Any]:
    full = _Tree(report, depth)
    tree = full.budgeted(TREEMAP_NODES, TREEMAP_FAN_OUT)
    known = report.trainable is not None
    rows = [
        [text.safe(name), list(shape) if shape is not None else None, dtype, role, trainable, _num(numel),
         _num(size), text.safe(tied) if tied is not None else None]
        for name, shape, dtype, role, trainable, numel, size, tied in tensor_rows(report)
    ]
    return {
        "schema": DATA_SCHEMA,
        "source": text.safe(report.source),
        "format": report.format,
        "total": _num(report.total),
        "trainability_known": known,
        "colour": "trainable" if known else "dtype",
        "maxdepth": -1 if len(tree["parent"]) <= FULL_DEPTH_NODES else OPEN_DEPTH,
        "tree_nodes": len(full.parent),
        "dtypes": [row.dtype for row in report.by_dtype],
        "tree": tree,
        "tensors": {
            "columns": [c.title for c in TENSOR_COLUMNS],
            "numeric": [c.numeric for c in TENSOR_COLUMNS],
            "kinds": [c.kind for c in TENSOR_COLUMNS],
            "rows": rows,
        },
    }


def data_json(report: Report, depth: int | None = None) -> str:
    """The JSON the page embeds, safe inside ``<script type="application/json">``."""
    with paused_gc():  # tens of thousands of small lists: collections would walk them all, for nothing
        doc = json.dumps(_data(report, depth), separators=(",", ":"), ensure_ascii=False)
    return doc.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# ---- plain-HTML sections -------------------------------------------------------------------------
def _figure(label: str, value: int | None, ident: str | None = None) -> str:
    ident = ident or SUMMARY_IDS.get(label, "other-" + label.replace(" ", "-"))
    if value is None:
        return (f'<div class="figure"><dt>{_e(label)}</dt><dd class="exact" id="{ident}" data-value="">unknown</dd>'
                f'<dd class="human">not recorded by this source</dd></div>')
    shown, human = (text.human_bytes(value), text.exact(value) + " B") if label == "bytes" else (
        text.exact(value), text.human(value) if value >= 1000 else "")
    return (f'<div class="figure"><dt>{_e(label)}</dt><dd class="exact" id="{ident}" data-value="{value}">{shown}'
            f'</dd><dd class="human">{_e(human)}</dd></div>')


def _summary(report: Report) -> str:
    figures = [_figure(label, value) for label, value in summary(report)]
    figures.append(_figure("tensors", len(report.tensors), "tensor-count"))
    figures.append(_figure("tie groups", len(report.ties), "tie-count"))
    return '<section id="summary"><h2>Summary</h2><dl class="figures">' + "".join(figures) + "</dl></section>"


def _ties(report: Report) -> str:
    if not report.ties:
        return ('<section id="ties"><h2>Tied tensors</h2><p class="muted">No tensor is shared under two names.'
                "</p></section>")
    heads = {group[0] for group in report.ties[:TIE_GROUPS_SHOWN]}
    numel = {r.name: r.numel for r in report.tensors if r.name in heads and r.initialized}
    items = []
    for group in report.ties[:TIE_GROUPS_SHOWN]:
        names = " = ".join(f"<code>{_e(n)}</code>" for n in group)
        count = numel.get(group[0])
        items.append(f'<li data-names="{len(group)}" data-value="{count if count is not None else ""}">{names} '
                     f'<span class="muted">— {text.exact(count)} elements, counted once</span></li>')
    more = len(report.ties) - TIE_GROUPS_SHOWN
    tail = f'<p class="muted">… and {text.exact(more)} more groups (see the tensor table).</p>' if more > 0 else ""
    return (f'<section id="ties"><h2>Tied tensors</h2><p class="muted">Names that share one storage; each group '
            f'counts once, under its first name.</p><ul class="ties">{"".join(items)}</ul>{tail}</section>')


def _small_table(ident: str, title: str, by: Grouping, report: Report) -> str:
    """A plain table of the report grouped ``by`` type or dtype: the columns and cells of
    :mod:`~paramscope.renderers.rows`, each number also kept exact in ``data-value``."""
    columns, rows = table(report, by, None)
    head = "".join(f'<th class="num">{c.title}</th>' if c.numeric else f"<th>{c.title}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column, value in zip(columns, row, strict=True):
            shown = display(column, value)
            if not column.numeric:
                cells.append(f"<td>{html.escape(shown, quote=True)}</td>")
            else:
                cells.append(f'<td class="num" data-value="{"" if value is None else value}">{shown}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<section id="{ident}"><h2>{title}</h2><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></section>")


def _by_dtype(report: Report) -> str:
    return _small_table("dtypes", "By dtype", "dtype", report)


def _by_type(report: Report) -> str:
    # a file names no module classes: its components are inferred from names (the column title says so)
    title = "By module type" if report.types_known else "By component (inferred from names)"
    return _small_table("types", title, "type", report)


def _clip(value: Any) -> str:
    """A metadata value shown briefly: GGUF carries whole vocabularies in its key/values."""
    if isinstance(value, (list, tuple)):
        head = ", ".join(str(v) for v in value[:8])
        shown = f"[{head}{', …' if len(value) > 8 else ''}] ({len(value)} items)"
    else:
        shown = str(value)
    return shown if len(shown) <= METADATA_VALUE_CHARS else shown[:METADATA_VALUE_CHARS] + "…"


def _metadata(report: Report) -> str:
    items = list(report.metadata.items())
    if not items:
        return ""
    rows = "".join(f"<tr><td><code>{_e(k)}</code></td><td class=\"mono\">{_e(_clip(v))}</td></tr>"
                   for k, v in items[:METADATA_KEYS_SHOWN])
    more = len(items) - METADATA_KEYS_SHOWN
    tail = f'<p class="muted">… and {text.exact(more)} more keys.</p>' if more > 0 else ""
    return (f'<section id="metadata"><h2>Metadata</h2><table><thead><tr><th>key</th><th>value</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>{tail}</section>")


def _notes(report: Report) -> str:
    parts = [f"<li>{_e(note)}</li>" for note in report.notes]
    if report.uninitialized:
        parts.append(f"<li>{text.exact(len(report.uninitialized))} uninitialized tensors (lazy modules) count "
                     "nothing until a dry run gives them a shape.</li>")
    return f'<section id="notes"><h2>Notes</h2><ul>{"".join(parts)}</ul></section>' if parts else ""


def _tensor_table() -> str:
    head = "".join(f'<th class="num">{c.title}</th>' if c.numeric else f"<th>{c.title}</th>" for c in TENSOR_COLUMNS)
    return (
        '<section id="tensors"><h2>Tensors</h2><div class="table-controls">'
        '<input id="search" type="search" placeholder="filter by name or dtype" aria-label="filter tensors">'
        '<span id="match-count" class="muted"></span><span class="pager"><button id="prev" type="button">'
        '‹ prev</button> <span id="page-label" class="muted"></span> <button id="next" type="button">next ›'
        "</button></span></div>"
        f'<table id="tensor-table"><thead><tr>{head}</tr></thead><tbody></tbody></table>'
        '<p class="hint">Click a column to sort (again to reverse); all names and aliases are listed, '
        "<em>tied_to</em> names the tensor a tied name is counted under.</p></section>"
    )


def _chart(report: Report) -> str:
    known = report.trainable is not None
    checked = ("checked", "") if known else ("", "checked")
    return (
        '<section id="chart"><h2>Parameters by module</h2><div class="controls"><span>Colour by:</span>'
        f'<label><input type="radio" name="colour" value="trainable" {checked[0]}> trainable / frozen</label>'
        f'<label><input type="radio" name="colour" value="dtype" {checked[1]}> dtype</label>'
        '<div id="legend" class="legend"></div></div><div id="treemap"></div>'
        '<p class="hint">Area = parameters (each tie group once). Click a tile to zoom in, the path bar to zoom '
        'out; hover for exact counts.</p><p class="hint" id="treemap-note"></p></section>'
    )


# ---- memory panel (issue 14): the K/V cache, recomputed in the page -------------------------------
MEMORY_DEFAULTS = {"context": 4096, "batch": 1, "kv_dtype": "float16", "runtime": "vllm"}
MEMORY_KV_DTYPES = ("float16", "bfloat16", "float32", "float8_e4m3fn", "float8_e5m2", "q8_0", "q4_0")
MEMORY_KIND_LABELS = {"full": "KV cache, full attention", "sliding": "KV cache, sliding window",
                      "mla": "KV cache, MLA latent", "recurrent": "recurrent state", "none": "no cache"}


def _memory_data(report: Report) -> tuple[dict[str, Any], Any] | None:
    """What the panel's script needs (the card, the weights, the dtype table) and the default setting's
    estimate, computed here so the page reads with scripts off; None where the card cannot price a cache."""
    from paramscope import dtypes, kv_cache

    card = report.architecture
    if card is None:
        return None
    context = min(MEMORY_DEFAULTS["context"], card.max_context or MEMORY_DEFAULTS["context"])
    weights = None
    if report.parameter_bytes is not None and report.buffer_bytes is not None:
        weights = report.parameter_bytes + report.buffer_bytes
    try:
        estimate = kv_cache.estimate(card, context=context, batch=1, kv_dtype_name=MEMORY_DEFAULTS["kv_dtype"],
                                     runtime=MEMORY_DEFAULTS["runtime"], weights_bytes=weights)
    except ValueError:
        return None
    names = {kv_cache.KV_DTYPES[n] for n in MEMORY_KV_DTYPES} | {"float32"}
    fields = ("layer_kinds", "kv_heads", "heads", "head_dim", "v_dim", "sliding_window", "kv_lora_rank",
              "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "recurrent_state_elements", "max_context")
    doc = {
        "card": {name: list(v) if isinstance(v := getattr(card, name), tuple) else v for name in fields},
        "weights_bytes": _num(weights),
        "kv_dtypes": {n: kv_cache.KV_DTYPES[n] for n in MEMORY_KV_DTYPES},
        "dtypes": {n: [dtypes.get(n).block_elements, dtypes.get(n).block_bytes] for n in sorted(names)},
        "state_dtype": dict(kv_cache.STATE_DTYPE),
        "context": context,
    }
    return doc, estimate


def _memory_cell(ident: str, value: int | None) -> str:
    shown = "unknown" if value is None else f"{text.human_bytes(value)} ({text.exact(value)} B)"
    return f'<td class="num" id="{ident}" data-value="{"" if value is None else value}">{shown}</td>'


def _memory(report: Report) -> str:
    """The memory panel, where the source states an architecture: inputs, and a table the script refills."""
    found = _memory_data(report)
    if found is None:
        return ""
    doc, e = found
    kinds = list(dict.fromkeys(report.architecture.layer_kinds))
    by_kind = {kind: sum(line.bytes for line in e.lines if line.kind == kind) for kind in kinds}
    options = "".join(f'<option value="{n}"{" selected" if n == MEMORY_DEFAULTS["kv_dtype"] else ""}>{n}</option>'
                      for n in MEMORY_KV_DTYPES)
    runtimes = "".join(f'<option value="{n}"{" selected" if n == MEMORY_DEFAULTS["runtime"] else ""}>{n}</option>'
                       for n in ("vllm", "llama.cpp", "transformers", "transformers-4"))
    rows = [f"<tr><td>weights + buffers (as stored)</td>{_memory_cell('mem-weights', e.weights_bytes)}</tr>"]
    rows += [f"<tr><td>{MEMORY_KIND_LABELS[k]}</td>{_memory_cell('mem-' + k, by_kind[k])}</tr>" for k in kinds]
    rows.append(f"<tr><th>total</th>{_memory_cell('mem-total', e.total)}</tr>")
    data = json.dumps(doc, separators=(",", ":"))  # numbers and fixed names only; escaped all the same
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    script = (ASSETS / "memory.js").read_text(encoding="utf-8")
    return (
        '<section id="memory"><h2>Inference memory</h2><div class="controls">'
        f'<label>context <input id="mem-context" type="number" min="1" step="1" value="{doc["context"]}"></label>'
        '<label>batch <input id="mem-batch" type="number" min="1" step="1" value="1"></label>'
        f'<label>K/V dtype <select id="mem-kv-dtype">{options}</select></label>'
        f'<label>runtime <select id="mem-runtime">{runtimes}</select></label></div>'
        f'<table id="memory-table"><tbody>{"".join(rows)}</tbody></table><p class="hint" id="mem-note"></p>'
        '<p class="hint">Weights as stored plus the cache of every layer for the context and batch above '
        '(activations and runtime overhead not included); <code>paramscope memory SOURCE --context L --batch B '
        '--fit 24GiB</code> prints each formula.</p>'
        f'<script type="application/json" id="paramscope-memory">{data}</script>\n<script>\n{script}</script>'
        '</section>'
    )


def page(report: Report, options: RenderOptions, plotly_js: str) -> str:
    """The whole page around a given plotly bundle (tests pass a stub to compare against a golden file)."""
    css = (ASSETS / "report.css").read_text(encoding="utf-8")
    script = (ASSETS / "report.js").read_text(encoding="utf-8")
    source = _e(report.source)
    return "".join((
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        '<meta name="generator" content="paramscope">\n',
        f"<title>paramscope — {source}</title>\n<style>\n{css}</style>\n</head>\n<body>\n",
        f'<header><h1>paramscope report</h1><p class="source"><code id="source">{source}</code> '
        f'<span class="badge" id="format">{_e(report.format)}</span></p></header>\n',
        _summary(report), "\n", _memory(report), _chart(report), "\n", _ties(report), "\n", _by_dtype(report), "\n",
        _by_type(report), "\n", _tensor_table(), "\n", _notes(report), _metadata(report), "\n",
        f'<script type="application/json" id="paramscope-data">{data_json(report, options.depth)}</script>\n',
        f'<script id="plotly-bundle">{plotly_js}</script>\n',
        f"<script>\n{script}</script>\n</body>\n</html>\n",
    ))


def render(report: Report, options: RenderOptions) -> str:
    """The self-contained page. ``options.depth`` prunes the treemap; ``by`` and ``top`` do not apply:
    the page has every grouping, and the tensor table sorts by size."""
    return page(report, options, _plotly_js(report.source))


# ---- Jupyter -------------------------------------------------------------------------------------
_NB_STYLE = "border-collapse:collapse;font-size:12px;margin:.3em 0"
_NB_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:{}"


def _nb_table(header: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    def cell(tag: str, value: str, num: bool) -> str:
        return f'<{tag} style="{_NB_CELL.format("right" if num else "left")}">{value}</{tag}>'

    head = "".join(cell("th", h, n) for h, n in zip(header, numeric, strict=True))
    body = "".join("<tr>" + "".join(cell("td", v, n) for v, n in zip(row, numeric, strict=True)) + "</tr>"
                   for row in rows)
    return f'<table style="{_NB_STYLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def notebook_html(report: Report) -> str:
    """A compact summary for Jupyter's ``_repr_html_``: headline figures, dtypes, top-level modules and
    tie groups. Small and static (no plotly, no script), every name escaped."""
    figures = [[_e(label), "unknown" if value is None else (
        f"{text.human_bytes(value)} ({text.exact(value)} B)" if label == "bytes" else text.both(value))]
        for label, value in summary(report)]
    parts = [
        '<div class="paramscope-report" style="font-family:system-ui,sans-serif">',
        f'<div style="font-weight:600">paramscope: <code>{_e(report.source)}</code> '
        f'<span style="color:#666;font-weight:400">({_e(report.format)}, {text.exact(len(report.tensors))} '
        "tensors)</span></div>",
        _nb_table(["figure", "value"], figures, [False, True]),
    ]
    if report.by_dtype:
        columns, rows = table(report, "dtype", None)
        parts.append(_nb_table(
            [c.title for c in columns],
            [[html.escape(display(c, v), quote=True) for c, v in zip(columns, row, strict=True)] for row in rows],
            [c.numeric for c in columns]))
    children = report.tree().children
    if children:
        rows = [[f"<code>{_e(c.path)}</code>", _e(c.type or ""), text.exact(c.parameters),
                 text.percent(c.parameters, report.total)] for c in children[:NOTEBOOK_MODULES]]
        if len(children) > NOTEBOOK_MODULES:
            rows.append([f"… {text.exact(len(children) - NOTEBOOK_MODULES)} more", "", "", ""])
        parts.append(_nb_table(["module", "type", "parameters", "share"], rows, [False, False, True, True]))
    if report.ties:
        shown = "; ".join(" = ".join(f"<code>{_e(n)}</code>" for n in g) for g in report.ties[:NOTEBOOK_TIES])
        more = f"; … {len(report.ties) - NOTEBOOK_TIES} more" if len(report.ties) > NOTEBOOK_TIES else ""
        parts.append(f'<div style="font-size:12px">Tied (counted once): {shown}{more}</div>')
    parts.extend(f'<div style="font-size:12px;color:#666">note: {_e(n)}</div>' for n in report.notes)
    parts.append("</div>")
    return "".join(parts)
