"""PyTorch checkpoints (``torch.save``: ``.pt .pth .bin .ckpt``) read without torch and without unpickling.

Two containers, told apart by magic bytes:

* **zip** (torch >= 1.6): ``<prefix>/data.pkl`` is the object pickle; each storage is the member
  ``<prefix>/data/<key>``. Only the zip's central directory and ``data.pkl`` are read: a storage's size
  is the size of its member as the directory states it; its bytes are never read.
* **legacy**: a run of pickles (magic number, protocol version 1001, sys_info, the object, the sorted
  storage keys) followed by each storage as an 8-byte element count and its bytes. Only the counts are
  read, by seeking from one to the next.

The object pickle is decoded by :mod:`paramscope.sources.pickle_reader`, our own machine that knows an
allow-list of checkpoint globals and builds inert stand-ins; nothing from the file is imported or run.
Shapes come from the tensor rebuild calls (storage, offset, size, stride) and are checked against the
storage size. Tensors with the same storage, offset, shape, stride and dtype are one tensor seen under
several names (a tie group); views at other offsets of a storage are distinct tensors.

Naming rule for nested checkpoints: the whole object is walked (dicts by key, lists and tuples by
index, joined with ``.``). If the top level is a dict holding a dict under one of :data:`MODEL_KEYS`
(first match in that order: ``state_dict`` of Lightning, ``model_state_dict``, ``model``, ``module``
of DeepSpeed, ...), the tensors under it are the model's weights, named by their path *below* that key
(their state_dict key). Tensors under a top-level key in :data:`OPTIMIZER_KEYS` are optimizer state
(``optimizer.state.0.exp_avg``). Every other tensor is named by its full dotted path. A plain
state_dict or list is named from its root.

TorchScript archives (``code/``, ``constants.pkl``) are read the same way: their module objects are
opaque stand-ins whose attributes hold the tensors; the code is never run. ``torch.export`` ``.pt2``
archives are recognised and refused with an explanation.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from paramscope import dtypes
from paramscope.errors import ParamscopeError
from paramscope.gcpause import paused_gc
from paramscope.records import MAX_NAME_LENGTH, Inventory, Role, Table, role_for_file_tensor
from paramscope.sources import pickle_reader as pr
from paramscope.sources.files import (
    DEFLATE_MAX_RATIO,
    NAME_ALLOWANCE,
    ZIP_LOCAL_HEADER,
    NameBudget,
    Reader,
    check_zip_entries,
    open_regular,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from paramscope.sources.ranged import RangeReader

FORMAT = "pytorch"

MODEL_KEYS = ("state_dict", "model_state_dict", "model", "module", "model_state", "net", "network")
"""Top-level keys whose dict value is taken as the model's state_dict, first match wins."""
OPTIMIZER_KEYS = frozenset(
    {"optimizer", "optimizers", "optimizer_states", "optimizer_state_dict", "optimizer_state", "optim", "opt"}
)
"""Top-level keys whose tensors are optimizer state."""
STEP_KEYS = ("epoch", "global_step", "step", "iteration", "pytorch-lightning_version")

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_MAGIC_LE = MAGIC_NUMBER.to_bytes(10, "little")
_MAGIC_TEXT = b"L%d" % MAGIC_NUMBER

MAX_PICKLE_BYTES = 128 << 20
"""Largest data.pkl (or legacy pickle run) read: 128 MiB uncompressed. A 100k-tensor state_dict
pickles to 11 MB; the pickle machine's step budget ends far sooner than this many bytes of opcodes."""
MAX_DIRECTORY_BYTES = 64 << 20
MAX_TENSORS = 300_000
"""Tensor names recorded from one checkpoint (each costs ~2 KB through the report: 600 MB here). A
100k-tensor state_dict needs 100,000; a small pickle can name far more through shared references."""
MAX_ALIASES = 16
"""Names recorded for one tensor (one storage, offset, shape, stride and dtype): a tied embedding has
two. Further references to it are counted in a note, not listed (a list of 5 million DUPs of one
tensor reference is 5 MB of pickle)."""
LEGACY_FIRST_READ = 1 << 20
"""A legacy file's pickles are read with plain reads (no mmap: a file cut while mapped kills the process
with SIGBUS): this many bytes first, and if they run past them, up to :data:`MAX_PICKLE_BYTES` (two
runs at most, so the step budget is spent once: a 10,000-tensor legacy state_dict fits the first)."""
FORMAT_VERSIONS = range(1, 11)
"""Archive format versions torch reads (caffe2/serialize/versions.h: kMinSupportedFileFormatVersion 1 to
kMaxSupportedFileFormatVersion 10); torch.save writes 3."""
BYTEORDERS = (b"little", b"big")
"""The only contents torch accepts in a ``byteorder`` record (torch/serialization.py)."""
_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,200}")

# PyTorch element sizes where they differ from the dtype table (which counts packed sub-elements):
# torch's float4_e2m1fn_x2 / quint4x2 / quint2x4 elements are one byte each.
_TORCH_ITEMSIZE = {"float4_e2m1fn_x2": 1, "quint4x2": 1, "quint2x4": 1}


