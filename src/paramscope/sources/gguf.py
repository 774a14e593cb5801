"""GGUF (llama.cpp) checkpoints, v2 and v3, read from the header alone.

Layout: ``"GGUF"``, version (u32), tensor count (u64), key/value count (u64), the key/values, the tensor
infos (name, n_dims, dims with ``ne[0]`` first, ggml type id, offset into the data section), then the data
section at the header's end rounded up to ``general.alignment`` (default 32). Byte order is the writer's:
little-endian normally, big-endian when the version reads byte-swapped (gguf-py's writer can emit both), so
both are read.

The header is streamed through one bounded buffer; tensor data is never read. Big arrays (a 150k-entry
``tokenizer.ggml.tokens``) are skipped by their lengths and summarised. Every declared count and length is
checked against the bytes left in the file before anything is allocated, arrays nest through an explicit
bounded stack, and every tensor's byte range is checked: aligned, inside the file, not overlapping another.
"""

from __future__ import annotations

import itertools
import math
import re
import struct
from pathlib import Path
from typing import Any

from paramscope import dtypes
from paramscope.errors import ParamscopeError
from paramscope.records import Inventory, TensorRecord, role_for_file_tensor
from paramscope.sources.files import FileWindow, Reader, unbuffered_reader
from paramscope.sources.ranged import FileRangeReader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from paramscope.sources.ranged import RangeReader

FORMAT = "gguf"
MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME_BYTES = 65_536  # ggml itself allows 63; anything longer than this is not a tensor name or key
MAX_ARRAY_DEPTH = 8  # nested arrays deeper than this are hostile, not a model
MAX_STRINGS, MAX_NESTED = 1 << 24, 1 << 20
"""Strings of one array, and arrays nested in one array, walked at most: a vocabulary or merges list holds
< 10^6 strings (llama.cpp writes no nested arrays); 10^8 empty strings or arrays (0.8-1.2 GB of zeros, sparse
on disk) would take minutes of walking lengths one by one."""
SHOWN_ARRAY_ITEMS = 16  # arrays up to this many items are kept; longer ones are summarised
SHOWN_LAYER_ITEMS = 1024  # ...but integers and bools up to this many: per-layer arrays (head_count_kv) feed the card
SHOWN_STRING_CHARS = 4096  # string values (chat templates) are cut here in the metadata
SHOWN_KEYS = 1024  # key/values kept in the metadata; a header with more is summarised
INT64_MAX = (1 << 63) - 1
# Modules whose weight is an embedding table in llama.cpp's tensor naming (gguf-py tensor_mapping): typed
# Embedding so that the report's non-embedding count works as it does for PyTorch models.
EMBEDDING_MODULES = frozenset({"token_embd", "token_types", "position_embd", "per_layer_token_embd"})

# ggml type id -> paramscope dtype name (ggml.h enum ggml_type). Quantized types keep GGML's names; their
# block sizes live in paramscope.dtypes. Ids 4, 5 (Q4_2/Q4_3) and 31-33, 36-38 (repacked) were removed.
GGML_TYPES: dict[int, str] = {
    0: "float32",
    1: "float16",
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    9: "Q8_1",
    10: "Q2_K",
    11: "Q3_K",
    12: "Q4_K",
    13: "Q5_K",
    14: "Q6_K",
    15: "Q8_K",
    16: "IQ2_XXS",
    17: "IQ2_XS",
    18: "IQ3_XXS",
    19: "IQ1_S",
    20: "IQ4_NL",
    21: "IQ3_S",
    22: "IQ2_S",
    23: "IQ4_XS",
    24: "int8",
    25: "int16",
    26: "int32",
    27: "int64",
    28: "float64",
    29: "IQ1_M",
    30: "bfloat16",
    34: "TQ1_0",
    35: "TQ2_0",
    39: "MXFP4",
    40: "NVFP4",
    41: "Q1_0",
    42: "Q2_0",
}

