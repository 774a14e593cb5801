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

Roles by use, not by storage: exporters store learned weights as initializers or as ``Constant`` nodes
(paddle2onnx writes every weight as a ``Constant``), and formula literals (GELU's 0.5, a reshape's target
shape) the same two ways. So a stored tensor's role is read from the operators that consume it (:data:`USES`,
one table of (op_type, input index) -> role), following pass-through operators (:data:`PASS_THROUGH`:
Identity, Cast, Transpose, DequantizeLinear ...) to the real consumer: a learned input (a Conv or MatMul
weight, a norm's scale and bias, Gather's data, an RNN's weights) makes a parameter (Gather's data marked as
an embedding table, for the non-embedding count); BatchNormalization's running
mean and variance make buffers (as PyTorch counts them); DequantizeLinear's scale and zero point are
quantization bookkeeping; shape-like inputs (Reshape's shape, Resize's scales, Clip's bounds, Pad, Slice, an
exponent, a comparison's operand) make a graph constant (``Role.CONSTANT``: counted apart, not in the tree).
A tensor with no use in the table keeps its storage role, except a scalar (one element or none), which is a
literal of the formula, not a weight (a learned bias or scale has a length), and an integer or bool
``Constant`` node's value, a value folded from the computation (a mask, a range: PyTorch's buffers are exported
as initializers). Arithmetic operands (Add, Sub, Mul, Div) are parameters when floating and longer than one
element (a bias Added after a MatMul), else constants. Uses are gathered over the whole
model by value name (a subgraph reads outer values by name; ONNX names are single-assignment), and the walk
from each tensor through pass-through outputs marks each value once, so a cycle ends and the work is bounded
by the number of node inputs.

torch.onnx's TorchScript exporter (``producer_name`` ``pytorch``, :data:`TORCHSCRIPT_PRODUCER`): it names each
node by the module it comes from (``/model/layers.0/self_attn/q_proj/MatMul``), and with constant folding (its
default) stores a Linear's weight transposed under a name of its own making (``onnx::MatMul_596``,
:data:`EXPORTER_NAME`). Such a tensor read by one linear layer (or one Mul: a norm's folded scale) and nothing else
is named after that module, ``model.layers.0.self_attn.q_proj.weight`` (:data:`FOLDED_SLOTS`), the file's name
kept in ``extra["onnx_name"]`` (diff compares it as its transpose); a name the file already uses is never taken.
Unfolded, a tied head is the embedding table read again through a Transpose into a MatMul: the table gets an
alias named after that MatMul's module (``lm_head.weight``), stored once. The exporter keeps parameters and
buffers as initializers; a ``Constant`` node's value in its export is a tensor tracing captured (a
non-persistent buffer, a value computed from one), a graph constant. Each inline 2-D learned tensor's
``raw_data`` offset is handed on (``pending["elements"]``, :class:`_Elements`) so that :mod:`paramscope.ties`
can read a few of its elements: a folded tied head is its embedding transposed.
"""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from paramscope.errors import ParamscopeError
from paramscope.records import Inventory, QuantInfo, Role, TensorRecord, role_for_file_tensor
from paramscope.sources.files import FileWindow, NameBudget, Reader, unbuffered_reader

FORMAT = "onnx"
MAX_SUBGRAPH_DEPTH = 32  # If/Loop nesting deeper than this is hostile, not a model
MAX_RANK = 64
MAX_STRING = 1 << 16  # names and short strings kept; longer ones are cut and the rest skipped
MAX_ENTRIES = 256  # metadata_props / external_data entries kept per message
INT64_MAX = (1 << 63) - 1
MAX_NODE_INPUTS = 1_000_000
"""Node inputs kept for the roles by use, all graphs together (a 70B LLM's graph has tens of thousands; each
kept input costs ~100 bytes). Past this the graph's uses are dropped and every tensor keeps its storage role."""

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

# Field kinds: what the reader does with a field (a message kind above: the sub-message, read; each one read
# is appended to a list under the field's name). Each implies its wire type: INT a varint, the rest
# length-delimited (DIMS and the counts take either, packed or not).
INT = "int"  # a varint, kept (signed int64)
STR = "str"  # a string, kept (cut at MAX_STRING)
STRS = "strs"  # a repeated string, each appended
DIMS = "dims"  # int64s, packed or not, appended
DATA = "data"  # a tensor's data: skipped, its packed length summed (a count of bytes)
N_FIXED32 = "n_fixed32"  # an attribute's list of floats: only how many is kept
N_VARINT = "n_varint"  # ... of ints
N_LEN = "n_len"  # ... of strings
UNREAD = "unread"  # a field the reader skips, listed for probe(): a ModelProto may start with it
COUNTS = frozenset({N_FIXED32, N_VARINT, N_LEN})