def _itemsize(dtype: str) -> int:
    if dtype in _TORCH_ITEMSIZE:
        return _TORCH_ITEMSIZE[dtype]
    known = dtypes.DTYPES[dtype]
    return max(1, known.block_bytes // known.block_elements)


# ---- detection ----------------------------------------------------------------------------------


def probe(head: bytes, path: Path) -> Reader | None:
    """A zip whose directory holds ``<prefix>/data.pkl`` (or a .pt2 archive), or a legacy torch pickle.

    A zip's directory is parsed here once (100k members: 0.3 s) and handed to the Reader with the open file,
    so that what is read is the file whose directory was parsed."""
    if head.startswith(b"PK\x03\x04"):
        try:  # a regular file still (not a FIFO swapped in since the head was read: open() would block)
            handle = open_regular(path)
        except ParamscopeError:
            return None
        try:
            members = _zip_directory(handle, path)
        except (ParamscopeError, OSError):
            members = None
        except BaseException:
            handle.close()
            raise
        if members is not None and (_find_prefix(members) is not None or _is_pt2(members)):
            return Reader(_read_open_zip, handle, path, members)
        handle.close()
        return None
    if _MAGIC_LE in head[:32] or _MAGIC_TEXT in head[:32]:
        return Reader(read, path)
    return None


# ---- zip directory ------------------------------------------------------------------------------


class Member(NamedTuple):
    """One zip member as the central directory describes it (a tuple: 100k of them are made per archive, and
    a tuple is made three times faster than a frozen dataclass)."""

    name: str
    method: int
    compressed: int
    size: int
    offset: int
    name_len: int


_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD64_LOCATOR = struct.Struct("<4sIQI")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL_USED = struct.Struct("<4s6xH8xIIHHH8xI")
"""The fields of a central directory entry the reader uses (signature, method, compressed and uncompressed
size, name, extra and comment lengths, local header offset), the others skipped: 8 objects per entry, not 17."""
assert _CENTRAL_USED.size == _CENTRAL.size


def _zip_directory(handle: Any, source: object) -> dict[str, Member]:
    """Parse the central directory; the archive must start at offset 0 (no prepended data)."""
    handle.seek(0, 2)
    size = handle.tell()
    tail_len = min(size, 65_535 + _EOCD.size)
    handle.seek(size - tail_len)
    tail = handle.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise ParamscopeError(source, "zip end-of-directory record not found (truncated zip?)")
    eocd_pos = size - tail_len + at
    _, _disk, _cd_disk, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
    end_of_cd = eocd_pos
    loc = at - _EOCD64_LOCATOR.size
    if loc >= 0 and tail[loc : loc + 4] == b"PK\x06\x07":
        # A zip64 end record precedes the classic one (PyTorch always writes it): it has the real values.
        eocd64_pos = _EOCD64_LOCATOR.unpack_from(tail, loc)[2]
        if eocd64_pos + _EOCD64.size > eocd_pos:
            raise ParamscopeError(source, "zip64 end-of-directory record lies past the end of the directory")
        handle.seek(eocd64_pos)
        rec = handle.read(_EOCD64.size)
        if len(rec) != _EOCD64.size or rec[:4] != b"PK\x06\x06":
            raise ParamscopeError(source, "zip64 end-of-directory record is corrupt")
        _, _, _, _, _, _, _, count, cd_size, cd_offset = _EOCD64.unpack(rec)
        end_of_cd = eocd64_pos
    elif count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        raise ParamscopeError(source, "zip64 locator missing")
    if cd_offset + cd_size != end_of_cd:
        raise ParamscopeError(source, "zip directory is not where its end record says (data prepended to the zip?)")
    if cd_size > MAX_DIRECTORY_BYTES or count > cd_size // _CENTRAL.size:
        raise ParamscopeError(source, f"zip directory of {cd_size} bytes declares {count} members")
    handle.seek(cd_offset)
    directory = handle.read(cd_size)
    members: dict[str, Member] = {}
    pos = 0
    # The hot loop of a 100k-member archive: names bound locally, the signature checked from the unpacked
    # fields, the duplicate check by the dict's size.
    unpack, fixed, size, make = _CENTRAL_USED.unpack_from, _CENTRAL.size, len(directory), tuple.__new__
    for _ in range(count):
        if pos + fixed > size:
            raise ParamscopeError(source, "zip directory entry is corrupt")
        signature, method, csize, usize, name_len, extra_len, comment_len, offset = unpack(directory, pos)
        if signature != b"PK\x01\x02":
            raise ParamscopeError(source, "zip directory entry is corrupt")
        name_end = pos + fixed + name_len
        extra_end = name_end + extra_len
        if extra_end + comment_len > size:
            raise ParamscopeError(source, "zip directory entry runs past the directory")
        name = directory[pos + fixed : name_end].decode("utf-8", "replace")
        if usize == 0xFFFFFFFF or csize == 0xFFFFFFFF or offset == 0xFFFFFFFF:
            usize, csize, offset = _zip64_extra(directory[name_end:extra_end], usize, csize, offset, source)
        before = len(members)
        members[name] = make(Member, (name, method, csize, usize, offset, name_len))  # (half Member()'s cost)
        if len(members) == before:
            raise ParamscopeError(source, f"zip member {name!r} appears twice")
        pos = extra_end + comment_len
    members[_DATA_END] = Member(_DATA_END, 0, 0, 0, cd_offset, 0)  # where member data must end, for _check
    return members


_DATA_END = "\0data end"  # not a name a zip member can have (it would fail _KEY and every prefix test)


def _check(members: dict[str, Member], source: object) -> dict[str, Member]:
    """The members once :func:`files.check_zip_entries` accepts them (probe claims a torch zip whose
    directory lies, so that read() says what the lie is)."""
    members = dict(members)
    data_end = members.pop(_DATA_END).offset
    if not _entries_hold(members, data_end):  # check_zip_entries says which rule a member breaks
        check_zip_entries(
            source, [(m.name, m.offset, m.name_len, m.compressed, m.size, m.method) for m in members.values()],
            data_end,
        )
    return members


_BY_OFFSET = operator.attrgetter("offset")


def _entries_hold(members: dict[str, Member], data_end: int) -> bool:
    """Whether :func:`files.check_zip_entries` accepts these members, found without making its entry tuples or
    the names it would show (a 100k-member directory): each member's header, name and data end before the
    next member and before ``data_end``; a stored member's sizes agree; a deflated one inflates no more than
    deflate can. False where any of those fails (check_zip_entries then refuses it, naming it)."""
    limit = data_end
    header, ratio = ZIP_LOCAL_HEADER, DEFLATE_MAX_RATIO
    for _, method, compressed, size, offset, name_len in reversed(sorted(members.values(), key=_BY_OFFSET)):
        end = offset + header + name_len + compressed
        if end > limit or end > data_end:
            return False
        if method == 0:
            if compressed != size:
                return False
        elif method == 8 and size > ratio * compressed + 1_024:
            return False
        limit = offset
    return True


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int, source: object) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 1:
            values = [struct.unpack_from("<Q", body, i)[0] for i in range(0, len(body) - 7, 8)]
            for field_name in ("usize", "csize", "offset"):
                current = {"usize": usize, "csize": csize, "offset": offset}[field_name]
                if current == 0xFFFFFFFF:
                    if not values:
                        raise ParamscopeError(source, "zip64 extra field is short")
                    value = values.pop(0)
                    if field_name == "usize":
                        usize = value
                    elif field_name == "csize":
                        csize = value
                    else:
                        offset = value
        pos += 4 + length
    return usize, csize, offset


