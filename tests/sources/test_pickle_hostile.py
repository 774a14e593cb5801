"""Hostile PyTorch checkpoints: each is refused with a ParamscopeError naming the problem, and nothing runs.

Payloads that would execute create a marker file (``touch MARKER``) if they were ever unpickled; every
test checks the marker is absent afterwards. Fixtures are built from a real torch.save zip whose
data.pkl is replaced, or by hand.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramscope.errors import ParamscopeError
from paramscope.sources import files, pickle_reader, torch_pickle

from ._pickle_helpers import pickle_member, rezip, storage_tuple, tensor_v2, with_pickle

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A small valid checkpoint: {'w': zeros(4)} (storage '0', 4 floats) and a legacy twin."""
    folder = tmp_path_factory.mktemp("base")
    torch.save({"w": torch.zeros(4)}, folder / "base.pt")
    torch.save({"w": torch.zeros(4)}, folder / "legacy.pt", _use_new_zipfile_serialization=False)
    return folder / "base.pt"


def _s(text: str) -> bytes:
    """BINUNICODE of text."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _cmd(marker: Path) -> str:
    return f"touch {marker}"


def _dict_of(value: bytes) -> bytes:
    """A data.pkl {'w': <value>} in protocol 2."""
    return b"\x80\x02}(" + _s("w") + value + b"u."


# Each case: (id, builder(base, marker) -> data.pkl bytes, expected message fragment).
PICKLE_CASES = [
    ("os.system", lambda m: b"cos\nsystem\n(" + _s(_cmd(m)) + b"tR.", "refuses global 'os.system'"),
    ("posix.system", lambda m: pickle.dumps(_Reduce(os.system, (_cmd(m),)), protocol=2),
     "refuses global 'posix.system'"),
    ("builtins.exec", lambda m: b"cbuiltins\nexec\n(" + _s(f"open({str(m)!r}, 'w')") + b"tR.",
     "refuses global 'builtins.exec'"),
    ("builtins.eval", lambda m: b"c__builtin__\neval\n(" + _s(f"open({str(m)!r}, 'w')") + b"tR.",
     "refuses global '__builtin__.eval'"),
    ("subprocess.Popen", lambda m: b"csubprocess\nPopen\n((" + _s("touch") + _s(str(m)) + b"ltR.",
     "refuses global 'subprocess.Popen'"),
    ("pip.main", lambda m: b"cpip\nmain\n((" + _s("install") + _s("evil") + b"ltR.", "refuses global 'pip.main'"),
    ("pip._internal", lambda m: b"cpip._internal.cli.main\nmain\n(]tR.",
     "refuses global 'pip._internal.cli.main.main'"),
    ("functools.partial", lambda m: b"cfunctools\npartial\n(cos\nsystem\n" + _s(_cmd(m)) + b"tR)R.",
     "refuses global 'functools.partial'"),
    ("stack_global", lambda m: b"\x80\x04\x8c\x02os\x8c\x06system\x93" + _s(_cmd(m)) + b"\x85R.",
     "refuses global 'os.system'"),
    ("stack_global_memo", lambda m: b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93" + _s(_cmd(m)) + b"\x85R.",
     "refuses global 'os.system'"),
    ("stack_global_not_str", lambda m: b"\x80\x04K\x01K\x02\x93.", "STACK_GLOBAL of something other than two strings"),
    ("inst", lambda m: b"(" + _s(_cmd(m)) + b"ios\nsystem\n.", "refuses opcode INST"),
    ("obj", lambda m: b"(ccollections\nOrderedDict\n" + _s(_cmd(m)) + b"o.", "refuses opcode OBJ"),
    ("newobj_not_allowed_class", lambda m: b"\x80\x02cbuiltins\nobject\n)\x81.", "refuses global 'builtins.object'"),
    ("newobj_of_rebuild_function", lambda m: b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)\x81.",
     "NEWOBJ of 'torch._utils._rebuild_tensor_v2' refused"),
    ("build_on_list", lambda m: b"\x80\x02]}b.", "BUILD on a list refused"),
    ("setstate_on_tensor", lambda m: _dict_of(tensor_v2() + b"}" + _s("__class__") + b"cos\nsystem\nsb"),
     "refuses global 'os.system'"),
    ("build_on_tensor", lambda m: _dict_of(tensor_v2() + b"}" + _s("__dict__") + b"}sb"),
     "BUILD on a TensorRef refused"),
    ("reduce_of_dtype", lambda m: b"\x80\x02ctorch\nfloat32\n)R.", "REDUCE of 'float32' refused"),
    ("ext1", lambda m: b"\x80\x02\x82\x01.", "refuses opcode EXT1"),
    ("ext2", lambda m: b"\x80\x02\x83\x01\x00.", "refuses opcode EXT2"),
    ("ext4", lambda m: b"\x80\x02\x84\x01\x00\x00\x00.", "refuses opcode EXT4"),
    ("next_buffer", lambda m: b"\x80\x05\x97.", "refuses opcode NEXT_BUFFER"),
    ("readonly_buffer", lambda m: b"\x80\x05N\x98.", "refuses opcode READONLY_BUFFER"),
    ("self_list", lambda m: b"\x80\x02}(" + _s("w") + b"]q\x00h\x00au.", "self-referencing structure at 'w.0'"),
    ("self_dict", lambda m: b"\x80\x02}q\x00" + _s("me") + b"h\x00s.", "self-referencing structure at 'me'"),
    ("deep_marks", lambda m: b"\x80\x02" + b"(" * 100_000 + b"].", "MARKs nested deeper than 1000"),
    ("deep_lists", lambda m: b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b".", "nested deeper than 1000 levels"),
    ("deep_tuple_keys", lambda m: b"\x80\x02}" + b")" + b"\x85" * 100_000 + b"Ns.", "nested deeper than 100 levels"),
    ("wide_shared_tuple_key", lambda m: b"\x80\x02}" + b")" + b"2\x86" * 80 + b"Ns.",
     "hashing dict keys and set items reaches more than 16,000,000 elements"),
    ("deep_tuple_set", lambda m: b"\x80\x04(" + b")" + b"\x85" * 100_000 + b"\x91.", "nested deeper than 100 levels"),
    ("ordered_dict_rebuilt", lambda m: b"\x80\x02](" + b"K\x01K\x02\x86" * 100_000 + b"eq\x00\x85q\x01"
     + b"ccollections\nOrderedDict\nq\x02" + b"h\x02h\x01R0" * 50 + b"N.", "OrderedDict reaches more than 16,000,000"),
    ("size_tuple_reused", lambda m: b"\x80\x02(" + b"K\x01" * 1_000_000 + b"t\x85q\x01ctorch\nSize\nq\x02"
     + b"h\x02h\x01R0" * 20 + b"N.", "torch.Size reaches more than 16,000,000"),
    ("bytes_copied_again", lambda m: b"\x80\x04\x8e" + struct.pack("<Q", 1 << 20) + b"\0" * (1 << 20)
     + b"\x85q\x01cbuiltins\nbytearray\nq\x02" + b"h\x02h\x01R0" * 600 + b"N.", "bytearray reaches more than"),
    ("int_keys_one_hash", lambda m: b"\x80\x02}(" + b"".join(b"\x8a\x09" + (5 + k * (2**61 - 1)).to_bytes(9, "little")
     + b"N" for k in range(100)) + b"u.", "more than 64 dict keys or set items share one hash"),
    ("complex_of_huge_int", lambda m: _dict_of(b"cbuiltins\ncomplex\n(\x8a\xff" + b"\x01" * 255 + b"tR"),
     "complex of an integer too large for a float"),
    ("tensor_of_65_dims", lambda m: _dict_of(tensor_v2(size=b"(" + b"K\x01" * 65 + b"t", stride=b"(" + b"K\x01" * 65
                                                                                               + b"t")),
     "tensor of 65 dimensions (limit 64)"),
    ("huge_binunicode", lambda m: b"\x80\x02X\xff\xff\xff\x7fabc.", "needs 2147483647 bytes"),
    ("huge_binbytes8", lambda m: b"\x80\x04\x8e" + struct.pack("<Q", 2**63) + b".", "bytes"),
    ("huge_long4", lambda m: b"\x80\x02\x8b\xff\xff\xff\x00.", "integer of 16777215 bytes"),
    ("missing_memo", lambda m: b"\x80\x02h\x05.", "memo key 5"),
    ("truncated", lambda m: tensor_v2()[:40], "truncated"),
    ("no_stop", lambda m: b"\x80\x02}(" + _s("w") + tensor_v2() + b"u", "without STOP"),
    ("stop_with_extra_stack", lambda m: b"\x80\x02K\x01K\x02.", "STOP at offset"),
    ("unknown_opcode", lambda m: b"\x80\x02\xff.", "unknown opcode 0xff"),
    ("protocol_6", lambda m: b"\x80\x06N.", "pickle protocol 6"),
    ("numel_over_storage", lambda m: _dict_of(tensor_v2(size=b"M\xe8\x03\x85")), "needs 4000 bytes of storage '0'"),
    ("storage_lies_about_numel", lambda m: _dict_of(tensor_v2(numel=1000, size=b"M\xe8\x03\x85")),
     "declares 4,000 bytes but its zip member holds 16"),
    ("negative_size", lambda m: _dict_of(tensor_v2(size=b"J\xff\xff\xff\xff\x85")), "outside 0..2**62"),
    ("overflowing_size", lambda m: _dict_of(tensor_v2(size=b"\x8a\x09" + (2**70).to_bytes(9, "little") + b"\x85")),
     "outside 0..2**62"),
    ("product_overflow", lambda m: _dict_of(tensor_v2(size=b"\x8a\x08" + (2**61).to_bytes(8, "little") * 1
                                                           + b"\x8a\x08" + (2**61).to_bytes(8, "little") + b"\x86",
                                                      stride=b"K\x01K\x01\x86")), "of storage '0'"),
    ("negative_stride", lambda m: _dict_of(tensor_v2(stride=b"J\xff\xff\xff\xff\x85")), "outside 0..2**62"),
    ("negative_offset", lambda m: _dict_of(tensor_v2(offset=-1)), "offset -1"),
    ("dims_mismatch", lambda m: _dict_of(tensor_v2(stride=b"K\x01K\x01\x86")), "size has 1 dims but stride 2"),
    ("storage_key_traversal", lambda m: _dict_of(tensor_v2(key="../../etc/passwd")), "is not a plain name"),
    ("storage_key_dotdot", lambda m: _dict_of(tensor_v2(key="..")), "is not a plain name"),
    ("missing_member", lambda m: _dict_of(tensor_v2(key="9")), "has no zip member base/data/9"),
    ("dtype_not_dtype", lambda m: _dict_of(
        b"ctorch._utils\n_rebuild_tensor_v3\n("
        + storage_tuple(storage=b"ctorch.storage\nUntypedStorage\n", numel=16)
        + b"K\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rctorch\nFloatStorage\ntR"),
     "not a torch dtype"),
    ("storage_type_not_storage", lambda m: _dict_of(tensor_v2(storage=b"ctorch\nfloat32\n")),
     "not a torch storage class"),
    ("storage_declared_twice", lambda m: b"\x80\x02(" + tensor_v2(numel=4) + tensor_v2(numel=2, size=b"K\x02\x85")
     + b"l.", "declared twice"),
    ("persistent_not_storage", lambda m: b"\x80\x02(" + _s("module") + b"cos\nsystem\ntQ.", "refuses global"),
    ("persistent_wrong_shape", lambda m: b"\x80\x02" + _s("x") + b"Q.", "not a storage reference"),
    ("from_type_to_set", lambda m: _dict_of(b"ctorch._tensor\n_rebuild_from_type_v2\n(ctorch._utils\n_rebuild_tensor\n"
                                            b"cbuiltins\nset\n)}tR"), "not a tensor"),
    ("script_class_outside_torchscript", lambda m: b"\x80\x02c__torch__\nEvil\n)\x81.",
     "refuses global '__torch__.Evil'"),
    ("codecs_other_encoding", lambda m: b"\x80\x02c_codecs\nencode\n(" + _s("x") + _s("rot13") + b"tR.", "encoding"),
    ("unhashable_key", lambda m: b"\x80\x02}]Ns.", "unhashable type list"),
]  # fmt: skip


class _Reduce:
    """Pickles as a call of ``func(*args)``: the classic payload (made with the real pickle module)."""

    def __init__(self, func, args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize(("build", "message"), [c[1:] for c in PICKLE_CASES], ids=[c[0] for c in PICKLE_CASES])
def test_hostile_data_pkl(base, tmp_path, build, message):
    marker = tmp_path / "MARKER"
    path = with_pickle(base, tmp_path / "base.pt", build(marker))
    with pytest.raises(ParamscopeError) as info:
        files.read_path(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_case_count():
    assert len({c[0] for c in PICKLE_CASES}) == len(PICKLE_CASES) >= 25


def test_deflate_bomb_over_cap(base, tmp_path, monkeypatch):
    """data.pkl compressed: declared size over the cap is refused before inflating anything."""
    bomb = b"\x80\x02" + b"N0" * (2 << 20) + b"N."
    path = with_pickle(base, tmp_path / "bomb.pt", bomb)
    rezip(path, tmp_path / "bomb2.pt", compress={"data.pkl": zipfile.ZIP_DEFLATED})
    monkeypatch.setattr(torch_pickle, "MAX_PICKLE_BYTES", 1 << 20)
    with pytest.raises(ParamscopeError, match="paramscope reads at most 1,048,576"):
        files.read_path(tmp_path / "bomb2.pt")


def test_deflate_bomb_lying_size(base, tmp_path):
    """A deflated data.pkl that inflates to more than its directory entry says: stopped at the declared size."""
    _, good = pickle_member(base)
    path = tmp_path / "lie.pt"
    rezip(base, path, compress={"data.pkl": zipfile.ZIP_DEFLATED})
    blob = bytearray(path.read_bytes())
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = bomb.compress(good + b"\x00" * (50 << 20)) + bomb.flush()
    # Rebuild by hand: same members, data.pkl replaced by the bomb but declaring the honest size.
    with zipfile.ZipFile(base) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    out = tmp_path / "lie2.pt"
    _write_raw_zip(out, members, {"data.pkl": (payload, len(good))})
    with pytest.raises(ParamscopeError, match="inflates to more or less than its declared"):
        files.read_path(out)
    assert blob  # the zipfile-made twin exists and is valid
    assert torch_pickle.read(path).tensors


def _write_raw_zip(path: Path, members: list[tuple[str, bytes]], deflated: dict[str, tuple[bytes, int]]) -> None:
    """A minimal zip writer whose sizes we control (zipfile refuses to lie)."""
    local = bytearray()
    central = bytearray()
    for name, data in members:
        raw_name = name.encode()
        method, body, usize = 0, data, len(data)
        for suffix, (payload, declared) in deflated.items():
            if name.endswith("/" + suffix):
                method, body, usize = 8, payload, declared
        crc = zlib.crc32(data)
        offset = len(local)
        local += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(body), usize,
                             len(raw_name), 0) + raw_name + body  # fmt: skip
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(body), usize,
                               len(raw_name), 0, 0, 0, 0, 0, offset) + raw_name  # fmt: skip
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + eocd))


def test_legacy_wrong_magic(base, tmp_path):
    legacy = base.with_name("legacy.pt").read_bytes()
    magic = torch_pickle.MAGIC_NUMBER.to_bytes(10, "little")
    bad = legacy.replace(magic, (torch_pickle.MAGIC_NUMBER + 1).to_bytes(10, "little"), 1)
    path = tmp_path / "bad.pt"
    path.write_bytes(bad)
    with pytest.raises(ParamscopeError, match="wrong magic number"):
        torch_pickle.read(path)
    with pytest.raises(ParamscopeError, match="not a checkpoint format"):
        files.read_path(path)  # not even claimed: the magic is how it is recognised


def test_legacy_wrong_protocol(base, tmp_path):
    legacy = base.with_name("legacy.pt").read_bytes()
    bad = legacy.replace(b"M\xe9\x03", b"M\xea\x03", 1)  # BININT2 1001 -> 1002
    path = tmp_path / "bad.pt"
    path.write_bytes(bad)
    with pytest.raises(ParamscopeError, match="protocol 1002"):
        files.read_path(path)


def test_legacy_count_lies(base, tmp_path):
    legacy = bytearray(base.with_name("legacy.pt").read_bytes())
    count_at = len(legacy) - 16 - 8
    assert struct.unpack_from("<q", legacy, count_at)[0] == 4
    struct.pack_into("<q", legacy, count_at, 5)
    path = tmp_path / "bad.pt"
    path.write_bytes(bytes(legacy))
    with pytest.raises(ParamscopeError, match="holds 5 elements, the pickle says 4"):
        files.read_path(path)
    path.write_bytes(bytes(legacy[:-3]))
    with pytest.raises(ParamscopeError, match="legacy storage"):
        files.read_path(path)


def test_polyglot_zip_after_pickle(base, tmp_path):
    """A legacy-looking pickle with a torch zip appended: read as legacy, which the zip bytes do not satisfy."""
    legacy = base.with_name("legacy.pt").read_bytes()
    head = legacy[: legacy.index(b"\x80\x02}")]  # magic, protocol, sys_info
    path = tmp_path / "poly.pt"
    path.write_bytes(head + pickle.dumps(_Reduce(os.system, ("true",)), protocol=2) + base.read_bytes())
    with pytest.raises(ParamscopeError, match=r"refuses global 'posix\.system'"):
        files.read_path(path)


def test_polyglot_pickle_before_zip(base, tmp_path):
    """Bytes prepended to a zip: the central directory is not where the end record says."""
    path = tmp_path / "poly.pt"
    zip_bytes = base.read_bytes()
    path.write_bytes(b"PK\x03\x04" + pickle.dumps(_Reduce(os.system, ("true",))) + zip_bytes)
    with pytest.raises(ParamscopeError):
        torch_pickle.read(path)


def test_zip_duplicate_member(base, tmp_path):
    with zipfile.ZipFile(base) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    path = tmp_path / "dup.pt"
    _write_raw_zip(path, [*members, members[0]], {})
    with pytest.raises(ParamscopeError, match="appears twice"):
        torch_pickle.read(path)


def test_torchscript_class_cannot_be_called(base, tmp_path):
    marker = tmp_path / "MARKER"
    data = b"\x80\x02c__torch__\nM\n(" + _s(_cmd(marker)) + b"tR."
    path = tmp_path / "ts.pt"
    rezip(base, path, lambda name, old: (name, data if name.endswith("data.pkl") else old))
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("base/code/__torch__.py", "import os\nos.system('touch x')\n")
    with pytest.raises(ParamscopeError, match=r"REDUCE of '__torch__\.M' refused"):
        files.read_path(path)
    assert not marker.exists()


CLI_CASES = ["os.system", "deep_marks", "numel_over_storage", "storage_key_traversal"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_one_line_no_traceback(base, tmp_path, case):
    marker = tmp_path / "MARKER"
    build = next(c[1] for c in PICKLE_CASES if c[0] == case)
    path = with_pickle(base, tmp_path / "evil.pt", build(marker))
    out = subprocess.run([sys.executable, "-m", "paramscope", str(path)], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("paramscope: ") and "Traceback" not in out.stderr
    assert not marker.exists()


# ---- fuzz ---------------------------------------------------------------------------------------

_VALID = pickle.dumps({"a": [1, 2.5, "x", b"y", (None, True)], "b": {3: frozenset({4})}}, protocol=2)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    with contextlib.suppress(ParamscopeError):
        pickle_reader.load(data, "fuzz", persistent_load=lambda pid: pid)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzz_mutated_pickle(flips):
    data = bytearray(_VALID)
    for at, value in flips:
        data[at] = value
    with contextlib.suppress(ParamscopeError):
        pickle_reader.load(bytes(data), "fuzz")


@pytest.fixture(scope="module")
def valid_zip(base) -> bytes:
    return base.read_bytes()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_mutated_checkpoint(valid_zip, base, data):
    """Byte flips anywhere in a zip (directory, headers, data.pkl) or a legacy file: only ParamscopeError."""
    source = data.draw(st.sampled_from([valid_zip, base.with_name("legacy.pt").read_bytes()]))
    blob = bytearray(source)
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(1, len(blob)))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.pt"
        path.write_bytes(bytes(blob))
        with contextlib.suppress(ParamscopeError):
            files.read_path(path)