# general.file_type (llama.h enum llama_ftype) -> name.
FILE_TYPES: dict[int, str] = {
    0: "ALL_F32",
    1: "MOSTLY_F16",
    2: "MOSTLY_Q4_0",
    3: "MOSTLY_Q4_1",
    4: "MOSTLY_Q4_1_SOME_F16",
    7: "MOSTLY_Q8_0",
    8: "MOSTLY_Q5_0",
    9: "MOSTLY_Q5_1",
    10: "MOSTLY_Q2_K",
    11: "MOSTLY_Q3_K_S",
    12: "MOSTLY_Q3_K_M",
    13: "MOSTLY_Q3_K_L",
    14: "MOSTLY_Q4_K_S",
    15: "MOSTLY_Q4_K_M",
    16: "MOSTLY_Q5_K_S",
    17: "MOSTLY_Q5_K_M",
    18: "MOSTLY_Q6_K",
    19: "MOSTLY_IQ2_XXS",
    20: "MOSTLY_IQ2_XS",
    21: "MOSTLY_Q2_K_S",
    22: "MOSTLY_IQ3_XS",
    23: "MOSTLY_IQ3_XXS",
    24: "MOSTLY_IQ1_S",
    25: "MOSTLY_IQ4_NL",
    26: "MOSTLY_IQ3_S",
    27: "MOSTLY_IQ3_M",
    28: "MOSTLY_IQ2_S",
    29: "MOSTLY_IQ2_M",
    30: "MOSTLY_IQ4_XS",
    31: "MOSTLY_IQ1_M",
    32: "MOSTLY_BF16",
    33: "MOSTLY_Q4_0_4_4",
    34: "MOSTLY_Q4_0_4_8",
    35: "MOSTLY_Q4_0_8_8",
    36: "MOSTLY_TQ1_0",
    37: "MOSTLY_TQ2_0",
    38: "MOSTLY_MXFP4_MOE",
    39: "MOSTLY_NVFP4",
    40: "MOSTLY_Q1_0",
    1024: "GUESSED",
}

# GGUF value type id -> (name, struct code or None for string/array, size in bytes of one fixed-size value).
STRING, ARRAY, BOOL = 8, 9, 7
VALUE_TYPES: dict[int, tuple[str, str | None, int]] = {
    0: ("uint8", "B", 1),
    1: ("int8", "b", 1),
    2: ("uint16", "H", 2),
    3: ("int16", "h", 2),
    4: ("uint32", "I", 4),
    5: ("int32", "i", 4),
    6: ("float32", "f", 4),
    BOOL: ("bool", "?", 1),
    STRING: ("string", None, 8),  # the smallest string is its u64 length
    ARRAY: ("array", None, 12),  # the smallest array is its u32 type and u64 count
    10: ("uint64", "Q", 8),
    11: ("int64", "q", 8),
    12: ("float64", "d", 8),
}

# Smallest encodings, used to cap declared counts against the bytes left before looping over them.
MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, a one-byte value
MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset (n_dims may be 0)


# llama.cpp's gguf-split naming: "<stem>-00001-of-00003.gguf" (llama.cpp llama_split_prefix / split_path).
_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<no>[0-9]{5})-of-(?P<count>[0-9]{5})\.gguf$")
MAX_SPLITS = 1024


def split_names(name: str) -> list[str] | None:
    """The names of every part of a split GGUF, from the name of any one of its parts (``dir/x-00002-of-00003.gguf``
    -> ``dir/x-00001-of-00003.gguf`` ... ``-00003-of-00003``); None for a file that is not a split's part."""
    match = _SPLIT.match(name)
    if match is None:
        return None
    count = int(match["count"])
    if not 1 <= int(match["no"]) <= count or count > MAX_SPLITS:
        return None
    return [f"{match['stem']}-{k:05d}-of-{count:05d}.gguf" for k in range(1, count + 1)]


def combine(parts: list[Inventory], source: str) -> Inventory:
    """One inventory from the parts of a split GGUF, in part order: every tensor of every part (each keeps
    its part as origin), the first part's key/values (the others hold only the split keys), and a check that
    each part says it is part k of n (``split.no``, ``split.count``, as llama.cpp's loader checks)."""
    count = len(parts)
    for k, part in enumerate(parts):
        said_no, said_count = part.metadata.get("split.no"), part.metadata.get("split.count")
        if said_count is not None and (said_count != count or said_no != k):
            origin = part.tensors[0].origin if part.tensors else f"part {k + 1}"
            raise ParamscopeError(source, f"{origin}: says it is split {said_no!r} of {said_count!r}, "
                                          f"but it is part {k} of {count} by its name")
    tensors = [t for part in parts for t in part.tensors]
    module_types = {key: value for part in parts for key, value in part.module_types.items()}
    declared = parts[0].metadata.get("split.tensors.count")
    notes = [n for part in parts for n in part.notes]
    if isinstance(declared, int) and declared != len(tensors):
        raise ParamscopeError(source, f"split.tensors.count says {declared} tensors, the parts hold {len(tensors)}")
    metadata = {**parts[0].metadata, "gguf.splits": count,
                "gguf.tensor_count": len(tensors)}
    return Inventory(source=source, format=FORMAT, tensors=tensors, module_types=module_types, metadata=metadata,
                     notes=notes)