def _read_member(handle: Any, member: Member, source: object, cap: int) -> bytes:
    """The bytes of a small member (data.pkl, version): stored, or deflated with a cap on the output."""
    if member.size > cap:
        raise ParamscopeError(
            source, f"zip member {member.name!r} is {member.size:,} bytes uncompressed; paramscope reads at most "
                    f"{cap:,} bytes"
        )
    if member.compressed > cap + (cap >> 10) + 1_024:  # deflate's stored blocks add 5 bytes per 64 KiB
        raise ParamscopeError(source, f"zip member {member.name!r} is {member.compressed:,} bytes compressed, "
                                      f"more than its {member.size:,} bytes can take")
    handle.seek(member.offset)
    header = handle.read(_LOCAL.size)
    if len(header) != _LOCAL.size or header[:4] != b"PK\x03\x04":
        raise ParamscopeError(source, f"zip member {member.name!r} has no local header at offset {member.offset}")
    name_len, extra_len = _LOCAL.unpack(header)[9:11]
    handle.seek(member.offset + _LOCAL.size + name_len + extra_len)
    raw = handle.read(member.compressed)
    if len(raw) != member.compressed:
        raise ParamscopeError(source, f"zip member {member.name!r} is truncated")
    if member.method == 0:
        if member.compressed != member.size:
            raise ParamscopeError(source, f"zip member {member.name!r} is stored but its sizes differ")
        return raw
    if member.method == 8:
        inflater = zlib.decompressobj(-15)
        try:
            data = inflater.decompress(raw, member.size + 1)
        except zlib.error as exc:
            raise ParamscopeError(source, f"zip member {member.name!r} does not inflate: {exc}") from None
        if len(data) != member.size or inflater.unconsumed_tail:
            raise ParamscopeError(
                source, f"zip member {member.name!r} inflates to more or less than its declared {member.size} bytes"
            )
        return data
    raise ParamscopeError(source, f"zip member {member.name!r} uses compression method {member.method}")


def _find_prefix(members: dict[str, Member]) -> str | None:
    prefixes = [name[: -len("/data.pkl")] for name in members if name.endswith("/data.pkl") and name.count("/") == 1]
    if not prefixes:
        prefixes = [name[: -len("/constants.pkl")] for name in members if name.endswith("/constants.pkl")]
        prefixes = [p for p in prefixes if "/" not in p]
    return prefixes[0] if len(prefixes) == 1 else None


def _is_pt2(members: dict[str, Member]) -> bool:
    return any(name == "archive_format" or name.endswith("/archive_format") for name in members)


# ---- storages -----------------------------------------------------------------------------------


class _Storages:
    """Persistent-id handler: ``('storage', StorageType, key, location, numel[, view])`` -> StorageRef."""

    def __init__(self, legacy: bool) -> None:
        self.legacy = legacy
        self.refs: dict[str, pr.StorageRef] = {}

    def __call__(self, pid: Any) -> pr.StorageRef:
        # Called once per tensor of a state_dict: the checks are ordered so that a well-formed reference
        # costs a few type tests, and a storage named again (a tie, a view) makes no new StorageRef.
        if type(pid) is not tuple or len(pid) not in (5, 6) or pid[0] != "storage":
            raise pr.PickleRefused(f"persistent id is not a storage reference ({type(pid).__name__})")
        stype, key, location, numel = pid[1], pid[2], pid[3], pid[4]
        if type(stype) is not _STORAGE_TYPE:
            raise pr.PickleRefused(f"storage type is a {type(stype).__name__}, not a torch storage class")
        # (the keys torch.save writes are decimal numbers: ASCII digits are a plain name without the regex)
        if type(key) is not str or not ((key.isdigit() and key.isascii() and len(key) <= 200) or (
                _key_match(key) and key not in (".", ".."))):
            shown = repr(key[:60]) if isinstance(key, str) else type(key).__name__
            raise pr.PickleRefused(f"storage key {shown} is not a plain name")
        if type(numel) is not int or numel < 0 or numel >= 1 << 62:
            shown = numel if type(numel) is int else type(numel).__name__
            raise pr.PickleRefused(f"storage {key!r} declares {shown} elements")
        if len(pid) == 6 and pid[5] is not None:
            raise pr.PickleRefused("storage views (files of PyTorch before 1.0) are not supported")
        known = self.refs.get(key)
        if known is None:
            where = location[:40] if isinstance(location, str) else f"<{type(location).__name__}>"
            known = self.refs[key] = pr.StorageRef(key, stype.dtype, where, numel)
        elif known.dtype != stype.dtype or known.numel != numel:
            raise pr.PickleRefused(f"storage {key!r} is declared twice with different types or sizes")
        return known


