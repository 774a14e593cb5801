"""Hostile PyTorch checkpoints, .npz and .keras zips (issue 11, items 2, 5 and 11), run through the CLI
under the harness's limits: each ends with exit 0, or exit 1 and one line naming the file, in bounded
time and memory. Fixtures are written by hand (no torch needed): small pickles that reach a lot, and zip
directories that lie. Payloads that would run create a marker file (``touch``); it must never appear.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from paramscope.sources import pickle_reader, torch_pickle
from paramscope.sources.files import DEFLATE_MAX_RATIO
from tests.hostile._limits import assert_clean, assert_refused, run_cli


def _s(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _long(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    if len(raw) < 256:
        return b"\x8a" + bytes([len(raw)]) + raw  # LONG1
    return b"\x8b" + struct.pack("<i", len(raw)) + raw  # LONG4


def _tensor(key: str = "0", numel: int = 4, offset: bytes = b"K\x00", size: bytes = b"K\x04\x85") -> bytes:
    """``_rebuild_tensor_v2(storage(key, FloatStorage, numel), offset, size, (1,), False, OrderedDict())``."""
    storage = b"(" + _s("storage") + b"ctorch\nFloatStorage\n" + _s(key) + _s("cpu") + b"J" + struct.pack(
        "<i", numel) + b"tQ"  # fmt: skip
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + offset + size + b"K\x01\x85"
            + b"\x89ccollections\nOrderedDict\n)RtR")  # fmt: skip


def _state(value: bytes, name: str = "w") -> bytes:
    """data.pkl of ``{name: <value>}``."""
    return b"\x80\x02}(" + _s(name) + value + b"u."


def torch_zip(path: Path, pkl: bytes, storages: dict[str, bytes] | None = None, *, records: dict[str, bytes] | None
              = None, deflate: bool = False) -> Path:
    """An honest torch.save-like zip: a/data.pkl, a/version, a/byteorder and a/data/<key>."""
    storages = {"0": b"\0" * 16} if storages is None else storages
    records = {"version": b"3\n", "byteorder": b"little"} if records is None else records
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/data.pkl", pkl, zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
        for name, data in records.items():
            archive.writestr(f"a/{name}", data)
        for key, data in storages.items():
            archive.writestr(f"a/data/{key}", data)
    return path


def raw_zip(path: Path, members: list[dict]) -> Path:
    """A zip whose directory says what each member dict says: name, data (the bytes written), and
    optionally method, usize / csize (declared sizes), offset (declared local header offset), zip64."""
    local = bytearray()
    central = bytearray()
    for m in members:
        name = m["name"].encode()
        data = m.get("data", b"")
        method = m.get("method", 0)
        csize, usize = m.get("csize", len(data)), m.get("usize", len(data))
        offset = len(local)
        local += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, zlib.crc32(data),
                             min(csize, 0xFFFFFFFF), min(usize, 0xFFFFFFFF), len(name), 0) + name + data
        extra = b""
        if m.get("zip64"):
            extra = struct.pack("<HHQQ", 1, 16, usize, csize)
            csize32 = usize32 = 0xFFFFFFFF
        else:
            csize32, usize32 = csize, usize
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, 0, method, 0, 0, zlib.crc32(data),
                               csize32, usize32, len(name), len(extra), 0, 0, 0, 0, m.get("offset", offset)
                               ) + name + extra  # fmt: skip
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + eocd))
    return path


def _members(pkl: bytes, storage: bytes = b"\0" * 16, **storage_fields) -> list[dict]:
    return [{"name": "a/data.pkl", "data": pkl}, {"name": "a/version", "data": b"3\n"},
            {"name": "a/data/0", "data": storage, **storage_fields}]  # fmt: skip


# ---- item 2: amplification --------------------------------------------------------------------


def test_valid_fixture_reads(tmp_path):
    """The fixtures' base is a checkpoint the CLI reads: 4 parameters."""
    path = torch_zip(tmp_path / "ok.pt", _state(_tensor()))
    result = assert_clean(run_cli(path, "--format", "json"), path, expect=0)
    assert '"total": 4' in result.stdout


def test_key_of_shared_tuple_references(tmp_path):
    """A dict key holding 9,999 references to one 100k-element tuple: CPython would hash 10^9 elements."""
    big = b"(" + b"N" * 100_000 + b"tq\x00"
    key = b"(" + b"h\x00" * 9_999 + b"t"
    pkl = b"\x80\x02}" + big + b"0" + key + b"Ns."
    assert len(zlib.compress(pkl)) < 2_048
    path = torch_zip(tmp_path / "hash.pt", pkl, deflate=True)
    result = assert_refused(run_cli(path), path, "hashing dict keys and set items reaches more than 16,000,000")
    assert result.seconds < 30


