"""A restricted pickle machine: reads the data a PyTorch checkpoint pickles, and nothing else.

Why not ``pickle.Unpickler`` with ``find_class``: that still runs CPython's machine, whose opcodes call
whatever the stream names once a global resolves, and any slip in the allow-list is code execution.
This module interprets the opcodes itself over the bytes. Nothing is ever imported, called or
instantiated from the file: a global resolves only through :data:`TORCH_GLOBALS`, a table of
*stand-ins* (small dataclasses and pure functions of this module), and ``REDUCE``/``NEWOBJ``/``BUILD``
act only on those stand-ins. Anything else (another global, an opcode outside the data subset, a lie
about a length, a memo key that is not there) raises :class:`~paramscope.errors.ParamscopeError`
naming what the stream asked for.

Bounds: the machine never recurses; the mark stack is capped; every declared length is checked against
the bytes that remain before anything is allocated; and the work is bounded by what the stream
reaches, not by its size: :data:`MAX_STEPS` (opcodes, weighted by what they allocate),
:data:`MAX_ELEMENTS` (elements hashed, compared, or touched by a rebuild function) and
:data:`MAX_COLLISIONS` (hash flooding of a dict or set).
"""

from __future__ import annotations

import codecs
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paramscope.errors import ParamscopeError

MAX_MARK_DEPTH = 1_000
"""Nesting of MARK-delimited containers; real checkpoints nest a few dozen levels at most."""
MAX_STEPS = 16_000_000
"""Steps of one pickle run: an opcode is one step, or a few where it makes a container or a memo entry
(:data:`OPCODES`). A step takes well under a microsecond and keeps at most ~64 bytes alive, so the
budget ends any pickle within seconds and a few hundred MB. A 100k-tensor state_dict (11 MB,
3.2 million opcodes) takes 4.7 million steps."""
MAX_ELEMENTS = 16_000_000
"""Elements one pickle run may visit beyond its opcodes: elements hashed as dict keys and set items
(every element of every tuple reached), compared on hash collisions, and read or built by the rebuild
functions (sizes and strides, OrderedDict pairs, set() items, bytes copied per 32). Each costs one
opcode's work or less, so this bounds a few opcodes that reach much: a memoized 100k-element tuple
named 10,000 times in one dict key, an OrderedDict rebuilt again and again from one memoized list."""
MAX_COLLISIONS = 64
"""Distinct keys of one dict or set that may share one hash (only numbers and tuples can collide on
purpose: str and bytes hashes are salted). Real checkpoints have none; CPython's cost is quadratic."""
DICT_ENTRY_COST = 4
SET_ENTRY_COST = 8
SLOT_COST = 4
"""Elements charged per OrderedDict pair or set item built by a rebuild function, and per key counted
for :data:`MAX_COLLISIONS` (a dict entry takes about four times a list slot's memory, a set entry
about eight)."""
MAX_DIMS = 64
"""Dimensions of one tensor (ONNX and NumPy readers allow as many; real tensors have a handful)."""
MAX_LINE = 4_096
"""Longest text argument (protocol 0 INT/LONG/FLOAT/STRING/GLOBAL lines)."""
MAX_LONG_BYTES = 1_024
"""Longest LONG1/LONG4 integer; data pickles hold counters and seeds, not huge numbers."""
MAX_PROTOCOL = 5


# ---- stand-ins ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DTypeRef:
    """``torch.<name>`` as a dtype; ``name`` is the canonical (PyTorch) dtype name."""

    name: str


@dataclass(frozen=True, slots=True)
class StorageType:
    """``torch.FloatStorage`` and friends (``dtype`` of its elements; UntypedStorage holds uint8)."""

    name: str
    dtype: str


@dataclass(unsafe_hash=True, slots=True)
class StorageRef:
    """A persistent reference to a storage: its key in the archive, element dtype and element count.
    Treated as immutable (hashed by its fields) but not ``frozen``: a frozen dataclass's ``__init__`` sets
    each field through ``object.__setattr__``, and one is made per tensor of a checkpoint (2.5 times the
    cost, a tenth of a 100k-tensor read)."""

    key: str
    dtype: str
    location: str
    numel: int


@dataclass(eq=False, slots=True)
class TensorRef:
    """A tensor as a rebuild call describes it. ``storage`` is None for a meta tensor (no data)."""

    storage: StorageRef | None
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str
    requires_grad: bool = False
    parameter: bool = False


@dataclass(frozen=True, slots=True)
class ClassRef:
    """A class the stream may name but never instantiate by itself (``torch.Tensor``)."""

    qualname: str


@dataclass(frozen=True, slots=True)
class Builder:
    """An allowed callable: ``REDUCE`` runs ``build`` (a function of this module) on the arguments."""

    qualname: str
    build: Callable[[_Machine, tuple[Any, ...]], Any]
    newobj: bool = False


class ODict(dict):
    """``collections.OrderedDict``: a dict (insertion-ordered) that accepts BUILD of its ``__dict__``."""

    __slots__ = ("state",)

    def build(self, state: Any) -> None:
        self.state = state


@dataclass(eq=False, slots=True)
class ScriptObject:
    """A TorchScript module object (``__torch__.*`` class): opaque; its BUILD state is kept as data."""

    qualname: str
    state: Any = None

    def build(self, state: Any) -> None:
        self.state = state


@dataclass(frozen=True, slots=True)
class ScriptClass:
    """A ``__torch__.*`` class of a TorchScript archive; NEWOBJ makes an empty :class:`ScriptObject`."""

    qualname: str


class PickleRefused(Exception):
    """Internal: raised by builders; turned into a ParamscopeError with the source attached."""


class PickleTruncated(PickleRefused):
    """Internal: the stream needs bytes past the end of the data (a caller may retry with more)."""


class TruncatedPickle(ParamscopeError):
    """The pickle runs past the end of the data given to :func:`load` (the file is cut, or the caller
    read too little of it)."""


# ---- builders: pure functions over already-decoded data -----------------------------------------


_LIMIT = 1 << 62