_STORAGE_TYPE = pr.StorageType
_key_match = _KEY.fullmatch


# ---- reading ------------------------------------------------------------------------------------


def read(path: Path) -> Inventory:
    """The Inventory of a torch.save file (zip or legacy). The cyclic collector is paused while it is read:
    a 100k-tensor pickle makes ~700,000 objects and no cycles, and collections triggered by that many
    allocations walk all of them again and again (a third of the time)."""
    try:
        with paused_gc(), open_regular(path) as handle:
            head = handle.read(64)
            if head.startswith(b"PK\x03\x04"):
                return _read_zip(handle, path)
            return _read_legacy(handle, path)
    except OSError as exc:
        raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None


def _read_open_zip(handle: Any, path: Path, members: dict[str, Member]) -> Inventory:
    """A zip a probe opened, with the directory it parsed (the handle is closed here)."""
    with paused_gc(), handle:
        try:
            return _read_zip(handle, path, members)
        except OSError as exc:
            raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None


def _read_zip(handle: Any, path: Path, members: dict[str, Member] | None = None) -> Inventory:
    members = _check(_zip_directory(handle, path) if members is None else members, path)
    prefix = _find_prefix(members)
    if prefix is None:
        if _is_pt2(members):
            raise ParamscopeError(
                path,
                "a torch.export .pt2 archive (program and weights); paramscope does not read these: "
                "load it with torch.export.load and inspect the module",
            )
        raise ParamscopeError(path, "zip archive without a <prefix>/data.pkl: not a torch.save file")
    script = any(name.startswith(f"{prefix}/code/") for name in members) or f"{prefix}/constants.pkl" in members
    pkl = members.get(f"{prefix}/data.pkl")
    if pkl is None:
        raise ParamscopeError(path, "TorchScript archive without data.pkl: no weights to read")
    data = _read_member(handle, pkl, path, MAX_PICKLE_BYTES)
    storages = _Storages(legacy=False)
    result = pr.load(data, path, persistent_load=storages.__call__, script_classes=script, what="data.pkl")
    if result.end != len(data):
        raise ParamscopeError(path, f"data.pkl has {len(data) - result.end} bytes after its STOP")
    sizes: dict[str, int] = {}
    base = f"{prefix}/data/"
    itemsizes: dict[str, int] = {}  # (one or two dtypes for 100k storages)
    get = members.get
    for key, ref in storages.refs.items():
        member = get(base + key)
        if member is None:
            raise ParamscopeError(path, f"storage {key!r} has no zip member {prefix}/data/{key}")
        itemsize = itemsizes.get(ref.dtype)
        if itemsize is None:
            itemsize = itemsizes[ref.dtype] = _itemsize(ref.dtype)
        need = ref.numel * itemsize
        if member.size != need:  # torch: "record size (...) does not match expected size (...)"
            raise ParamscopeError(
                path, f"storage {key!r} declares {need:,} bytes but its zip member holds {member.size:,}"
            )
        sizes[key] = need
    metadata: dict[str, Any] = {"container": "zip", "zip_prefix": prefix, "pickle_protocol": result.protocol}
    metadata.update(_records(handle, members, prefix, path))
    notes: list[str] = []
    if script:
        metadata["torchscript"] = True
        notes.append("contains TorchScript code; not run (weights read from data.pkl only)")
    return _inventory(path, result.value, sizes, metadata, notes)


class RemoteName(str):
    """How a remote checkpoint is named to the zip reader: the text errors show, with the file's ``name``
    (the records' origin) and size (the names' budget), as a local Path would give them."""

    name: str
    nbytes: int

    def __new__(cls, text: str, name: str, nbytes: int) -> RemoteName:
        self = super().__new__(cls, text)
        self.name = name
        self.nbytes = nbytes
        return self


REMOTE_READ_AHEAD = 64 * 1024
"""Bytes each remote read of a zip takes at least: data.pkl and the small records that follow it at the
start of a torch.save zip come in the first read."""