def probe(head: bytes, path: Path) -> Reader | None:
    """GGUF files start with the four bytes ``GGUF`` whatever their byte order."""
    return Reader(read, path) if head[:4] == MAGIC else None


class _Cursor(FileWindow):
    """A forward reader over a :class:`~paramscope.sources.ranged.RangeReader` through one bounded buffer
    (:class:`~paramscope.sources.files.FileWindow`'s positions, refilled by range),
    with GGUF's fixed-width integers in the file's byte order: small reads are served from memory, long
    skips cost nothing (the bytes skipped are never fetched), and nothing is read past what a check said
    the file holds. ``buf[0]`` is at file offset ``base``; ``pos`` indexes ``buf``.

    How much one refill reads: at least ``min_read`` (a local file: 1 MiB; over HTTP: :data:`REMOTE_MIN_READ`,
    so that little past the header's end is fetched), more where the parser said how much it ``expect``s
    next (the rest of a tokenizer's strings, the rest of the tensor infos), never more than ``max_read``:
    a vocabulary of any size is walked through a window of bounded size, never held."""

    def __init__(self, reader: RangeReader, size: int, source: str, min_read: int, max_read: int,
                 head: bytes = b"") -> None:
        self.reader = reader
        self.size = size
        self.source = source
        self.min_read = min_read
        self.max_read = max_read
        self.expect = 0
        self.buf = head
        self.base = 0
        self.pos = 0
        self.set_endian("<")

    def _fill(self, need: int, what: str = "a field") -> None:
        """Make ``need`` bytes available at ``pos``, or fail: the file ends before ``what``. The bytes still
        unread in the buffer are kept (a field straddling two reads is not fetched twice)."""
        offset = self.tell()
        if need <= self.size - offset:
            kept = self.buf[self.pos :]
            want = min(self.max_read, self.expect) if self.expect > 0 else self.min_read
            want = min(max(need, want), self.size - offset)
            data = kept + self.reader.read(offset + len(kept), offset + max(want, len(kept)))
            if len(data) >= need:
                self.buf, self.base, self.pos = data, offset, 0
                return
        raise self.fail(f"truncated: the file ends inside {what} at byte {offset}")

    def set_endian(self, endian: str) -> None:
        self.endian = endian
        self.u32s = struct.Struct(endian + "I")
        self.u64s = struct.Struct(endian + "Q")
        # A tensor info after its name: n_dims dims (u64), the type (u32), the offset (u64); packed, no padding.
        self.info_structs = [struct.Struct(f"{endian}{n}QIQ") for n in range(MAX_DIMS + 1)]

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.buf):
            self._fill(n, what)
        start = self.pos
        self.pos = start + n
        return self.buf[start : self.pos]

    def skip(self, n: int, what: str) -> None:
        if n > self.left():
            raise self.fail(f"{what} runs past the end of the file ({n} bytes declared, {self.left()} left)")
        if self.pos + n <= len(self.buf):
            self.pos += n
        elif SKIP_BY_RANGE:
            self.base, self.buf, self.pos = self.tell() + n, b"", 0
        else:  # bench/bench_remote_gguf.py: what reading the skipped bytes would cost
            self.expect = n
            self._fill(n, what)
            self.pos += n
            self.expect = 0

    def u32(self, what: str) -> int:
        if self.pos + 4 > len(self.buf):
            self._fill(4, what)
        value = self.u32s.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return value

    def u64(self, what: str) -> int:
        if self.pos + 8 > len(self.buf):
            self._fill(8, what)
        value = self.u64s.unpack_from(self.buf, self.pos)[0]
        self.pos += 8
        return value

    def scalar(self, code: str, size: int, what: str) -> Any:
        if self.pos + size > len(self.buf):
            self._fill(size, what)
        value = struct.unpack_from(self.endian + code, self.buf, self.pos)[0]
        self.pos += size
        return value

    def name(self, what: str) -> str:
        """A key or tensor name: a short string, decoded (undecodable bytes replaced, names stay raw text)."""
        n = self.u64(what)
        if n > MAX_NAME_BYTES:
            raise self.fail(f"{what} is {n} bytes long (more than {MAX_NAME_BYTES}): not a GGUF header")
        return self.take(n, what).decode("utf-8", "replace")

    def string_value(self, what: str) -> str:
        """A string value: its first SHOWN_STRING_CHARS bytes kept, the rest skipped."""
        n = self.u64(what)
        if n > self.left():
            raise self.fail(f"{what} is {n} bytes long but only {self.left()} bytes are left in the file")
        if n <= SHOWN_STRING_CHARS:
            return self.take(n, what).decode("utf-8", "replace")
        text = self.take(SHOWN_STRING_CHARS, what).decode("utf-8", "replace")
        self.skip(n - SHOWN_STRING_CHARS, what)
        return text + f"... ({n} bytes)"

    def skip_strings(self, count: int, what: str) -> None:
        """Skip ``count`` strings by their lengths: the hot loop of a tokenizer vocabulary, kept local."""
        if count > MAX_STRINGS:
            raise self.fail(f"{what} holds {count:,} strings (more than {MAX_STRINGS:,}): not a model's")
        unpack = self.u64s.unpack_from
        buf, pos = self.buf, self.pos
        start = self.tell()
        for index in range(count):
            if pos + 8 > len(buf):
                self.pos = pos
                self._expect_strings(start, index, count)
                self._fill(8, what)
                buf, pos = self.buf, self.pos
            n = unpack(buf, pos)[0]
            pos += 8
            if pos + n <= len(buf):
                pos += n
            else:
                self.pos = pos
                self._expect_strings(start, index, count)
                self.skip(n, what)
                buf, pos = self.buf, self.pos
        self.pos = pos
        self.expect = 0

    def _expect_strings(self, start: int, index: int, count: int) -> None:
        """What the rest of a string array will take, from the mean length of the strings walked so far
        (a first guess of 16 bytes each before any): a vocabulary's tail then comes in one read."""
        walked = self.tell() - start
        mean = walked / index if index else 16
        self.expect = int((count - index) * mean * 1.05) + 64