# The fields of onnx/onnx.proto the reader knows, by the proto's names: message -> field number -> (name, kind).
# Fields not listed are skipped whatever they hold (forward compatibility), groups excepted.
SCHEMA: dict[int, dict[int, tuple[str, Any]]] = {
    MODEL: {
        1: ("ir_version", INT), 2: ("producer_name", STR), 3: ("producer_version", STR), 4: ("domain", STR),
        5: ("model_version", INT), 6: ("doc_string", UNREAD), 7: ("graph", GRAPH), 8: ("opset_import", OPSET),
        14: ("metadata_props", ENTRY), 20: ("training_info", UNREAD), 25: ("functions", UNREAD),
        26: ("configuration", UNREAD),
    },
    GRAPH: {1: ("node", NODE), 2: ("name", STR), 5: ("initializer", TENSOR), 15: ("sparse_initializer", SPARSE)},
    NODE: {1: ("input", STRS), 2: ("output", STRS), 3: ("name", STR), 4: ("op_type", STR), 5: ("attribute", ATTRIBUTE),
           7: ("domain", STR)},
    ATTRIBUTE: {
        1: ("name", STR), 2: ("f", N_FIXED32), 3: ("i", N_VARINT), 4: ("s", N_LEN), 5: ("t", TENSOR),
        6: ("g", GRAPH), 7: ("floats", N_FIXED32), 8: ("ints", N_VARINT), 9: ("strings", N_LEN),
        10: ("tensors", TENSOR), 11: ("graphs", GRAPH), 22: ("sparse_tensor", SPARSE), 23: ("sparse_tensors", SPARSE),
    },
    TENSOR: {
        1: ("dims", DIMS), 2: ("data_type", INT), 4: ("float_data", DATA), 5: ("int32_data", DATA),
        6: ("string_data", DATA), 7: ("int64_data", DATA), 8: ("name", STR), 9: ("raw_data", DATA),
        10: ("double_data", DATA), 11: ("uint64_data", DATA), 13: ("external_data", ENTRY), 14: ("data_location", INT),
    },
    SPARSE: {1: ("values", TENSOR), 2: ("indices", TENSOR), 3: ("dims", DIMS)},
    OPSET: {1: ("domain", STR), 2: ("version", INT)},
    ENTRY: {1: ("key", STR), 2: ("value", STR)},
}
READ: dict[int, dict[int, tuple[str, Any]]] = {
    kind: {number: spec for number, spec in fields.items() if spec[1] != UNREAD} for kind, fields in SCHEMA.items()
}
"""The fields the walk reads (:data:`SCHEMA` less the unread ones)."""
MODEL_FIRST_FIELDS = frozenset((number, VARINT if kind == INT else LEN) for number, (_, kind) in SCHEMA[MODEL].items())
"""(field, wire type) a ModelProto's first tag may be: what :func:`probe` accepts."""


def _fast_tensor_tags() -> dict[int, tuple[str, str]]:
    tags = {}
    for number, (name, kind) in SCHEMA[TENSOR].items():
        if number < 16:  # a one-byte tag
            tags[number << 3 | VARINT] = ({DIMS: "dim", INT: "keep"}.get(kind, "ignore"), name)
            tags[number << 3 | LEN] = ({STR: "text", DATA: "add"}.get(kind, "slow"), name)
    return tags


FAST_TENSOR_TAGS = _fast_tensor_tags()
"""One-byte TensorProto tags -> (action, field name) for :func:`_tensor_in_buffer`: ``keep`` a varint, ``dim`` a
dimension, ``text`` a string, ``add`` a data length, ``ignore`` a varint the reader does not keep, ``slow`` what
it leaves to :func:`_read_tensor` (packed dims, external_data, a varint field sent length-delimited). A tag not
listed is a field the reader does not use: skipped by its wire type."""
RAW_DATA = 9
RAW_DATA_TAG = RAW_DATA << 3 | LEN  # its offset is kept: the tie rule reads a few elements there
# Constant's attributes other than a tensor: attribute name -> (dtype, scalar?).
CONSTANT_LISTS: dict[str, tuple[str, bool]] = {
    "value_float": ("float32", True), "value_int": ("int64", True), "value_string": ("string", True),
    "value_floats": ("float32", False), "value_ints": ("int64", False), "value_strings": ("string", False),
}
CONSTANT_COUNTS = tuple(name for name, kind in SCHEMA[ATTRIBUTE].values() if kind in COUNTS)
"""The attribute fields whose counts are a Constant list's length (one of them is set)."""

