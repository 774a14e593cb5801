"""JSON: the whole report as one document, schema ``paramscope.report/1`` (paramscope/schema/report-v1.json).

Names are written as they are (JSON escapes control characters itself); numbers are exact integers.
"""

from __future__ import annotations

import itertools
import json

from paramscope.gcpause import paused_gc
from paramscope.records import Role, plain_text
from paramscope.renderers import RenderOptions
from paramscope.text import share as percent  # rows.percent, without importing the tables' columns

SCHEMA = "paramscope.report/1"
"""The document's ``schema`` field: ``paramscope/schema/report-v1.json`` describes it."""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from paramscope.records import TensorRecord
    from paramscope.report import ModuleColumns, ModuleNode, Report


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


def _module(node: ModuleNode, total: int) -> dict[str, Any]:
    return {
        "path": node.path,
        "type": node.type,
        "depth": node.depth,
        "parameters": node.parameters,
        "percent": percent(node.parameters, total),
        "trainable": node.trainable,
        "buffers": node.buffers,
        "bytes": node.bytes,
    }


def _rows(report: Report, key: str, depth: int | None) -> Iterator[dict[str, Any]]:
    """The entries of one of the long lists, made one at a time (a million-tensor report is never a million
    dicts at once when rendered)."""
    if key == "modules":
        total = report.total
        for node in report.tree(depth, natural=False).walk():
            yield _module(node, total)
    else:  # "tensors"
        canonical = report.canonical_name
        for r in report.tensors:
            tied = canonical.get(r.name) if canonical else None
            yield _tensor(r, tied if tied != r.name else None)


_STREAMED = ("modules", "tensors")


def report_to_dict(report: Report, *, depth: int | None = None, top: int | None = None) -> dict[str, Any]:
    return _document(report, top, lambda key: list(_rows(report, key, depth)))


def _document(report: Report, top: int | None, rows: Callable[[str], Any]) -> dict[str, Any]:
    """The document, with ``rows(key)`` as the value of each of the long lists (:data:`_STREAMED`)."""
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
        "modules": rows("modules"),
        "tensors": rows("tensors"),
        "metadata": report.metadata,
        "notes": report.notes,
    }
    if top is not None:
        doc["top"] = [r.name for r in report.top(top)]
    _add_architecture(doc, report)
    return doc


def _add_architecture(doc: dict[str, Any], report: Report) -> None:
    """``architecture``: the card (:class:`paramscope.architecture.Architecture`), only where the source states
    one (a config, GGUF key/values, a model's config); ``unknown`` lists what it does not say."""
    card = report.architecture
    if card is not None:
        doc["architecture"] = card.to_dict()


_ROW_LISTS = frozenset({"by_type", "by_dtype", "modules", "tensors"})
_CHUNK = 4096  # rows joined at a time: a few thousand short strings alive, not millions
_SEPARATOR = ",\n    "  # between two lines of a long list


def render(report: Report, options: RenderOptions) -> str:
    """Two-space indented, one module or tensor per line: :func:`render_chunks` joined."""
    # Every piece goes into one list joined once: the output of a million tensors is hundreds of megabytes,
    # and each concatenation of the whole would copy it again.
    return "".join(render_chunks(report, options))


def render_chunks(report: Report, options: RenderOptions) -> Iterator[str]:
    """The document in pieces, made as they are asked for: the long lists in blocks of :data:`_CHUNK`
    lines, so a writer holds one block at a time, never the whole text (41 MB for 100,000 tensors).

    ``json.dumps(indent=...)`` falls back to the pure-Python encoder, which took most of the time on a
    100,000-tensor checkpoint; each line here is written by the C encoder instead, and the module and
    tensor lines are made as they are written.
    """
    with paused_gc():  # millions of short-lived rows: collections would walk the whole report each time
        yield from _pieces(report, options)


def _line_encoder() -> Callable[[Any], str]:
    """``JSONEncoder(ensure_ascii=True, default=str, separators=(", ", ": ")).encode``, its C encoder made
    once rather than once per line (which took most of the time of a million lines)."""
    encoder = json.JSONEncoder(ensure_ascii=True, default=str, separators=(", ", ": "))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the plain encoder, slower, same text
        return encoder.encode
    iterencode = make(None, encoder.default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False,
                      True)
    join = "".join
    return lambda value: join(iterencode(value, 0))


