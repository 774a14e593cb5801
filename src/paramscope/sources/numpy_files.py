"""Reader: NumPy ``.npy`` arrays and ``.npz`` archives, from their headers alone (numpy is not imported).

An ``.npy`` file is ``\\x93NUMPY``, a version byte pair (1.0, 2.0 or 3.0), a header length (2 bytes
little-endian in 1.0, 4 bytes in 2.0/3.0), then a Python dict literal with exactly ``descr``,
``fortran_order`` and ``shape``, then the data. The literal is parsed by ``ast.literal_eval`` on a
header capped at ``MAX_HEADER`` bytes (it evaluates literals only, never code). Object arrays
(``|O``) are refused: their data is a pickle. The file size must be header + numel x itemsize exactly.

An ``.npz`` is a zip of ``.npy`` members (``np.savez`` stores them, ``np.savez_compressed`` deflates
them). Each member's header is read by streaming its first bytes only; decompression is bounded by what
is read, so a deflate bomb costs nothing. Sizes are checked against each member's declared
uncompressed size (the data itself is never read, so its CRC is not checked).
"""

from __future__ import annotations

import ast
import os
import struct
from pathlib import Path, PurePosixPath
from typing import IO, Any

from paramscope.errors import ParamscopeError
from paramscope.records import Inventory, TensorRecord, role_for_file_tensor
from paramscope.sources.files import Reader, open_regular, open_zip, probe_zip

TYPE_CHECKING = False
if TYPE_CHECKING:
    import zipfile

FORMAT = "numpy"

MAGIC = b"\x93NUMPY"
MAX_HEADER = 1 << 20
"""Headers of plain arrays are ~100 bytes; structured dtypes can be long, but not this long."""
MAX_MEMBERS = 100_000
MAX_DIMS = 64
"""NumPy's NPY_MAXDIMS is 32 (64 since NumPy 2.0)."""

# version -> (struct format of the header length, size of that field, header text encoding)
VERSIONS: dict[tuple[int, int], tuple[str, int, str]] = {
    (1, 0): ("<H", 2, "latin1"),
    (2, 0): ("<I", 4, "latin1"),
    (3, 0): ("<I", 4, "utf8"),
}

# (kind character, itemsize) -> canonical name. Kinds: f float, c complex, i int, u uint, b bool.
NUMERIC: dict[tuple[str, int], str] = {
    ("f", 2): "float16",
    ("f", 4): "float32",
    ("f", 8): "float64",
    ("c", 8): "complex64",
    ("c", 16): "complex128",
    ("i", 1): "int8",
    ("i", 2): "int16",
    ("i", 4): "int32",
    ("i", 8): "int64",
    ("u", 1): "uint8",
    ("u", 2): "uint16",
    ("u", 4): "uint32",
    ("u", 8): "uint64",
    ("b", 1): "bool",
}
# Fixed-size non-numeric kinds: listed as buffers under "numpy:<descr>" (bytes unknown to the dtype table).
OTHER_KINDS = {"S": "bytes", "a": "bytes", "U": "str", "V": "void", "M": "datetime64", "m": "timedelta64"}
BYTE_ORDERS = "<>|="


# --------------------------------------------------------------------------------------------- detection


def probe(head: bytes, path: Path) -> Reader | None:
    """``\\x93NUMPY`` (or a truncated prefix of it in a ``.npy`` file), or a zip holding only ``*.npy``
    (its archive, opened here, is what the Reader reads)."""
    if head.startswith(MAGIC) or (path.suffix == ".npy" and MAGIC.startswith(head)):
        return Reader(_read_npy_file, path)
    if not head.startswith(b"PK"):
        return None
    archive = probe_zip(path, ".npz")
    if archive is None:
        return Reader(_read_npz, path) if path.suffix == ".npz" else None  # damaged: read() says what is wrong
    names = archive.namelist()
    if all(name.endswith(".npy") for name in names) and (names or path.suffix == ".npz"):
        return Reader(_read_npz, path, archive)
    archive.close()
    return None


# --------------------------------------------------------------------------------------------- reading


def read(path: Path) -> Inventory:
    try:
        with open_regular(path) as handle:
            is_zip = handle.read(2) == b"PK"
    except OSError as exc:
        raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None
    if is_zip:
        return _read_npz(path)
    return _read_npy_file(path)


