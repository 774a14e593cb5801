"""NumPy reader: .npy and .npz headers against numpy itself, and hostile archives."""

from __future__ import annotations

import io
import math
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramscope import inspect
from paramscope.cli import main
from paramscope.errors import ParamscopeError
from paramscope.records import Role
from paramscope.sources import numpy_files as reader
from paramscope.sources.files import read_path

CANONICAL = {np.dtype(k): v for k, v in {
    "f2": "float16", "f4": "float32", "f8": "float64", "c8": "complex64", "c16": "complex128", "i1": "int8",
    "i2": "int16", "i4": "int32", "i8": "int64", "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64",
    "?": "bool"}.items()}


def assert_cli_fails(path: Path) -> None:
    stderr = io.StringIO()
    assert main([str(path)], stdout=io.StringIO(), stderr=stderr) == 1
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], lines


@pytest.mark.parametrize("dtype", list(CANONICAL))
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 4)])
def test_npy_matches_numpy(tmp_path, dtype, shape):
    path = tmp_path / "arr.npy"
    np.save(path, np.zeros(shape, dtype))
    ref = np.load(path, mmap_mode="r")
    inv = read_path(path)
    assert inv.format == "numpy"
    (record,) = inv.tensors
    assert (record.name, record.shape, record.dtype) == ("arr", ref.shape, CANONICAL[ref.dtype])
    assert record.nbytes == ref.nbytes
    assert record.role is (Role.PARAMETER if ref.dtype.kind in "fc" else Role.BUFFER)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_versions_and_fortran_and_big_endian(tmp_path, version):
    arr = np.asfortranarray(np.zeros((5, 7), ">f8"))
    path = tmp_path / "v.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array(handle, arr, version=version)
    ref = np.load(path)
    inv = read_path(path)
    assert inv.metadata["npy version"] == f"{version[0]}.{version[1]}"
    assert inv.metadata["fortran_order"] == "True"
    assert inv.tensors[0].shape == ref.shape and inv.tensors[0].dtype == "float64"


def test_npz_matches_numpy(tmp_path):
    arrays = {"w": np.zeros((10, 4), np.float32), "b": np.zeros(4, np.float64), "ids": np.arange(9),
              "mask": np.ones((2, 2), bool), "half": np.zeros((3, 3), np.float16)}
    for saver in (np.savez, np.savez_compressed):
        path = tmp_path / f"{saver.__name__}.npz"
        saver(path, **arrays)
        with np.load(path) as ref:
            expected = {k: (ref[k].shape, CANONICAL[ref[k].dtype]) for k in ref.files}
        inv = read_path(path)
        assert inv.format == "numpy"
        assert {r.name: (r.shape, r.dtype) for r in inv.tensors} == expected
        assert all(r.origin == path.name for r in inv.tensors)
        report = inspect(path)
        assert report.total == 40 + 4 + 9
        assert report.buffers == 9 + 4
        assert report.bytes == sum(a.nbytes for a in arrays.values())


def test_npz_member_in_subdirectory_name(tmp_path):
    path = tmp_path / "nested.npz"
    np.savez(path, **{"layer/w": np.zeros((2, 3), np.float32)})
    with np.load(path) as ref:
        assert ref.files == ["layer/w"]
    assert [r.name for r in read_path(path).tensors] == ["layer/w"]


def test_non_numeric_dtypes_are_buffers(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, s=np.array(["ab", "cde"]), t=np.array([1, 2], "datetime64[ns]"),
             r=np.zeros(3, [("x", "<f4"), ("y", "<i2", (2,))]))
    inv = read_path(path)
    assert {r.name: r.dtype for r in inv.tensors} == {"s": "numpy:<U3", "t": "numpy:<M8[ns]",
                                                       "r": "numpy:structured"}
    assert all(r.role is Role.BUFFER for r in inv.tensors)
    assert inv.notes


# --------------------------------------------------------------------------------------------- bad input


def npy_bytes(header: str, data: int, version: tuple[int, int] = (1, 0)) -> bytes:
    raw = header.encode("latin1")
    length = struct.pack("<H", len(raw)) if version == (1, 0) else struct.pack("<I", len(raw))
    return b"\x93NUMPY" + bytes(version) + length + raw + bytes(data)


BAD_NPY = {
    "object dtype": (npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16), "pickled"),
    "size mismatch short": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 12), "truncated"),
    "size mismatch long": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 12), "trailing"),
    "bad version": (npy_bytes("{}", 0, (9, 0)), "version 9.0"),
    "missing key": (npy_bytes("{'descr': '<f4', 'shape': (1,)}", 4), "exactly"),
    "extra key": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4), "exactly"),
    "code in header": (npy_bytes("__import__('os').system('true')", 0), "not a Python literal"),
    "negative shape": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 0), "non-negative"),
    "bool shape": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (True,), }", 4), "non-negative"),
    "float shape": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1.0,), }", 4), "non-negative"),
    "list shape": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': [1], }", 4), "non-negative"),
    "fortran not bool": (npy_bytes("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", 4), "fortran_order"),
    "bad descr": (npy_bytes("{'descr': '<q9', 'fortran_order': False, 'shape': (1,), }", 4), "descr"),
    "huge shape": (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2**40, 2**40), }", 4), "literal"),
    "overflowing shape": (npy_bytes(f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({2**62}, {2**62}), }}", 4),
                          "truncated"),
    "header past end": (b"\x93NUMPY\x01\x00\xff\xff{", "runs past the end"),
    "truncated preamble": (b"\x93NUM", "truncated"),
    "bad utf8 v3": (npy_bytes("{'descr': '<f4'}", 0, (3, 0))[:-3] + b"\xff\xfe}", "utf8"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPY))