def read_ranged(reader: RangeReader, source: str) -> Inventory:
    """A torch.save file served by ``reader`` (a URL, a Hub file, an object-store key), reading only its
    zip's end records and directory (one suffix read, usually), ``data.pkl`` and the small records (the
    first bytes, usually), never a storage. Legacy (pre-1.6) files are read from their first bytes as
    locally. Errors name ``source`` and the file; the inventory's source is ``source``."""
    from paramscope.sources.ranged import CachedFile

    handle = CachedFile(reader, read_ahead=REMOTE_READ_AHEAD)
    size = handle.size()
    short = reader.name.rsplit("/", 1)[-1]
    label = RemoteName(source if source.endswith(short) else f"{source}: {short}", short, size)
    with paused_gc():
        head = handle.read(64)
        if head.startswith(b"PK\x03\x04"):
            handle.prefetch(max(0, size - (65_535 + _EOCD.size)), size)  # end records, usually the directory
            inventory = _read_zip(handle, label, _zip_directory(handle, label))  # type: ignore[arg-type]
        elif _MAGIC_LE in head[:32] or _MAGIC_TEXT in head[:32]:
            # the pickles come in one read of their own size; then each storage's 8-byte element count is
            # checked where it lies (one small request each: a legacy file of many storages is slow remotely)
            handle.read_ahead = 8
            inventory = _read_legacy(handle, label)  # type: ignore[arg-type]
        else:
            raise ParamscopeError(label, "not a torch.save file (neither a zip nor a legacy torch pickle)")
    return inventory.replace(source=source)


_RECORD_CAP = 64
"""Bytes read of a ``version``, ``byteorder`` or ``.storage_alignment`` record (each holds a few)."""
_LEADING_UINT = re.compile(rb"[ \t\n\v\f\r]*\+?([0-9]{1,20})")


def _records(handle: Any, members: dict[str, Member], prefix: str, path: Path) -> dict[str, Any]:
    """The archive's small records, checked as torch checks them before it reads anything else."""
    def record(name: str) -> bytes | None:
        member = members.get(f"{prefix}/{name}")
        return None if member is None else _read_member(handle, member, path, _RECORD_CAP)

    found: dict[str, Any] = {}
    # caffe2 inline_container: ".data/version" first, else "version" (required); std::stoull, then the range.
    version = record(".data/version")
    if version is None:
        version = record("version")
    if version is None:
        raise ParamscopeError(path, "torch archive without a version record (torch refuses to load it)")
    match = _LEADING_UINT.match(version)
    if match is None or int(match.group(1)) not in FORMAT_VERSIONS:
        raise ParamscopeError(  # repr() escapes every control character latin-1 can hold
            path, f"torch archive version {version.decode('latin-1')!r} is not one torch reads "
                  f"({FORMAT_VERSIONS.start}..{FORMAT_VERSIONS.stop - 1})"
        )
    found["serialization_version"] = str(int(match.group(1)))
    byteorder = record("byteorder")
    if byteorder is not None:
        if byteorder not in BYTEORDERS:
            raise ParamscopeError(path, f"byteorder record {byteorder.decode('latin-1')!r} is not "
                                        "'little' or 'big'")
        found["byteorder"] = byteorder.decode()
    alignment = record(".storage_alignment")
    if alignment is not None:  # torch: int(record)
        try:
            value = int(alignment)
        except ValueError:
            value = 0
        if value <= 0:
            raise ParamscopeError(path, f".storage_alignment record {alignment.decode('latin-1')!r} is not a "
                                        "positive integer")
    return found


def _read_legacy(handle: Any, path: Path) -> Inventory:
    """Five pickles (magic, protocol, sys_info, object, storage keys), then the storages. The pickles'
    length is known only once they are run: run them over the first bytes, and again over four times
    again over up to :data:`MAX_PICKLE_BYTES` if they run past the end of what was read."""
    size = handle.seek(0, 2)
    if size == 0:
        raise ParamscopeError(path, "empty file")
    want = min(size, LEGACY_FIRST_READ)
    while True:
        handle.seek(0)
        data = handle.read(want)
        try:
            return _read_legacy_pickles(handle, path, data, size)
        except pr.TruncatedPickle as exc:
            if len(data) < want or want >= size:  # the file is cut short (or shrank while read)
                raise ParamscopeError(path, exc.reason) from None
            if want >= MAX_PICKLE_BYTES:
                raise ParamscopeError(
                    path, f"legacy pickles run past the first {MAX_PICKLE_BYTES:,} bytes "
                          f"({MAX_PICKLE_BYTES >> 20} MiB; paramscope's limit)"
                ) from None
            want = min(size, MAX_PICKLE_BYTES)


def _read_legacy_pickles(handle: Any, path: Path, view: bytes, size: int) -> Inventory:
    magic = pr.load(view, path, what="legacy magic number")
    if magic.value != MAGIC_NUMBER:
        raise ParamscopeError(path, "not a legacy torch.save file (wrong magic number)")
    version = pr.load(view, path, start=magic.end, what="legacy protocol version")
    if version.value != LEGACY_PROTOCOL:
        shown = version.value if type(version.value) is int else type(version.value).__name__
        raise ParamscopeError(path, f"legacy torch.save protocol {shown} (expected 1001)")
    info = pr.load(view, path, start=version.end, what="legacy sys_info")
    little = not (isinstance(info.value, dict) and info.value.get("little_endian") is False)
    storages = _Storages(legacy=True)
    result = pr.load(view, path, start=info.end, persistent_load=storages, what="legacy object pickle")
    keys = pr.load(view, path, start=result.end, what="legacy storage keys")
    if not isinstance(keys.value, list) or not all(isinstance(k, str) for k in keys.value):
        raise ParamscopeError(path, "legacy storage key list is not a list of names")
    if set(keys.value) != set(storages.refs) or len(keys.value) != len(storages.refs):
        raise ParamscopeError(path, "legacy storage key list does not match the storages the object uses")
    pos = keys.end
    sizes: dict[str, int] = {}
    order = "<q" if little else ">q"
    for key in keys.value:
        ref = storages.refs[key]
        handle.seek(pos)
        raw = handle.read(8)
        if len(raw) < 8:
            raise ParamscopeError(path, f"legacy storage {key!r}: file ends before its element count")
        count = struct.unpack(order, raw)[0]
        if count != ref.numel:
            raise ParamscopeError(
                path, f"legacy storage {key!r} holds {count} elements, the pickle says {ref.numel}"
            )
        nbytes = count * _itemsize(ref.dtype)
        pos += 8 + nbytes
        if pos > size:
            raise ParamscopeError(path, f"legacy storage {key!r} runs past the end of the file")
        sizes[key] = nbytes
    metadata: dict[str, Any] = {"container": "legacy", "pickle_protocol": result.protocol, "little_endian": little}
    return _inventory(path, result.value, sizes, metadata, [])


