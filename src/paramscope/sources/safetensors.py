"""Reader: safetensors files, sharded checkpoints (``*.safetensors.index.json``) and directories of shards.

Only the header is read: 8 bytes of little-endian header length, then that many bytes of UTF-8 JSON.
Validation follows the reference implementation (the Rust ``safetensors`` crate, ``Metadata::validate``
and ``SafeTensors::read_metadata``) so a file we accept is a file ``safe_open`` accepts:

* header length at most ``MAX_HEADER_SIZE`` (100,000,000 bytes) and within the file;
* the header is a UTF-8 JSON object; NaN/Infinity literals are not JSON; duplicate keys are refused. Here we are
  stricter than the crate: its 0.8.0 keeps the last of a key given twice (so does Python's json), which lets a file
  say two things of one tensor; refusing it is the safe reading (tests/hostile/test_safetensors_fast_fuzz.py);
* every entry but ``__metadata__`` (a str -> str map) has exactly a known ``dtype``, a ``shape`` of
  non-negative integers and ``data_offsets`` ``[begin, end]``;
* sorted by offset, the tensors tile the data area from 0 with no gap or overlap, each taking exactly
  ``numel * bits / 8`` bytes (sub-byte types must fill whole bytes), with no overflow past 64 bits;
* header + last offset is exactly the file size (no trailing data, no truncation).

A header in the crate's own compact form is read by a fast path (one regular expression, columns made in C:
:func:`_fast_check_into`); anything else, and anything that does not check out, goes the checked way above.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from itertools import accumulate, chain, compress, islice
from operator import itemgetter, ne, sub

from paramscope.dtypes import nbytes as dtype_bytes
from paramscope.errors import ParamscopeError
from paramscope.gcpause import paused_gc
from paramscope.records import Inventory, Table, TensorRecord, role_for_file_tensor
from paramscope.sources.files import Reader, is_file_entry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

FORMAT = "safetensors"

MAX_HEADER_SIZE = 100_000_000
"""The crate's ``MAX_HEADER_SIZE``: a longer header is refused before anything is allocated."""

_U64_LIMIT = 1 << 64
"""The crate computes sizes in ``usize`` with checked arithmetic; past this it reports an overflow."""

# safetensors dtype -> (canonical name, bits per element). Bits give the exact byte size, sub-byte included.
DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 8),
    "U8": ("uint8", 8),
    "I8": ("int8", 8),
    "F8_E5M2": ("float8_e5m2", 8),
    "F8_E4M3": ("float8_e4m3fn", 8),
    "F8_E8M0": ("float8_e8m0fnu", 8),
    "I16": ("int16", 16),
    "U16": ("uint16", 16),
    "F16": ("float16", 16),
    "BF16": ("bfloat16", 16),
    "I32": ("int32", 32),
    "U32": ("uint32", 32),
    "F32": ("float32", 32),
    "C64": ("complex64", 64),
    "F64": ("float64", 64),
    "I64": ("int64", 64),
    "U64": ("uint64", 64),
    "F6_E2M3": ("float6_e2m3fn", 6),
    "F6_E3M2": ("float6_e3m2fn", 6),
    "F4": ("float4_e2m1fn", 4),
}

_TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})
INDEX_SUFFIX = ".safetensors.index.json"
MAX_INDEX_SIZE = 64 * 1024 * 1024
"""An index is a name -> shard map; even 1M tensors take well under this."""


# --------------------------------------------------------------------------------------------- detection


def probe(head: bytes, path: str | Path) -> Reader | None:
    """8-byte little-endian length of a plausible size, then ``{``; or a ``.safetensors`` name.

    A declared length above the crate's limit is still claimed (up to 4 GiB) so that the user is told
    the header is too large rather than that the format is unknown.
    """
    name = os.path.basename(path)  # a path as text or a Path (paramscope.sources.files.TEXT_PATH_READERS)
    if name.endswith(INDEX_SUFFIX) and head[:1] in (b"{", b" ", b"\n", b"\r", b"\t"):
        from pathlib import Path

        return Reader(_read_index, Path(path))
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")  # struct's "<Q", without importing struct
        if 2 <= n < 1 << 32:
            return Reader(read, path)
    # The extension is only a hint: claim a (truncated or damaged) .safetensors file that is nothing else.
    suffixed = name.endswith(".safetensors") and name != ".safetensors"  # Path(path).suffix == ".safetensors"
    if suffixed and not head.startswith((b"GGUF", b"PK", b"\x93NUMPY", b"\x89HDF", b"\x80")):
        return Reader(read, path)
    return None


def sniff_directory(path: Path) -> bool:
    """A directory holding a ``*.safetensors.index.json`` or ``*.safetensors`` files."""
    try:
        return any(
            entry.name.endswith((".safetensors", INDEX_SUFFIX)) and is_file_entry(entry) for entry in os.scandir(path)
        )
    except OSError:
        return False


# --------------------------------------------------------------------------------------------- reading


def read(path: str | Path) -> Inventory:
    """A single file, an index file, or a directory (its index, else all its ``*.safetensors``)."""
    if os.path.isdir(path):
        from pathlib import Path

        return _read_directory(Path(path))
    if os.path.basename(path).endswith(INDEX_SUFFIX):
        from pathlib import Path

        return _read_index(Path(path))
    table, metadata = read_table(path, os.path.basename(path))  # its origin, path.name of a path as text
    info: dict[str, Any] = {}
    if metadata:
        info["__metadata__"] = metadata
    return Inventory(source=str(path), format=FORMAT, table=table, metadata=info)


def read_file(path: Path, origin: str | None = None) -> tuple[list[TensorRecord], dict[str, str]]:
    """The records and ``__metadata__`` of one safetensors file, validated as the crate validates it."""
    table, metadata = read_table(path, origin)
    return table.rows(), metadata