LEARNED, STATE, AUX, LITERAL = Role.PARAMETER, Role.BUFFER, Role.QUANT_AUX, Role.CONSTANT
OPERAND = "operand"
"""An arithmetic operand: a learned bias or scale when it is a floating tensor of more than one element (a
Linear's bias Added after its MatMul, a decomposed norm's weight, a Conv bias paddle2onnx Adds), a literal of
the formula when it is a scalar (GELU's 0.5, attention's 1/sqrt(d))."""
TABLE = "table"
"""Gather's data: a learned input, and the table of an embedding lookup: marked with the class ``Embedding``
(``owner_type``), so the non-embedding count leaves it out as it does nn.Embedding's weight."""
ANY = -1  # any input of a variadic operator
# What a stored tensor is by the input it feeds: (op_type, input index) -> role. Sources: the ONNX operator
# specs (onnx/docs/Operators.md) for each input's meaning; PyTorch for which of them are parameters or buffers
# (nn.BatchNorm's running_mean/running_var are buffers). Operators of the com.microsoft domain that ORT's
# optimizer writes are listed by their names alone.
USES: dict[tuple[str, int], Role | str] = {
    ("Add", ANY): OPERAND, ("Sub", ANY): OPERAND, ("Mul", ANY): OPERAND, ("Div", ANY): OPERAND,
    # learned inputs
    ("Conv", 1): LEARNED, ("Conv", 2): LEARNED, ("ConvTranspose", 1): LEARNED, ("ConvTranspose", 2): LEARNED,
    ("Gemm", 0): LEARNED, ("Gemm", 1): LEARNED, ("Gemm", 2): LEARNED,
    ("MatMul", 0): LEARNED, ("MatMul", 1): LEARNED, ("Einsum", ANY): LEARNED,
    ("Gather", 0): TABLE,  # an embedding table
    ("LayerNormalization", 1): LEARNED, ("LayerNormalization", 2): LEARNED,
    ("SimplifiedLayerNormalization", 1): LEARNED, ("RMSNormalization", 1): LEARNED,
    ("SkipLayerNormalization", 2): LEARNED, ("SkipLayerNormalization", 3): LEARNED,
    ("SkipLayerNormalization", 4): LEARNED, ("SkipSimplifiedLayerNormalization", 2): LEARNED,
    ("BatchNormalization", 1): LEARNED, ("BatchNormalization", 2): LEARNED,
    ("InstanceNormalization", 1): LEARNED, ("InstanceNormalization", 2): LEARNED,
    ("GroupNormalization", 1): LEARNED, ("GroupNormalization", 2): LEARNED,
    ("PRelu", 1): LEARNED,
    ("RNN", 1): LEARNED, ("RNN", 2): LEARNED, ("RNN", 3): LEARNED,
    ("GRU", 1): LEARNED, ("GRU", 2): LEARNED, ("GRU", 3): LEARNED,
    ("LSTM", 1): LEARNED, ("LSTM", 2): LEARNED, ("LSTM", 3): LEARNED, ("LSTM", 7): LEARNED,  # P: peepholes
    ("Attention", 1): LEARNED, ("Attention", 2): LEARNED,  # com.microsoft: packed QKV weight and bias
    # state
    ("BatchNormalization", 3): STATE, ("BatchNormalization", 4): STATE,  # running mean, running variance
    # quantization bookkeeping
    ("DequantizeLinear", 1): AUX, ("DequantizeLinear", 2): AUX,
    ("QuantizeLinear", 1): AUX, ("QuantizeLinear", 2): AUX,
    # shapes, indices, bounds, exponents: literals of the computation
    ("Reshape", 1): LITERAL, ("Expand", 1): LITERAL, ("Tile", 1): LITERAL, ("ConstantOfShape", 0): LITERAL,
    ("Squeeze", 1): LITERAL, ("Unsqueeze", 1): LITERAL, ("Split", 1): LITERAL, ("TopK", 1): LITERAL,
    ("Slice", 1): LITERAL, ("Slice", 2): LITERAL, ("Slice", 3): LITERAL, ("Slice", 4): LITERAL,
    ("Pad", 1): LITERAL, ("Pad", 2): LITERAL, ("Pad", 3): LITERAL,
    ("Resize", 1): LITERAL, ("Resize", 2): LITERAL, ("Resize", 3): LITERAL, ("Upsample", 1): LITERAL,
    ("Clip", 1): LITERAL, ("Clip", 2): LITERAL, ("Pow", 1): LITERAL,
    ("Range", 0): LITERAL, ("Range", 1): LITERAL, ("Range", 2): LITERAL,
    ("Gather", 1): LITERAL, ("GatherElements", 1): LITERAL, ("GatherND", 1): LITERAL,
    ("ScatterND", 1): LITERAL, ("ScatterElements", 1): LITERAL, ("OneHot", 1): LITERAL, ("OneHot", 2): LITERAL,
    ("CumSum", 1): LITERAL, ("Trilu", 1): LITERAL,
    ("Where", 0): LITERAL, ("Where", 1): LITERAL, ("Where", 2): LITERAL,  # a condition; a mask's -inf or 0
    ("ReduceMean", 1): LITERAL, ("ReduceSum", 1): LITERAL, ("ReduceMax", 1): LITERAL, ("ReduceMin", 1): LITERAL,
    ("ReduceProd", 1): LITERAL, ("ReduceL2", 1): LITERAL, ("ReduceSumSquare", 1): LITERAL,
    ("Equal", ANY): LITERAL, ("Less", ANY): LITERAL, ("LessOrEqual", ANY): LITERAL, ("Greater", ANY): LITERAL,
    ("GreaterOrEqual", ANY): LITERAL,  # a stored operand of a comparison is a threshold or a position grid
    ("NonMaxSuppression", 2): LITERAL, ("NonMaxSuppression", 3): LITERAL, ("NonMaxSuppression", 4): LITERAL,
}
PASS_THROUGH: dict[str, int] = {
    op: 0 for op in ("Identity", "Cast", "CastLike", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten",
                     "Expand", "Slice", "DequantizeLinear")
}
"""Operators whose output is their input ``0`` reshaped, retyped or dequantized: a stored tensor's use is
looked for past them (a tied head's weight Transposed into a MatMul is that MatMul's weight)."""
OP_NAMES = {op: op for op, _ in USES} | {op: op for op in PASS_THROUGH}
WEIGHT_SLOTS = {("MatMul", 1): "weight", ("Gemm", 1): "weight", ("Gemm", 2): "bias"}
"""A linear layer's inputs and the parameter each is, as PyTorch names it (``y = x @ W.T + b``)."""
FOLDED_SLOTS = {**WEIGHT_SLOTS, ("Mul", 0): "weight", ("Mul", 1): "weight"}
"""Inputs whose folded value names its module's parameter: a linear layer's, and a norm's scale folded into a
Mul (Gemma's RMSNorm multiplies by ``1 + weight``: the exporter stores that sum)."""
WEIGHT_OPS = frozenset(op for op, _ in FOLDED_SLOTS)
TORCHSCRIPT_PRODUCER = "pytorch"
"""``producer_name`` of torch.onnx's exports. Its TorchScript exporter stores the module's parameters and
buffers as initializers (``params_dict``) and every other tensor tracing captured (a non-persistent buffer such
as rotary ``inv_freq``, a value computed from it) as a ``Constant`` node: such a node's value is in no
``state_dict``, a graph constant (counted apart, as the live model's non-persistent buffers are not compared)."""
EXPORTER_NAME = re.compile(r"onnx::[A-Za-z]+_[0-9]+")
"""The TorchScript exporter's name for a value it made (``onnx::MatMul_596``: a value number, no module): a
weight it folded (``do_constant_folding``: a Linear's weight Transposed once at export) gets one."""
MAX_SAMPLES = 4096
"""Elements :class:`_Elements` reads per call (the tie rule asks for 1,024 pairs: a few KB)."""
# the precedence of roles when uses disagree: a tensor any learned input reads is a weight
PRECEDENCE = (LEARNED, STATE, AUX, LITERAL)