def _value_type(cursor: _Cursor, type_id: int, what: str) -> tuple[str, str | None, int]:
    known = VALUE_TYPES.get(type_id)
    if known is None:
        raise cursor.fail(f"{what} has unknown value type {type_id}")
    return known


def _checked_bool(cursor: _Cursor, raw: bytes, what: str) -> None:
    if raw.translate(None, b"\x00\x01"):
        raise cursor.fail(f"{what} holds a bool that is neither 0 nor 1")


def _read_value(cursor: _Cursor, type_id: int, what: str) -> Any:
    """One key's value: scalars and strings as Python values, arrays kept when short, else summarised."""
    _name, code, size = _value_type(cursor, type_id, what)
    if type_id == STRING:
        return cursor.string_value(what)
    if type_id == ARRAY:
        return _read_array(cursor, what)
    assert code is not None
    if type_id == BOOL:
        raw = cursor.take(1, what)
        _checked_bool(cursor, raw, what)
        return raw == b"\x01"
    return cursor.scalar(code, size, what)


def _read_array(cursor: _Cursor, what: str) -> Any:
    """An array value (its type and count already next in the file). Nested arrays are walked with an
    explicit stack bounded by MAX_ARRAY_DEPTH; only a short top-level array of scalars or strings is kept."""
    elem_type = cursor.u32(what)
    count = cursor.u64(what)
    elem_name, code, size = _value_type(cursor, elem_type, what)
    if count * size > cursor.left():
        raise cursor.fail(f"{what} declares {count} items of {elem_name}, more than the file can hold")
    summary = f"<array of {count} {elem_name}>"
    if elem_type == ARRAY:
        _skip_nested(cursor, count, what)
        return summary
    if elem_type == STRING:
        if count <= SHOWN_ARRAY_ITEMS:
            return [cursor.string_value(what) for _ in range(count)]
        cursor.skip_strings(count, what)
        return summary
    assert code is not None
    if count > (SHOWN_LAYER_ITEMS if code in "bBhHiIqQ?" else SHOWN_ARRAY_ITEMS):
        cursor.skip(count * size, what)
        return summary
    raw = cursor.take(count * size, what)
    if elem_type == BOOL:
        _checked_bool(cursor, raw, what)
    return list(struct.unpack(f"{cursor.endian}{count}{code}", raw))