def _blocks(report: Report, key: str, depth: int | None, encode: Callable[[Any], str]) -> Iterator[str]:
    """The lines of ``modules`` or ``tensors`` in blocks of up to :data:`_CHUNK` lines joined by :data:`_SEPARATOR`:
    where the report has plain columns, each block joined in C from texts written once per distinct value (no
    string per line: 100,000 lines); else :func:`_fast_lines`' lines joined."""
    if key == "tensors":
        table = report.columns
        if table is not None and table.fact("typed"):  # plain values only (Table.fact)
            return _column_tensor_blocks(report, table, encode)
    elif depth is None and not report.inventory.module_types:
        columns = report.module_columns()
        if columns is not None:
            return _bulk_module_blocks(report, columns)
    lines = _fast_lines(report, key, depth, encode)
    return iter(lambda: _SEPARATOR.join(itertools.islice(lines, _CHUNK)), "")


def _joined(columns: list[list[str] | Iterator[str]], first: str) -> Iterator[str]:
    """Blocks of :data:`_CHUNK` rows, a row being ``first`` and then one piece from each column in turn. The last
    column's pieces end with :data:`_SEPARATOR` and the next row's ``first``, so a block is one join of its pieces
    (no string per row), the text of its last row's last piece cut back to end the block. A column is a list (of
    texts shared by many rows) or an iterator, read a block at a time (a million escaped names are never all made
    at once). Each column's block is set into the block's pieces by one strided slice assignment, in C (no tuple
    per row, as zipping the columns made: a third of the time of DeepSeek-V3's 150,000 lines)."""
    from itertools import islice

    cut = len(_SEPARATOR) + len(first)
    rows = len(next(column for column in columns if type(column) is list))
    width = len(columns)
    for start in range(0, rows, _CHUNK):
        end = start + _CHUNK
        blocks = [column[start:end] if type(column) is list else list(islice(column, _CHUNK)) for column in columns]
        parts = [first] * (1 + len(blocks[0]) * width)
        for offset, block in enumerate(blocks, 1):  # (a block of another length is refused, as zip's strict was)
            parts[offset::width] = block
        parts[-1] = parts[-1][:-cut]
        yield "".join(parts)


def _fast_lines(report: Report, key: str, depth: int | None, encode: Callable[[Any], str]) -> Iterator[str]:
    """The lines of ``modules`` or ``tensors``, each the text ``encode`` would give its dict (:func:`_module`,
    :func:`_tensor`), written straight from the values where they are plain ints, floats, None and str: a
    million dicts took longer to make than to encode. Anything else takes the dict and the encoder."""
    string = json.encoder.encode_basestring_ascii
    if key == "modules":
        total = report.total
        # Sibling modules repeat their figures (a model's experts and layers): the text from "parameters" on is
        # written once per distinct (parameters, trainable, buffers, bytes).
        tails: dict[tuple[Any, ...], str] = {}
        columns = report.module_columns() if depth is None else None
        if columns is not None:  # every module, straight from the columns: no node made
            yield from _column_module_lines(report, columns, tails, string)
            return
        # node.walk()'s order, each node's depth its parent's + 1; modules in the source's order (a program sorts
        # as it needs; natural order would look at every one of a full tree's siblings again)
        stack = [(report.tree(depth, natural=False), 0)]
        while stack:
            node, level = stack.pop()
            children = node.children
            if children:
                below = level + 1
                stack.extend([(child, below) for child in reversed(children)])
            kind, trainable, parameters = node.type, node.trainable, node.parameters
            if (kind is None or type(kind) is str) and (trainable is None or type(trainable) is int):
                figures = (parameters, trainable, node.buffers, node.bytes)
                tail = tails.get(figures)
                if tail is None:
                    share = percent(parameters, total)
                    tail = tails[figures] = (
                        f'"parameters": {parameters}, "percent": {"null" if share is None else repr(share)}, '
                        f'"trainable": {"null" if trainable is None else trainable}, "buffers": {node.buffers}, '
                        f'"bytes": {node.bytes}}}')
                yield (f'{{"path": {string(node.path)}, "type": {"null" if kind is None else string(kind)}, '
                       f'"depth": {level}, {tail}')
            else:
                yield encode(_module(node, total))
        return
    # Everything between the name and "tied_to" depends only on (shape, dtype, role, trainable), which a model
    # repeats: each such middle is written once, and a line is its name, its middle and its tie.
    middles: dict[tuple[Any, ...], str | None] = {}
    roles = {role: (string(role.value), role is Role.PARAMETER) for role in Role}
    table = report.columns
    if table is not None:  # straight from the columns: no tie, nothing trainable or persistent to say
        # A line is its name and the encoder's text of everything after it, which depends only on (shape,
        # dtype, role, packing): each such tail is encoded once
        tails: dict[tuple[Any, ...], str] = {}
        packing = table.sparse.get("quant", {})
        lead = len('{"name": ""')
        for index, (name, shape, dtype, role) in enumerate(
            zip(table.names, table.shapes, table.dtypes, map(id, table.roles), strict=True)
        ):
            quant = packing.get(index) if packing else None
            key = (shape, dtype, role) if quant is None else (shape, dtype, role, quant.scheme, quant.bits,
                                                              quant.logical_numel)  # role by id
            tail = tails.get(key)
            if tail is None:
                entry = _tensor(table.row(index), None)
                entry["name"] = ""
                tail = encode(entry)[lead:]
                if all(type(d) is int for d in shape) and type(dtype) is str:  # (True,) == (1,): never shared
                    tails[key] = tail
            yield f'{{"name": {string(name)}{tail}' if type(name) is str else encode(_tensor(table.row(index), None))
        return
    canonical = report.canonical_name
    for r in report.tensors:
        name = r.name
        tied = canonical.get(name) if canonical else None
        tied = tied if tied != name else None
        shape, trainable = r.shape, r.trainable
        key = (shape, r.dtype, r.role, trainable, r.persistent, r.quant)
        try:
            middle = middles.get(key, False)
        except TypeError:  # an unhashable field: the general path
            middle = None
        if middle is False:
            middle = middles[key] = _middle(r, roles, encode)
            if shape is not None and not all(type(d) is int for d in shape):  # (True,) == (1,): never shared
                del middles[key]
        if middle is None or type(name) is not str:
            yield encode(_tensor(r, tied))
            continue
        yield f'{{"name": {string(name)}, {middle}"tied_to": {"null" if tied is None else string(tied)}}}'