def probe(head: bytes, path: Path) -> Reader | None:
    """ONNX has no magic: a ``.onnx`` file whose first bytes are a ModelProto field tag."""
    if path.suffix.lower() != ".onnx" or not head:
        return None
    tag, shift, i = 0, 0, 0
    while i < min(len(head), 5):
        byte = head[i]
        tag |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return Reader(read, path) if (tag >> 3, tag & 7) in MODEL_FIRST_FIELDS else None
        shift += 7
    return None


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


class _Edges:
    """Every node's op_type and inputs (and a pass-through node's output), all graphs, for the roles by use; at most
    :data:`MAX_NODE_INPUTS` inputs in all, past which they are ``dropped``."""

    __slots__ = ("dropped", "inputs", "nodes")

    def __init__(self) -> None:
        # (op_type, inputs, a pass-through's output, a MatMul/Gemm node's name)
        self.nodes: list[tuple[str, tuple[str, ...], str, str]] = []
        self.inputs = 0
        self.dropped = False


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
    edges = _Edges()
    while True:
        frame = stack[-1]
        here = cursor.tell()
        if here >= frame.end:
            if here > frame.end:
                raise cursor.fail(f"a field runs past the end of its {KIND_NAMES[frame.kind]} at byte {frame.end}")
            stack.pop()
            result = _finish(cursor, frame, edges)
            if not stack:
                result["edges"] = edges
                return result
            _deliver(stack[-1], frame.field, result)
            continue
        tag = cursor.varint(frame.end)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise cursor.fail(f"field number 0 at byte {here} in a {KIND_NAMES[frame.kind]}")
        spec = READ[frame.kind].get(field)
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
            elif spec[1] == TENSOR:  # the hot message (100k initializers): read flat, not through frames
                _deliver(frame, field, _finish_tensor(cursor, _tensor(cursor, end)))
            elif spec[1] == STRS and length <= MAX_STRING:  # a node's inputs and outputs: the hot strings
                frame.data.setdefault(spec[0], []).append(cursor.take(length).decode("utf-8", "replace"))
            else:
                _len_field(cursor, stack, frame, field, spec, length, end)
        elif wire == VARINT:
            value = cursor.varint(frame.end)
            if spec is not None:
                _varint_field(cursor, frame, field, spec, value)
        elif wire in (FIXED64, FIXED32):
            width = cursor.fixed_width(wire, frame.end, here)
            if spec is not None and spec[1] not in COUNTS:
                raise cursor.fail(f"field {field} of a {KIND_NAMES[frame.kind]} has wire type {WIRE_NAMES[wire]}")
            if spec is not None:
                frame.data[spec[0]] = frame.data.get(spec[0], 0) + 1
            cursor.skip(width)
        else:
            raise cursor.fail(
                f"wire type {WIRE_NAMES.get(wire, wire)} at byte {here} (groups and unknown wire types are not ONNX)"
            )


def _len_field(cursor: _Cursor, stack: list[_Frame], frame: _Frame, field: int, spec: tuple[str, Any],
               length: int, end: int) -> None:
    name, kind = spec
    data = frame.data
    if kind == INT:
        raise cursor.fail(f"field {field} of a {KIND_NAMES[frame.kind]} is length-delimited, expected a varint")
    if type(kind) is int:  # a sub-message
        depth = frame.depth + (1 if kind == GRAPH and frame.kind == ATTRIBUTE else 0)
        if depth > MAX_SUBGRAPH_DEPTH:
            raise cursor.fail(f"subgraphs nested deeper than {MAX_SUBGRAPH_DEPTH} levels")
        child = _Frame(kind, end, field, depth)
        if kind == NODE:
            child.data["index"] = len(data.get(name, []))  # nodes finish in order: this one's index
        stack.append(child)
    elif kind in (STR, STRS):
        text = cursor.take(min(length, MAX_STRING)).decode("utf-8", "replace")
        cursor.skip(length - min(length, MAX_STRING))
        if kind == STRS:
            data.setdefault(name, []).append(text)
        else:
            data[name] = text
    elif kind == DIMS:
        dims = data.setdefault(name, [])
        while cursor.tell() < end:
            if len(dims) >= MAX_RANK:
                raise cursor.fail(f"a tensor declares more than {MAX_RANK} dimensions")
            dims.append(_signed(cursor.varint(end)))
    elif kind == N_FIXED32:  # a packed list of floats
        if length % 4:
            raise cursor.fail(f"packed floats of {length} bytes, not a multiple of 4")
        data[name] = data.get(name, 0) + length // 4
        cursor.skip(length)
    elif kind == N_VARINT:  # a packed list of ints
        data[name] = data.get(name, 0) + cursor.count_varints(length)
    else:  # N_LEN: one string of a list
        data[name] = data.get(name, 0) + 1
        cursor.skip(length)