# ---- walking the object -------------------------------------------------------------------------


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if type(key) in (int, bool, float) or key is None:
        return str(key)
    return f"<{type(key).__name__}>"


_LEAVES = (str, int, float, bytes, bool, complex, type(None), pr.DTypeRef, pr.StorageRef, pr.StorageType)
MAX_WALK_DEPTH = 1_000
"""Containers nested deeper than this are refused (a real checkpoint nests a few levels)."""


def _items(obj: Any) -> Any:
    """(key, child) pairs of a container worth walking into; None for a leaf."""
    if isinstance(obj, dict):
        return obj.items()
    if isinstance(obj, (list, tuple)):
        return enumerate(obj)
    if isinstance(obj, pr.ScriptObject):
        state = obj.state
        return _items(state) if isinstance(state, (dict, list, tuple)) else ()
    return None


# A path is a linked list (parent, key text, depth, length of the dotted name so far): no per-level
# copies however deep or wide the object is, and a name's length is known before it is built.
_Path = tuple[Any, str, int, int] | None


def _parts(path: _Path) -> tuple[str, ...]:
    parts: list[str] = []
    while path is not None:
        parts.append(path[1])
        path = path[0]
    return tuple(reversed(parts))


def _identity(tensor: pr.TensorRef) -> Any:
    """What makes two tensor references one tensor: storage, offset, shape, stride and dtype, as text (a
    str's hash is salted: tuples of ints could be made to collide in the dicts keyed by it), or the
    object itself for a meta tensor."""
    if tensor.storage is None:
        return id(tensor)
    return f"{tensor.storage.key}\0{tensor.offset}\0{tensor.shape}\0{tensor.stride}\0{tensor.dtype}"


@dataclass
class _Found:
    tensors: list[tuple[_Path, pr.TensorRef]]  # (path of the name, tensor), in walk order
    names: dict[Any, int]  # identity key -> names recorded
    idents: dict[int, Any]  # id(TensorRef) -> its identity key in ``names``
    left_out: int = 0


def _size_of(source: object) -> int:
    """The checkpoint's size in bytes (0 where it cannot be had): what its names' budget grows with."""
    if isinstance(source, RemoteName):
        return source.nbytes
    try:
        return os.path.getsize(source) if isinstance(source, (str, Path)) else 0
    except OSError:
        return 0


def _walk(obj: Any, source: object) -> _Found:
    """Every tensor with its path, depth first in pickle order. Iterative; a cycle or nesting deeper
    than MAX_WALK_DEPTH is an error, and a container reached twice (shared, not cyclic) is walked once.
    Bounded by what is recorded: :data:`MAX_ALIASES` names per tensor (more are counted, not listed:
    a reference to one already named that often costs a dict lookup), :data:`MAX_TENSORS` names, and
    names within :class:`~paramscope.sources.files.NameBudget` (each name's length is known before it is
    joined: 900 nested dicts reached 20,000 times would be 18 million parts; a 100k-tensor state_dict's
    names take 2.5 million characters).

    A tensor's identity key (what its names are counted under) is cheap where it can be: the storage key
    while one tensor object alone uses that storage (a state_dict's every tensor), the full
    :func:`_identity` text once a second object on the same storage appears (a view, or a tie whose two
    rebuild calls were pickled separately), the first one's count moved over to its full key then."""
    names: dict[Any, int] = {}
    idents: dict[int, Any] = {}
    tensors: list[tuple[_Path, pr.TensorRef]] = []
    found = _Found(tensors, names, idents)
    spend = NameBudget(source, _size_of(source)).spend
    owners: dict[str, pr.TensorRef] = {}  # storage key -> the first tensor object seen on it
    on_path: set[int] = set()
    done: set[int] = set()
    pushed: dict[int, int] = {}  # id(TensorRef) -> references queued
    tensor_type = pr.TensorRef

    def identity(tensor: pr.TensorRef) -> Any:
        storage = tensor.storage
        if storage is None:
            return id(tensor)
        key = storage.key
        first = owners.setdefault(key, tensor)
        if first is tensor:
            return key  # no "\0" in a storage key: it equals no full identity (and no int)
        if idents[id(first)] == key:  # a second object on this storage: the first gets its full key
            full = idents[id(first)] = _identity(first)
            names[full] = names.pop(key)
        return _identity(tensor)

    def record(tensor: pr.TensorRef, path: _Path) -> None:
        ident = idents.get(id(tensor))
        if ident is None:
            ident = idents[id(tensor)] = identity(tensor)
        seen = names.get(ident, 0)
        if seen >= MAX_ALIASES:
            found.left_out += 1
            return
        if len(tensors) >= MAX_TENSORS:
            raise ParamscopeError(source, f"more than {MAX_TENSORS:,} tensor names (paramscope's limit)")
        spend(0 if path is None else path[3])
        names[ident] = seen + 1
        tensors.append((path, tensor))

    # Entries: (item, parent path, key, leaving); a path node is built when its entry is taken.
    stack: list[tuple[Any, _Path, Any, bool]] = [(obj, None, None, False)]
    root = True
    while stack:
        item, parent, key, leaving = stack.pop()
        if leaving:
            on_path.discard(id(item))
            done.add(id(item))
            continue
        if root:
            path: _Path = None
            root = False
        else:
            text = _key_text(key)
            path = (parent, text, 0 if parent is None else parent[2] + 1,
                    len(text) if parent is None else parent[3] + 1 + len(text))
        if isinstance(item, pr.TensorRef):
            record(item, path)
            continue
        items = _items(item)
        if items is None:
            continue
        ident = id(item)
        if ident in on_path:
            raise ParamscopeError(source, f"self-referencing structure at {'.'.join(_parts(path)) or '<root>'!r}")
        if ident in done:
            continue
        if path is not None and path[2] + 1 >= MAX_WALK_DEPTH:
            raise ParamscopeError(source, f"objects nested deeper than {MAX_WALK_DEPTH} levels")
        on_path.add(ident)
        stack.append((item, path, None, True))
        mark = len(stack)
        depth, length = (0, -1) if path is None else (path[2] + 1, path[3])
        for child_key, child in items:
            if type(child) is tensor_type:
                queued = pushed.get(id(child), 0)
                if queued >= MAX_ALIASES:  # named often enough already: counted, not walked
                    found.left_out += 1
                    continue
                pushed[id(child)] = queued + 1
                if len(stack) == mark:  # nothing queued before it here: it is next in walk order anyway
                    text = child_key if type(child_key) is str else _key_text(child_key)
                    record(child, (path, text, depth, length + 1 + len(text)))
                    continue
            elif isinstance(child, _LEAVES):
                continue
            stack.append((child, path, child_key, False))
        stack[mark:] = stack[:mark - 1:-1]  # children are taken in order
    return found