def _quoted_names(names: list[str], plain: bool) -> list[str] | Iterator[str]:
    """Each name as ``encode_basestring_ascii`` writes it, without its quotes: where ``plain``
    (:func:`paramscope.records.plain_text`, a table's ``plain_names``), as most checkpoints' names are, the names
    themselves."""
    if plain:
        return names
    string = json.encoder.encode_basestring_ascii
    return (string(name)[1:-1] for name in names)


def _column_tensor_blocks(report: Report, table: Any, encode: Callable[[Any], str]) -> Iterator[str]:
    """:func:`_fast_lines`' tensor lines from plain columns, in blocks (:func:`_joined`), with as little as possible
    done per row: a line is its name and the text of everything after it, which depends only on the entry's kind
    (shape, dtype, role, packing: :attr:`Report.row_kinds`) and is encoded once per kind; the rows are then joined
    from the columns by C loops."""
    rows = report.row_kinds
    head = '{"name": "'
    lead = len('{"name": ""')
    tails: dict[int, str] = {}
    for index in report.kind_counts:  # each kind's first entry
        entry = _tensor(table.row(index), None)
        entry["name"] = ""
        tails[index] = '"' + encode(entry)[lead:] + _SEPARATOR + head
    quoted = _quoted_names(table.names, table.fact("plain_names"))
    return _joined([quoted, list(map(tails.__getitem__, rows))], head)


def _bulk_module_blocks(report: Report, columns: ModuleColumns) -> Iterator[str]:
    """:func:`_column_module_lines`' text where no module has a type, in blocks (:func:`_joined`) from texts written
    once per distinct value: the part from ``"type"`` to ``"parameters"`` per depth, the part from ``"parameters"``
    to ``"buffers"`` per distinct parameters, and the rest per distinct (buffers, bytes)."""
    total = report.total
    trainable = columns.trainable
    flag = "null" if trainable is None else trainable
    head = '{"path": "'
    middle = [f'", "type": null, "depth": {depth}, "parameters": ' for depth in range(max(columns.depths) + 1)]
    # Each text written the first time its value is looked up (_Written): one pass of look-ups per column, no pass
    # to find the distinct values first (DeepSeek-V3: 61,536 modules of 25 sizes)

    def counted(parameters: int) -> str:
        share = percent(parameters, total)
        return (f'{parameters}, "percent": {"null" if share is None else repr(share)}, '
                f'"trainable": {flag}, "buffers": ')

    if not any(columns.buffers):  # the common file: the tail is its bytes alone
        tails = list(map(_Written(lambda size: f'0, "bytes": {size}}}{_SEPARATOR}{head}').__getitem__, columns.bytes))
    else:
        keys = list(zip(columns.buffers, columns.bytes, strict=True))
        tails = list(map(_Written(lambda key: f'{key[0]}, "bytes": {key[1]}}}{_SEPARATOR}{head}').__getitem__, keys))
    # A module's path is the start of a tensor's name: plain wherever the names are (the tensors' lines ask too)
    table = report.columns
    plain = (table is not None and table.fact("typed") and table.fact("plain_names")) or plain_text(columns.paths)
    return _joined([_quoted_names(columns.paths, plain), list(map(middle.__getitem__, columns.depths)),
                    list(map(_Written(counted).__getitem__, columns.parameters)), tails], head)