def _varint_field(cursor: _Cursor, frame: _Frame, field: int, spec: tuple[str, Any], value: int) -> None:
    name, kind = spec
    if kind == INT:
        frame.data[name] = _signed(value)
    elif kind == DIMS:
        dims = frame.data.setdefault(name, [])
        if len(dims) >= MAX_RANK:
            raise cursor.fail(f"a tensor declares more than {MAX_RANK} dimensions")
        dims.append(_signed(value))
    elif kind in COUNTS:
        frame.data[name] = frame.data.get(name, 0) + 1
    else:
        raise cursor.fail(f"field {field} of a {KIND_NAMES[frame.kind]} is a varint, expected length-delimited")


# ---- TensorProto: the one parser, a fast path over the buffer and the fully checked path behind it
#
# Both keep what SCHEMA[TENSOR] names, under its names; a data field is skipped and its packed length
# summed. Unlike the walk, a field sent with another wire type than its kind's is skipped (a data field
# sent unpacked is varints or fixed-width values), except a varint field sent length-delimited: refused.


def _tensor(cursor: _Cursor, end: int) -> dict[str, Any]:
    """The fields of the TensorProto at the cursor, which ends at ``end``; the cursor is moved past it."""
    stop = end - cursor.base
    fields = _tensor_in_buffer(cursor.buf, cursor.pos, stop) if stop <= len(cursor.buf) else None
    if fields is None:
        return _read_tensor(cursor, end)
    if "raw_at" in fields:
        fields["raw_at"] += cursor.base
    cursor.pos = stop
    return fields


def _tensor_in_buffer(buf: bytes, pos: int, stop: int) -> dict[str, Any] | None:
    """A TensorProto lying whole in ``buf[pos:stop]``, the usual shape of a small initializer, parsed with
    local variables only. Anything out of the ordinary (a multi-byte tag, external_data, a fixed-width or
    malformed field) returns None and :func:`_read_tensor` reads the message again, with full checks."""
    tags = FAST_TENSOR_TAGS
    dims: list[int] = []
    data: dict[str, Any] = {"dims": dims}
    while pos < stop:
        tag = buf[pos]
        pos += 1
        if tag >= 0x80:
            return None
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
        known = tags.get(tag)
        if known is None:  # a field the reader does not use
            wire = tag & 7
            if wire == LEN and value <= stop - pos:
                pos += value
            elif wire != VARINT:
                return None
            continue
        action, name = known
        if action == "add":
            if value > stop - pos:
                return None
            if tag == RAW_DATA_TAG:
                data["raw_at"], data["raw_last"] = pos, value  # where its bytes start (made a file offset by _tensor)
            data[name] = data.get(name, 0) + value
            pos += value
        elif action == "dim":
            if len(dims) >= MAX_RANK:
                return None
            dims.append(value - (1 << 64) if value >= 1 << 63 else value)
        elif action == "keep":
            data[name] = value - (1 << 64) if value >= 1 << 63 else value
        elif action == "text":
            if value > stop - pos or value > MAX_STRING:
                return None
            data[name] = buf[pos : pos + value].decode("utf-8", "replace")
            pos += value
        elif action == "slow":
            return None
    return data if pos == stop else None


def _read_tensor(cursor: _Cursor, end: int) -> dict[str, Any]:
    """A TensorProto's fields up to ``end``, fully checked, without the frame machinery: what
    :func:`_finish_tensor` needs. Same rules as the walk (data fields skipped by length, lengths checked against
    ``end``); its one sub-message, StringStringEntryProto (external_data), is read in place: no nesting."""
    fields = SCHEMA[TENSOR]
    dims: list[int] = []
    data: dict[str, Any] = {"dims": dims}
    while True:
        here = cursor.base + cursor.pos
        if here >= end:
            if here > end:
                raise cursor.fail(f"a field runs past the end of its TensorProto at byte {end}")
            return data
        tag = cursor.varint(end)
        field, wire = tag >> 3, tag & 7
        name, kind = fields.get(field, (None, None))
        if wire == VARINT:
            value = cursor.varint(end)
            if kind == DIMS:
                if len(dims) >= MAX_RANK:
                    raise cursor.fail(f"a tensor declares more than {MAX_RANK} dimensions")
                dims.append(_signed(value))
            elif kind == INT:
                data[name] = _signed(value)
        elif wire == LEN:
            length = cursor.varint(end)
            start = cursor.base + cursor.pos
            if length > end - start:
                raise cursor.fail(
                    f"field {field} of a TensorProto at byte {here} declares {length} bytes, "
                    f"past the end of its message at byte {end}"
                )
            if kind == DIMS:
                stop = start + length
                while cursor.base + cursor.pos < stop:
                    if len(dims) >= MAX_RANK:
                        raise cursor.fail(f"a tensor declares more than {MAX_RANK} dimensions")
                    dims.append(_signed(cursor.varint(stop)))
            elif kind == STR:
                data[name] = cursor.take(min(length, MAX_STRING)).decode("utf-8", "replace")
                cursor.skip(length - min(length, MAX_STRING))
            elif kind == ENTRY:
                entries = data.setdefault(name, [])
                entry = _read_entry(cursor, start + length)
                if len(entries) < MAX_ENTRIES:
                    entries.append(entry)
            elif kind == INT:
                raise cursor.fail(f"field {field} of a TensorProto is length-delimited, expected a varint")
            else:
                if kind == DATA:
                    data[name] = data.get(name, 0) + length
                    if field == RAW_DATA:
                        data["raw_at"], data["raw_last"] = start, length
                cursor.skip(length)
        elif wire in (FIXED64, FIXED32):
            cursor.skip(cursor.fixed_width(wire, end, here))
        else:
            raise cursor.fail(
                f"wire type {WIRE_NAMES.get(wire, wire)} at byte {here} (groups and unknown wire types are not ONNX)"
            )