def _ints(m: _Machine, value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise PickleRefused(f"{what} is a {type(value).__name__}, not a tuple of ints")
    m.charge(len(value), what)  # one memoized size tuple may be named by any number of rebuild calls
    for item in value:
        if type(item) is not int:
            raise PickleRefused(f"{what} holds a {type(item).__name__}, not an int")
        if not 0 <= item < _LIMIT:
            raise PickleRefused(f"{what} holds {item}, outside 0..2**62")
    return value if type(value) is tuple else tuple(value)


def _tensor(
    m: _Machine, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, dtype: str | None
) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise PickleRefused(f"tensor storage is a {type(storage).__name__}, not a storage reference")
    if type(offset) is not int or offset < 0 or offset >= 1 << 62:
        shown = offset if type(offset) is int else type(offset).__name__
        raise PickleRefused(f"tensor storage offset {shown} is not a non-negative int")
    shape = _ints(m, size, "tensor size")
    strides = _ints(m, stride, "tensor stride")
    _check_dims(shape)
    if len(shape) != len(strides):
        raise PickleRefused(f"tensor size has {len(shape)} dims but stride {len(strides)}")
    return TensorRef(storage, offset, shape, strides, dtype or storage.dtype, requires_grad is True)


def _check_dims(shape: tuple[int, ...]) -> None:
    if len(shape) > MAX_DIMS:
        raise PickleRefused(f"tensor of {len(shape)} dimensions (limit {MAX_DIMS})")


def _args(args: tuple[Any, ...], low: int, high: int, what: str) -> tuple[Any, ...]:
    if not low <= len(args) <= high:
        raise PickleRefused(f"{what} called with {len(args)} arguments")
    return args


def _rebuild_tensor(m: _Machine, args: tuple[Any, ...]) -> TensorRef:
    storage, offset, size, stride = _args(args, 4, 4, "_rebuild_tensor")
    return _tensor(m, storage, offset, size, stride, False, None)


def _rebuild_tensor_v2(m: _Machine, args: tuple[Any, ...]) -> TensorRef:
    a = _args(args, 6, 7, "_rebuild_tensor_v2")
    return _tensor(m, a[0], a[1], a[2], a[3], a[4], None)


def _rebuild_tensor_v3(m: _Machine, args: tuple[Any, ...]) -> TensorRef:
    a = _args(args, 7, 8, "_rebuild_tensor_v3")
    if not isinstance(a[6], DTypeRef):
        raise PickleRefused(f"_rebuild_tensor_v3 dtype is a {type(a[6]).__name__}, not a torch dtype")
    return _tensor(m, a[0], a[1], a[2], a[3], a[4], a[6].name)


def _rebuild_meta(m: _Machine, args: tuple[Any, ...]) -> TensorRef:
    dtype, size, stride, requires_grad = _args(args, 4, 4, "_rebuild_meta_tensor_no_storage")
    if not isinstance(dtype, DTypeRef):
        raise PickleRefused(f"meta tensor dtype is a {type(dtype).__name__}, not a torch dtype")
    shape, strides = _ints(m, size, "tensor size"), _ints(m, stride, "tensor stride")
    _check_dims(shape)
    if len(shape) != len(strides):
        raise PickleRefused(f"tensor size has {len(shape)} dims but stride {len(strides)}")
    return TensorRef(None, 0, shape, strides, dtype.name, requires_grad is True)


def _as_parameter(data: Any, requires_grad: Any) -> TensorRef:
    if not isinstance(data, TensorRef):
        raise PickleRefused(f"parameter data is a {type(data).__name__}, not a tensor")
    data.parameter = True
    data.requires_grad = requires_grad is not False
    return data


def _rebuild_parameter(m: _Machine, args: tuple[Any, ...]) -> TensorRef:
    a = _args(args, 3, 3, "_rebuild_parameter")
    return _as_parameter(a[0], a[1])


def _rebuild_parameter_with_state(m: _Machine, args: tuple[Any, ...]) -> TensorRef:
    a = _args(args, 4, 4, "_rebuild_parameter_with_state")
    return _as_parameter(a[0], a[1])  # the state is Python attributes on the Parameter: not needed


def _parameter(m: _Machine, args: tuple[Any, ...]) -> TensorRef:
    a = _args(args, 1, 2, "torch.nn.Parameter")
    return _as_parameter(a[0], a[1] if len(a) > 1 else True)


_TENSOR_TYPES = frozenset({"torch.Tensor", "torch.nn.parameter.Parameter"})


def _rebuild_from_type_v2(m: _Machine, args: tuple[Any, ...]) -> Any:
    func, new_type, fargs, _state = _args(args, 4, 4, "_rebuild_from_type_v2")
    if not isinstance(func, Builder):
        raise PickleRefused(f"_rebuild_from_type_v2 of a {type(func).__name__}, not an allowed rebuild function")
    qualname = getattr(new_type, "qualname", None)
    if qualname not in _TENSOR_TYPES:
        raise PickleRefused(f"_rebuild_from_type_v2 to type {qualname or type(new_type).__name__!r}, not a tensor")
    if not isinstance(fargs, tuple):
        raise PickleRefused("_rebuild_from_type_v2 arguments are not a tuple")
    result = func.build(m, fargs)
    if qualname == "torch.nn.parameter.Parameter" and isinstance(result, TensorRef):
        result.parameter = True
    return result


def _ordered_dict(m: _Machine, args: tuple[Any, ...]) -> ODict:
    a = _args(args, 0, 1, "OrderedDict")
    result = ODict()
    if a:
        if not isinstance(a[0], (list, tuple)):
            raise PickleRefused("OrderedDict argument is not a list of pairs")
        m.charge(len(a[0]) * DICT_ENTRY_COST, "OrderedDict")
        for pair in a[0]:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise PickleRefused("OrderedDict argument is not a list of pairs")
            _setitem(m, result, pair[0], pair[1])
    return result


def _iterable(m: _Machine, args: tuple[Any, ...], what: str) -> list[Any] | tuple[Any, ...]:
    a = _args(args, 0, 1, what)
    if not a:
        return ()
    if not isinstance(a[0], (list, tuple, set, frozenset)):
        raise PickleRefused(f"{what} of a {type(a[0]).__name__}")
    m.charge(len(a[0]), what)
    return list(a[0])


def _set(m: _Machine, args: tuple[Any, ...]) -> set[Any]:
    return _hashable_set(m, _iterable(m, args, "set"))


def _frozenset(m: _Machine, args: tuple[Any, ...]) -> frozenset[Any]:
    return frozenset(_hashable_set(m, _iterable(m, args, "frozenset")))


def _codecs_encode(m: _Machine, args: tuple[Any, ...]) -> bytes:
    """Protocol 2 pickles write bytes as ``_codecs.encode(text, 'latin1')``: pure data."""
    a = _args(args, 1, 2, "_codecs.encode")
    encoding = a[1] if len(a) > 1 else "utf-8"
    if not isinstance(a[0], str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise PickleRefused(f"_codecs.encode with encoding {encoding!r:.40}")
    m.charge_bytes(len(a[0]), "_codecs.encode")
    try:
        return a[0].encode(encoding)
    except UnicodeEncodeError:
        raise PickleRefused(f"_codecs.encode of text that {encoding} cannot encode") from None


def _bytearray(m: _Machine, args: tuple[Any, ...]) -> bytes:
    a = _args(args, 0, 1, "bytearray")
    if a and not isinstance(a[0], (bytes, bytearray)):
        raise PickleRefused("bytearray of something other than bytes")
    if not a:
        return b""
    m.charge_bytes(len(a[0]), "bytearray")
    return bytes(a[0])


def _bytes(m: _Machine, args: tuple[Any, ...]) -> bytes:
    """``bytes()``: protocols 0-2 write an empty bytes object as a call with no arguments."""
    if args and not (len(args) == 1 and isinstance(args[0], (bytes, bytearray))):
        raise PickleRefused("bytes of something other than bytes")
    if not args:
        return b""
    m.charge_bytes(len(args[0]), "bytes")
    return bytes(args[0])


def _complex(m: _Machine, args: tuple[Any, ...]) -> complex:
    a = _args(args, 0, 2, "complex")
    if not all(type(x) in (int, float) for x in a):
        raise PickleRefused("complex of something other than numbers")
    try:
        return complex(*a)
    except OverflowError:
        raise PickleRefused("complex of an integer too large for a float") from None


def _size(m: _Machine, args: tuple[Any, ...]) -> tuple[int, ...]:
    a = _args(args, 0, 1, "torch.Size")
    return _ints(m, a[0], "torch.Size") if a else ()


def _device(m: _Machine, args: tuple[Any, ...]) -> str:
    a = _args(args, 1, 2, "torch.device")
    if not all(type(x) in (str, int) for x in a):
        raise PickleRefused("torch.device of something other than a name")
    m.charge_bytes(sum(len(x) for x in a if type(x) is str), "torch.device")
    return ":".join(str(x) for x in a)


def _layout(m: _Machine, args: tuple[Any, ...]) -> str:
    a = _args(args, 1, 1, "torch.serialization._get_layout")
    if not isinstance(a[0], str):
        raise PickleRefused("_get_layout of something other than a name")
    return a[0]


# ---- the allow-list -----------------------------------------------------------------------------

# Storage classes -> element dtype (torch/storage.py _dtype_to_storage_type_map; Untyped storage is bytes).
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
    "QInt8Storage": "qint8",
    "QInt32Storage": "qint32",
    "QUInt8Storage": "quint8",
    "QUInt4x2Storage": "quint4x2",
    "QUInt2x4Storage": "quint2x4",
    "UntypedStorage": "uint8",
}

# torch.<name> dtype globals: every PyTorch dtype (GGML block types and safetensors-only F6 are not torch dtypes).
TORCH_DTYPES: tuple[str, ...] = (
    "float64", "float32", "float16", "bfloat16",
    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2",
    "complex128", "complex64", "complex32",
    "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8", "bool",
    "int1", "int2", "int3", "int4", "int5", "int6", "int7",
    "uint1", "uint2", "uint3", "uint4", "uint5", "uint6", "uint7",
    "qint8", "quint8", "qint32", "quint4x2", "quint2x4",
    "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2",
)  # fmt: skip


def _builders() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {}
    rebuilds = {
        "_rebuild_tensor": _rebuild_tensor,
        "_rebuild_tensor_v2": _rebuild_tensor_v2,
        "_rebuild_tensor_v3": _rebuild_tensor_v3,
        "_rebuild_parameter": _rebuild_parameter,
        "_rebuild_parameter_with_state": _rebuild_parameter_with_state,
        "_rebuild_meta_tensor_no_storage": _rebuild_meta,
    }
    for name, build in rebuilds.items():
        table["torch._utils", name] = Builder(f"torch._utils.{name}", build)
    table["torch._tensor", "_rebuild_from_type_v2"] = Builder(
        "torch._tensor._rebuild_from_type_v2", _rebuild_from_type_v2
    )
    for module in ("builtins", "__builtin__"):
        table[module, "set"] = Builder("builtins.set", _set, newobj=True)
        table[module, "frozenset"] = Builder("builtins.frozenset", _frozenset, newobj=True)
        table[module, "bytearray"] = Builder("builtins.bytearray", _bytearray)
        table[module, "complex"] = Builder("builtins.complex", _complex)
        table[module, "bytes"] = Builder("builtins.bytes", _bytes)
    table["collections", "OrderedDict"] = Builder("collections.OrderedDict", _ordered_dict, newobj=True)
    table["_codecs", "encode"] = Builder("_codecs.encode", _codecs_encode)
    table["torch", "Size"] = Builder("torch.Size", _size)
    table["torch", "device"] = Builder("torch.device", _device)
    table["torch.serialization", "_get_layout"] = Builder("torch.serialization._get_layout", _layout)
    table["torch.nn.parameter", "Parameter"] = Builder("torch.nn.parameter.Parameter", _parameter)
    table["torch", "Tensor"] = ClassRef("torch.Tensor")
    for name in TORCH_DTYPES:
        table["torch", name] = DTypeRef(name)
    for name, dtype in STORAGE_DTYPES.items():
        for module in ("torch", "torch.cuda", "torch.storage"):
            table[module, name] = StorageType(name, dtype)
    return table


TORCH_GLOBALS: dict[tuple[str, str], Any] = _builders()
"""(module, name) -> stand-in. The only globals a checkpoint pickle may name."""


# ---- the machine --------------------------------------------------------------------------------


MAX_KEY_DEPTH = 100
"""Nesting of a tuple used as a dict key or set item (CPython hashes it recursively in C, unchecked)."""


def _hash_cost(m: _Machine, value: Any) -> int:
    """Charge the elements CPython's ``hash(value)`` visits, before it runs: every element of every tuple
    reached, a shared tuple once per reference (tuple hashes are not cached, so a key holding 10,000
    references to one 100k-element tuple costs 10^9). Returns the count (the cost of one comparison too)."""
    if type(value) is not tuple:
        return 1
    stack = [(value, 0)]
    visited = 0
    while stack:
        item, depth = stack.pop()
        if depth > MAX_KEY_DEPTH:
            raise PickleRefused(f"dict key or set item nested deeper than {MAX_KEY_DEPTH} levels")
        visited += len(item)
        m.charge(len(item), "hashing dict keys and set items")
        stack.extend((child, depth + 1) for child in item if type(child) is tuple)
    return visited


_UNCOUNTED = frozenset({str, bytes, bool, float, type(None)})
"""Key types a file cannot flood one hash with: str and bytes hashes are salted per process; a float's
hash is its value modulo 2**61 - 1, which a few dozen floats share at most."""
_MODULUS = sys.hash_info.modulus


def _admit(m: _Machine, container: Any, key: Any) -> tuple[Any, int] | None:
    """Check that ``key`` may go into ``container`` (a dict or set), charging its hash. Returns the
    collision slot to count once the key is in (None for salted keys, which need no count).

    Ints, floats, complex numbers and tuples of them hash the same in every process, so a file can hold
    any number of distinct keys with one hash (``-1`` and ``-2``, ``n`` and ``n + 2**61 - 1``, tuples
    of those); CPython then compares each new key with every earlier one: quadratic. A slot is
    (container, hash): more than :data:`MAX_COLLISIONS` distinct keys in one slot are refused."""
    kind = type(key)
    if kind in _UNCOUNTED or (kind is int and -_MODULUS < key < _MODULUS):  # such an int is its own hash
        return None
    cost = _hash_cost(m, key)
    try:
        slot = (id(container), hash(key))
    except TypeError:
        raise PickleRefused(f"dict key or set item of unhashable type {type(key).__name__}") from None
    seen = m.collisions.get(slot, 0)
    if seen >= MAX_COLLISIONS:
        raise PickleRefused(f"more than {MAX_COLLISIONS} dict keys or set items share one hash (hash flooding)")
    if seen:
        m.charge(seen * cost, "comparing dict keys and set items")
    m.keep.setdefault(id(container), container)  # the id stays this container's for the whole run
    m.charge(SLOT_COST, "dict keys and set items")
    return slot


def _counted(m: _Machine, slot: tuple[Any, int] | None, before: int, after: int) -> None:
    if slot is not None and after > before:
        m.collisions[slot] = m.collisions.get(slot, 0) + 1


def _setitem(m: _Machine, target: dict[Any, Any], key: Any, value: Any) -> None:
    slot = _admit(m, target, key)
    before = len(target)
    target[key] = value
    _counted(m, slot, before, len(target))


def _hashable_set(m: _Machine, items: Any) -> set[Any]:
    result: set[Any] = set()
    _add_all(m, result, items)
    return result


def _add_all(m: _Machine, target: set[Any], items: Any) -> None:
    m.charge(len(items) * SET_ENTRY_COST, "set items")
    for item in items:
        slot = _admit(m, target, item)
        before = len(target)
        target.add(item)
        _counted(m, slot, before, len(target))


_MARK = object()


@dataclass
class PickleResult:
    """What one pickle held, where it ended, and the highest protocol it declared."""

    value: Any
    end: int
    protocol: int
    globals: set[str] = field(default_factory=set)


PersistentLoad = Callable[[Any], Any]


class _Machine:
    """One run over ``data[start:]``. Handlers take the position after the opcode and return the next one.

    The stack is one list; a MARK records its length in ``marks`` (so the hot loop keeps local names).
    """

    def __init__(
        self,
        data: Any,
        start: int,
        persistent_load: PersistentLoad | None,
        allowed: dict[tuple[str, str], Any],
        script_classes: bool,
    ) -> None:
        self.data = data
        self.size = len(data)
        self.pos = start
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.protocol = 0
        self.persistent_load = persistent_load
        self.allowed = allowed
        self.script_classes = script_classes
        self.globals: set[str] = set()
        self.elements = MAX_ELEMENTS
        self.collisions: dict[tuple[int, int], int] = {}
        self.keep: dict[int, Any] = {}

    def charge(self, n: int, what: str) -> None:
        """Spend ``n`` of the run's :data:`MAX_ELEMENTS` budget on ``what``, or refuse."""
        self.elements -= n
        if self.elements < 0:
            raise PickleRefused(f"{what} reaches more than {MAX_ELEMENTS:,} elements (paramscope's limit)")

    def charge_bytes(self, n: int, what: str) -> None:
        self.charge(1 + n // 32, what)

    # -- reading arguments
    def take(self, pos: int, n: int, what: str) -> int:
        if n < 0:
            raise PickleRefused(f"{what} of negative length {n} at offset {pos}")
        if pos + n > self.size:
            raise PickleTruncated(f"{what} needs {n} bytes at offset {pos}, only {self.size - pos} remain (truncated?)")
        return pos + n

    def line(self, pos: int, what: str) -> tuple[bytes, int]:
        end = self.data.find(b"\n", pos, min(self.size, pos + MAX_LINE + 1))
        if end < 0:
            kind = PickleTruncated if self.size < pos + MAX_LINE + 1 else PickleRefused
            raise kind(f"{what} at offset {pos} has no end of line within {MAX_LINE} bytes")
        return bytes(self.data[pos:end]), end + 1

    def push(self, value: Any) -> None:
        self.stack.append(value)

    def floor(self) -> int:
        """Where the current MARK frame starts: nothing below it may be popped."""
        return self.marks[-1] if self.marks else 0

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise PickleRefused("container opcode without a MARK")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def pop(self) -> Any:
        if len(self.stack) <= self.floor():
            raise PickleRefused("stack underflow")
        return self.stack.pop()

    def top(self) -> Any:
        if len(self.stack) <= self.floor():
            raise PickleRefused("stack underflow")
        return self.stack[-1]

    def run(self) -> Any:
        """The loop. The opcodes a torch.save pickle is made of are inlined (a call per opcode would
        double the time on a 100k-tensor state_dict): those :data:`OPCODES` marks ``_INLINE``; the rest
        go through their handlers."""
        data, size, pos = self.data, self.size, self.pos
        stack, memo, marks = self.stack, self.memo, self.marks
        handlers = _HANDLERS
        u32 = _U32.unpack_from
        push = stack.append
        persistent = self.persistent_load
        missing = _MARK
        cost = _STEP_COST
        steps = MAX_STEPS  # counts down: one compare per opcode is the whole price of the budget
        try:
            while pos < size:
                code = data[pos]
                steps -= cost[code]
                if steps < 0:
                    raise PickleRefused(f"more than {MAX_STEPS:,} steps without a STOP (paramscope's limit)")
                at = pos
                pos += 1
                if code == 0x72:  # LONG_BINPUT
                    if pos + 4 > size:
                        raise PickleTruncated(f"LONG_BINPUT at offset {at} is truncated")
                    if len(stack) <= (marks[-1] if marks else 0):
                        raise PickleRefused(f"LONG_BINPUT at offset {at} with nothing to store")
                    memo[u32(data, pos)[0]] = stack[-1]
                    pos += 4
                elif code == 0x4B:  # BININT1
                    if pos >= size:
                        raise PickleTruncated(f"BININT1 at offset {at} is truncated")
                    push(data[pos])
                    pos += 1
                elif code == 0x68:  # BINGET
                    if pos >= size:
                        raise PickleTruncated(f"BINGET at offset {at} is truncated")
                    value = memo.get(data[pos], missing)
                    if value is missing:
                        raise PickleRefused(f"memo key {data[pos]} at offset {at} was never stored")
                    push(value)
                    pos += 1
                    if type(value) is Builder and pos < size and data[pos] == 0x28:  # a rebuild call's MARK
                        done = _rebuild_call(self, pos, steps)
                        if done is not None:
                            pos, steps = done
                elif code == 0x28:  # MARK
                    if len(marks) >= MAX_MARK_DEPTH:
                        raise PickleRefused(f"MARKs nested deeper than {MAX_MARK_DEPTH}")
                    marks.append(len(stack))
                elif code == 0x58:  # BINUNICODE
                    if pos + 4 > size:
                        raise PickleTruncated(f"BINUNICODE at offset {at} is truncated")
                    n = u32(data, pos)[0]
                    pos += 4
                    if pos + n > size:
                        raise PickleTruncated(
                            f"unicode needs {n} bytes at offset {pos}, only {size - pos} remain (truncated?)"
                        )
                    push(str(data[pos : pos + n], "utf-8", "surrogatepass"))
                    pos += n
                elif code == 0x74:  # TUPLE
                    if not marks:
                        raise PickleRefused("container opcode without a MARK")
                    start = marks.pop()
                    items = tuple(stack[start:])
                    del stack[start:]
                    push(items)
                elif 0x85 <= code <= 0x87:  # TUPLE1..3
                    n = code - 0x84
                    if len(stack) - n < (marks[-1] if marks else 0):
                        raise PickleRefused(f"TUPLE{n} with too few objects on the stack")
                    items = tuple(stack[-n:])
                    del stack[-n:]
                    push(items)
                elif code == 0x52:  # REDUCE
                    if len(stack) - 2 < (marks[-1] if marks else 0):
                        raise PickleRefused("stack underflow")
                    args = stack.pop()
                    func = stack.pop()
                    if type(func) is Builder and type(args) is tuple:
                        push(func.build(self, args))
                    else:
                        push(_call(self, func, args, "REDUCE"))
                elif code == 0x51 and persistent is not None:  # BINPERSID
                    if len(stack) <= (marks[-1] if marks else 0):
                        raise PickleRefused("stack underflow")
                    push(persistent(stack.pop()))
                elif code == 0x89:  # NEWFALSE
                    push(False)
                elif code == 0x29:  # EMPTY_TUPLE
                    push(())
                elif code == 0x71:  # BINPUT
                    if pos >= size:
                        raise PickleTruncated(f"BINPUT at offset {at} is truncated")
                    if len(stack) <= (marks[-1] if marks else 0):
                        raise PickleRefused(f"BINPUT at offset {at} with nothing to store")
                    memo[data[pos]] = stack[-1]
                    pos += 1
                elif code == 0x6A:  # LONG_BINGET
                    if pos + 4 > size:
                        raise PickleTruncated(f"LONG_BINGET at offset {at} is truncated")
                    key = u32(data, pos)[0]
                    value = memo.get(key, missing)
                    if value is missing:
                        raise PickleRefused(f"memo key {key} at offset {at} was never stored")
                    push(value)
                    pos += 4
                    if type(value) is Builder and pos < size and data[pos] == 0x28:
                        done = _rebuild_call(self, pos, steps)
                        if done is not None:
                            pos, steps = done
                elif code == 0x88:  # NEWTRUE
                    push(True)
                elif code == 0x2E:  # STOP
                    self.pos = pos
                    if len(stack) != 1 or marks:
                        raise PickleRefused(f"STOP at offset {at} with {len(stack)} objects on the stack")
                    return stack[0]
                else:
                    handler = handlers.get(code)
                    if handler is None:
                        raise PickleRefused(f"unknown opcode 0x{code:02x} at offset {at}")
                    pos = handler(self, pos)
        except UnicodeDecodeError:
            raise PickleRefused(f"invalid UTF-8 string at offset {at}") from None
        raise PickleTruncated("pickle ends without STOP (truncated?)")


_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")


# ---- the rebuild call of torch.save, read whole ------------------------------------------------------
#
# A state_dict pickles each tensor as the same 29 opcodes after its rebuild function (BINGET of
# _rebuild_tensor_v2):
#   MARK MARK <'storage'> <storage class> <key> [PUT] <location> <numel> TUPLE PUT BINPERSID (persistent id)
#   <offset> <size tuple> PUT <stride tuple> PUT NEWFALSE|NEWTRUE                       (the tensor's layout)
#   <OrderedDict> EMPTY_TUPLE REDUCE PUT TUPLE PUT REDUCE PUT                            (hooks; the call)
# Run opcode by opcode, that is most of a 100k-tensor read. _rebuild_call reads such a call in one go:
# it parses the bytes first, touching nothing, and gives up (None: the loop runs the opcodes itself, from
# the same place) at anything else: another opcode or form, a memo key it reads that the call itself
# stores, a string that does not decode, the step budget running out inside the call, or too few bytes.
# What it then does is what the opcodes do, in their order: the same memo entries, the same steps
# charged, the same persistent_load and REDUCE calls (whose refusals are the opcodes' own), the tensor
# left on the stack. Elements, marks and the stack's floor come out as the opcodes leave them.


def _get_at(data: Any, p: int, memo: dict[int, Any], puts: list[Any]) -> tuple[Any, int]:
    """BINGET / LONG_BINGET at ``p``: (value, next position); (_MARK, p) if not one, or its key is missing
    or is one this call stores before it (the memo would hold another value by then)."""
    code = data[p]
    if code == 0x68:
        key, p = data[p + 1], p + 2
    elif code == 0x6A:
        key, p = _U32.unpack_from(data, p + 1)[0], p + 5
    else:
        return _MARK, p
    if key in puts:
        return _MARK, p
    return memo.get(key, _MARK), p


def _put_at(data: Any, p: int, puts: list[Any]) -> tuple[int, int]:
    """BINPUT / LONG_BINPUT at ``p``: its key appended to ``puts``; (steps, next position), steps 0 if not one."""
    code = data[p]
    if code == 0x71:
        puts.append(data[p + 1])
        return 1, p + 2
    if code == 0x72:
        puts.append(_U32.unpack_from(data, p + 1)[0])
        return 2, p + 5
    return 0, p


def _int_at(data: Any, p: int) -> tuple[Any, int]:
    """BININT1 / BININT2 / BININT / LONG1 at ``p``: (value, next position); (None, p) if not one."""
    code = data[p]
    if code == 0x4B:
        return data[p + 1], p + 2
    if code == 0x4D:
        return _U16.unpack_from(data, p + 1)[0], p + 3
    if code == 0x4A:
        return _I32.unpack_from(data, p + 1)[0], p + 5
    if code == 0x8A:
        n = data[p + 1]
        raw = data[p + 2 : p + 2 + n]
        if len(raw) != n:
            return None, p
        return int.from_bytes(raw, "little", signed=True), p + 2 + n
    return None, p


def _ints_at(data: Any, p: int, puts: list[Any]) -> tuple[tuple[int, ...] | None, int, int]:
    """A tuple of ints as the pickler writes one (``EMPTY_TUPLE``, ``TUPLE1..3`` or ``MARK .. TUPLE``, then
    its PUT; the empty tuple has none): (tuple, steps, next position); tuple None if it is not that.
    Twice per tensor of a state_dict: BININT1 and BININT2 (every dimension below 65,536) and the PUT are read
    here, not by a call each."""
    code = data[p]
    if code == 0x29:
        return (), 1, p + 1
    marked = code == 0x28
    q = p + 1 if marked else p
    items: list[int] = []
    append = items.append
    count = 0
    while True:
        code = data[q]
        if code == 0x4B:
            value, q2 = data[q + 1], q + 2
        elif code == 0x4D:
            value, q2 = data[q + 1] | data[q + 2] << 8, q + 3
        elif code == 0x4A or code == 0x8A:  # BININT, LONG1 (the TUPLE that ends the ints is no call)
            value, q2 = _int_at(data, q)
            if value is None:
                break
        else:
            break
        if count > MAX_DIMS:
            break
        append(value)
        count += 1
        q = q2
    code = data[q]
    if marked:
        if code != 0x74:
            return None, 0, p
    elif not (0x85 <= code <= 0x87 and code - 0x84 == count):
        return None, 0, p
    code = data[q + 1]
    if code == 0x71:
        puts.append(data[q + 2])
        return tuple(items), count + (4 if marked else 3), q + 3  # MARK, the ints, TUPLE, PUT: opcode steps
    if code == 0x72:
        puts.append(_U32.unpack_from(data, q + 2)[0])
        return tuple(items), count + (5 if marked else 4), q + 6  # (LONG_BINPUT costs 2)
    return None, 0, p


def _rebuild_call(m: _Machine, pos: int, steps: int) -> tuple[int, int] | None:
    """The rebuild call whose function is on the stack and whose MARK is at ``pos``, read whole (see above):
    (next position, steps left), or None to let the loop run it opcode by opcode."""
    data, memo = m.data, m.memo
    if len(m.marks) + 3 > MAX_MARK_DEPTH:
        return None
    puts: list[Any] = []
    append = puts.append
    u32 = _U32.unpack_from
    # BINGET/LONG_BINGET and BINPUT/LONG_BINPUT are read in line (a call each was a third of the read); any other
    # opcode goes to _get_at/_put_at, which answer "not the form" exactly as before
    try:
        if data[pos + 1] != 0x28:
            return None
        p = pos + 2
        code = data[p]
        if code == 0x68:
            tag, p = memo.get(data[p + 1], _MARK), p + 2  # nothing is put yet: no key to skip
        elif code == 0x6A:
            tag, p = memo.get(u32(data, p + 1)[0], _MARK), p + 5
        else:
            return None
        code = data[p]
        if code == 0x68:
            stype, p = memo.get(data[p + 1], _MARK), p + 2
        elif code == 0x6A:
            stype, p = memo.get(u32(data, p + 1)[0], _MARK), p + 5
        else:
            return None
        if tag is _MARK or stype is _MARK:
            return None
        if data[p] == 0x58:  # the storage's key, new (a storage another tensor used has its key memoized)
            n = u32(data, p + 1)[0]
            raw = data[p + 5 : p + 5 + n]
            if len(raw) != n:
                return None
            key = str(raw, "utf-8", "surrogatepass")
            p += 5 + n
            code = data[p]
            if code == 0x71:
                append(data[p + 1])
                put1, p = 1, p + 2
            elif code == 0x72:
                append(u32(data, p + 1)[0])
                put1, p = 2, p + 5
            else:
                return None
        else:
            key, p = _get_at(data, p, memo, puts)
            put1 = 0
            if key is _MARK:
                return None
        code = data[p]
        if code == 0x68:
            k, p = data[p + 1], p + 2
        elif code == 0x6A:
            k, p = u32(data, p + 1)[0], p + 5
        else:
            return None
        location = _MARK if k in puts else memo.get(k, _MARK)
        if location is _MARK:
            return None
        if data[p] == 0x4B:
            numel, p = data[p + 1], p + 2
        else:
            numel, p = _int_at(data, p)
            if numel is None:
                return None
        if data[p] != 0x74:
            return None
        q = p + 1
        code = data[q]
        if code == 0x71:
            append(data[q + 1])
            put2, p = 1, q + 2
        elif code == 0x72:
            append(u32(data, q + 1)[0])
            put2, p = 2, q + 5
        else:
            return None
        if data[p] != 0x51 or m.persistent_load is None:
            return None
        if data[p + 1] == 0x4B:
            offset, p = data[p + 2], p + 3
        else:
            offset, p = _int_at(data, p + 1)
            if offset is None:
                return None
        shape, cost1, p = _ints_at(data, p, puts)
        if shape is None:
            return None
        stride, cost2, p = _ints_at(data, p, puts)
        if stride is None or data[p] not in (0x88, 0x89):
            return None
        flag = data[p] == 0x88
        code = data[p + 1]
        if code == 0x68:
            k, p = data[p + 2], p + 3
        elif code == 0x6A:
            k, p = u32(data, p + 2)[0], p + 6
        else:
            return None
        hooks = _MARK if k in puts else memo.get(k, _MARK)
        if hooks is _MARK or data[p] != 0x29 or data[p + 1] != 0x52:
            return None
        q = p + 2
        code = data[q]
        if code == 0x71:
            append(data[q + 1])
            put3, p = 1, q + 2
        elif code == 0x72:
            append(u32(data, q + 1)[0])
            put3, p = 2, q + 5
        else:
            return None
        if data[p] != 0x74:
            return None
        q = p + 1
        code = data[q]
        if code == 0x71:
            append(data[q + 1])
            put4, p = 1, q + 2
        elif code == 0x72:
            append(u32(data, q + 1)[0])
            put4, p = 2, q + 5
        else:
            return None
        if data[p] != 0x52:
            return None
        q = p + 1
        code = data[q]
        if code == 0x71:
            append(data[q + 1])
            put5, p = 1, q + 2
        elif code == 0x72:
            append(u32(data, q + 1)[0])
            put5, p = 2, q + 5
        else:
            return None
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    steps -= _CALL_STEPS + put1 + put2 + put3 + put4 + put5 + cost1 + cost2
    if steps < 0:
        return None
    stack = m.stack
    at = 0
    if put1:
        memo[puts[0]] = key
        at = 1
    pid = (tag, stype, key, location, numel)
    memo[puts[at]] = pid
    storage = m.persistent_load(pid)
    at += 1
    if shape:
        memo[puts[at]] = shape
        at += 1
    if stride:
        memo[puts[at]] = stride
        at += 1
    if type(hooks) is Builder:  # OrderedDict() with no arguments (what _ordered_dict makes of them) in line
        hooks = ODict() if hooks.build is _ordered_dict else hooks.build(m, ())
    else:
        hooks = _call(m, hooks, (), "REDUCE")
    memo[puts[at]] = hooks
    args = (storage, offset, shape, stride, flag, hooks)
    memo[puts[at + 1]] = args
    function = stack.pop()
    if type(function) is Builder and function.build is _rebuild_tensor_v2 and type(storage) is StorageRef \
            and len(shape) == len(stride) <= MAX_DIMS and 0 <= offset < _LIMIT \
            and (not shape or (min(shape) >= 0 and max(shape) < _LIMIT and min(stride) >= 0 and max(stride) < _LIMIT)) \
            and m.elements >= len(shape) + len(stride):
        # what _rebuild_tensor_v2 makes of these arguments, its checks already passed above (the sizes and
        # strides _ints_at read are tuples of ints; each one's elements charged as _ints charges them)
        m.elements -= len(shape) + len(stride)
        tensor = TensorRef(storage, offset, shape, stride, storage.dtype, flag)
    else:
        tensor = function.build(m, args) if type(function) is Builder else _call(m, function, args, "REDUCE")
    memo[puts[at + 2]] = tensor
    stack.append(tensor)
    return p, steps


def _const(value: Any) -> Callable[[_Machine, int], int]:
    def handler(m: _Machine, pos: int) -> int:
        m.push(value)
        return pos

    return handler


def _fresh(factory: Callable[[], Any]) -> Callable[[_Machine, int], int]:
    def handler(m: _Machine, pos: int) -> int:
        m.push(factory())
        return pos

    return handler


def _fixed_int(fmt: str, width: int) -> Callable[[_Machine, int], int]:
    unpack = struct.Struct(fmt).unpack_from

    def handler(m: _Machine, pos: int) -> int:
        end = m.take(pos, width, "integer")
        m.push(unpack(m.data, pos)[0])
        return end

    return handler


def _sized(width: int, fmt: str, kind: str) -> Callable[[_Machine, int], int]:
    """Length-prefixed strings and bytes; the length is checked against what remains before slicing."""
    unpack = struct.Struct(fmt).unpack_from

    def handler(m: _Machine, pos: int) -> int:
        start = m.take(pos, width, f"{kind} length")
        n = unpack(m.data, pos)[0]
        end = m.take(start, n, kind)
        raw = m.data[start:end]
        if kind == "unicode":
            try:
                m.push(str(raw, "utf-8", "surrogatepass"))
            except UnicodeDecodeError:
                raise PickleRefused(f"invalid UTF-8 string at offset {start}") from None
        elif kind == "string":
            m.push(str(raw, "latin-1"))
        else:
            m.push(bytes(raw))
        return end

    return handler


def _long(width: int, fmt: str) -> Callable[[_Machine, int], int]:
    unpack = struct.Struct(fmt).unpack_from

    def handler(m: _Machine, pos: int) -> int:
        start = m.take(pos, width, "long length")
        n = unpack(m.data, pos)[0]
        if n > MAX_LONG_BYTES:
            raise PickleRefused(f"integer of {n} bytes at offset {pos} (limit {MAX_LONG_BYTES})")
        end = m.take(start, n, "long")
        m.push(int.from_bytes(m.data[start:end], "little", signed=True))
        return end

    return handler


def _text_int(m: _Machine, pos: int) -> int:
    raw, pos = m.line(pos, "INT")
    if raw == b"00":
        m.push(False)
    elif raw == b"01":
        m.push(True)
    else:
        m.push(_parse_int(raw, "INT"))
    return pos


def _text_long(m: _Machine, pos: int) -> int:
    raw, pos = m.line(pos, "LONG")
    m.push(_parse_int(raw[:-1] if raw.endswith(b"L") else raw, "LONG"))
    return pos


def _parse_int(raw: bytes, what: str) -> int:
    text = raw.strip()
    digits = text[1:] if text[:1] in (b"-", b"+") else text
    if not digits or not digits.isdigit() or len(digits) > MAX_LONG_BYTES:
        raise PickleRefused(f"{what} argument {raw[:40]!r} is not an integer")
    return int(text)


def _text_float(m: _Machine, pos: int) -> int:
    raw, pos = m.line(pos, "FLOAT")
    try:
        m.push(float(raw))
    except ValueError:
        raise PickleRefused(f"FLOAT argument {raw[:40]!r} is not a number") from None
    return pos


def _binfloat(m: _Machine, pos: int) -> int:
    end = m.take(pos, 8, "BINFLOAT")
    m.push(struct.unpack_from(">d", m.data, pos)[0])
    return end


def _text_string(m: _Machine, pos: int) -> int:
    raw, pos = m.line(pos, "STRING")
    if len(raw) < 2 or raw[0] != raw[-1] or raw[:1] not in (b"'", b'"'):
        raise PickleRefused("STRING argument is not quoted")
    try:
        m.push(str(codecs.escape_decode(raw[1:-1])[0], "latin-1"))
    except ValueError:
        raise PickleRefused("STRING argument has a bad escape") from None
    return pos


def _text_unicode(m: _Machine, pos: int) -> int:
    raw, pos = m.line(pos, "UNICODE")
    try:
        m.push(str(raw, "raw-unicode-escape"))
    except UnicodeDecodeError:
        raise PickleRefused("UNICODE argument has a bad escape") from None
    return pos


def _proto(m: _Machine, pos: int) -> int:
    end = m.take(pos, 1, "PROTO")
    version = m.data[pos]
    if version > MAX_PROTOCOL:
        raise PickleRefused(f"pickle protocol {version} is not one Python writes (0..{MAX_PROTOCOL})")
    m.protocol = max(m.protocol, version)
    return end


def _frame(m: _Machine, pos: int) -> int:
    end = m.take(pos, 8, "FRAME")
    n = struct.unpack_from("<Q", m.data, pos)[0]
    m.take(end, n, "FRAME")
    return end


def _pop(m: _Machine, pos: int) -> int:
    if len(m.stack) > m.floor():
        m.stack.pop()
    else:
        m.pop_mark()
    return pos


def _pop_mark(m: _Machine, pos: int) -> int:
    m.pop_mark()
    return pos


def _dup(m: _Machine, pos: int) -> int:
    m.push(m.top())
    return pos


def _list(m: _Machine, pos: int) -> int:
    m.push(m.pop_mark())
    return pos


def _dict(m: _Machine, pos: int) -> int:
    items = m.pop_mark()
    if len(items) % 2:
        raise PickleRefused("DICT with an odd number of items")
    result: dict[Any, Any] = {}
    for i in range(0, len(items), 2):
        _setitem(m, result, items[i], items[i + 1])
    m.push(result)
    return pos


def _frozenset_op(m: _Machine, pos: int) -> int:
    m.push(frozenset(_hashable_set(m, m.pop_mark())))
    return pos


def _append(m: _Machine, pos: int) -> int:
    value = m.pop()
    target = m.top()
    if not isinstance(target, list):
        raise PickleRefused(f"APPEND to a {type(target).__name__}")
    target.append(value)
    return pos


def _appends(m: _Machine, pos: int) -> int:
    items = m.pop_mark()
    target = m.top()
    if not isinstance(target, list):
        raise PickleRefused(f"APPENDS to a {type(target).__name__}")
    target.extend(items)
    return pos


def _setitem_op(m: _Machine, pos: int) -> int:
    value = m.pop()
    key = m.pop()
    target = m.top()
    if not isinstance(target, dict):
        raise PickleRefused(f"SETITEM on a {type(target).__name__}")
    _setitem(m, target, key, value)
    return pos


def _setitems(m: _Machine, pos: int) -> int:
    items = m.pop_mark()
    target = m.top()
    if not isinstance(target, dict) or len(items) % 2:
        raise PickleRefused(f"SETITEMS on a {type(target).__name__} with {len(items)} items")
    keys = items[::2]
    if all(type(key) is str for key in keys):  # salted hashes: _setitem would charge and count nothing
        target.update(zip(keys, items[1::2], strict=True))  # (in order: a repeated key keeps its last value)
        return pos
    for i in range(0, len(items), 2):
        _setitem(m, target, items[i], items[i + 1])
    return pos


def _additems(m: _Machine, pos: int) -> int:
    items = m.pop_mark()
    target = m.top()
    if not isinstance(target, set):
        raise PickleRefused(f"ADDITEMS on a {type(target).__name__}")
    _add_all(m, target, items)
    return pos


def _memo_put(m: _Machine, index: int) -> None:
    m.memo[index] = m.top()  # memo size is bounded by the opcode count


def _memo_get(m: _Machine, index: int, at: int) -> None:
    try:
        value = m.memo[index]
    except KeyError:
        raise PickleRefused(f"memo key {index} at offset {at} was never stored") from None
    m.push(value)


def _put(m: _Machine, pos: int) -> int:
    raw, end = m.line(pos, "PUT")
    _memo_put(m, _parse_int(raw, "PUT"))
    return end


def _get(m: _Machine, pos: int) -> int:
    raw, end = m.line(pos, "GET")
    _memo_get(m, _parse_int(raw, "GET"), pos)
    return end


def _memoize(m: _Machine, pos: int) -> int:
    _memo_put(m, len(m.memo))
    return pos


def _resolve(m: _Machine, module: Any, name: Any) -> Any:
    if not isinstance(module, str) or not isinstance(name, str):
        raise PickleRefused("STACK_GLOBAL of something other than two strings")
    qualname = f"{module}.{name}"[:200]
    found = m.allowed.get((module, name))
    if found is None:
        if m.script_classes and (module == "__torch__" or module.startswith("__torch__.")):
            found = ScriptClass(qualname)
        else:
            raise PickleRefused(f"refuses global {qualname!r}")
    m.globals.add(qualname)
    return found


def _global(m: _Machine, pos: int) -> int:
    module, pos = m.line(pos, "GLOBAL module")
    name, pos = m.line(pos, "GLOBAL name")
    m.push(_resolve(m, str(module, "latin-1"), str(name, "latin-1")))
    return pos


def _stack_global(m: _Machine, pos: int) -> int:
    name = m.pop()
    module = m.pop()
    m.push(_resolve(m, module, name))
    return pos


def _call(m: _Machine, func: Any, args: Any, opcode: str) -> Any:
    if not isinstance(args, tuple):
        raise PickleRefused(f"{opcode} with arguments that are a {type(args).__name__}, not a tuple")
    if isinstance(func, Builder):
        if opcode != "REDUCE" and not func.newobj:
            raise PickleRefused(f"{opcode} of {func.qualname!r} refused")
        return func.build(m, args)
    if isinstance(func, ScriptClass) and opcode != "REDUCE" and not args:
        return ScriptObject(func.qualname)
    what = getattr(func, "qualname", None) or getattr(func, "name", None) or type(func).__name__
    raise PickleRefused(f"{opcode} of {what!r} refused: not an allowed callable")


def _newobj(m: _Machine, pos: int) -> int:
    args = m.pop()
    cls = m.pop()
    m.push(_call(m, cls, args, "NEWOBJ"))
    return pos


def _newobj_ex(m: _Machine, pos: int) -> int:
    kwargs = m.pop()
    args = m.pop()
    cls = m.pop()
    if kwargs != {}:
        raise PickleRefused("NEWOBJ_EX with keyword arguments refused")
    m.push(_call(m, cls, args, "NEWOBJ_EX"))
    return pos


def _build(m: _Machine, pos: int) -> int:
    state = m.pop()
    target = m.top()
    if not isinstance(target, (ODict, ScriptObject)):
        raise PickleRefused(f"BUILD on a {type(target).__name__} refused (only OrderedDict and TorchScript objects)")
    target.build(state)
    return pos


def _persid(m: _Machine, pos: int) -> int:
    raw, pos = m.line(pos, "PERSID")
    m.push(_persistent(m, str(raw, "latin-1")))
    return pos


def _binpersid(m: _Machine, pos: int) -> int:
    m.push(_persistent(m, m.pop()))
    return pos


def _persistent(m: _Machine, pid: Any) -> Any:
    if m.persistent_load is None:
        raise PickleRefused("persistent id in a pickle that may not hold any")
    return m.persistent_load(pid)


def _refused(name: str) -> Callable[[_Machine, int], int]:
    """Opcodes that import or call by themselves, or need out-of-band data: never needed by a checkpoint."""

    def handler(m: _Machine, pos: int) -> int:
        raise PickleRefused(f"refuses opcode {name} at offset {pos - 1}")

    return handler


_INLINE = None
"""An opcode :meth:`_Machine.run` handles in its loop, every time: it has no handler."""

# Every opcode of pickle protocols 0-5, by its pickletools name: (name, steps, handler). Steps are 1, more
# for the opcodes that allocate (a step keeps ~64 bytes alive at most: EMPTY_SET makes a 216-byte set, a
# new memo entry takes ~100 bytes, a tuple 48 and up). A byte not listed is an unknown opcode (1 step).
# BINPERSID is inlined only when the run has a persistent_load; its handler refuses it otherwise.
# fmt: off
OPCODES: dict[int, tuple[str, int, Callable[[_Machine, int], int] | None]] = {
    # the torch.save subset, inlined in run()
    0x28: ("MARK", 1, _INLINE),
    0x2E: ("STOP", 1, _INLINE),
    0x4B: ("BININT1", 1, _INLINE),
    0x58: ("BINUNICODE", 1, _INLINE),
    0x52: ("REDUCE", 2, _INLINE),
    0x74: ("TUPLE", 2, _INLINE),
    0x29: ("EMPTY_TUPLE", 1, _INLINE),
    0x85: ("TUPLE1", 2, _INLINE),
    0x86: ("TUPLE2", 2, _INLINE),
    0x87: ("TUPLE3", 2, _INLINE),
    0x88: ("NEWTRUE", 1, _INLINE),
    0x89: ("NEWFALSE", 1, _INLINE),
    0x68: ("BINGET", 1, _INLINE),
    0x6A: ("LONG_BINGET", 1, _INLINE),
    0x71: ("BINPUT", 1, _INLINE),
    0x72: ("LONG_BINPUT", 2, _INLINE),
    0x51: ("BINPERSID", 2, _binpersid),
    # the rest of the data subset
    0x30: ("POP", 1, _pop),
    0x31: ("POP_MARK", 1, _pop_mark),
    0x32: ("DUP", 1, _dup),
    0x46: ("FLOAT", 1, _text_float),
    0x49: ("INT", 1, _text_int),
    0x4A: ("BININT", 1, _fixed_int("<i", 4)),
    0x4D: ("BININT2", 1, _fixed_int("<H", 2)),
    0x4C: ("LONG", 1, _text_long),
    0x4E: ("NONE", 1, _const(None)),
    0x50: ("PERSID", 2, _persid),
    0x53: ("STRING", 1, _text_string),
    0x54: ("BINSTRING", 1, _sized(4, "<i", "string")),
    0x55: ("SHORT_BINSTRING", 1, _sized(1, "<B", "string")),
    0x56: ("UNICODE", 1, _text_unicode),
    0x61: ("APPEND", 1, _append),
    0x62: ("BUILD", 1, _build),
    0x63: ("GLOBAL", 1, _global),
    0x64: ("DICT", 2, _dict),
    0x7D: ("EMPTY_DICT", 2, _fresh(dict)),
    0x65: ("APPENDS", 1, _appends),
    0x67: ("GET", 1, _get),
    0x6C: ("LIST", 2, _list),
    0x5D: ("EMPTY_LIST", 2, _fresh(list)),
    0x70: ("PUT", 2, _put),
    0x73: ("SETITEM", 1, _setitem_op),
    0x75: ("SETITEMS", 1, _setitems),
    0x47: ("BINFLOAT", 1, _binfloat),
    0x80: ("PROTO", 1, _proto),
    0x81: ("NEWOBJ", 2, _newobj),
    0x8A: ("LONG1", 1, _long(1, "<B")),
    0x8B: ("LONG4", 1, _long(4, "<i")),
    0x8C: ("SHORT_BINUNICODE", 1, _sized(1, "<B", "unicode")),
    0x8D: ("BINUNICODE8", 1, _sized(8, "<Q", "unicode")),
    0x8E: ("BINBYTES8", 1, _sized(8, "<Q", "bytes")),
    0x8F: ("EMPTY_SET", 8, _fresh(set)),
    0x90: ("ADDITEMS", 1, _additems),
    0x91: ("FROZENSET", 8, _frozenset_op),
    0x92: ("NEWOBJ_EX", 2, _newobj_ex),
    0x93: ("STACK_GLOBAL", 1, _stack_global),
    0x94: ("MEMOIZE", 2, _memoize),
    0x95: ("FRAME", 1, _frame),
    0x96: ("BYTEARRAY8", 1, _sized(8, "<Q", "bytes")),  # plain data
    0x42: ("BINBYTES", 1, _sized(4, "<I", "bytes")),
    0x43: ("SHORT_BINBYTES", 1, _sized(1, "<B", "bytes")),
    # refused
    0x69: ("INST", 1, _refused("INST")),
    0x6F: ("OBJ", 1, _refused("OBJ")),
    0x82: ("EXT1", 1, _refused("EXT1")),
    0x83: ("EXT2", 1, _refused("EXT2")),
    0x84: ("EXT4", 1, _refused("EXT4")),
    0x97: ("NEXT_BUFFER", 1, _refused("NEXT_BUFFER")),
    0x98: ("READONLY_BUFFER", 1, _refused("READONLY_BUFFER")),
}
# fmt: on

_HANDLERS: dict[int, Callable[[_Machine, int], int]] = {
    code: handler for code, (_name, _steps, handler) in OPCODES.items() if handler is not _INLINE
}
"""What run() calls for an opcode it does not inline."""
_STEP_COST = bytes(OPCODES[code][1] if code in OPCODES else 1 for code in range(256))
"""Steps per opcode byte, indexed by the byte (the loop's one lookup)."""
_CALL_STEPS = sum(
    OPCODES[code][1] for code in (
        0x28, 0x28, 0x68, 0x68, 0x58, 0x68, 0x4B, 0x74, 0x51,  # MARK MARK, 2 gets, key, location, numel, TUPLE, PERSID
        0x4B, 0x89, 0x68, 0x29, 0x52, 0x74, 0x52,  # offset, requires_grad, hooks: EMPTY_TUPLE REDUCE, TUPLE, REDUCE
    )
)
"""Steps of a rebuild call's opcodes other than its PUTs and its size and stride tuples (any of the forms
_rebuild_call accepts costs what the one named here does: every get, int and bool opcode costs 1, as does
the key's BINUNICODE)."""


def load(
    data: Any,
    source: object,
    *,
    start: int = 0,
    persistent_load: PersistentLoad | None = None,
    allowed: dict[tuple[str, str], Any] | None = None,
    script_classes: bool = False,
    what: str = "pickle",
) -> PickleResult:
    """Run the restricted machine over ``data[start:]`` (bytes or an mmap) up to its STOP.

    ``persistent_load`` turns a persistent id into a stand-in (storage references); ``script_classes``
    lets ``__torch__.*`` globals of a TorchScript archive stand for opaque objects. Every refusal is a
    :class:`ParamscopeError` ``"<source>: <what>: <reason>"``.
    """
    machine = _Machine(data, start, persistent_load, TORCH_GLOBALS if allowed is None else allowed, script_classes)
    try:
        value = machine.run()
    except PickleTruncated as exc:
        raise TruncatedPickle(source, f"{what}: {exc}") from None
    except PickleRefused as exc:
        raise ParamscopeError(source, f"{what}: {exc}") from None
    except RecursionError:
        raise ParamscopeError(source, f"{what}: objects nested too deeply") from None
    except MemoryError:
        raise ParamscopeError(source, f"{what}: too large to decode") from None
    return PickleResult(value, machine.pos, machine.protocol, machine.globals)