def _skip_nested(cursor: _Cursor, count: int, what: str) -> None:
    """Skip ``count`` arrays, themselves possibly of arrays: a stack of items left per level."""
    stack = [count]
    walked = 0
    while stack:
        if stack[-1] == 0:
            stack.pop()
            continue
        stack[-1] -= 1
        walked += 1
        if walked > MAX_NESTED:
            raise cursor.fail(f"{what} nests more than {MAX_NESTED:,} arrays: not a model's")
        elem_type = cursor.u32(what)
        n = cursor.u64(what)
        elem_name, _code, size = _value_type(cursor, elem_type, what)
        if n * size > cursor.left():
            raise cursor.fail(f"{what} declares {n} items of {elem_name}, more than the file can hold")
        if elem_type == ARRAY:
            if len(stack) >= MAX_ARRAY_DEPTH:
                raise cursor.fail(f"{what} nests arrays deeper than {MAX_ARRAY_DEPTH} levels")
            stack.append(n)
        elif elem_type == STRING:
            cursor.skip_strings(n, what)
        else:
            cursor.skip(n * size, what)


def _tensor_info(cursor: _Cursor, index: int) -> tuple[str, tuple[int, ...], int, int]:
    """One tensor info: name, dims (ne[0] first), ggml type id, offset. The common case (the whole info
    inside the buffer) is parsed in place; an info that straddles the buffer's end takes the careful path."""
    buf, pos = cursor.buf, cursor.pos
    if pos + 8 <= len(buf):
        n = cursor.u64s.unpack_from(buf, pos)[0]
        name_end = pos + 8 + n
        if n <= MAX_NAME_BYTES and name_end + 4 <= len(buf):
            n_dims = cursor.u32s.unpack_from(buf, name_end)[0]
            if n_dims <= MAX_DIMS and name_end + 16 + 8 * n_dims <= len(buf):
                layout = cursor.info_structs[n_dims]
                *ne, type_id, offset = layout.unpack_from(buf, name_end + 4)
                cursor.pos = name_end + 4 + layout.size
                return buf[pos + 8 : name_end].decode("utf-8", "replace"), tuple(ne), type_id, offset
    name = cursor.name(f"the name of tensor #{index}")
    what = f"tensor {name!r}"
    n_dims = cursor.u32(f"the n_dims of {what}")
    if n_dims > MAX_DIMS:
        raise cursor.fail(f"{what} has {n_dims} dimensions (GGML allows at most {MAX_DIMS})")
    ne = tuple(cursor.u64(f"the dims of {what}") for _ in range(n_dims))
    type_id = cursor.u32(f"the type of {what}")
    offset = cursor.u64(f"the offset of {what}")
    return name, ne, type_id, offset


def _header_start(cursor: _Cursor) -> tuple[int, str]:
    """Magic and version; the version's byte order tells the file's."""
    if cursor.take(4, "the magic") != MAGIC:
        raise cursor.fail("not a GGUF file (no 'GGUF' magic)")
    raw = cursor.take(4, "the version")
    little, big = struct.unpack("<I", raw)[0], struct.unpack(">I", raw)[0]
    if little in (2, 3):
        return little, "<"
    if big in (2, 3):
        return big, ">"
    if little == 1 or big == 1:
        raise cursor.fail("GGUF version 1 (2023, 32-bit counts) is not supported; convert it with a current llama.cpp")
    raise cursor.fail(f"unsupported GGUF version {little} (paramscope reads versions 2 and 3)")