def _read_entry(cursor: _Cursor, end: int) -> dict[str, str]:
    """A StringStringEntryProto (:data:`SCHEMA`'s ENTRY), read in place."""
    fields = SCHEMA[ENTRY]
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
            if field in fields:
                entry[fields[field][0]] = text
        elif wire in (FIXED64, FIXED32):
            cursor.skip(cursor.fixed_width(wire, end, here))
        else:
            raise cursor.fail(f"wire type {WIRE_NAMES.get(wire, wire)} at byte {here} in an external_data entry")
    if cursor.base + cursor.pos != end:
        raise cursor.fail(f"a field runs past the end of its external_data entry at byte {end}")
    return entry


def _deliver(parent: _Frame, field: int, result: Any) -> None:
    """Hand a finished sub-message to the message that holds it: appended under the field's name."""
    name, kind = READ[parent.kind][field]
    items = parent.data.setdefault(name, [])
    items.append(result)
    if kind == ENTRY and len(items) > MAX_ENTRIES:
        items.pop()  # keep at most MAX_ENTRIES metadata entries


def _numel(cursor: _Cursor, dims: list[int], what: str) -> int:
    for d in dims:
        if d < 0:
            raise cursor.fail(f"{what} has a negative dimension {dims}")
    numel = math.prod(dims)
    if numel > INT64_MAX:
        raise cursor.fail(f"{what} has dims {dims} whose element count overflows int64")
    return numel


def _finish(cursor: _Cursor, frame: _Frame, edges: _Edges) -> Any:
    """The result of a message, checked: a tensor description, an attribute, a node's tensors, a graph."""
    data = frame.data
    kind = frame.kind
    if kind in (ENTRY, OPSET):
        return data
    if kind == SPARSE:
        values = (data.get("values") or [None])[-1]
        if values is None:
            raise cursor.fail("a sparse tensor has no values")
        dims = data.get("dims", [])
        numel = _numel(cursor, dims, f"sparse tensor {values['name']!r}")
        return {**values, "dims": dims, "numel": numel, "nnz": values["numel"], "sparse": True}
    if kind == ATTRIBUTE:
        return data
    if kind == NODE:
        return _finish_node(data, edges)
    if kind == GRAPH:
        tensors: list[dict[str, Any]] = []
        tensors.extend(data.get("initializer", []))
        tensors.extend(data.get("sparse_initializer", []))
        for node_tensors in data.get("node", []):
            tensors.extend(node_tensors)
        return {"name": data.get("name", ""), "tensors": tensors, "nodes": len(data.get("node", []))}
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
    raw = data.get("raw_data")
    if raw is not None:
        if type_id == STRING_TYPE:
            raise cursor.fail(f"{what} is a STRING tensor with raw_data")
        if raw != expected:
            raise cursor.fail(f"{what}: raw_data is {raw} bytes, {onnx_name} {dims} needs {expected}")
    for field, width in (("float_data", 4), ("double_data", 8)):  # packed: their length is their element count
        if data.get(field) is not None and data[field] != numel * width * (2 if type_id in (14, 15) else 1):
            raise cursor.fail(f"{what}: typed data holds a different number of elements than its dims {dims}")
    info: dict[str, Any] = {"name": name, "dims": dims, "numel": numel, "type_id": type_id}
    if raw is not None and data.get("raw_last") == raw:  # one raw_data field (protobuf keeps the last one)
        info["raw_at"] = data["raw_at"]
    if data.get("data_location") == 1:
        entries = {e.get("key", ""): e.get("value", "") for e in data.get("external_data", [])}
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