def _model_key(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    for key in MODEL_KEYS:
        if isinstance(value.get(key), dict):
            return key
    return None


def _flat_state_dict(value: Any, source: object) -> tuple[list[str], list[pr.TensorRef]] | None:
    """(names, tensors) of a plain state_dict: a dict of str keys to tensors, each a distinct tensor object on a
    storage no other one uses, none on the meta device, no key an optimizer's, the names within the names'
    budget. What :func:`_walk` and the naming rule make of such a dict is its keys, in order, each tensor
    once and tied to none: this says so in a few passes over the dict instead of a walk (a 100k-tensor
    state_dict's walk was an eighth of its read). None for anything else: the walk reads it."""
    if type(value) is not dict and type(value) is not pr.ODict:
        return None
    count = len(value)
    if count > MAX_TENSORS or not value.keys().isdisjoint(OPTIMIZER_KEYS):
        return None
    keys = list(value)
    tensors = list(value.values())
    tensor_type = pr.TensorRef
    if any(type(t) is not tensor_type for t in tensors) or any(type(k) is not str for k in keys):
        return None
    # a storage no other tensor uses: a distinct tensor object, and tied to none
    storages = [t.storage for t in tensors]
    if None in storages or len({storage.key for storage in storages}) != count:
        return None
    lengths = list(map(len, keys))
    if count and (max(lengths) > MAX_NAME_LENGTH or sum(lengths) > _size_of(source) + NAME_ALLOWANCE):
        return None  # the walk spends the budget name by name, and says which limit the names pass
    return keys, tensors


def _flat_table(path: Path, names: list[str], tensors: list[pr.TensorRef], sizes: dict[str, int]) -> Table:
    """The columns of a plain state_dict (:func:`_flat_state_dict`), each tensor checked against its storage as
    :func:`_inventory` checks it. Column by column (a comprehension or ``map`` each: a state_dict has one or two
    dtypes), the storage bounds in one loop."""
    kinds = [t.dtype for t in tensors]
    itemsizes: dict[str, int] = {}
    byte_size: dict[str, Any] = {}
    roles: dict[str, Role] = {}
    for dtype in dict.fromkeys(kinds):  # every dtype first, in order: an unknown one is refused before any storage
        if dtype not in dtypes.DTYPES:
            raise ParamscopeError(path, f"tensor dtype {dtype!r} is not one paramscope knows")
        itemsizes[dtype] = _itemsize(dtype)
        known = dtypes.DTYPES[dtype]
        # bytes per element where an element is whole bytes (DType.nbytes' blocks of one), else its rounding
        byte_size[dtype] = known.block_bytes if known.block_elements == 1 else known.nbytes
        roles[dtype] = role_for_file_tensor(dtype)
    shapes: list[tuple[int, ...] | None] = [t.shape for t in tensors]
    numels = list(map(math.prod, shapes))  # type: ignore[arg-type]  # never None here: no meta tensors
    get = sizes.get
    for name, t, numel in zip(names, tensors, numels, strict=True):
        if numel:  # the last element the tensor reaches (offset + sum((size-1)*stride)) lies in its storage
            extent = t.offset + 1
            for n, stride in zip(t.shape, t.stride, strict=True):
                extent += (n - 1) * stride
            need = extent * itemsizes[t.dtype]
            key = t.storage.key  # type: ignore[union-attr]  # _flat_state_dict: never a meta tensor
            if need > get(key, 0):
                raise ParamscopeError(
                    path,
                    f"tensor {name!r} of shape {list(t.shape)} at offset {t.offset} needs {need} "
                    f"bytes of storage {key!r}, which holds {get(key, 0)}",
                )
    nbytes: list[int | None]
    if len(roles) == 1:
        (dtype,) = roles
        col_roles = [roles[dtype]] * len(kinds)
        size = byte_size[dtype]
        nbytes = [n * size for n in numels] if type(size) is int else list(map(size, numels))
    else:
        col_roles = [roles[dtype] for dtype in kinds]
        nbytes = [n * size if type(size := byte_size[dtype]) is int else size(n)
                  for n, dtype in zip(numels, kinds, strict=True)]
    return Table(names, shapes, kinds, col_roles, numels, nbytes, [path.name] * len(names))


def _inventory(path: Path, value: Any, sizes: dict[str, int], metadata: dict[str, Any], notes: list[str]) -> Inventory:
    model_key = _model_key(value)
    if isinstance(value, dict):
        keys = [_key_text(k) for k in itertools.islice(value, 50)]  # (not 100k keys to show 50)
        metadata["top_level_keys"] = keys + (["..."] if len(value) > 50 else [])
        if model_key is not None:
            metadata["model_key"] = model_key
        for key in STEP_KEYS:
            if type(value.get(key)) in (int, str) and len(str(value[key])) <= 40:
                metadata[key] = value[key]
    else:
        metadata["top_level_type"] = type(value).__name__
    flat = _flat_state_dict(value, path)
    if flat is not None:
        table = _flat_table(path, flat[0], flat[1], sizes)
        return Inventory(source=str(path), format=FORMAT, table=table, metadata=metadata, notes=notes)
    found = _walk(value, path)
    itemsizes: dict[str, int] = {}
    for _, t in found.tensors:
        if t.dtype not in itemsizes:
            if t.dtype not in dtypes.DTYPES:
                raise ParamscopeError(path, f"tensor dtype {t.dtype!r} is not one paramscope knows")
            itemsizes[t.dtype] = _itemsize(t.dtype)
    roles = {dtype: role_for_file_tensor(dtype) for dtype in itemsizes}
    byte_size = {dtype: dtypes.DTYPES[dtype].nbytes for dtype in itemsizes}
    # The inventory is built as columns (records.Table), not a TensorRecord per tensor: a 100k-tensor
    # state_dict's records were a fifth of its read.
    # Per container (the parent of a name): the text its children's names start with, and whether they
    # are optimizer state. A state_dict's 100k names share one parent: its parts are joined once.
    prefixes: dict[int, tuple[str, bool]] = {}
    names, idents = found.names, found.idents
    count = len(found.tensors)
    col_names: list[str] = []
    col_shapes: list[tuple[int, ...] | None] = []
    col_dtypes: list[str] = []
    col_roles: list[Role] = []
    col_numel: list[int] = []
    col_nbytes: list[int | None] = []
    add_name, add_shape, add_dtype = col_names.append, col_shapes.append, col_dtypes.append
    add_role, add_numel, add_nbytes = col_roles.append, col_numel.append, col_nbytes.append
    ties: dict[int, Any] = {}
    extras: dict[int, Any] = {}
    optimizer_role = Role.OPTIMIZER_STATE
    meta_tensors = 0
    prod = math.prod
    for index, (node, t) in enumerate(found.tensors):
        if node is None:  # the whole object is one tensor
            name, optimizer = "", False
        else:
            parent, text = node[0], node[1]
            if parent is None:  # a top-level key: its own head
                name = "" if text == model_key else text
                optimizer = text != model_key and text in OPTIMIZER_KEYS
            else:
                known = prefixes.get(id(parent))
                if known is None:
                    parts = _parts(parent)
                    head = parts[0]
                    kept = parts[1:] if head == model_key else parts
                    known = prefixes[id(parent)] = (".".join(kept) + "." if kept else "",
                                                    head != model_key and head in OPTIMIZER_KEYS)
                name = known[0] + text
                optimizer = known[1]
        dtype, shape = t.dtype, t.shape
        numel = prod(shape)
        storage = t.storage
        if storage is None:
            meta_tensors += 1
            extras[index] = {"device": "meta"}
        else:
            if numel:  # the last element the tensor reaches (offset + sum((size-1)*stride)) lies in its storage
                extent = t.offset + 1
                for n, s in zip(shape, t.stride, strict=True):
                    extent += (n - 1) * s
                need = extent * itemsizes[dtype]
                if need > sizes.get(storage.key, 0):
                    raise ParamscopeError(
                        path,
                        f"tensor {name!r} of shape {list(shape)} at offset {t.offset} needs {need} "
                        f"bytes of storage {storage.key!r}, which holds {sizes.get(storage.key, 0)}",
                    )
            if names[idents[id(t)]] > 1:
                ties[index] = ("torch", _identity(t))
        add_name(name)
        add_shape(shape)
        add_dtype(dtype)
        add_role(optimizer_role if optimizer else roles[dtype])
        add_numel(numel)
        add_nbytes(byte_size[dtype](numel))
    sparse: dict[str, dict[int, Any]] = {}
    if ties:
        sparse["tie"] = ties
    if extras:
        sparse["extra"] = extras
    table = Table(col_names, col_shapes, col_dtypes, col_roles, col_numel, col_nbytes, [path.name] * count, sparse)
    if meta_tensors:
        notes.append(f"{meta_tensors} tensors were saved from the meta device (shapes only, no data)")
    if found.left_out:
        notes.append(f"{found.left_out:,} more references to tensors already listed under {MAX_ALIASES} names "
                     "each are not listed")
    return Inventory(source=str(path), format=FORMAT, table=table, metadata=metadata, notes=notes)