LOCAL_READ = 1 << 20
"""Bytes one read of a local file takes at least (and at most, but for one field longer than that)."""
REMOTE_FIRST_READ = 64 * 1024
"""The first read over the network: magic, counts, the small key/values, the start of the vocabulary."""
REMOTE_MIN_READ = 64 * 1024
"""A refill over the network when nothing says how much follows: what the header may overshoot its end by."""
SKIP_BY_RANGE = True
"""Bytes skipped (fixed-width arrays, the tails of long strings) past the buffer are never read; False only
to measure what that saves (bench/bench_remote_gguf.py)."""
REMOTE_MAX_READ = 8 << 20
"""The window a remote header is walked through: no read is longer (but for one field that is)."""


def read(path: Path) -> Inventory:
    """The tensors of a GGUF file, from its header; of every part of a split GGUF, from any one part's name
    (or from a directory holding one split GGUF, :func:`sniff_directory`), combined as the remote path does."""
    named = path
    if path.is_dir():
        models = directory_models(path)
        if len(models) != 1:
            raise ParamscopeError(path, f"directory holds {len(models)} GGUF models; name one of its files")
        parts = models[0]
        path = path / parts[0]
    else:
        parts = split_names(path.name)
    if parts is None:
        return read_file(path)
    missing = [part for part in parts if not (path.parent / part).exists()]  # a FIFO is there: read_file refuses it
    if missing:  # every part is checked before any is read: one line names what is not there
        more = f" (and {len(missing) - 1} more of the {len(parts)} parts)" if len(missing) > 1 else ""
        raise ParamscopeError(named, f"part {missing[0]} of the split GGUF is missing{more}")
    return combine([read_file(path.parent / part) for part in parts], str(named))


def directory_models(path: Path) -> list[list[str]]:
    """The GGUF models in a directory, by name: a single file, or every part of a split one (by its parts'
    names; a part whose siblings are missing is a model too, so that reading it names what is missing)."""
    import os

    try:
        names = sorted(e.name for e in os.scandir(path) if e.name.lower().endswith(".gguf") and e.is_file())
    except OSError:
        return []
    models: list[list[str]] = []
    seen: set[str] = set()
    for name in names[: MAX_SPLITS + 1]:
        if name in seen:
            continue
        parts = split_names(name)
        models.append(parts or [name])
        seen.update(parts or [name])
    return models


def sniff_directory(path: Path) -> bool:
    """A directory is a split GGUF when its GGUF files are the parts of one split model (a directory of
    several models is not: which one is meant is the user's to say; one plain file is left to the directory
    rules of :mod:`paramscope.sources.files`)."""
    models = directory_models(path)
    return len(models) == 1 and len(models[0]) > 1


def read_file(path: Path) -> Inventory:
    """The tensors of one GGUF file, from its header."""
    # The collector is paused inside: it took a third of the time on 100k tensors.
    with unbuffered_reader(path) as handle:
        reader = FileRangeReader(handle, str(path))
        cursor = _Cursor(reader, reader.size() or 0, str(path), LOCAL_READ, LOCAL_READ)
        return _read(cursor, path.name)


def read_ranged(reader: RangeReader, source: str) -> Inventory:
    """The tensors of a GGUF file served by ``reader`` (a URL, a Hub file, an object-store key), from its
    header alone: the key/values are walked through a bounded window, fixed-width arrays (a vocabulary's
    scores and token types) are skipped without being fetched, and the tensor infos are read in as few
    requests as their estimated size allows. Errors name ``source``; the records' origin is the file name."""
    from paramscope.gcpause import paused_gc

    head = reader.read(0, REMOTE_FIRST_READ)
    size = reader.size()
    if size is None:
        if len(head) >= REMOTE_FIRST_READ:
            raise ParamscopeError(source, f"{reader.name}: the server does not say how large the file is")
        size = len(head)
    cursor = _Cursor(reader, size, source, REMOTE_MIN_READ, REMOTE_MAX_READ, head[:size])
    with paused_gc():
        inventory = _read(cursor, reader.name.rsplit("/", 1)[-1])
    return inventory.replace(source=source)