class _Written(dict):  # type: ignore[type-arg]
    """Texts by value, each written by ``write`` when first looked up (``__getitem__`` is the dict's own, in C)."""

    __slots__ = ("write",)

    def __init__(self, write: Callable[[Any], str]) -> None:
        super().__init__()
        self.write = write

    def __missing__(self, key: Any) -> str:
        text = self[key] = self.write(key)
        return text


def _column_module_lines(report: Report, columns: ModuleColumns, tails: dict[tuple[Any, ...], str],
                         string: Callable[[str], str]) -> Iterator[str]:
    """:func:`_fast_lines`' module lines from :meth:`Report.module_columns`: the same text as from the nodes."""
    total = report.total
    trainable = columns.trainable
    flag = "null" if trainable is None else trainable
    types = report.inventory.module_types
    for path, level, parameters, buffers, size in zip(columns.paths, columns.depths, columns.parameters,
                                                      columns.buffers, columns.bytes, strict=True):
        figures = (parameters, buffers, size)
        tail = tails.get(figures)
        if tail is None:
            share = percent(parameters, total)
            tail = tails[figures] = (
                f'"parameters": {parameters}, "percent": {"null" if share is None else repr(share)}, '
                f'"trainable": {flag}, "buffers": {buffers}, "bytes": {size}}}')
        kind = types.get(path) if types else None
        if kind is None or type(kind) is str:
            yield (f'{{"path": {string(path)}, "type": {"null" if kind is None else string(kind)}, '
                   f'"depth": {level}, {tail}')
        else:
            yield _line_encoder()({"path": path, "type": kind, "depth": level, "parameters": parameters,
                                   "percent": percent(parameters, total), "trainable": trainable, "buffers": buffers,
                                   "bytes": size})


def _middle(r: TensorRecord, roles: dict[Role, tuple[str, bool]], encode: Callable[[Any], str]) -> str | None:
    """The text from ``"shape"`` to ``"bytes"`` of ``r``'s line (:func:`_tensor`'s), or None where the
    record is not one of plain values (the dict and the encoder then write it)."""
    shape, dtype, trainable = r.shape, r.dtype, r.trainable
    if (shape is None or r.persistent is not None or r.quant is not None or type(dtype) is not str
            or type(r.numel) is not int or type(r.nbytes) is not int):
        return None
    role, is_parameter = roles[r.role]
    if is_parameter and trainable is not None and type(trainable) is not bool:
        return None
    flag = "null" if not is_parameter or trainable is None else ("true" if trainable is True else "false")
    string = json.encoder.encode_basestring_ascii
    return (f'"shape": {encode(list(shape))}, "dtype": {string(dtype)}, "role": {role}, "trainable": {flag}, '
            f'"numel": {r.numel}, "bytes": {r.nbytes}, ')


def _pieces(report: Report, options: RenderOptions) -> Iterator[str]:
    table = report.columns
    if table is not None and table.fact("typed"):
        report.row_kinds  # noqa: B018  # the tensors' lines take each entry's kind: found first, the counts take it too
    doc = _document(report, options.top, lambda key: None)  # the long lists are written row by row below
    encode = _line_encoder()
    separator = "{\n"
    for key, value in doc.items():
        yield f"{separator}  {encode(key)}: "
        separator = ",\n"
        if key in _STREAMED:
            empty = True
            for block in _blocks(report, key, options.depth, encode):
                yield "[\n    " if empty else _SEPARATOR
                yield block
                empty = False
            yield "[]" if empty else "\n  ]"
        elif key in _ROW_LISTS and value:
            lines = ",\n    ".join(encode(item) for item in value)
            yield f"[\n    {lines}\n  ]"
        else:
            yield encode(value)
    yield "\n}\n"