def test_bad_npy(tmp_path, case):
    blob, message = BAD_NPY[case]
    path = tmp_path / "bad.npy"
    path.write_bytes(blob)
    with pytest.raises(ParamscopeError, match=message):
        read_path(path)
    assert_cli_fails(path)


def write_zip(path: Path, members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


GOOD = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8)


def test_an_npz_directory_is_parsed_once(tmp_path, monkeypatch):
    # the probe opens the archive and its Reader reads that archive
    path = write_zip(tmp_path / "a.npz", [("a.npy", GOOD), ("b.npy", GOOD)])
    parsed = []
    real = zipfile.ZipFile._RealGetContents
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", lambda self: (parsed.append(1), real(self))[1])
    assert [(r.name, r.shape) for r in read_path(path).tensors] == [("a", (2,)), ("b", (2,))]
    assert len(parsed) == 1


def test_npz_parent_member(tmp_path):
    path = write_zip(tmp_path / "evil.npz", [("../evil.npy", GOOD)])
    with pytest.raises(ParamscopeError, match="escapes the archive"):
        read_path(path)
    assert_cli_fails(path)


def test_npz_absolute_member(tmp_path):
    path = write_zip(tmp_path / "abs.npz", [("/abs.npy", GOOD)])
    with pytest.raises(ParamscopeError, match="escapes the archive"):
        read_path(path)


def test_npz_deflate_bomb_does_not_allocate(tmp_path):
    # 1 GiB of zeros after a valid header claiming a 1 GiB array; compresses to ~1 MB.
    header = npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (1073741824,), }", 0)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive, archive.open(
        "bomb.npy", "w", force_zip64=True
    ) as member:
        member.write(header)
        chunk = bytes(1 << 24)
        for _ in range(64):
            member.write(chunk)
    assert path.stat().st_size < 5_000_000
    code = (
        "from pathlib import Path; from paramscope.sources.files import read_path; "
        f"inv = read_path(Path({str(path)!r})); print(inv.tensors[0].numel); "
        # VmHWM is this process's own peak (ru_maxrss would include the forking parent's)
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert int(out[0]) == 1 << 30
    assert int(out[1]) < 100_000  # KiB: the 1 GiB member was never inflated


def test_npz_bomb_lying_header(tmp_path):
    # A deflated member whose header length field claims far more than the member holds.
    blob = b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + bytes(1 << 20)
    path = write_zip(tmp_path / "lie.npz", [("x.npy", blob)], zipfile.ZIP_DEFLATED)
    with pytest.raises(ParamscopeError, match="exceeds"):
        read_path(path)


def test_npz_truncated(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, a=np.zeros(100))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ParamscopeError):
        read_path(path)
    assert_cli_fails(path)


def test_npz_member_size_mismatch(tmp_path):
    path = write_zip(tmp_path / "m.npz", [("a.npy", GOOD + b"xx")])
    with pytest.raises(ParamscopeError, match="trailing"):
        read_path(path)


def test_npz_object_member(tmp_path):
    path = tmp_path / "o.npz"
    np.savez(path, o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ParamscopeError, match="pickled"):
        read_path(path)
    assert_cli_fails(path)


def test_npz_corrupt_deflate_stream(tmp_path):
    path = write_zip(tmp_path / "c.npz", [("a.npy", GOOD * 50)], zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    start = 30 + len("a.npy")
    for i in range(start, start + 20):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ParamscopeError):
        read_path(path)


# --------------------------------------------------------------------------------------------- fuzz


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_only_paramscope_errors(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("fuzz")
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 4), np.float32))
    blob = bytearray(buffer.getvalue())
    mode = data.draw(st.sampled_from(["flip", "truncate", "header", "npz"]))
    name = "f.npy"
    if mode == "flip":
        for _ in range(data.draw(st.integers(1, 6))):
            blob[data.draw(st.integers(0, 127))] = data.draw(st.integers(0, 255))
    elif mode == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    elif mode == "header":
        text = data.draw(st.text(alphabet="{}()[]'\":,<>|fiuOb0123456789 TrueFalsdescrhp_-", max_size=120))
        blob = bytearray(npy_bytes(text, data.draw(st.integers(0, 64))))
    else:
        name = "f.npz"
        raw = io.BytesIO()
        with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("a.npy", bytes(blob))
        blob = bytearray(raw.getvalue())
        for _ in range(data.draw(st.integers(1, 6))):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path = tmp / name
    path.write_bytes(bytes(blob))
    try:
        probed = reader.probe(bytes(blob[:64]), path)
        inv = probed.read() if probed is not None else None
    except ParamscopeError as exc:
        assert "\n" not in str(exc)
    else:
        if inv is not None:
            assert all(math.prod(r.shape) >= 0 for r in inv.tensors)


def test_zip_entries_checked(tmp_path):
    """files.check_zip_entries: the shared directory checks of .npz, .keras and torch zips."""
    from paramscope.sources.files import check_zip_entries

    ok = [("a", 0, 1, 10, 10, 0), ("b", 41, 1, 5, 5000, 8)]
    check_zip_entries("z", ok, 100)
    cases = [
        ([("a", 0, 1, 100, 100, 0)], "past the end of the member data (100 bytes)"),
        ([("a", 0, 1, 10, 10, 0), ("b", 40, 1, 5, 5, 0)], "overlaps the next member (at offset 40)"),
        ([("a", 0, 1, 10, 11, 0)], "is stored but claims 11 bytes in 10"),
        ([("a", 0, 1, 10, 10 * 1_032 + 1_025, 8)], "claims to inflate 10 bytes to 11,345, more than deflate can"),
    ]
    for entries, message in cases:
        with pytest.raises(ParamscopeError, match=re.escape(message)):
            check_zip_entries("z", entries, 100)