def _read(cursor: _Cursor, origin: str) -> Inventory:
    version, endian = _header_start(cursor)
    cursor.set_endian(endian)
    n_tensors = cursor.u64("the tensor count")
    n_kv = cursor.u64("the key/value count")
    if n_kv > cursor.left() // MIN_KV_BYTES:
        raise cursor.fail(f"declares {n_kv} key/values, more than the file's {cursor.size} bytes can hold")
    if n_tensors > cursor.left() // MIN_TENSOR_INFO_BYTES:
        raise cursor.fail(f"declares {n_tensors} tensors, more than the file's {cursor.size} bytes can hold")

    kv: dict[str, Any] = {}
    seen_keys: set[str] = set()
    alignment = DEFAULT_ALIGNMENT
    for index in range(n_kv):
        key = cursor.name(f"key #{index}")
        if key in seen_keys:
            raise cursor.fail(f"key {key!r} appears twice")
        seen_keys.add(key)
        type_id = cursor.u32(f"the type of key {key!r}")
        value = _read_value(cursor, type_id, f"the value of key {key!r}")
        if key == "general.alignment":
            if type_id != 4 or value == 0 or value & (value - 1):
                raise cursor.fail(f"general.alignment must be a power-of-two uint32, got {value!r}")
            alignment = value
        if len(kv) < SHOWN_KEYS:
            kv[key] = value

    infos: list[tuple[str, tuple[int, ...], str, int]] = []
    seen_names: set[str] = set()
    blocks = {type_id: dtypes.get(name).block_elements for type_id, name in GGML_TYPES.items()}
    infos_start = cursor.tell()
    for index in range(n_tensors):
        if cursor.pos + 512 > len(cursor.buf):  # a refill is near: say how much the remaining infos take
            mean = (cursor.tell() - infos_start) / index if index else 64
            cursor.expect = int((n_tensors - index) * mean * 1.05) + 64
        name, ne, type_id, offset = _tensor_info(cursor, index)
        if name in seen_names:
            raise cursor.fail(f"tensor name {name!r} appears twice")
        seen_names.add(name)
        dtype = GGML_TYPES.get(type_id)
        if dtype is None:
            raise cursor.fail(f"tensor {name!r} has unknown ggml type {type_id}")
        if any(d > INT64_MAX for d in ne) or math.prod(ne) > INT64_MAX:
            raise cursor.fail(f"tensor {name!r} has dims {list(ne)} whose element count overflows int64")
        block = blocks[type_id]
        if ne and ne[0] % block:
            raise cursor.fail(
                f"tensor {name!r}: row of {ne[0]} elements is not a multiple of the {dtype} block of {block}"
            )
        if offset % alignment:
            raise cursor.fail(f"tensor {name!r}: offset {offset} is not a multiple of the alignment {alignment}")
        infos.append((name, ne, dtype, offset))

    data_start = -(-cursor.tell() // alignment) * alignment
    data_size = cursor.size - data_start
    ranges: list[tuple[int, int, str]] = []
    records: list[TensorRecord] = []
    for name, ne, dtype, offset in infos:
        numel = math.prod(ne)
        nbytes = dtypes.get(dtype).nbytes(numel)
        if offset + nbytes > data_size:
            raise cursor.fail(
                f"tensor {name!r} ({nbytes} bytes at data offset {offset}) runs past the end of the file"
            )
        ranges.append((offset, offset + nbytes, name))
        records.append(
            TensorRecord(
                name=name,
                shape=tuple(reversed(ne)),
                dtype=dtype,
                role=role_for_file_tensor(dtype),
                owner_type="Embedding" if name.rpartition(".")[0] in EMBEDDING_MODULES else None,
                origin=origin,
            )
        )
    ranges.sort()
    for (_, end, first), (start, _, second) in itertools.pairwise(ranges):
        if start < end:
            raise cursor.fail(f"tensors {first!r} and {second!r} overlap in the data section")

    metadata: dict[str, Any] = {
        "gguf.version": version,
        "gguf.byte_order": "little" if endian == "<" else "big",
        "gguf.alignment": alignment,
        "gguf.data_offset": data_start,
        "gguf.tensor_count": n_tensors,
        "gguf.kv_count": n_kv,
    }
    file_type = kv.get("general.file_type")
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        metadata["gguf.file_type"] = FILE_TYPES.get(file_type, f"unknown ({file_type})")
    metadata.update(kv)
    notes = []
    if n_kv > SHOWN_KEYS:
        notes.append(f"{n_kv - SHOWN_KEYS} of the {n_kv} GGUF key/values are not shown")
    module_types = {r.module: "Embedding" for r in records if r.module in EMBEDDING_MODULES}
    return Inventory(
        source=cursor.source, format=FORMAT, tensors=records, module_types=module_types, metadata=metadata, notes=notes
    )