def _read_npy_file(path: Path) -> Inventory:
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            record, version, fortran = _read_npy(path, handle, size, path.stem, path.name)
    except OSError as exc:
        raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None
    metadata = {"npy version": f"{version[0]}.{version[1]}"}
    if fortran:
        metadata["fortran_order"] = "True"
    return Inventory(source=str(path), format=FORMAT, tensors=[record], metadata=metadata, notes=_notes([record]))


def _read_exact(stream: IO[bytes], count: int) -> bytes:
    """Read ``count`` bytes, looping: a decompressing stream may return fewer per call."""
    chunks: list[bytes] = []
    remaining = count
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_npy(
    where: Any, stream: IO[bytes], size: int, name: str, origin: str
) -> tuple[TensorRecord, tuple[int, int], bool]:
    """One array's record from its header; ``size`` is the total size of the .npy bytes."""
    prefix = _read_exact(stream, 8)
    if len(prefix) < 8 or not prefix.startswith(MAGIC):
        if MAGIC.startswith(prefix):
            raise ParamscopeError(where, f"truncated: {len(prefix)} bytes, shorter than the .npy preamble")
        raise ParamscopeError(where, "not a .npy array: bad magic (expected \\x93NUMPY)")
    version = (prefix[6], prefix[7])
    layout = VERSIONS.get(version)
    if layout is None:
        raise ParamscopeError(where, f"unsupported .npy format version {version[0]}.{version[1]}")
    fmt, width, encoding = layout
    raw_len = _read_exact(stream, width)
    if len(raw_len) < width:
        raise ParamscopeError(where, "truncated in the header length")
    (header_len,) = struct.unpack(fmt, raw_len)
    if header_len > MAX_HEADER:
        raise ParamscopeError(where, f"header length {header_len:,} bytes exceeds the {MAX_HEADER:,} allowed")
    start = 8 + width + header_len
    if start > size:
        raise ParamscopeError(where, f"header length {header_len:,} bytes runs past the end ({size:,} bytes)")
    raw = _read_exact(stream, header_len)
    if len(raw) < header_len:
        raise ParamscopeError(where, "truncated in the header")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise ParamscopeError(where, f"header is not valid {encoding}") from None
    descr, fortran, shape = _parse_header(where, text)
    dtype, itemsize = _dtype(where, descr)
    numel = 1
    for dim in shape:
        numel *= dim
    expected = start + numel * itemsize
    if expected != size:
        problem = "truncated" if expected > size else f"{size - expected:,} bytes of trailing data"
        raise ParamscopeError(
            where, f"{problem}: shape {shape} of {descr!r} needs {expected:,} bytes in all, the array has {size:,}"
        )
    record = TensorRecord(name=name, shape=shape, dtype=dtype, role=role_for_file_tensor(dtype), origin=origin)
    return record, version, fortran


def _parse_header(where: Any, text: str) -> tuple[Any, bool, tuple[int, ...]]:
    try:
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ParamscopeError(where, f"header is not a Python literal: {type(exc).__name__}") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise ParamscopeError(where, "header must be a dict of exactly 'descr', 'fortran_order' and 'shape'")
    fortran = header["fortran_order"]
    if type(fortran) is not bool:
        raise ParamscopeError(where, f"fortran_order is {fortran!r}, not True or False")
    shape = header["shape"]
    if type(shape) is not tuple or not all(type(d) is int and d >= 0 for d in shape):
        raise ParamscopeError(where, f"shape {shape!r} is not a tuple of non-negative integers")
    if len(shape) > MAX_DIMS:
        raise ParamscopeError(where, f"shape has {len(shape)} dimensions, more than {MAX_DIMS}")
    return header["descr"], fortran, shape