def read_table(path: Path, origin: str | None = None) -> tuple[Table, dict[str, str]]:
    """The tensors (as columns) and ``__metadata__`` of one safetensors file, validated as the crate does."""
    header, file_size = _read_header_bytes(path)
    with paused_gc():  # a million-tensor header is millions of small objects: collections walked them for nothing
        columns = _Columns()
        metadata = _header_into(columns, path, header, file_size, origin if origin is not None else path.name)
        return columns.table(), metadata


def header_length(source: str | Path, prefix: bytes, file_size: int | None) -> int:
    """The header length the 8-byte prefix declares, checked against the crate's limit and the file size.

    Public so that remote readers (``paramscope.sources.remote``) apply the very checks a local file gets
    before they ask a server for the rest of a header.
    """
    if len(prefix) < 8:
        raise ParamscopeError(source, f"truncated: {len(prefix)} bytes, a safetensors file starts with 8")
    n = int.from_bytes(prefix[:8], "little")
    if n > MAX_HEADER_SIZE:
        raise ParamscopeError(source, f"header length {n:,} bytes exceeds the safetensors limit of {MAX_HEADER_SIZE:,}")
    if file_size is not None and 8 + n > file_size:
        raise ParamscopeError(source, f"header length {n:,} bytes runs past the end of the file ({file_size:,} bytes)")
    return n


def records_from_header(
    source: str | Path, header: bytes, file_size: int | None, origin: str
) -> tuple[list[TensorRecord], dict[str, str]]:
    """Records and ``__metadata__`` from the raw JSON header (the bytes after the 8-byte prefix).

    The same validation as a local file gets; ``file_size`` (when known) is checked against the data
    offsets, so a remote header that lies about its tensors is refused exactly as a local one would be.
    Errors name ``source``.
    """
    with paused_gc():
        columns = _Columns()
        metadata = _header_into(columns, source, header, file_size, origin)
        return columns.table().rows(), metadata