def test_hash_flooding_ints(tmp_path):
    """Distinct int keys with one hash (n + k(2**61 - 1)): quadratic dict inserts, refused."""
    keys = [7 + k * (2**61 - 1) for k in range(200)]
    assert len({hash(k) for k in keys}) == 1
    pkl = b"\x80\x02}(" + b"".join(_long(k) + b"N" for k in keys) + b"u."
    path = torch_zip(tmp_path / "flood.pt", pkl)
    assert_refused(run_cli(path), path, f"more than {pickle_reader.MAX_COLLISIONS} dict keys or set items share one")


def test_hash_flooding_tuples_in_a_set(tmp_path):
    """Tuples of -1 and -2 (whose hashes are equal) all collide: 256 distinct items, one hash."""
    items = [tuple(-1 - ((i >> b) & 1) for b in range(8)) for i in range(256)]
    assert len(set(items)) == 256 and len({hash(t) for t in items}) == 1
    body = b"".join(b"(" + b"".join(b"J" + struct.pack("<i", v) for v in t) + b"t" for t in items)
    pkl = b"\x80\x04}(" + _s("s") + b"(" + body + b"\x91u."
    path = torch_zip(tmp_path / "set.pt", pkl)
    assert_refused(run_cli(path), path, "share one hash")


@pytest.mark.parametrize("copies", [100_000, 5_000_000])
def test_dups_of_one_tensor_recorded_once(tmp_path, copies):
    """A list of millions of DUPs of one tensor: its first MAX_ALIASES names are listed, the rest counted."""
    pkl = _state(b"](" + _tensor() + b"2" * (copies - 1) + b"e")
    path = torch_zip(tmp_path / "dups.pt", pkl, deflate=True)
    assert path.stat().st_size < 20_000
    result = assert_clean(run_cli(path, "--format", "json", timeout=60), path, expect=0)
    assert '"total": 4' in result.stdout
    assert f"{copies - torch_pickle.MAX_ALIASES:,} more references to tensors already listed" in result.stdout


def test_deep_names_reached_many_times(tmp_path):
    """Dicts 900 deep holding 20,000 distinct tensors: names of 1,800 characters each, refused in all."""
    tensors = b"".join(_tensor(numel=20_000, offset=b"M" + struct.pack("<H", i % 65_536), size=b"K\x01\x85")
                       for i in range(20_000))
    inner = b"](" + tensors + b"e"
    for _ in range(900):
        inner = b"}(" + _s("k") + inner + b"u"
    pkl = b"\x80\x02" + inner + b"."
    path = torch_zip(tmp_path / "deep.pt", pkl, {"0": b"\0" * 80_000}, deflate=True)
    assert_refused(run_cli(path), path, "tensor names (paths included) total more characters than the file has bytes")