def _dtype(where: Any, descr: Any) -> tuple[str, int]:
    """Canonical name and itemsize of a descr; object dtypes are refused (their data is a pickle)."""
    if isinstance(descr, list):
        itemsize = _structured_itemsize(where, descr, depth=0)
        return "numpy:structured", itemsize
    if not isinstance(descr, str) or len(descr) < 2 or len(descr) > 64:
        raise ParamscopeError(where, f"descr {descr!r} is not a dtype string")
    kind, rest = (descr[1], descr[2:]) if descr[0] in BYTE_ORDERS else (descr[0], descr[1:])
    if kind == "O":
        raise ParamscopeError(where, "object arrays (descr '|O') hold pickled Python objects: refused")
    if kind in "Mm" and rest.endswith("]") and "[" in rest:
        rest = rest.partition("[")[0]  # the time unit does not change the 8-byte storage
    if not rest.isdigit() or int(rest) > 1 << 31:
        raise ParamscopeError(where, f"descr {descr!r}: bad item size")
    itemsize = int(rest)
    if kind == "U":
        itemsize *= 4  # '<U10' counts characters; each takes 4 bytes (UCS-4)
    canonical = NUMERIC.get((kind, itemsize))
    if canonical is not None:
        return canonical, itemsize
    if kind in OTHER_KINDS and (kind not in "Mm" or itemsize == 8):
        return f"numpy:{descr}", itemsize
    raise ParamscopeError(where, f"unsupported descr {descr!r}")


def _structured_itemsize(where: Any, descr: list[Any], depth: int) -> int:
    """Itemsize of a structured descr ``[(name, descr[, shape]), ...]``; nesting is bounded."""
    if depth > 8:
        raise ParamscopeError(where, "structured descr nested too deeply")
    total = 0
    for field in descr:
        if not isinstance(field, tuple) or len(field) not in (2, 3):
            raise ParamscopeError(where, f"structured descr field {field!r} is not (name, descr[, shape])")
        sub = field[1]
        size = _structured_itemsize(where, sub, depth + 1) if isinstance(sub, list) else _dtype(where, sub)[1]
        if len(field) == 3:
            shape = field[2]
            shape = (shape,) if type(shape) is int else shape
            if type(shape) is not tuple or not all(type(d) is int and d >= 0 for d in shape):
                raise ParamscopeError(where, f"structured descr field shape {field[2]!r} is invalid")
            for dim in shape:
                size *= dim
        total += size
    return total


def _notes(records: list[TensorRecord]) -> list[str]:
    odd = sorted({r.dtype for r in records if r.dtype.startswith("numpy:")})
    if not odd:
        return []
    return [f"Arrays of non-numeric dtypes ({', '.join(odd)}) are listed as buffers; their bytes are not counted."]


# --------------------------------------------------------------------------------------------- npz


def _read_npz(path: Path, archive: zipfile.ZipFile | None = None) -> Inventory:
    """The arrays of an .npz, from ``archive`` when a probe opened it already (closed here either way)."""
    import zipfile
    import zlib

    with archive if archive is not None else open_zip(path, ".npz") as archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise ParamscopeError(path, f"{len(members):,} members, more than the {MAX_MEMBERS:,} allowed")
        records: list[TensorRecord] = []
        seen: set[str] = set()
        for info in members:
            name = info.filename
            _check_member_name(path, name)
            if name in seen:
                raise ParamscopeError(path, f"member {name!r} appears more than once")
            seen.add(name)
            if info.is_dir():
                continue
            if not name.endswith(".npy"):
                raise ParamscopeError(path, f"member {name!r} is not a .npy array")
            where = f"{path}[{name}]"
            if info.flag_bits & 0x1:
                raise ParamscopeError(where, "member is encrypted")
            try:
                with archive.open(info) as stream:
                    record, _, _ = _read_npy(where, stream, info.file_size, name[: -len(".npy")], path.name)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError,
                    RuntimeError) as exc:
                raise ParamscopeError(where, f"cannot read member: {exc}") from None
            except (OSError, zlib.error) as exc:  # damaged deflate data, unsupported compression
                raise ParamscopeError(where, f"cannot read member: {exc}") from None
            records.append(record)
    return Inventory(
        source=str(path), format=FORMAT, tensors=records, metadata={"arrays": len(records)}, notes=_notes(records)
    )


def _check_member_name(path: Path, name: str) -> None:
    pure = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":"):
        raise ParamscopeError(path, f"member name {name!r} escapes the archive")
    if "\x00" in name:
        raise ParamscopeError(path, f"member name {name!r} holds a NUL byte")