def read_small_tensors(path: Path, names: list[str], limit: int, max_header: int) -> dict[str, bytes]:
    """The raw bytes of the named tensors of a local file, each at most ``limit`` bytes (the few tiny
    tensors that hold a quantized weight's true shape). Nothing is read from a file whose header is
    longer than ``max_header``; tensors that are absent, too big or whose offsets do not fit the file
    are left out; a bad file raises ParamscopeError, with the checks :func:`read_file` makes."""
    found: dict[str, bytes] = {}
    try:
        with open(path, "rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            n = header_length(path, handle.read(8), file_size)
            if n > max_header:
                return found
            parsed = _parse_json(path, handle.read(n))
            if not isinstance(parsed, dict):
                return found
            start = 8 + n
            for name in names:
                entry = parsed.get(name)
                offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
                if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
                    continue
                begin, end = offsets
                if not 0 <= begin <= end <= file_size - start or end - begin > limit:
                    continue
                handle.seek(start + begin)
                found[name] = handle.read(end - begin)
    except OSError as exc:
        raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None
    return found


def _read_header_bytes(path: Path) -> tuple[bytes, int]:
    try:
        with open(path, "rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            n = header_length(path, handle.read(8), file_size)
            header = handle.read(n)
    except OSError as exc:
        raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(header) != n:
        raise ParamscopeError(path, "file shrank while being read")
    return header, file_size


def _no_duplicates(path: str | Path, pairs: Any, what: str) -> dict[str, Any]:
    """A dict from (key, value) pairs, a key given twice refused (Python's json, and the crate's 0.8.0, keep the
    last: the module docstring says why we do not)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ParamscopeError(path, f"{what} has the key {key!r} more than once")
            seen.add(key)
    return result


def _int_or_negative_zero(literal: str) -> int | float:
    return -0.0 if literal == "-0" else int(literal)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(path: str | Path, raw: bytes, what: str = "header", pairs: bool = False,
                held: Callable[[Any], int] | None = None) -> Any:
    """Strict JSON. With ``pairs``, every object comes back as a tuple of (key, value) pairs, so that
    duplicate keys can be found without a Python call per object (the caller checks them); without it,
    objects are dicts and a duplicate key is an error here. ``held``: how many keys the objects of a parsed
    value hold (:func:`_keys_held`, where the caller knows a quicker count for its document)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamscopeError(path, f"{what} is not valid UTF-8 (byte {exc.start})") from None
    # serde reads -0 as the float -0.0, which no usize field (a dimension, an offset) takes; Python reads the int 0.
    # Only a text holding "-0" pays a Python call per integer.
    parse_int = _int_or_negative_zero if "-0" in text else None
    value: Any = _UNREAD
    if not pairs:
        # Objects made in C (no list of pairs per object, no call): where the text holds no more colons than the
        # objects hold keys, no key was given twice (each key is followed by a colon; a colon in a string only
        # adds to the count). Else, and on any error, parsed again by the pairs, which says what is wrong.
        try:
            value = json.loads(text, parse_constant=_reject_constant, parse_int=parse_int)
        except (RecursionError, ValueError):
            value = _UNREAD
        else:
            if text.count(":") != (held or _keys_held)(value):
                value = _UNREAD
    hook = tuple if pairs else (lambda items: _no_duplicates(path, items, what))
    try:
        if value is _UNREAD:
            value = json.loads(text, object_pairs_hook=hook, parse_constant=_reject_constant, parse_int=parse_int)
    except RecursionError:
        raise ParamscopeError(path, f"{what} JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, over-long integer literals, NaN
        raise ParamscopeError(path, f"{what} is not valid JSON: {exc}") from None
    # escaped lone surrogates decode to str that cannot be UTF-8; most texts have no backslash at all, which
    # one byte search finds faster than the two three-character searches
    if "\\" in text and ("\\ud" in text or "\\uD" in text):
        _check_surrogates(path, value)
    return value


_UNREAD = object()
_SCALARS = frozenset((str, int, float, bool, type(None)))


def _keys_held(value: Any) -> int:
    """How many keys the objects of a parsed JSON value hold, all levels down (each container's values looked at
    in C for containers among them)."""
    keys, stack = 0, [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            keys += len(item)
            item = item.values()
        elif type(item) is not list:
            continue
        if not set(map(type, item)) <= _SCALARS:
            stack.extend(inner for inner in item if type(inner) is dict or type(inner) is list)
    return keys


def _check_surrogates(path: str | Path, value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ParamscopeError(path, f"string {item!r} holds an unpaired UTF-16 surrogate") from None


def _numel(path: str | Path, name: str, shape: Any) -> int:
    """Element count of a JSON shape, with the crate's rules: non-negative integers (not bools, not
    floats) and a running product that never passes 64 bits (checked_mul, dimension by dimension)."""
    if type(shape) is not list or (shape and (set(map(type, shape)) != _INT_ONLY or min(shape) < 0)):
        raise ParamscopeError(path, f"tensor {name!r}: shape {_short(shape)} is not a list of non-negative integers")
    if len(shape) <= 8 and (shape and max(shape) < _U64_LIMIT):
        numel = math.prod(shape)
        if 0 < numel < _U64_LIMIT:
            return numel
        if numel == 0 and len(shape) == 1:
            return 0
    numel = 1  # slow path, exact: stop at the first running product past 64 bits
    for dim in shape:
        numel *= dim
        # a dimension past 64 bits is no usize (serde refuses it even where a zero before it makes the product 0)
        if numel >= _U64_LIMIT or dim >= _U64_LIMIT:
            raise ParamscopeError(path, f"tensor {name!r}: shape {_short(shape)} overflows 64 bits")
    return numel


def _sized(
    path: str | Path, name: str, dtype: str, known: tuple[str, int], shape: Any
) -> tuple[str, Any, int, tuple[int, ...], int, int | None]:
    """What a (dtype, shape) pair is found to be: dtype, role, bytes in the file, shape, numel, bytes as counted;
    refused when its size passes 64 bits or a sub-byte type does not fill whole bytes (the crate's rules)."""
    numel = _numel(path, name, shape)
    canonical, bits = known
    nbits = numel * bits
    if nbits >= _U64_LIMIT:
        raise ParamscopeError(path, f"tensor {name!r}: size of shape {_short(shape)} overflows 64 bits")
    if nbits % 8:
        raise ParamscopeError(path, f"tensor {name!r}: {numel} {dtype} elements do not fill whole bytes")
    return (canonical, _ROLES[canonical], nbits >> 3, tuple(shape), numel, dtype_bytes(canonical, numel))


_INT_ONLY = {int}
_ROLES = {canonical: role_for_file_tensor(canonical) for canonical, _ in DTYPES.values()}


class _Columns:
    """The columns a reader fills as it checks entries: one set for a whole sharded checkpoint (no table per
    shard, then joined), with the (dtype, *shape) pairs found so far, which the shards of one model share."""

    __slots__ = ("checked", "kinds", "names", "numels", "origins", "plain_names", "roles", "shapes", "sized_text",
                 "sizes")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.shapes: list[tuple[int, ...] | None] = []
        self.kinds: list[str] = []
        self.roles: list[Any] = []
        self.numels: list[int] = []
        self.sizes: list[int | None] = []
        self.origins: list[str] = []
        # (dtype, *shape) -> what it was found to be: dtype, role, bytes in the file, shape, numel, bytes as counted
        self.checked: dict[tuple, tuple[str, Any, int, tuple[int, ...], int, int | None]] = {}
        # the same, keyed by the header's own text for dtype and shape (the fast path's key; see _fast_check_into)
        self.sized_text: dict[str, tuple[str, Any, int, tuple[int, ...], int, int | None]] = {}
        # every header so far read by the fast path, its text ASCII without DEL: every name is then printable ASCII
        # without a quote or a backslash (the fast path's pattern takes neither, nor a control character)
        self.plain_names = True

    def table(self) -> Table:
        """The columns as a :class:`Table`, with the facts the checks found (``Table.facts``): no name twice (every
        header's check refuses a name it gives twice, :func:`_read_shards` one that two shards give, before the
        table is handed on), names and dtypes str and shapes of ints (as parsed and checked), and plain names where
        :attr:`plain_names` says so."""
        table = Table(self.names, self.shapes, self.kinds, self.roles, self.numels, self.sizes, self.origins)
        table.facts.update(distinct=True, typed=True)
        if self.plain_names:
            table.facts["plain_names"] = True
        return table


def _check_into(
    columns: _Columns, path: str | Path, header: Any, header_len: int, file_size: int | None, origin: str
) -> dict[str, str]:
    """Check one file's parsed header (the crate's rules) and append its tensors to ``columns``; its metadata."""
    if type(header) is not tuple:
        raise ParamscopeError(path, f"header is a JSON {_json_type(header)}, not an object")
    names = [key for key, _ in header]
    if len(set(names)) != len(names):  # the cheap count; the slow check (which key?) only when it trips
        _no_duplicates(path, header, "header")
    metadata: dict[str, str] | None = None
    spans: list[tuple[int, int, str]] = []
    # The columns, filled as entries are checked: no object per tensor
    start = len(columns.names)
    kept_names, shapes, kinds, roles = columns.names, columns.shapes, columns.kinds, columns.roles
    numels, sizes, checked = columns.numels, columns.sizes, columns.checked
    append_span = spans.append
    dtypes_get = DTYPES.get
    for name, pairs in header:
        if name == "__metadata__":
            if pairs is None:
                continue
            if type(pairs) is not tuple or not all(type(v) is str for _, v in pairs):
                raise ParamscopeError(path, "__metadata__ must map strings to strings")
            metadata = _no_duplicates(path, pairs, "__metadata__")
            continue
        if type(pairs) is not tuple:
            raise ParamscopeError(path, f"tensor {name!r}: entry is not an object")
        if len(pairs) == 3 and pairs[0][0] == "dtype" and pairs[1][0] == "shape" and pairs[2][0] == "data_offsets":
            # the order every writer uses (the crate serializes its struct's fields in this order): no dict
            dtype, shape, offsets = pairs[0][1], pairs[1][1], pairs[2][1]
        else:
            info = dict(pairs)
            if len(info) != len(pairs):
                _no_duplicates(path, pairs, f"tensor {name!r}")
            try:
                dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
            except KeyError as exc:  # serde ignores unknown fields, but these three are required
                raise ParamscopeError(path, f"tensor {name!r}: missing {exc.args[0]}") from None
        known = dtypes_get(dtype) if type(dtype) is str else None
        if known is None:
            raise ParamscopeError(path, f"tensor {name!r}: unknown dtype {_short(dtype)}")
        if type(offsets) is not list or len(offsets) != 2:
            raise ParamscopeError(path, f"tensor {name!r}: data_offsets {_short(offsets)} is not [begin, end]")
        begin, end = offsets
        if type(begin) is not int or type(end) is not int or not 0 <= begin < _U64_LIMIT or not 0 <= end < _U64_LIMIT:
            raise ParamscopeError(path, f"tensor {name!r}: data_offsets {_short(offsets)} is not [begin, end]")
        # A model repeats a few (dtype, shape) pairs: each is checked and sized once, and its records share one
        # shape tuple. Only a list of true ints makes a key (True == 1 and 4.0 == 4 would hash alike).
        key = (dtype, *shape) if type(shape) is list and (not shape or set(map(type, shape)) == _INT_ONLY) else None
        sized = checked.get(key) if key is not None else None
        if sized is None:
            sized = _sized(path, name, dtype, known, shape)
            if key is not None:
                checked[key] = sized
        canonical, role, size, dims, numel, nbytes = sized
        if end < begin or end - begin != size:
            raise ParamscopeError(
                path,
                f"tensor {name!r}: data_offsets [{begin}, {end}] hold {end - begin} bytes, "
                f"but {dtype} {shape} needs {size}",
            )
        append_span((begin, end, name))
        kept_names.append(name)
        shapes.append(dims)
        kinds.append(canonical)
        roles.append(role)
        numels.append(numel)
        sizes.append(nbytes)
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        if begin != cursor:
            problem = "overlaps the previous tensor" if begin < cursor else f"leaves a gap of {begin - cursor} bytes"
            raise ParamscopeError(path, f"tensor {name!r}: data_offsets start at {begin}, which {problem}")
        cursor = end
    expected = 8 + header_len + cursor
    if file_size is not None and expected != file_size:
        if expected > file_size:
            raise ParamscopeError(
                path, f"truncated: tensors end at byte {expected:,} but the file has {file_size:,} bytes"
            )
        raise ParamscopeError(
            path, f"{file_size - expected:,} bytes of trailing data after the last tensor (ends at {expected:,})"
        )
    columns.origins += [origin] * (len(kept_names) - start)
    columns.plain_names = False  # not looked at: Table.fact works it out if asked
    return metadata or {}


# ---- the fast path: the canonical header, read by one regular expression ------------------------------
#
# Nearly every header is written by the safetensors crate (the Python, PyTorch and Rust writers all call it) in one
# compact form: ``{"__metadata__":{...},"NAME":{"dtype":"BF16","shape":[64,64],"data_offsets":[128,8320]},...}``
# then spaces up to an 8-byte boundary. Such a header is read without ``json.loads`` and without a Python loop per
# tensor: one ``split`` (in C) gives every entry's text, and the columns are made by C-level maps. It is only a
# fast path: it accepts a subset of what the checked path accepts, builds the very same columns, and whatever it does
# not fully recognise (any whitespace, an escape in a name, another field order, a leading zero, an unknown dtype, a
# duplicate name, a size or offset that does not check out...) is handed to the checked path, which gives every error.

_NUMBER = "(?:0|[1-9][0-9]{0,19}+)"
"""A JSON non-negative integer (no leading zero) of at most 20 digits (the shape's dimensions: :data:`_SHAPE_TEXT`)."""
_ENTRY = re.compile(
    # the name, then dtype and shape as ONE text ('BF16","shape":[64,64') that keys the sizes, then the offsets;
    # then the comma before the next entry, or the end (of the entries' text, cut before the closing brace). A
    # literal first character lets the engine skip ahead to each quote.
    # Each variable part is taken up to the one character that must end it, a class of a single character the engine
    # counts in a tight loop (a many-character class is looked up per character: a third of all the time a header
    # took). What the parts must be is checked after, on fewer characters or in C: no backslash and no control
    # character in the entries' text (so none in a name: what the JSON string class excludes; looked for by C
    # searches of the whole text), a known dtype and a shape of numbers (each distinct text once, as it first
    # keys the sizes), offsets that are the numbers the sizes make (compared as text) or, out of order, numbers
    # written as ``str`` writes them. So every match taken is one of the JSON grammar's exact class.
    # (possessive repeats, "*+": what each part takes is never given back, since the character after it is not in
    # the class; the same matches, without the engine saving a place to backtrack to at every character)
    r'"([^"]*+)":\{"dtype":"([^"]{1,16}+","shape":\[[^\]]{0,400}+)\],'
    r'"data_offsets":\[([^,]*+),([^\]]*+)\]\}(?:,|\Z)'
)
_NOT_IN_NAMES = ("\\", *map(chr, range(32)))
"""What no name of the fast path holds: an escape, or a control character (a JSON string holds neither raw)."""
_SHAPE_TEXT = re.compile(rf"(?:{_NUMBER}(?:,{_NUMBER})*)?")
_SHAPE_SEP = '","shape":['
_get_sized = itemgetter(2)
_PAIRS = json.JSONDecoder(object_pairs_hook=tuple)
"""One decoder for every shard's ``__metadata__`` (``json.loads`` with a hook makes a new one per call)."""


def _fast_check_into(
    columns: _Columns, path: str | Path, text: str, header_len: int, file_size: int | None, origin: str,
    repeats_later: bool = False,
) -> dict[str, str] | None:
    """:func:`_check_into` for a canonical header's text: the same columns appended and the same metadata
    returned, or None (``columns`` untouched) when the header is not in the canonical form or does not check out,
    which the checked path then reads (and refuses with its message, if it must). ``repeats_later``: a name given
    twice is not looked for here; the caller does it (:func:`_read_shards`, where an index's names can prove there
    is none)."""
    if not text.startswith("{"):
        return None
    # the closing brace; trailing spaces pad the header (to 8 bytes: looked for from the end, no copy made unless
    # there are many), other space falls back
    stop = len(text) - 1
    while text[stop] == " " and stop > 0:
        stop -= 1
        if len(text) - stop > 64:
            stop = len(text.rstrip(" ")) - 1
            break
    if stop < 1 or text[stop] != "}":
        return None
    metadata: dict[str, str] | None = None
    pos = 1
    if text.startswith('"__metadata__":', 1):
        # its value read by json itself (from where it starts to where it ends: exact JSON, no regular expression
        # to backtrack over a long one); the checked path takes anything but null or an object of strings
        try:
            value, pos = _PAIRS.raw_decode(text, 16)
        except (ValueError, RecursionError):
            return None
        if pos >= stop or text[pos] != ",":
            return None
        pos += 1  # at the first tensor
        if value is not None:
            if type(value) is not tuple or not all(type(v) is str for _, v in value):
                return None
            metadata = dict(value)
            if len(metadata) != len(value) or (text.find("\\", 16, pos) >= 0
                                               and not all(_encodable(k) and _encodable(v) for k, v in value)):
                return None  # a key given twice, an escaped lone surrogate: the checked path says which
    # split by the entries, the text between them comes with their groups, flat: [between, name, key, begin, end,
    # between, ..., after the last]. The matches tile text[pos:stop] iff nothing is between them; all but the last
    # then end with a comma (only the last can end at the end), and the last must not (one comma too many)
    entries = text[pos:stop]
    if any(map(entries.__contains__, _NOT_IN_NAMES)):  # an escape or a control character: not in a name we take
        return None
    pieces = _ENTRY.split(entries)
    del entries
    if len(pieces) == 1 or any(pieces[0::5]) or text[stop - 1] != "}":
        return None
    names, keys, begin_texts, end_texts = pieces[1::5], pieces[2::5], pieces[3::5], pieces[4::5]
    del pieces
    count = len(names)
    if "__metadata__" in names or (not repeats_later and len(set(names)) != count):
        return None
    known = columns.sized_text
    try:  # the shards of one model repeat a few (dtype, shape): after the first, every one is known already
        sized = list(map(known.__getitem__, keys))
    except KeyError:
        for key in set(keys).difference(known):
            dtype, _, shape_text = key.partition(_SHAPE_SEP)
            dtype_info = DTYPES.get(dtype)
            if dtype_info is None or _SHAPE_TEXT.fullmatch(shape_text) is None:
                return None
            shape = [int(dim) for dim in shape_text.split(",")] if shape_text else []
            try:
                known[key] = _sized(path, "", dtype, dtype_info, shape)
            except ParamscopeError:
                return None
        sized = list(map(known.__getitem__, keys))
    # Sorted by offset, the tensors must tile the data area from 0, each taking its size. Writers put them in
    # offset order: then each begins where the one before it ends and the ends are the running sum of the sizes,
    # all in C and compared as text (no leading zeros: equal numbers are equal texts; writing the sums is cheaper
    # than reading the offsets; written by repr, an int's str without the call of the str type). Else sort (by begin,
    # then end: a zero-size tensor first, as the checked path does).
    if begin_texts[0] == "0" and begin_texts[1:] == end_texts[:-1]:
        if list(map(repr, accumulate(map(_get_sized, sized)))) != end_texts:
            return None
        cursor = int(end_texts[-1])  # the sizes are never negative: the last end is the largest
    else:
        if max(map(len, begin_texts)) > 20 or max(map(len, end_texts)) > 20:  # past 64 bits: int() of it not made
            return None
        try:
            ends = list(map(int, end_texts))
            begins = list(map(int, begin_texts))
        except ValueError:  # not digits (the pattern takes any text up to the comma, the bracket)
            return None
        # numbers as JSON writes them: digits, no sign, no leading zero, no space, no underscore
        if list(map(repr, ends)) != end_texts or list(map(repr, begins)) != begin_texts:
            return None
        if not all(map(int.__eq__, map(sub, ends, begins), map(_get_sized, sized))):
            return None
        spans = sorted(zip(begins, ends, strict=True))
        if spans[0][0] != 0 or any(spans[k][0] != spans[k - 1][1] for k in range(1, count)):
            return None
        cursor = max(ends)
    if cursor >= _U64_LIMIT or (file_size is not None and 8 + header_len + cursor != file_size):
        return None
    columns.names += names
    columns.kinds += map(itemgetter(0), sized)
    columns.roles += map(itemgetter(1), sized)
    columns.shapes += map(itemgetter(3), sized)
    columns.numels += map(itemgetter(4), sized)
    columns.sizes += map(itemgetter(5), sized)
    columns.origins += [origin] * count
    if columns.plain_names and not (text.isascii() and "\x7f" not in text):
        columns.plain_names = False
    return metadata or {}


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _header_into(
    columns: _Columns, path: str | Path, header: bytes, file_size: int | None, origin: str, repeats_later: bool = False
) -> dict[str, str]:
    """One file's raw header checked and appended to ``columns`` (the fast path if it can, else the checked one);
    ``repeats_later``: see :func:`_fast_check_into`."""
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError:
        text = None  # the checked path says where
    if text is not None:
        metadata = _fast_check_into(columns, path, text, len(header), file_size, origin, repeats_later)
        if metadata is not None:
            return metadata
        del text  # the checked path decodes the bytes again: hold one copy of a 100 MB header's text, not two
    return _check_into(columns, path, _parse_json(path, header, pairs=True), len(header), file_size, origin)


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------------------------- shards


def _allowed_roots(directory: Path) -> list[Path]:
    """Where a shard may live: the index's own directory, and for a Hugging Face cache snapshot
    (``models--x/snapshots/<rev>/``, whose files are symlinks) that repository's ``blobs/``."""
    roots = [directory.resolve()]
    if directory.parent.name == "snapshots":
        roots.append((directory.parent.parent / "blobs").resolve())
    return roots


def _shard_path(index: Path, directory: Path, name: str, roots: list[Path]) -> Path:
    """Resolve a shard name from an index, refusing anything that leaves the index's directory."""
    if not name or "\x00" in name:
        raise ParamscopeError(index, f"shard name {name!r} is not a file name")
    if "/" not in name and "\\" not in name and name != "." and name != "..":
        # A plain file name (every shard of a real index): a regular file there, not a link, is inside the
        # directory (its real path the directory's own, resolved, with the name): one lstat, no resolving
        candidate = directory / name
        try:
            plain = stat.S_ISREG(os.lstat(candidate).st_mode)
        except (OSError, ValueError):
            plain = False  # looked at again below, which says what is wrong
        if plain:
            return candidate
    from pathlib import Path

    pure = Path(name)
    if pure.is_absolute() or name.startswith(("/", "\\")) or pure.drive or ".." in pure.parts or "\\" in name:
        raise ParamscopeError(index, f"shard {name!r} is outside the index's directory")
    candidate = directory / pure
    try:
        real = candidate.resolve()
    except (OSError, RuntimeError) as exc:
        raise ParamscopeError(index, f"shard {name!r} cannot be resolved: {exc}") from None
    if not any(real == root or root in real.parents for root in roots):
        raise ParamscopeError(index, f"shard {name!r} is a link to {real}, outside the index's directory")
    try:
        present = real.is_file()
    except OSError as exc:  # a name too long for the file system, a denied directory
        raise ParamscopeError(index, f"shard {name!r} cannot be read: {exc.strerror or exc}") from None
    if not present:
        raise ParamscopeError(index, f"shard {name!r} is missing")
    return candidate


def check_weight_map(source: str | Path, weight_map: dict[str, str], owner: dict[str, str]) -> list[str]:
    """The index's tensor -> shard map must agree with the headers (local or remote); notes."""
    if weight_map.items() <= owner.items():  # the usual answer, in C; the loop only finds what disagrees
        unlisted = len(owner) - len(weight_map)
        return [f"{unlisted} tensors are in the shards but not in the index's weight_map; they are counted."] \
            if unlisted else []
    for tensor, shard in weight_map.items():
        found = owner.get(tensor)
        if found != shard:
            where = f"it is in {found!r}" if found is not None else "no shard holds it"
            raise ParamscopeError(source, f"weight_map puts {tensor!r} in {shard!r}, but {where}")
    unlisted = len(owner) - len(weight_map)
    if unlisted:
        return [f"{unlisted} tensors are in the shards but not in the index's weight_map; they are counted."]
    return []


def check_index_size(source: str | Path, size: int) -> None:
    if size > MAX_INDEX_SIZE:
        raise ParamscopeError(source, f"index is {size:,} bytes, more than the {MAX_INDEX_SIZE:,} allowed")


def parse_index(source: str | Path, raw: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    """The weight map (tensor -> shard file name) and the declared ``metadata`` of an index's JSON, local or
    fetched; ``raw`` at most :data:`MAX_INDEX_SIZE` bytes."""
    weight_map, declared, _, _ = _parse_index(source, raw)
    return weight_map, declared


def _parse_index(source: str | Path, raw: bytes,
                 ) -> tuple[dict[str, str], dict[str, Any], list[str], list[int] | None]:
    """:func:`parse_index`, the shard file names, each once, in the order first listed, and where the weight map
    lists each shard's tensors together (as an index is written), how many each (else None)."""
    check_index_size(source, len(raw))
    found: list[tuple[list[Any], list[int] | None]] = []  # the distinct values and runs, where the count found them

    def held(index: Any) -> int:
        # _keys_held, but the weight_map's 100,000 values are looked at once, here, while the text just parsed is
        # fresh: for the shards too, and for the runs of one shard. Every value equals the one that starts its run,
        # and only a str equals a str: where those are all str, so is every value (none holds a key)
        weight_map = index.get("weight_map") if type(index) is dict else None
        if type(weight_map) is dict:
            values = list(weight_map.values())
            starts = list(compress(range(len(values)), map(ne, values, chain((None,), values))))
            heads = list(map(values.__getitem__, starts))
            if set(map(type, heads)) <= {str}:
                distinct = list(dict.fromkeys(heads))
                runs = list(map(sub, [*starts[1:], len(values)], starts)) if len(distinct) == len(heads) else None
                found.append((distinct, runs))
                return len(index) + len(weight_map) + _keys_held([v for k, v in index.items() if k != "weight_map"])
        return _keys_held(index)

    index = _parse_json(source, raw, what="index", held=held)
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise ParamscopeError(source, 'index has no "weight_map" object')
    weight_map: dict[str, Any] = index["weight_map"]
    # Every value a str (JSON strings are str, never a subclass) where the distinct values are: a value of another
    # type is not hashable (an array, an object) or is a distinct value of its own (no str equals a number, a bool
    # or null). The distinct values are a few hundred shards: their types are looked at, not 100,000 values'
    shards: list[Any] | None
    runs: list[int] | None = None
    if found:  # (a text parsed again by its pairs, a colon in a string, gives the same values, or is refused)
        shards, runs = found[0]
    else:
        try:
            shards = list(dict.fromkeys(weight_map.values()))
        except TypeError:
            shards = None
    if shards is None or not set(map(type, shards)) <= {str}:
        raise ParamscopeError(source, "weight_map values must be shard file names")
    declared = index.get("metadata")
    return weight_map, declared if isinstance(declared, dict) else {}, shards, runs


def _read_index(path: Path) -> Inventory:
    try:
        check_index_size(path, path.stat().st_size)
        raw = path.read_bytes()
    except OSError as exc:
        raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None
    weight_map, declared, names, runs = _parse_index(path, raw)
    del raw  # (9 MB for DeepSeek-V3's index: not held while the shards are read, when most is held)
    directory = path.parent
    roots = _allowed_roots(directory)
    shards: dict[str, Path] = {}
    for name in names:
        shards[name] = _shard_path(path, directory, name, roots)
    table, owner, notes, file_meta = _read_shards(shards, weight_map, runs)
    if owner is not weight_map:  # else the shards were found to hold exactly what the index says (_read_shards)
        notes += check_weight_map(path, weight_map, owner)
    metadata: dict[str, Any] = {"shards": len(shards)}
    if type(declared.get("total_size")) is int:
        metadata["index total_size"] = declared["total_size"]
    metadata.update(file_meta)
    return Inventory(source=str(path), format=FORMAT, table=table, metadata=metadata, notes=notes)


def _read_shards(
    shards: dict[str, Path], weight_map: dict[str, str] | None = None, runs: list[int] | None = None,
) -> tuple[Table, dict[str, str], list[str], dict[str, Any]]:
    """Read every shard; a tensor name found in two shards is an error (which one would load?). The owner map
    (tensor -> shard) is ``weight_map`` itself when the shards hold exactly the tensors it lists, each where it
    says (so each once): compared in C instead of a dict built and compared. ``runs``: where the weight map lists
    each shard's tensors together, in the order of ``shards``, how many each (:func:`_parse_index`)."""
    columns = _Columns()  # one set of columns for every shard
    names = columns.names
    first_meta: dict[str, str] | None = None
    # With an index, a name given twice in one shard is looked for at the end too (the fast path skips its own
    # look): the index's names, a dict's keys, are distinct, so names read to match them in order are too
    later = weight_map is not None
    bounds: list[int] = []  # where each shard read begins in the columns
    # Listed in the order read (an index written shard by shard)? Each shard's names are compared with the index's
    # next ones as soon as they are read, while they are fresh (no lookup, no second pass over 100,000 names)
    listed = iter(weight_map) if weight_map is not None else None
    in_order = listed is not None
    with paused_gc():
        # A name in two shards is looked for once, at the end (one dict, in C), not shard by shard; the error is
        # still the one a shard-by-shard check gives: the first shard that repeats a name, unless a shard before it
        # is refused for its own sake.
        for label, shard in shards.items():
            start = len(names)
            try:
                header, file_size = _read_header_bytes(shard)
                meta = _header_into(columns, shard, header, file_size, label, later)
            except ParamscopeError:
                _refuse_repeats(shards, names[:start], columns.origins[:start], bounds if later else None)
                raise
            bounds.append(start)
            if first_meta is None and meta:
                first_meta = meta
            if in_order:
                in_order = names[start:] == list(islice(listed, len(names) - start))  # type: ignore[arg-type]
        count = len(names)
        listed_all = weight_map is not None and len(weight_map) == count
        in_order = in_order and listed_all
        # each read one listed in its own shard: where the index lists each shard's names together, as many as
        # were read from it (the runs, counted as the index was read), else the shards listed compared one by one
        if in_order and (runs == list(map(sub, [*bounds[1:], count], bounds)) if runs is not None
                         else list(weight_map.values()) == columns.origins):  # type: ignore[union-attr]
            # as many listed as read, each read one listed in its own shard, and in order: no name twice
            owner = weight_map
        else:
            if later:
                _refuse_repeats(shards, names, columns.origins, bounds)
            if listed_all and list(map(weight_map.get, names)) == columns.origins:  # type: ignore[union-attr]
                # each read one looked up, listed in its own shard: two shards cannot share a name
                owner = weight_map
            else:
                owner = dict(zip(names, columns.origins, strict=True))
            if len(owner) != count:
                _refuse_repeats(shards, names, columns.origins)
    extra: dict[str, Any] = {"__metadata__": first_meta} if first_meta else {}
    return columns.table(), owner, [], extra


def _refuse_repeats(shards: dict[str, Path], names: list[str], origins: list[str],
                    bounds: list[int] | None = None) -> None:
    """Raise for the first shard (in reading order) holding a name an earlier shard holds; its first such name.
    Each shard's own names are distinct (its header check refuses a repeat), unless ``bounds`` (where each shard
    begins in ``names``) is given: then a shard's own repeat is refused first, as its header check would have."""
    owner: dict[str, str] = {}
    if bounds is None:
        for name, origin in zip(names, origins, strict=True):
            first = owner.setdefault(name, origin)
            if first != origin:
                raise ParamscopeError(shards[origin], f"tensor {name!r} is also in shard {first!r}")
        return
    for start, end in zip(bounds, [*bounds[1:], len(names)][:len(bounds)], strict=True):
        part = names[start:end]
        if not part:
            continue
        origin = origins[start]
        if len(set(part)) != len(part):
            _no_duplicates(shards[origin], [(name, None) for name in part], "header")
        for name in part:
            first = owner.setdefault(name, origin)
            if first != origin:
                raise ParamscopeError(shards[origin], f"tensor {name!r} is also in shard {first!r}")


def _read_directory(path: Path) -> Inventory:
    """The directory's index if it has one (``model.safetensors.index.json`` first), else every shard."""
    try:
        names = sorted(entry.name for entry in os.scandir(path) if is_file_entry(entry))
    except OSError as exc:
        raise ParamscopeError(path, f"cannot list: {exc.strerror or exc}") from None
    indexes = [n for n in names if n.endswith(INDEX_SUFFIX)]
    if "model.safetensors.index.json" in indexes:
        return _read_index(path / "model.safetensors.index.json")
    if len(indexes) == 1:
        return _read_index(path / indexes[0])
    if len(indexes) > 1:
        raise ParamscopeError(path, f"several safetensors indexes ({', '.join(indexes)}): name one of them")
    files = [n for n in names if n.endswith(".safetensors")]
    if not files:
        raise ParamscopeError(path, "no *.safetensors files")
    roots = _allowed_roots(path)
    shards = {name: _shard_path(path, path, name, roots) for name in files}
    table, _, notes, metadata = _read_shards(shards)
    metadata = {"shards": len(shards), **metadata}
    return Inventory(source=str(path), format=FORMAT, table=table, metadata=metadata, notes=notes)


# ---- small tensors for the rules stage ----------------------------------------------------------

SMALL_TENSORS_MAX_HEADER = 16 * 1024 * 1024
"""A header re-read for blobs is skipped past this (the blobs only refine an already exact-enough count)."""
REMOTE_PREFIXES = ("hf:", "http:", "https:")
MAX_SMALL_TENSOR = 64 * 1024
"""A bitsandbytes quant_state JSON or a compressed-tensors weight_shape is tens of bytes; more is not one."""


def small_tensor_reader(source: str, tensors: list[TensorRecord] | Inventory) -> Any:
    """A reader of small tensors' bytes from the safetensors files an inventory came from: handed to
    the rules stage (``Inventory.pending["small_tensors"]``), so :mod:`paramscope.quantization` reads the
    few blobs it needs (a bitsandbytes quant_state, a compressed-tensors weight_shape) without opening files.

    Returns ``read(names) -> {name: bytes}``; whatever cannot be read (not a local file, too big, odd
    header) is simply absent, and the caller falls back to the count the shapes give. Read-only, bounded.

    Only local files are ever opened: a source that names a hub repository or a URL (``hf:...``,
    ``https://...``, anything with ``://``) reads nothing, and an origin is used only as a bare file name
    inside the directory that was read (no separators, no ``..``), so neither a remote inventory nor a
    hostile index can point this at another file.
    """
    if not isinstance(source, str) or source.startswith(REMOTE_PREFIXES) or "://" in source:
        return lambda names: {}
    def locate(origin: str) -> Path | None:
        from pathlib import Path

        root = Path(source)
        if root.is_file() and root.name.endswith(".safetensors"):
            return root if origin in ("", root.name) else None
        base = root if root.is_dir() else root.parent
        if not origin or origin in (".", "..") or "/" in origin or "\\" in origin or os.sep in origin:
            return None
        candidate = base / origin
        return candidate if candidate.is_file() and candidate.parent == base else None

    def read(names: list[str]) -> dict[str, bytes]:
        wanted_names = set(names)
        if isinstance(tensors, Inventory):  # its columns: no record is made for the few names asked
            table = tensors.table
            origins = {n: o for n, o in zip(table.names, table.origins, strict=True) if n in wanted_names}
        else:
            origins = {r.name: r.origin for r in tensors if r.name in wanted_names}
        by_file: dict[str, list[str]] = {}
        for name in names:
            by_file.setdefault(origins.get(name, ""), []).append(name)
        found: dict[str, bytes] = {}
        for origin, wanted in by_file.items():
            try:
                path = locate(origin)
                if path is None:
                    continue
                found.update(read_small_tensors(path, wanted, MAX_SMALL_TENSOR, SMALL_TENSORS_MAX_HEADER))
            except (ParamscopeError, OSError):  # the count then comes from the shapes
                continue
        return found

    return read


def read_ranged(reader: Any, source: str, origin: str, first_read: int = 64 * 1024
                ) -> tuple[list[TensorRecord], dict[str, str], int | None]:
    """Records, ``__metadata__`` and size of the safetensors file behind ``reader`` (a
    :class:`~paramscope.sources.ranged.RangeReader`: a URL, a Hub file, an object-store key), in two reads at
    most: ``first_read`` bytes (an estimate of the header's size), then the rest of the header if it is longer.
    ``origin`` (the file's name) names the records; errors are about ``source``."""
    first_read = max(16, first_read)
    head = reader.read(0, first_read)
    total = reader.size()
    if total is None and len(head) < first_read:
        total = len(head)  # the body ended where the file does
    try:
        n = header_length(origin, head[:8], total)
    except ParamscopeError as exc:
        raise ParamscopeError(source, f"{exc.source}: {exc.reason}") from None
    if 8 + n > len(head):
        rest = reader.read(len(head), 8 + n)
        if len(rest) != 8 + n - len(head):
            raise ParamscopeError(source, f"{origin}: truncated: the header needs {8 + n:,} bytes")
        total = total if total is not None else reader.size()
        header = head[8:] + rest
    else:
        header = head[8 : 8 + n]
    try:
        records, metadata = records_from_header(origin, header, total, origin)
    except ParamscopeError as exc:
        raise ParamscopeError(source, f"{exc.source}: {exc.reason}") from None
    return records, metadata, total
