"""ONNX models, read by skimming the protobuf wire format: no ``onnx`` package, no tensor data read.

An ONNX file is one serialized ``ModelProto``. Its weights are the graph's initializers (``TensorProto``,
``SparseTensorProto``) and the ``value`` of ``Constant`` nodes, in the main graph and in the subgraphs of
control-flow nodes (``If``'s ``then_branch``/``else_branch``, ``Loop``/``Scan``'s ``body``). Field numbers
are onnx/onnx.proto's. The reader walks the message tree with an explicit, bounded stack of frames (a file
cannot drive Python recursion), reads only the small fields it needs (names, dims, types, lengths), and
*seeks over* every data field (``raw_data``, ``float_data``, ...) by its length, so a 2 GB model is never
read into memory. External-data tensors are counted from their dims; the external file is never opened and
its location (untrusted text) is only recorded.

Names: main-graph tensors keep their names; a subgraph's tensors are prefixed by the path to it,
``<node>.<attribute>.`` (``<node>`` is the node's name or ``<op_type>_<index>``), so equal names in sibling
subgraphs stay distinct and the module tree shows where they live. Each prefix is one string shared by every
tensor under it (a linked chain of scopes, joined once at the end), and joined names are bounded by
:class:`~paramscope.sources.files.NameBudget`: at most ``records.MAX_NAME_LENGTH`` (65,536) characters each, and
in all at most the file's size plus ``NAME_ALLOWANCE`` (32 MiB). A small file repeating a 128 KB node name over
many subgraph tensors is refused with one line instead of building gigabytes of names.

Decisions: STRING tensors have no fixed size: they are counted as buffers of their element count with an
unknown byte size (dtype ``string``). 2- and 4-bit integer tensors (INT4, UINT4, INT2, UINT2), which ONNX
packs several to a byte, are recorded as their packed ``uint8`` storage with a :class:`QuantInfo` giving the
logical element count, so both elements and bytes are exact. Sparse initializers count their dense shape
(the number of weights the model has), with the number of stored values in ``extra``. Training-info graphs
and functions are not read.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from paramscope.errors import ParamscopeError
from paramscope.records import Inventory, QuantInfo, TensorRecord, role_for_file_tensor
from paramscope.sources.files import FileWindow, NameBudget, unbuffered_reader

FORMAT = "onnx"
MAX_SUBGRAPH_DEPTH = 32  # If/Loop nesting deeper than this is hostile, not a model
MAX_RANK = 64
MAX_STRING = 1 << 16  # names and short strings kept; longer ones are cut and the rest skipped
MAX_ENTRIES = 256  # metadata_props / external_data entries kept per message
INT64_MAX = (1 << 63) - 1

# TensorProto.DataType -> (ONNX name, paramscope dtype, bits per element as stored in raw_data).
# Packed sub-byte integer types have no paramscope dtype of their own: see the module docstring.
DATA_TYPES: dict[int, tuple[str, str, int]] = {
    1: ("FLOAT", "float32", 32),
    2: ("UINT8", "uint8", 8),
    3: ("INT8", "int8", 8),
    4: ("UINT16", "uint16", 16),
    5: ("INT16", "int16", 16),
    6: ("INT32", "int32", 32),
    7: ("INT64", "int64", 64),
    8: ("STRING", "string", 0),
    9: ("BOOL", "bool", 8),
    10: ("FLOAT16", "float16", 16),
    11: ("DOUBLE", "float64", 64),
    12: ("UINT32", "uint32", 32),
    13: ("UINT64", "uint64", 64),
    14: ("COMPLEX64", "complex64", 64),
    15: ("COMPLEX128", "complex128", 128),
    16: ("BFLOAT16", "bfloat16", 16),
    17: ("FLOAT8E4M3FN", "float8_e4m3fn", 8),
    18: ("FLOAT8E4M3FNUZ", "float8_e4m3fnuz", 8),
    19: ("FLOAT8E5M2", "float8_e5m2", 8),
    20: ("FLOAT8E5M2FNUZ", "float8_e5m2fnuz", 8),
    21: ("UINT4", "uint4", 4),
    22: ("INT4", "int4", 4),
    23: ("FLOAT4E2M1", "float4_e2m1fn", 4),
    24: ("FLOAT8E8M0", "float8_e8m0fnu", 8),
    25: ("UINT2", "uint2", 2),
    26: ("INT2", "int2", 2),
    27: ("FLOAT6E2M3", "float6_e2m3fn", 6),
    28: ("FLOAT6E3M2", "float6_e3m2fn", 6),
}
PACKED_INTS = frozenset({21, 22, 25, 26})  # stored as uint8 words + QuantInfo
STRING_TYPE = 8

# Wire types.
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
WIRE_NAMES = {0: "varint", 1: "fixed64", 2: "length-delimited", 3: "start-group", 4: "end-group", 5: "fixed32"}

# Message kinds.
MODEL, GRAPH, NODE, ATTRIBUTE, TENSOR, SPARSE, OPSET, ENTRY = range(8)
KIND_NAMES = ("ModelProto", "GraphProto", "NodeProto", "AttributeProto", "TensorProto", "SparseTensorProto",
              "OperatorSetIdProto", "StringStringEntryProto")

# Per message kind: field number -> (action, argument). Actions:
#   "msg"     a sub-message of kind <argument>
#   "int"     a varint kept as <argument>            "str"  a string kept as <argument> (repeated: appended)
#   "dims"    int64s, packed or not, kept as <argument>
#   "count"   an attribute list (floats, ints, strings): only its length is noted
# Fields not listed are skipped whatever they hold (forward compatibility), groups excepted.
SCHEMA: dict[int, dict[int, tuple[str, Any]]] = {
    MODEL: {
        1: ("int", "ir_version"), 2: ("str", "producer_name"), 3: ("str", "producer_version"),
        4: ("str", "domain"), 5: ("int", "model_version"), 7: ("msg", GRAPH), 8: ("msg", OPSET),
        14: ("msg", ENTRY),
    },
    GRAPH: {1: ("msg", NODE), 2: ("str", "name"), 5: ("msg", TENSOR), 15: ("msg", SPARSE)},
    NODE: {2: ("str", "output"), 3: ("str", "name"), 4: ("str", "op_type"), 5: ("msg", ATTRIBUTE),
           7: ("str", "domain")},
    ATTRIBUTE: {
        1: ("str", "name"), 2: ("count", 4), 3: ("count", 0), 4: ("count", -1), 5: ("msg", TENSOR),
        6: ("msg", GRAPH), 7: ("count", 4), 8: ("count", 0), 9: ("count", -1), 10: ("msg", TENSOR),
        11: ("msg", GRAPH), 22: ("msg", SPARSE), 23: ("msg", SPARSE),
    },
    TENSOR: {},  # read by _read_tensor, a flat parser of its own
    SPARSE: {1: ("msg", TENSOR), 2: ("msg", TENSOR), 3: ("dims", "dims")},
    OPSET: {1: ("str", "domain"), 2: ("int", "version")},
    ENTRY: {1: ("str", "key"), 2: ("str", "value")},
}
REPEATED_STR = frozenset({(NODE, 2)})
# Constant's attributes other than a tensor: attribute name -> (dtype, scalar?).
CONSTANT_LISTS: dict[str, tuple[str, bool]] = {
    "value_float": ("float32", True), "value_int": ("int64", True), "value_string": ("string", True),
    "value_floats": ("float32", False), "value_ints": ("int64", False), "value_strings": ("string", False),
}
MODEL_FIRST_FIELDS = {(1, VARINT), (2, LEN), (3, LEN), (4, LEN), (5, VARINT), (6, LEN), (7, LEN), (8, LEN),
                      (14, LEN), (20, LEN), (25, LEN), (26, LEN)}


def sniff(head: bytes, path: Path) -> bool:
    """ONNX has no magic: a ``.onnx`` file whose first bytes are a ModelProto field tag."""
    if path.suffix.lower() != ".onnx" or not head:
        return False
    tag, shift, i = 0, 0, 0
    while i < min(len(head), 5):
        byte = head[i]
        tag |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return (tag >> 3, tag & 7) in MODEL_FIRST_FIELDS
        shift += 7
    return False


class _Cursor(FileWindow):
    """A forward reader through one bounded buffer (:class:`~paramscope.sources.files.FileWindow`):
    varints and short strings come from memory, data fields are skipped with a seek. Every length is
    checked against the end of its enclosing message."""

    def varint(self, end: int) -> int:
        """A varint of at most 10 bytes that ends before ``end``."""
        pos = self.pos
        if pos < len(self.buf) and self.buf[pos] < 0x80 and self.base + pos < end:
            self.pos = pos + 1  # the common case: one byte (tags, small lengths, dims under 128)
            return self.buf[pos]
        if self.pos + 10 > len(self.buf):
            left = self.size - self.tell()
            if left > len(self.buf) - self.pos:
                self._fill(min(10, left))
        buf, pos = self.buf, self.pos
        result = shift = 0
        for i in range(10):
            if pos + i >= len(buf) or self.base + pos + i >= end:
                raise self.fail(f"truncated varint at byte {self.base + pos}")
            byte = buf[pos + i]
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos + i + 1
                return result
            shift += 7
        raise self.fail(f"varint longer than 10 bytes at byte {self.base + pos}")

    def fixed_width(self, wire: int, end: int, here: int) -> int:
        """Bytes of a FIXED64/FIXED32 field starting at ``here``, checked to end before ``end``."""
        width = 8 if wire == FIXED64 else 4
        if width > end - self.tell():
            raise self.fail(f"truncated fixed-width field at byte {here}")
        return width

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            self._fill(n)
        start = self.pos
        self.pos += n
        return self.buf[start : self.pos]

    def skip(self, n: int) -> None:
        if self.pos + n <= len(self.buf):
            self.pos += n
        else:
            self.base, self.buf, self.pos = self.tell() + n, b"", 0

    def count_varints(self, n: int) -> int:
        """How many varints ``n`` bytes hold (a packed list), reading them in bounded chunks."""
        total = 0
        while n:
            part = self.take(min(n, self.CHUNK))
            total += len(part.translate(None, bytes(range(0x80, 0x100))))
            n -= len(part)
        return total


class _Frame:
    """One message being read: its kind, where it ends, the field it came in, and what was kept."""

    __slots__ = ("data", "depth", "end", "field", "kind")

    def __init__(self, kind: int, end: int, field: int, depth: int) -> None:
        self.kind = kind
        self.end = end
        self.field = field
        self.depth = depth  # subgraph nesting
        self.data: dict[str, Any] = {}


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def read(path: Path) -> Inventory:
    """The weights of an ONNX model, from the structure of its protobuf alone."""
    with unbuffered_reader(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        model = _walk(_Cursor(handle, size, path))
        return _inventory(path, model, NameBudget(path, size))


def _walk(cursor: _Cursor) -> dict[str, Any]:
    """Read the message tree: a loop over fields with a stack of open messages."""
    if cursor.size == 0:
        raise cursor.fail("empty file")
    root = _Frame(MODEL, cursor.size, 0, 0)
    stack = [root]
    while True:
        frame = stack[-1]
        here = cursor.tell()
        if here >= frame.end:
            if here > frame.end:
                raise cursor.fail(f"a field runs past the end of its {KIND_NAMES[frame.kind]} at byte {frame.end}")
            stack.pop()
            result = _finish(cursor, frame)
            if not stack:
                return result
            _deliver(cursor, stack[-1], frame.field, result)
            continue
        tag = cursor.varint(frame.end)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise cursor.fail(f"field number 0 at byte {here} in a {KIND_NAMES[frame.kind]}")
        spec = SCHEMA[frame.kind].get(field)
        if wire == LEN:
            length = cursor.varint(frame.end)
            start = cursor.tell()
            if length > frame.end - start:
                raise cursor.fail(
                    f"field {field} of a {KIND_NAMES[frame.kind]} at byte {here} declares {length} bytes, "
                    f"past the end of its message at byte {frame.end}"
                )
            end = start + length
            if spec is None:
                cursor.skip(length)
            elif spec == ("msg", TENSOR):  # the hot message (100k initializers): its own flat parsers
                stop = end - cursor.base
                fields = _tensor_in_buffer(cursor.buf, cursor.pos, stop) if stop <= len(cursor.buf) else None
                if fields is None:
                    fields = _read_tensor(cursor, end)
                else:
                    cursor.pos = stop
                _deliver(cursor, frame, field, _finish_tensor(cursor, fields))
            else:
                _len_field(cursor, stack, frame, field, spec, length, end)
        elif wire == VARINT:
            value = cursor.varint(frame.end)
            if spec is not None:
                _varint_field(cursor, frame, field, spec, value)
        elif wire in (FIXED64, FIXED32):
            width = cursor.fixed_width(wire, frame.end, here)
            if spec is not None and spec[0] != "count":
                raise cursor.fail(f"field {field} of a {KIND_NAMES[frame.kind]} has wire type {WIRE_NAMES[wire]}")
            if spec is not None:
                frame.data[f"n{field}"] = frame.data.get(f"n{field}", 0) + 1
            cursor.skip(width)
        else:
            raise cursor.fail(
                f"wire type {WIRE_NAMES.get(wire, wire)} at byte {here} (groups and unknown wire types are not ONNX)"
            )


def _len_field(cursor: _Cursor, stack: list[_Frame], frame: _Frame, field: int, spec: tuple[str, Any],
               length: int, end: int) -> None:
    action, arg = spec
    data = frame.data
    if action == "int":
        raise cursor.fail(f"field {field} of a {KIND_NAMES[frame.kind]} is length-delimited, expected a varint")
    if action == "msg":
        depth = frame.depth + (1 if arg == GRAPH and frame.kind == ATTRIBUTE else 0)
        if depth > MAX_SUBGRAPH_DEPTH:
            raise cursor.fail(f"subgraphs nested deeper than {MAX_SUBGRAPH_DEPTH} levels")
        child = _Frame(arg, end, field, depth)
        if arg == NODE:
            child.data["index"] = len(data.get("m1", []))  # nodes finish in order: this one's index
        stack.append(child)
    elif action == "str":
        text = cursor.take(min(length, MAX_STRING)).decode("utf-8", "replace")
        cursor.skip(length - min(length, MAX_STRING))
        if (frame.kind, field) in REPEATED_STR:
            data.setdefault(arg, []).append(text)
        else:
            data[arg] = text
    elif action == "dims":
        dims = data.setdefault(arg, [])
        while cursor.tell() < end:
            if len(dims) >= MAX_RANK:
                raise cursor.fail(f"a tensor declares more than {MAX_RANK} dimensions")
            dims.append(_signed(cursor.varint(end)))
    else:  # "count": a packed list (floats, ints) or one string of a list
        if arg == 4:
            if length % 4:
                raise cursor.fail(f"packed floats of {length} bytes, not a multiple of 4")
            data[f"n{field}"] = data.get(f"n{field}", 0) + length // 4
            cursor.skip(length)
        elif arg == 0:
            data[f"n{field}"] = data.get(f"n{field}", 0) + cursor.count_varints(length)
        else:
            data[f"n{field}"] = data.get(f"n{field}", 0) + 1
            cursor.skip(length)


def _tensor_in_buffer(buf: bytes, pos: int, stop: int) -> dict[str, Any] | None:
    """A TensorProto lying whole in ``buf[pos:stop]``, the usual shape of a small initializer, parsed with
    local variables only. Anything out of the ordinary (a multi-byte tag, external_data, a fixed-width or
    malformed field) returns None and :func:`_read_tensor` reads the message again, with full checks."""
    dims: list[int] = []
    data: dict[str, Any] = {"dims": dims}
    while pos < stop:
        tag = buf[pos]
        pos += 1
        if tag >= 0x80:
            return None
        field, wire = tag >> 3, tag & 7
        value = shift = 0  # a varint: the value, or the length of a length-delimited field
        while True:
            if pos >= stop or shift > 63:
                return None
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        if wire == VARINT:
            if value >= 1 << 63:
                value -= 1 << 64
            if field == 1:
                if len(dims) >= MAX_RANK:
                    return None
                dims.append(value)
            elif field == 2:
                data["data_type"] = value
            elif field == 14:
                data["data_location"] = value
        elif wire == LEN and field not in (1, 2, 13, 14) and value <= stop - pos:
            if field == 8:
                if value > MAX_STRING:
                    return None
                data["name"] = buf[pos : pos + value].decode("utf-8", "replace")
            elif field in (4, 5, 6, 7, 9, 10, 11):
                data[f"len{field}"] = data.get(f"len{field}", 0) + value
            pos += value
        else:
            return None
    return data if pos == stop else None


def _read_tensor(cursor: _Cursor, end: int) -> dict[str, Any]:
    """A TensorProto's fields up to ``end``, without the frame machinery: what ``_finish_tensor`` needs.

    Same rules as the general walk (data fields skipped by length, lengths checked against ``end``);
    its one sub-message, StringStringEntryProto (external_data), is read in place: no nesting to bound."""
    data: dict[str, Any] = {}
    dims: list[int] = []
    data["dims"] = dims
    while True:
        here = cursor.base + cursor.pos
        if here >= end:
            if here > end:
                raise cursor.fail(f"a field runs past the end of its TensorProto at byte {end}")
            return data
        tag = cursor.varint(end)
        field, wire = tag >> 3, tag & 7
        if wire == VARINT:
            value = cursor.varint(end)
            if field == 1:
                if len(dims) >= MAX_RANK:
                    raise cursor.fail(f"a tensor declares more than {MAX_RANK} dimensions")
                dims.append(_signed(value))
            elif field == 2:
                data["data_type"] = _signed(value)
            elif field == 14:
                data["data_location"] = _signed(value)
        elif wire == LEN:
            length = cursor.varint(end)
            start = cursor.base + cursor.pos
            if length > end - start:
                raise cursor.fail(
                    f"field {field} of a TensorProto at byte {here} declares {length} bytes, "
                    f"past the end of its message at byte {end}"
                )
            if field == 1:
                stop = start + length
                while cursor.base + cursor.pos < stop:
                    if len(dims) >= MAX_RANK:
                        raise cursor.fail(f"a tensor declares more than {MAX_RANK} dimensions")
                    dims.append(_signed(cursor.varint(stop)))
            elif field == 8:
                data["name"] = cursor.take(min(length, MAX_STRING)).decode("utf-8", "replace")
                cursor.skip(length - min(length, MAX_STRING))
            elif field == 13:
                entries = data.setdefault("m13", [])
                entry = _read_entry(cursor, start + length)
                if len(entries) < MAX_ENTRIES:
                    entries.append(entry)
            elif field == 2 or field == 14:
                raise cursor.fail(f"field {field} of a TensorProto is length-delimited, expected a varint")
            else:
                if field in (4, 5, 6, 7, 9, 10, 11):
                    data[f"len{field}"] = data.get(f"len{field}", 0) + length
                cursor.skip(length)
        elif wire in (FIXED64, FIXED32):
            cursor.skip(cursor.fixed_width(wire, end, here))
        else:
            raise cursor.fail(
                f"wire type {WIRE_NAMES.get(wire, wire)} at byte {here} (groups and unknown wire types are not ONNX)"
            )


def _read_entry(cursor: _Cursor, end: int) -> dict[str, str]:
    """A StringStringEntryProto (key 1, value 2), read in place."""
    entry: dict[str, str] = {}
    while cursor.base + cursor.pos < end:
        here = cursor.base + cursor.pos
        tag = cursor.varint(end)
        field, wire = tag >> 3, tag & 7
        if wire == VARINT:
            cursor.varint(end)
        elif wire == LEN:
            length = cursor.varint(end)
            if length > end - cursor.base - cursor.pos:
                raise cursor.fail(f"a string at byte {here} runs past the end of its entry at byte {end}")
            text = cursor.take(min(length, MAX_STRING)).decode("utf-8", "replace")
            cursor.skip(length - min(length, MAX_STRING))
            if field in (1, 2):
                entry["key" if field == 1 else "value"] = text
        elif wire in (FIXED64, FIXED32):
            cursor.skip(cursor.fixed_width(wire, end, here))
        else:
            raise cursor.fail(f"wire type {WIRE_NAMES.get(wire, wire)} at byte {here} in an external_data entry")
    if cursor.base + cursor.pos != end:
        raise cursor.fail(f"a field runs past the end of its external_data entry at byte {end}")
    return entry


def _varint_field(cursor: _Cursor, frame: _Frame, field: int, spec: tuple[str, Any], value: int) -> None:
    action, arg = spec
    if action == "int":
        frame.data[arg] = _signed(value)
    elif action == "dims":
        dims = frame.data.setdefault(arg, [])
        if len(dims) >= MAX_RANK:
            raise cursor.fail(f"a tensor declares more than {MAX_RANK} dimensions")
        dims.append(_signed(value))
    elif action == "count":
        frame.data[f"n{field}"] = frame.data.get(f"n{field}", 0) + 1
    else:
        raise cursor.fail(f"field {field} of a {KIND_NAMES[frame.kind]} is a varint, expected length-delimited")


def _deliver(cursor: _Cursor, parent: _Frame, field: int, result: Any) -> None:
    """Hand a finished sub-message to the message that holds it."""
    parent.data.setdefault(f"m{field}", []).append(result)
    if parent.kind in (MODEL, TENSOR) and field in (13, 14) and len(parent.data[f"m{field}"]) > MAX_ENTRIES:
        parent.data[f"m{field}"].pop()  # keep at most MAX_ENTRIES metadata / external_data entries


def _numel(cursor: _Cursor, dims: list[int], what: str) -> int:
    for d in dims:
        if d < 0:
            raise cursor.fail(f"{what} has a negative dimension {dims}")
    numel = math.prod(dims)
    if numel > INT64_MAX:
        raise cursor.fail(f"{what} has dims {dims} whose element count overflows int64")
    return numel


def _finish(cursor: _Cursor, frame: _Frame) -> Any:
    """The result of a message, checked: a tensor description, an attribute, a node's tensors, a graph."""
    data = frame.data
    kind = frame.kind
    if kind in (ENTRY, OPSET):
        return data
    if kind == SPARSE:
        values = (data.get("m1") or [None])[-1]
        if values is None:
            raise cursor.fail("a sparse tensor has no values")
        dims = data.get("dims", [])
        numel = _numel(cursor, dims, f"sparse tensor {values['name']!r}")
        return {**values, "dims": dims, "numel": numel, "nnz": values["numel"], "sparse": True}
    if kind == ATTRIBUTE:
        return data
    if kind == NODE:
        return _finish_node(cursor, data)
    if kind == GRAPH:
        tensors: list[dict[str, Any]] = []
        tensors.extend(data.get("m5", []))
        tensors.extend(data.get("m15", []))
        for node_tensors in data.get("m1", []):
            tensors.extend(node_tensors)
        return {"name": data.get("name", ""), "tensors": tensors, "nodes": len(data.get("m1", []))}
    return data  # MODEL