def _deflated_member(name: str, pattern: bytes, total: int, head: bytes, tail: bytes) -> dict:
    """A deflated member of ``head + pattern * n + tail`` (``total`` bytes), compressed chunk by chunk."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    crc = zlib.crc32(head)
    out = [squeeze.compress(head)]
    chunk = pattern * (1 << 18)
    left = total - len(head) - len(tail)
    while left > 0:
        piece = chunk[: min(left, len(chunk))]
        out.append(squeeze.compress(piece))
        crc = zlib.crc32(piece, crc)
        left -= len(piece)
    out.append(squeeze.compress(tail) + squeeze.flush())
    return {"name": name, "data": b"".join(out), "method": 8, "usize": total}


def test_none_pop_under_the_byte_cap_ends_in_seconds(tmp_path):
    """100 MB of None/POP deflated to a few hundred KB: the step budget ends it."""
    member = _deflated_member("a/data.pkl", b"N0", 100 << 20, b"\x80\x02", b"N.")
    path = raw_zip(tmp_path / "nop.pt", [member, {"name": "a/version", "data": b"3\n"}])
    assert path.stat().st_size < 300_000
    result = assert_refused(run_cli(path), path, f"more than {pickle_reader.MAX_STEPS:,} steps")
    assert result.seconds < 45


def test_data_pkl_over_the_byte_cap(tmp_path):
    member = _deflated_member("a/data.pkl", b"N0", 256 << 20, b"\x80\x02", b"N.")
    path = raw_zip(tmp_path / "big.pt", [member, {"name": "a/version", "data": b"3\n"}])
    result = assert_refused(run_cli(path), path, f"paramscope reads at most {torch_pickle.MAX_PICKLE_BYTES:,}")
    assert result.seconds < 10


@pytest.mark.parametrize(("value", "fragment"), [
    (b"cbuiltins\ncomplex\n(" + _long(2**2000) + b"tR", "complex of an integer too large for a float"),
    (b"cbuiltins\ncomplex\n(F1e999\nK\x01tR", None),
    (_long(2**8000 - 1), None),
    (b"F-1e999\n", None),
])  # fmt: skip
def test_numbers_that_overflow_a_float(tmp_path, value, fragment):
    """Huge ints, infinities and complex numbers in the pickle: refused or shown, never an exit 3."""
    pkl = b"\x80\x02}(" + _s("epoch") + value + _s("w") + _tensor() + b"u."
    path = torch_zip(tmp_path / "num.pt", pkl)
    for output in ("tree", "json"):
        result = run_cli(path, "--format", output)
        if fragment is None:
            assert_clean(result, path, expect=0)
        else:
            assert_refused(result, path, fragment)


# ---- canaries ---------------------------------------------------------------------------------


def _touch(marker: Path) -> bytes:
    return b"cos\nsystem\n(" + _s(f"touch {marker}") + b"tR"


def _legacy(obj_pickle: bytes, keys: list[str], storages: bytes) -> bytes:
    return (pickle.dumps(torch_pickle.MAGIC_NUMBER, 2) + pickle.dumps(1001, 2)
            + pickle.dumps({"protocol_version": 1001, "little_endian": True}, 2) + obj_pickle
            + pickle.dumps(keys, 2) + storages)  # fmt: skip


@pytest.mark.parametrize("container", ["zip", "legacy", "key_of_a_dict"])
def test_canary_never_written(tmp_path, container):
    marker = tmp_path / "MARKER"
    if container == "zip":
        path = torch_zip(tmp_path / "evil.pt", _state(_touch(marker)))
    elif container == "legacy":
        path = tmp_path / "evil.pt"
        path.write_bytes(_legacy(_state(_touch(marker)), [], b""))
    else:
        path = torch_zip(tmp_path / "evil.pt", b"\x80\x02}(" + _touch(marker) + b"Nu.")
    assert_refused(run_cli(path), path, "refuses global 'os.system'")
    assert not marker.exists()


# ---- item 5: legacy files are read, not mapped ---------------------------------------------------


def _legacy_file(tmp_path: Path, count: int = 1) -> Path:
    obj = b"\x80\x02}(" + b"".join(_s(f"t{i}") + _tensor(str(i)) for i in range(count)) + b"u."
    storages = b"".join(struct.pack("<q", 4) + b"\0" * 16 for _ in range(count))
    path = tmp_path / "legacy.pt"
    path.write_bytes(_legacy(obj, [str(i) for i in range(count)], storages))
    return path


def test_legacy_reads_past_the_first_read(tmp_path):
    """20,000 tensors: the pickles run past the first 1 MiB read and are read again from a longer one."""
    path = _legacy_file(tmp_path, 20_000)
    assert path.stat().st_size > torch_pickle.LEGACY_FIRST_READ
    result = assert_clean(run_cli(path, "--format", "json"), path, expect=0)
    assert '"total": 80000' in result.stdout


@pytest.mark.parametrize("cut", [40, 200, 400, -20])
def test_legacy_truncated(tmp_path, cut):
    path = _legacy_file(tmp_path, 3)
    path.write_bytes(path.read_bytes()[:cut])
    assert_clean(run_cli(path), path, expect=1)


# ---- item 11: sizes from the zip directory --------------------------------------------------------


def test_storage_size_faked_to_2_63(tmp_path):
    """A zip64 extra field says the storage member holds 2**63 bytes (2**61 floats from a small file)."""
    numel = _long(2**61)
    pkl = _state(_tensor().replace(b"J\x04\x00\x00\x00tQ", numel + b"tQ"))
    path = raw_zip(tmp_path / "huge.pt", _members(pkl, usize=2**63, csize=16, zip64=True))
    assert path.stat().st_size < 1_000
    assert_refused(run_cli(path), path, "is stored but claims 9,223,372,036,854,775,808 bytes in 16")


def test_storage_deflated_beyond_deflate(tmp_path):
    member = {"method": 8, "usize": 2**40, "data": zlib.compress(b"\0" * 16)[2:-4], "zip64": True}
    path = raw_zip(tmp_path / "ratio.pt", _members(_state(_tensor()), **member))
    assert_refused(run_cli(path), path, "more than deflate can")
    assert DEFLATE_MAX_RATIO == 1_032


def test_storage_record_bigger_than_numel(tmp_path):
    """torch: 'record size (64 bytes) does not match expected size': 4 floats in a 64-byte record."""
    path = torch_zip(tmp_path / "pad.pt", _state(_tensor()), {"0": b"\0" * 64})
    assert_refused(run_cli(path), path, "storage '0' declares 16 bytes but its zip member holds 64")


@pytest.mark.parametrize(("records", "fragment"), [
    ({"byteorder": b"little"}, "without a version record"),
    ({"version": b"11\n"}, "version '11\\n' is not one torch reads (1..10)"),
    ({"version": b"0"}, "is not one torch reads"),
    ({"version": b"three"}, "is not one torch reads"),
    ({"version": b"3\n", "byteorder": b"middle"}, "byteorder record 'middle' is not 'little' or 'big'"),
    ({"version": b"3\n", "byteorder": b"little\n"}, "is not 'little' or 'big'"),
    ({"version": b"3\n", ".storage_alignment": b"sixty"}, ".storage_alignment record 'sixty' is not a positive"),
    ({"version": b"3\n", ".storage_alignment": b"0"}, "is not a positive integer"),
])  # fmt: skip
def test_records_checked_as_torch_does(tmp_path, records, fragment):
    path = torch_zip(tmp_path / "rec.pt", _state(_tensor()), records=records)
    assert_refused(run_cli(path), path, fragment)


@pytest.mark.parametrize("records", [{"version": b"3\n"}, {".data/version": b" 10", "byteorder": b"big",
                                                           ".storage_alignment": b"64"}])
def test_records_torch_accepts(tmp_path, records):
    path = torch_zip(tmp_path / "rec.pt", _state(_tensor()), records=records)
    assert_clean(run_cli(path), path, expect=0)


def test_overlapping_members(tmp_path):
    """Two directory entries pointing at one local header: the overlapping-member bomb."""
    members = _members(_state(_tensor()))
    members.append({"name": "a/data/1", "data": b"", "offset": 0, "csize": 16, "usize": 16})
    path = raw_zip(tmp_path / "overlap.pt", members)
    assert_refused(run_cli(path), path, "overlaps the next member")


def _npy(shape: tuple[int, ...]) -> bytes:
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


@pytest.mark.parametrize("how", ["stored", "deflated"])
def test_npz_member_of_40_gib_in_300_bytes(tmp_path, how):
    npy = _npy((5 << 30,))  # 5 Gi float64 = 40 GiB
    if how == "stored":
        member = {"name": "a.npy", "data": npy, "csize": len(npy) + (40 << 30), "usize": len(npy) + (40 << 30),
                  "zip64": True}
        fragment = "past the end of the member data"
    else:
        member = {"name": "a.npy", "data": zlib.compress(npy)[2:-4], "method": 8, "usize": len(npy) + (40 << 30),
                  "zip64": True}
        fragment = "more than deflate can"
    path = raw_zip(tmp_path / "a.npz", [member])
    assert path.stat().st_size < 400
    assert_refused(run_cli(path), path, fragment)


def test_keras_overlapping_members(tmp_path):
    config = b'{"class_name": "Sequential", "config": {"layers": []}}'
    members = [{"name": "metadata.json", "data": b'{"keras_version": "3.0.0"}'},
               {"name": "config.json", "data": config},
               {"name": "model.weights.h5", "data": b"", "offset": 0, "csize": 40, "usize": 40}]  # fmt: skip
    path = raw_zip(tmp_path / "m.keras", members)
    assert_refused(run_cli(path), path, "overlaps the next member")


# ---- property: mutated files stay clean under the CLI ---------------------------------------------


def test_mutated_files_stay_clean(tmp_path):
    """The hand-built torch zip, legacy file and .npz of this module (the library-written ones are in
    test_mutations), 60 mutated copies of each, through the CLI in one limited process."""
    from ._mutate import assert_all_clean, write_mutations

    bases = [torch_zip(tmp_path / "base.pt", _state(_tensor())), _legacy_file(tmp_path),
             raw_zip(tmp_path / "base.npz", [{"name": "a.npy", "data": _npy((2,)) + b"\0" * 16}])]
    paths = [p for i, base in enumerate(bases) for p in write_mutations(base, tmp_path / "m", 60, seed=i)]
    assert assert_all_clean(paths).get(1, 0) > 0