def _finish_node(data: dict[str, Any], edges: _Edges) -> list[dict[str, Any]]:
    """A node's tensors: a Constant's value, and the tensors of its subgraphs under ``<node>.<attribute>.``.
    A node that reads values is added to ``edges``, for the roles by use."""
    op_type = data.get("op_type", "")
    inputs = data.get("input")
    if inputs is not None and not edges.dropped:
        edges.inputs += len(inputs)
        if edges.inputs > MAX_NODE_INPUTS:
            edges.dropped, edges.nodes = True, []
        else:
            op = OP_NAMES.get(op_type, op_type)  # one string per known operator, not one per node
            through = PASS_THROUGH.get(op)
            outputs = data.get("output") if through is not None else None
            # a weight slot's node name: the module path the TorchScript exporter writes (_module_of)
            named = data.get("name", "") if op in WEIGHT_OPS else ""
            edges.nodes.append((op, tuple(inputs), outputs[0] if outputs else "", named))
    label = data.get("name") or f"{op_type or 'node'}_{data['index']}"
    out: list[dict[str, Any]] = []
    is_constant = op_type == "Constant" and data.get("domain", "") in ("", "ai.onnx")
    for attr in data.get("attribute", []):
        attr_name = attr.get("name", "")
        graphs = attr.get("g", []) + attr.get("graphs", [])
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
        value = (attr.get("t") or attr.get("sparse_tensor") or [None])[0]
        if attr_name in ("value", "sparse_value") and value is not None:
            out.append({**value, "name": name, "node": True})
        elif attr_name in CONSTANT_LISTS:
            dtype, scalar = CONSTANT_LISTS[attr_name]
            n = sum(attr.get(count, 0) for count in CONSTANT_COUNTS)
            type_id = {"float32": 1, "int64": 7, "string": STRING_TYPE}[dtype]
            out.append({"name": name, "dims": [] if scalar else [n], "numel": 1 if scalar else n, "type_id": type_id,
                        "node": True})
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
    graphs = model.get("graph", [])
    if not graphs:
        if "ir_version" not in model:
            raise ParamscopeError(path, "not an ONNX model (no ir_version and no graph)")
        raise ParamscopeError(path, "ONNX model has no graph")
    graph = graphs[-1]
    edges = model["edges"]
    uses, flows = _uses(edges.nodes, [t["name"] for t in graph["tensors"]]) if edges.nodes else ({}, {})
    cache: dict[str, tuple[frozenset[tuple[Role | str, bool]], bool]] = {}
    walked: set[str] = set()  # values already walked past (_reached)
    constants = 0
    records: list[TensorRecord] = []
    seen: set[str] = set()
    origin = path.name
    external_files: set[str] = set()
    sparse = 0
    samples: dict[str, tuple[int, int, int]] = {}
    taken: set[str] | None = None
    read_past: set[str] = set()  # values _head_read walked past, for all tables together
    traced = model.get("producer_name") == TORCHSCRIPT_PRODUCER
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
        raw = t["name"]
        stored = role_for_file_tensor(dtype)
        owner = None
        if raw not in uses and raw not in flows:  # read by no node (the common case for many initializers)
            role = LITERAL if t["numel"] <= 1 or ("node" in t and stored is not LEARNED) else stored
        else:
            found = cache.get(raw)
            if found is None:
                found = cache[raw] = _reached(raw, uses, flows, walked)
            role = _role(found, stored, t["numel"], t.get("node", False))
            if role is LEARNED and any(use == TABLE for use, _ in found[0]):
                owner = "Embedding"
        if traced and "node" in t and role is not LITERAL:  # a tensor tracing captured: in no state_dict
            role = LITERAL
        if role is LEARNED and "scope" not in t and EXPORTER_NAME.fullmatch(raw) and raw in uses:
            if taken is None:  # the file's own names, which a module name never takes
                taken = {t["name"] for t in graph["tensors"]}
            named = _exported_name(uses[raw], flows.get(raw), taken, seen)
            if named is not None:
                budget.spend(len(named))
                extra = {**(extra or {}), "onnx_name": raw}
                name = named
                seen.add(name)
        constants += role is Role.CONSTANT
        head = _head_read(raw, uses, flows, read_past) if owner is not None and "scope" not in t else None
        if head is not None and taken is None:
            taken = {t["name"] for t in graph["tensors"]}
        head = None if head is None or head in seen or head in taken else head
        record = TensorRecord(name=name, shape=shape, dtype=dtype, role=role, quant=quant, origin=origin,
                              extra=extra, owner_type=owner, tie=("onnx", name) if head else None)
        records.append(record)
        if head is not None:  # one stored table the graph also reads as a linear layer's weight: a tied head
            budget.spend(len(head))
            seen.add(head)
            records.append(record.replace(name=head, owner_type=None, extra={"onnx_read_as": head}))
        if "raw_at" in t and role is LEARNED and len(shape) == 2 and bits in (8, 16, 32, 64):
            samples[name] = (t["raw_at"], bits // 8, t["numel"])
    metadata: dict[str, Any] = {}
    for key in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        if key in model:
            metadata[f"onnx.{key}"] = model[key]
    opsets = model.get("opset_import", [])
    metadata["onnx.opset_import"] = {o.get("domain", "") or "ai.onnx": o.get("version") for o in opsets}
    metadata["onnx.graph_name"] = graph["name"]
    metadata["onnx.nodes"] = graph["nodes"]
    for entry in model.get("metadata_props", []):
        metadata[f"onnx.metadata.{entry.get('key', '')}"] = entry.get("value", "")
    notes = []
    if external_files:
        metadata["onnx.external_data_files"] = sorted(external_files)
        notes.append("some tensors are stored in external data files; they were counted from their dims, not opened")
    if sparse:
        notes.append(f"{sparse} sparse initializer(s) counted by their dense shape")
    if edges.dropped:
        notes.append(f"the graph's nodes read more than {MAX_NODE_INPUTS:,} values: roles were set by storage "
                     "(scalars and integer Constant values as graph constants), not by use")
    if constants:
        notes.append(f"{constants:,} graph constants (scalars, shapes) not counted")
    pending = {"elements": _Elements(path, samples)} if samples else None
    return Inventory(source=str(path), format=FORMAT, tensors=records, metadata=metadata, notes=notes,
                     pending=pending)


def _module_of(node: str) -> str | None:
    """The module a TorchScript-exported node belongs to: its name less the operator
    (``/model/layers.0/self_attn/q_proj/MatMul`` -> ``model.layers.0.self_attn.q_proj``); None for other names."""
    if not node.startswith("/"):
        return None
    parts = node[1:].split("/")[:-1]
    if not parts or not all(parts):
        return None
    return ".".join(parts)


def _exported_name(uses: list[tuple[str, int, str]], flows: list[tuple[str, bool]] | None, taken: set[str],
                   seen: set[str]) -> str | None:
    """A folded weight's module name: an exporter-named tensor (:data:`EXPORTER_NAME`) read by one linear layer
    and nothing else is that layer's ``weight`` (or ``bias``), under the module its node names; None when the
    name is taken (kept as the file has it: two tensors never share a name)."""
    if flows or len(uses) != 1:
        return None
    op, index, node = uses[0]
    slot = FOLDED_SLOTS.get((op, index))
    module = _module_of(node) if slot is not None else None
    if module is None:
        return None
    name = f"{module}.{slot}"
    if name in seen or name in taken:
        return None
    return name


def _head_read(table: str, uses: dict[str, list[tuple[str, int, str]]],
               flows: dict[str, list[tuple[str, bool]]], walked: set[str]) -> str | None:
    """The weight name of the first linear layer an embedding table (Gather's data) also feeds, through
    pass-through operators (an unfolded export of a tied head: ``Transpose(wte) -> MatMul``); None if none.
    ``walked`` is shared by all tables (as in :func:`_reached`): each value is walked past once."""
    stack = [table]
    while stack:
        value = stack.pop()
        if value in walked:
            continue
        walked.add(value)
        for op, index, node in uses.get(value, ()):
            if WEIGHT_SLOTS.get((op, index)) == "weight":
                module = _module_of(node)
                if module is not None:
                    return f"{module}.weight"
        stack.extend(output for output, dequantizes in flows.get(value, ()) if not dequantizes)
    return None


class _Elements:
    """``read(name, indices) -> [bytes of each element]`` of a 2-D learned initializer stored inline
    (``raw_data``), or None: what :mod:`paramscope.ties` compares to find a head stored as its embedding
    transposed. At most :data:`MAX_SAMPLES` elements a call, each read at its offset: a few KB of the file."""

    def __init__(self, path: Path, where: dict[str, tuple[int, int, int]]) -> None:
        self.path = path
        self.where = where  # name -> (file offset of raw_data, bytes per element, elements)

    def __call__(self, name: str, indices: list[int]) -> list[bytes] | None:
        found = self.where.get(name)
        if found is None or len(indices) > MAX_SAMPLES:
            return None
        at, width, numel = found
        if any(not 0 <= i < numel for i in indices):
            return None
        try:  # opened again after the read: never blocking on what may since have become a FIFO
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            out = [os.pread(fd, width, at + i * width) for i in indices]
        except OSError:
            return None
        finally:
            os.close(fd)
        return out if all(len(b) == width for b in out) else None


def _uses(nodes: list[tuple[str, tuple[str, ...], str, str]], names: list[str]) -> tuple[
        dict[str, list[tuple[str, int, str]]], dict[str, list[tuple[str, bool]]]]:
    """Value name -> (output, whether it dequantizes) of every pass-through node reading it as its data input;
    and, for the stored tensors ``names`` and the values that flow from them, value name -> the (op_type, input
    index, node name where kept) of every other read. Other values' reads are not kept."""
    flows: dict[str, list[tuple[str, bool]]] = {}
    for op, inputs, output, _ in nodes:
        through = PASS_THROUGH.get(op)
        if output and through is not None and through < len(inputs) and inputs[through]:
            flows.setdefault(inputs[through], []).append((output, op == "DequantizeLinear"))
    wanted: set[str] = set()
    stack = list(names)
    while stack:
        value = stack.pop()
        if value not in wanted:
            wanted.add(value)
            stack.extend(output for output, _ in flows.get(value, ()))
    wanted.discard("")  # an optional input left out, not a tensor without a name
    uses: dict[str, list[tuple[str, int, str]]] = {}
    for op, inputs, _, named in nodes:
        through = PASS_THROUGH.get(op)
        for index, value in enumerate(inputs):
            if value in wanted and index != through:
                uses.setdefault(value, []).append((op, index, named))
    return uses, flows


def _reached(name: str, uses: dict[str, list[tuple[str, int, str]]], flows: dict[str, list[tuple[str, bool]]],
             seen: set[str]) -> tuple[frozenset[tuple[Role | str, bool]], bool]:
    """The roles (each with whether the path to it dequantized) of the inputs a stored tensor reaches through
    pass-through operators, and whether it reaches an input :data:`USES` does not list. ``seen`` is shared by
    all tensors: each value is walked past once, so a cycle ends and the whole work is bounded by the edges."""
    found: set[tuple[Role | str, bool]] = set()
    unknown = False
    stack = [(name, False)]
    while stack:
        value, dequantized = stack.pop()
        if value in seen:
            continue
        seen.add(value)
        for op, index, _ in uses.get(value, ()):
            role = USES.get((op, index)) or USES.get((op, ANY))
            if role is None:
                unknown = True
            else:
                found.add((role, dequantized))
        for output, dequantizes in flows.get(value, ()):
            stack.append((output, dequantized or dequantizes))
    return frozenset(found), unknown


def _role(reached: tuple[frozenset[tuple[Role | str, bool]], bool], stored: Role, numel: int, node: bool) -> Role:
    """A stored tensor's role from the inputs it reaches (:func:`_reached`), by the module docstring's rule:
    the first of :data:`PRECEDENCE` reached (a learned input only for a floating tensor, or a dequantized
    one); a graph constant when every use is a literal's, or when it is a scalar, or when it is a ``Constant``
    node's (``node``) integer or bool value no learned input reads (PyTorch's buffers are exported as
    initializers: an integer ``Constant`` is a value folded from the computation, a mask or a range); else
    its storage role."""
    found, unknown = reached
    floating = stored is LEARNED
    roles = set()
    for role, dequantized in found:
        if role == TABLE:
            role = LEARNED
        elif role == OPERAND:
            role = LEARNED if floating and numel > 1 else LITERAL
        if role is not LEARNED or floating or dequantized:
            roles.add(role)
        else:
            unknown = True  # an integer table a learned input reads: what it is, its storage says
    for role in PRECEDENCE[:-1]:
        if role in roles:
            return role
    if (roles and not unknown) or numel <= 1 or (node and not floating):
        return LITERAL
    return stored