def _finish_tensor(cursor: _Cursor, data: dict[str, Any]) -> dict[str, Any]:
    name = data.get("name", "")
    what = f"tensor {name!r}"
    type_id = data.get("data_type", 0)
    known = DATA_TYPES.get(type_id)
    if known is None:
        raise cursor.fail(f"{what} has unknown or undefined data type {type_id}")
    onnx_name, _dtype, bits = known
    dims = data.get("dims", [])
    numel = _numel(cursor, dims, what)
    expected = -(-numel * bits // 8)
    raw = data.get("len9")
    if raw is not None:
        if type_id == STRING_TYPE:
            raise cursor.fail(f"{what} is a STRING tensor with raw_data")
        if raw != expected:
            raise cursor.fail(f"{what}: raw_data is {raw} bytes, {onnx_name} {dims} needs {expected}")
    for field, width in ((4, 4), (10, 8)):
        if data.get(f"len{field}") is not None and data[f"len{field}"] != numel * width * (2 if type_id in (14, 15)
                                                                                              else 1):
            raise cursor.fail(f"{what}: typed data holds a different number of elements than its dims {dims}")
    info: dict[str, Any] = {"name": name, "dims": dims, "numel": numel, "type_id": type_id}
    if data.get("data_location") == 1:
        entries = {e.get("key", ""): e.get("value", "") for e in data.get("m13", [])}
        info["external"] = entries
        length = entries.get("length")
        if length is not None and type_id != STRING_TYPE:
            try:
                declared = int(length)
            except ValueError:
                raise cursor.fail(f"{what}: external data length {length!r} is not a number") from None
            if declared != expected:
                raise cursor.fail(f"{what}: external data length {declared}, {onnx_name} {dims} needs {expected}")
    return info


def _finish_node(cursor: _Cursor, data: dict[str, Any]) -> list[dict[str, Any]]:
    """A node's tensors: a Constant's value, and the tensors of its subgraphs under ``<node>.<attribute>.``."""
    op_type = data.get("op_type", "")
    label = data.get("name") or f"{op_type or 'node'}_{data['index']}"
    out: list[dict[str, Any]] = []
    is_constant = op_type == "Constant" and data.get("domain", "") in ("", "ai.onnx")
    for attr in data.get("m5", []):
        attr_name = attr.get("name", "")
        graphs = attr.get("m6", []) + attr.get("m11", [])
        for k, graph in enumerate(graphs):
            # one prefix string for the whole subgraph, linked in front of each tensor's scope (not copied into
            # its name): names are joined once, bounded, in _inventory
            prefix = f"{label}.{attr_name}." + (f"{k}." if len(graphs) > 1 else "")
            for t in graph["tensors"]:
                t["scope"] = (prefix, t.get("scope"))
            out.extend(graph["tensors"])
        if not is_constant:
            continue
        outputs = data.get("output") or [""]
        name = outputs[0] or label
        value = (attr.get("m5") or attr.get("m22") or [None])[0]
        if attr_name in ("value", "sparse_value") and value is not None:
            out.append({**value, "name": name})
        elif attr_name in CONSTANT_LISTS:
            dtype, scalar = CONSTANT_LISTS[attr_name]
            n = sum(attr.get(f"n{f}", 0) for f in (2, 3, 4, 7, 8, 9))
            type_id = {"float32": 1, "int64": 7, "string": STRING_TYPE}[dtype]
            out.append({"name": name, "dims": [] if scalar else [n], "numel": 1 if scalar else n, "type_id": type_id})
    return out


def _full_name(t: dict[str, Any], budget: NameBudget) -> str:
    """A tensor's name behind its chain of subgraph prefixes (outermost first), checked before it is joined."""
    parts = []
    scope = t.get("scope")
    while scope is not None:
        parts.append(scope[0])
        scope = scope[1]
    parts.append(t["name"])
    budget.spend(sum(map(len, parts)))
    return "".join(parts)


def _inventory(path: Path, model: dict[str, Any], budget: NameBudget) -> Inventory:
    graphs = model.get("m7", [])
    if not graphs:
        if "ir_version" not in model:
            raise ParamscopeError(path, "not an ONNX model (no ir_version and no graph)")
        raise ParamscopeError(path, "ONNX model has no graph")
    graph = graphs[-1]
    records: list[TensorRecord] = []
    seen: set[str] = set()
    origin = path.name
    external_files: set[str] = set()
    sparse = 0
    for index, t in enumerate(graph["tensors"]):
        name = _full_name(t, budget) or f"(unnamed tensor {index})"
        if name in seen:
            raise ParamscopeError(path, f"tensor name {name!r} appears twice")
        seen.add(name)
        onnx_name, dtype, bits = DATA_TYPES[t["type_id"]]
        shape = tuple(t["dims"])
        quant = None
        extra: dict[str, Any] | None = None
        if t["type_id"] in PACKED_INTS:
            quant = QuantInfo(scheme=onnx_name, logical_numel=t["numel"], bits=bits)
            extra = {"logical_shape": list(shape)}
            shape, dtype = (-(-t["numel"] * bits // 8),), "uint8"
        if "external" in t:
            extra = {**(extra or {}), "external_data": t["external"]}
            external_files.add(t["external"].get("location", ""))
        if t.get("sparse"):
            extra = {**(extra or {}), "sparse_values": t["nnz"]}
            sparse += 1
        records.append(
            TensorRecord(
                name=name,
                shape=shape,
                dtype=dtype,
                role=role_for_file_tensor(dtype),
                quant=quant,
                origin=origin,
                extra=extra,
            )
        )
    metadata: dict[str, Any] = {}
    for key in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        if key in model:
            metadata[f"onnx.{key}"] = model[key]
    metadata["onnx.opset_import"] = {o.get("domain", "") or "ai.onnx": o.get("version") for o in model.get("m8", [])}
    metadata["onnx.graph_name"] = graph["name"]
    metadata["onnx.nodes"] = graph["nodes"]
    for entry in model.get("m14", []):
        metadata[f"onnx.metadata.{entry.get('key', '')}"] = entry.get("value", "")
    notes = []
    if external_files:
        metadata["onnx.external_data_files"] = sorted(external_files)
        notes.append("some tensors are stored in external data files; they were counted from their dims, not opened")
    if sparse:
        notes.append(f"{sparse} sparse initializer(s) counted by their dense shape")
    return Inventory(source=str(path), format=FORMAT, tensors=records, metadata=metadata, notes=notes)
