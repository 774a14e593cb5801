"""The GGUF reader, checked against gguf-py's own GGUFReader on files written by its GGUFWriter."""

from __future__ import annotations

import contextlib
import io
import math
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramscope import dtypes
from paramscope.cli import main
from paramscope.errors import ParamscopeError
from paramscope.records import Role
from paramscope.report import Report
from paramscope.sources import files
from paramscope.sources import gguf as reader
from tests.sources._fuzz import mutated

# ggml names the gguf package uses for the plain types -> paramscope's names.
PLAIN = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
         "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64"}


def _ours(name: str) -> str:
    return PLAIN.get(name, name)


def _write_fixture(path: Path, *, endian: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE, alignment: int | None = None):
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(path, "llama", endianess=endian)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_name("tiny-test")
    w.add_context_length(4096)
    w.add_file_type(15)
    w.add_quantization_version(2)
    w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(1000)])
    w.add_array("tokenizer.ggml.scores", [float(i) for i in range(100)])
    w.add_array("small.ints", [1, 2, 3])
    w.add_array("small.strs", ["a", "bc"])
    w.add_array("nested", [[1, 2], [3, 4, 5], [[6]]])
    w.add_bool("flag.true", True)
    w.add_bool("flag.false", False)
    w.add_uint8("v.u8", 250)
    w.add_int8("v.i8", -5)
    w.add_uint16("v.u16", 65000)
    w.add_int16("v.i16", -300)
    w.add_uint32("v.u32", 4_000_000_000)
    w.add_int32("v.i32", -70000)
    w.add_float32("v.f32", 1.5)
    w.add_uint64("v.u64", 2**63 + 5)
    w.add_int64("v.i64", -(2**40))
    w.add_float64("v.f64", 0.25)
    w.add_string("v.str", "héllo")
    x = rng.random((64, 256), dtype=np.float32)
    w.add_tensor("token_embd.weight", rng.random((10, 64), dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.ones((64, 64), np.float16))
    w.add_tensor("blk.0.attn_k.weight", np.ones((2, 3, 64), np.float64))
    w.add_tensor("blk.0.ffn_up.weight", gguf.quants.quantize(x, Q.Q8_0), raw_dtype=Q.Q8_0)
    w.add_tensor("blk.0.ffn_gate.weight", gguf.quants.quantize(x, Q.Q4_0), raw_dtype=Q.Q4_0)
    w.add_tensor("blk.0.ffn_down.weight", np.zeros((64, 144), np.uint8), raw_dtype=Q.Q4_K)
    w.add_tensor("blk.0.attn_v.weight", np.zeros((32, 210), np.uint8), raw_dtype=Q.Q6_K)
    w.add_tensor("blk.0.bf.weight", np.zeros((3, 8), np.uint16), raw_dtype=Q.BF16)
    w.add_tensor("pos_ids", np.arange(5, dtype=np.int32))
    w.add_tensor("mask", np.ones(7, dtype=np.int8))
    w.add_tensor("big_ids", np.ones((2, 2), dtype=np.int64))
    w.add_tensor("small_ids", np.ones(3, dtype=np.int16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def fixture_path(tmp_path: Path) -> Path:
    return _write_fixture(tmp_path / "tiny.gguf")


def _assert_matches_reference(path: Path) -> None:
    inv = reader.read(path)
    ref = gguf.GGUFReader(path)
    assert [r.name for r in inv.tensors] == [t.name for t in ref.tensors]
    for ours, theirs in zip(inv.tensors, ref.tensors, strict=True):
        assert ours.shape == tuple(int(d) for d in reversed(theirs.shape))
        assert ours.dtype == _ours(theirs.tensor_type.name)
        assert ours.numel == int(theirs.n_elements)
        assert ours.nbytes == int(theirs.n_bytes)
    assert inv.metadata["gguf.data_offset"] == ref.data_offset
    assert inv.metadata["gguf.alignment"] == ref.alignment


def test_matches_gguf_reader(fixture_path: Path) -> None:
    _assert_matches_reference(fixture_path)


def test_big_endian_matches_gguf_reader(tmp_path: Path) -> None:
    path = _write_fixture(tmp_path / "be.gguf", endian=gguf.GGUFEndian.BIG)
    _assert_matches_reference(path)
    assert reader.read(path).metadata["gguf.byte_order"] == "big"


def test_custom_alignment(tmp_path: Path) -> None:
    path = _write_fixture(tmp_path / "a.gguf", alignment=256)
    _assert_matches_reference(path)
    inv = reader.read(path)
    assert inv.metadata["gguf.alignment"] == 256
    assert inv.metadata["gguf.data_offset"] % 256 == 0


def test_metadata(fixture_path: Path) -> None:
    md = reader.read(fixture_path).metadata
    ref = gguf.GGUFReader(fixture_path)
    assert md["general.architecture"] == "llama"
    assert md["general.name"] == "tiny-test"
    assert md["gguf.file_type"] == "MOSTLY_Q4_K_M" == gguf.LlamaFileType(15).name
    assert md["general.file_type"] == 15
    assert md["general.quantization_version"] == 2
    assert md["llama.context_length"] == 4096
    assert md["tokenizer.ggml.tokens"] == "<array of 1000 string>"
    assert md["tokenizer.ggml.scores"] == "<array of 100 float32>"
    assert md["small.ints"] == [1, 2, 3]
    assert md["small.strs"] == ["a", "bc"]
    assert md["nested"] == "<array of 3 array>"
    assert md["flag.true"] is True and md["flag.false"] is False
    for key in ("v.u8", "v.i8", "v.u16", "v.i16", "v.u32", "v.i32", "v.u64", "v.i64", "v.str"):
        assert md[key] == ref.fields[key].contents(), key
    assert md["v.f32"] == 1.5 and md["v.f64"] == 0.25
    assert md["gguf.version"] == 3
    assert md["gguf.tensor_count"] == len(ref.tensors)
    assert md["gguf.kv_count"] == len(ref.fields) - 3  # gguf-py lists the 3 header fields as fields too


def test_roles_and_report(fixture_path: Path) -> None:
    inv = reader.read(fixture_path)
    roles = {r.name: r.role for r in inv.tensors}
    assert roles["pos_ids"] == roles["mask"] == roles["big_ids"] == roles["small_ids"] == Role.BUFFER
    assert roles["token_embd.weight"] == roles["blk.0.ffn_down.weight"] == Role.PARAMETER
    ref = gguf.GGUFReader(fixture_path)
    int_types = {"I8", "I16", "I32", "I64"}
    params = sum(int(t.n_elements) for t in ref.tensors if t.tensor_type.name not in int_types)
    buffers = sum(int(t.n_elements) for t in ref.tensors if t.tensor_type.name in int_types)
    report = Report(inv)
    assert report.total == params
    assert report.buffers == buffers
    assert report.bytes == sum(int(t.n_bytes) for t in ref.tensors)
    assert report.non_embedding == params - 10 * 64
    assert inv.module_types == {"token_embd": "Embedding"}
    assert all(r.origin == "tiny.gguf" and r.trainable is None for r in inv.tensors)


def test_dtype_table_matches_ggml() -> None:
    """Every ggml type the gguf package knows: our name and block size agree with GGML_QUANT_SIZES."""
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        name = reader.GGML_TYPES[int(qtype)]
        assert name == _ours(qtype.name)
        d = dtypes.get(name)
        if qtype == Q.Q8_1:
            # gguf 0.19 still says 4 + 4 + 32 (float d and s); ggml's block_q8_1 is two ggml_half + 32 = 36
            # (static_assert in ggml-common.h; later gguf-py says 2 + 2 + 32). ggml is the authority.
            assert (d.block_elements, d.block_bytes) == (32, 2 + 2 + 32)
            continue
        assert (d.block_elements, d.block_bytes) == (block, size), name
    for type_id, name in reader.GGML_TYPES.items():
        assert name in dtypes.DTYPES, name
        assert int(type_id) in {int(q) for q in Q} or type_id == 42  # Q2_0: newer than gguf 0.19
    assert dtypes.get("Q2_0").block_elements == 64 and dtypes.get("Q2_0").block_bytes == 18


def test_file_types_match_gguf() -> None:
    for ftype in gguf.LlamaFileType:
        assert reader.FILE_TYPES[int(ftype)] == ftype.name


def _llama2_7b_q4_k_m(path: Path) -> tuple[int, int]:
    """A Llama-2-7B-shaped Q4_K_M header, data left sparse. Returns (parameters, data bytes) by hand."""
    dim, ffn, layers, vocab = 4096, 11008, 32, 32000
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("Llama-2-7B sparse")
    w.add_file_type(15)
    w.add_array("tokenizer.ggml.tokens", [f"<t{i}>" for i in range(vocab)])
    tensors = [("token_embd.weight", (vocab, dim), Q.Q4_K)]
    for i in range(layers):
        odd = Q.Q6_K if i % 2 == 0 else Q.Q4_K  # Q4_K_M: some attn_v / ffn_down layers in Q6_K
        tensors += [
            (f"blk.{i}.attn_norm.weight", (dim,), Q.F32),
            (f"blk.{i}.attn_q.weight", (dim, dim), Q.Q4_K),
            (f"blk.{i}.attn_k.weight", (dim, dim), Q.Q4_K),
            (f"blk.{i}.attn_v.weight", (dim, dim), odd),
            (f"blk.{i}.attn_output.weight", (dim, dim), Q.Q4_K),
            (f"blk.{i}.ffn_norm.weight", (dim,), Q.F32),
            (f"blk.{i}.ffn_gate.weight", (ffn, dim), Q.Q4_K),
            (f"blk.{i}.ffn_up.weight", (ffn, dim), Q.Q4_K),
            (f"blk.{i}.ffn_down.weight", (dim, ffn), odd),
        ]
    tensors += [("output_norm.weight", (dim,), Q.F32), ("output.weight", (vocab, dim), Q.Q6_K)]
    data = 0
    for name, shape, qtype in tensors:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = math.prod(shape) // block * size
        w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
        data += -(-nbytes // 32) * 32
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    header = path.stat().st_size
    start = -(-header // 32) * 32
    with open(path, "r+b") as handle:
        handle.truncate(start + data)
    return 6_738_415_616, data


def test_sparse_llama2_7b(tmp_path: Path) -> None:
    path = tmp_path / "llama-2-7b.Q4_K_M.gguf"
    params, _ = _llama2_7b_q4_k_m(path)
    inv = reader.read(path)
    report = Report(inv)
    assert report.total == params
    assert len(inv.tensors) == 291
    ref = gguf.GGUFReader(path)  # mmap of a sparse file: reads nothing of the data
    assert report.bytes == sum(int(t.n_bytes) for t in ref.tensors)
    assert Report(inv).non_embedding == params - 32000 * 4096
    assert inv.metadata["tokenizer.ggml.tokens"] == "<array of 32000 string>"


def test_probe_and_dispatch(fixture_path: Path) -> None:
    head = fixture_path.read_bytes()[:64]
    probed = reader.probe(head, fixture_path)
    assert probed is not None and len(probed.read().tensors) == len(reader.read(fixture_path).tensors)
    assert reader.probe(b"GGML" + head[4:], fixture_path) is None
    assert files.read_path(fixture_path).format == "gguf"


def test_cli_json(fixture_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main([str(fixture_path), "--format", "json"], stdout=out, stderr=err) == 0
    assert '"format": "gguf"' in out.getvalue()


# --- hostile and malformed files -------------------------------------------------------------------


def _s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def _head(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def _kv_u32(key: str, value: int) -> bytes:
    return _s(key) + struct.pack("<II", 4, value)


def _ti(name: str, dims: list[int], type_id: int, offset: int, n_dims: int | None = None) -> bytes:
    n = len(dims) if n_dims is None else n_dims
    return _s(name) + struct.pack("<I", n) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack(
        "<IQ", type_id, offset
    )


def _with_data(header: bytes, data: int) -> bytes:
    pad = -len(header) % 32
    return header + b"\0" * (pad + data)


def _nested_bomb(depth: int) -> bytes:
    body = _s("bomb") + struct.pack("<I", 9)
    for _ in range(depth):
        body += struct.pack("<IQ", 9, 1)
    return body + struct.pack("<IQ", 0, 0)


BAD_FILES: dict[str, bytes] = {
    "wrong_magic": b"GGUX" + struct.pack("<IQQ", 3, 0, 0),
    "version_1": b"GGUF" + struct.pack("<III", 1, 0, 0),
    "version_99": _head(0, 0, version=99),
    "truncated_header": _head(0, 0)[:10],
    "huge_kv_count": _head(0, 2**62),
    "huge_tensor_count": _head(2**40, 0),
    "huge_string_length": _head(0, 1) + struct.pack("<Q", 2**60) + b"key" + b"\0" * 32,
    "huge_value_string": _head(0, 1) + _s("k") + struct.pack("<IQ", 8, 2**50),
    "huge_array_count": _head(0, 1) + _s("k") + struct.pack("<IIQ", 9, 4, 2**61),
    "unknown_value_type": _head(0, 1) + _s("k") + struct.pack("<I", 77) + b"\0" * 8,
    "bad_bool": _head(0, 1) + _s("k") + struct.pack("<IB", 7, 2),
    "bad_bool_in_array": _head(0, 1) + _s("k") + struct.pack("<IIQ", 9, 7, 3) + b"\x01\x00\x05",
    "nested_array_bomb": _head(0, 1) + _nested_bomb(100),
    "duplicate_key": _head(0, 2) + _kv_u32("a", 1) + _kv_u32("a", 2),
    "bad_alignment": _with_data(_head(0, 1) + _kv_u32("general.alignment", 48), 0),
    "alignment_wrong_type": _head(0, 1) + _s("general.alignment") + struct.pack("<IQ", 10, 32),
    "n_dims_5": _with_data(_head(1, 0) + _ti("t", [1, 1, 1, 1, 1], 0, 0), 4),
    "n_dims_huge": _head(1, 0) + _s("t") + struct.pack("<I", 2**31) + b"\0" * 64,
    "dims_overflow": _with_data(_head(1, 0) + _ti("t", [2**62, 2**62], 0, 0), 64),
    "dim_over_int64": _with_data(_head(1, 0) + _ti("t", [2**63 + 1], 0, 0), 64),
    "unknown_ggml_type": _with_data(_head(1, 0) + _ti("t", [4], 4, 0), 64),
    "row_not_block_multiple": _with_data(_head(1, 0) + _ti("t", [33], 2, 0), 64),
    "misaligned_offset": _with_data(_head(1, 0) + _ti("t", [4], 0, 8), 64),
    "offset_out_of_file": _with_data(_head(1, 0) + _ti("t", [4], 0, 2**40), 64),
    "tensor_past_end": _with_data(_head(1, 0) + _ti("t", [1000], 0, 0), 64),
    "overlapping_tensors": _with_data(_head(2, 0) + _ti("a", [16], 0, 0) + _ti("b", [16], 0, 32), 128),
    "duplicate_tensor": _with_data(_head(2, 0) + _ti("a", [4], 0, 0) + _ti("a", [4], 0, 32), 128),
    "truncated_tensor_info": _head(1, 0) + _s("t") + struct.pack("<I", 2) + b"\0" * 20,
    "truncated_in_token_array": _head(0, 1) + _s("tok") + struct.pack("<IIQ", 9, 8, 21) + _s("a") * 20,
    "huge_name": _with_data(_head(1, 0) + struct.pack("<Q", 10**6) + b"x" * 10**6 + b"\0" * 40, 0),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(BAD_FILES[case])
    with pytest.raises(ParamscopeError) as info:
        files.read_path(path) if case == "wrong_magic" else reader.read(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    err = io.StringIO()
    assert main([str(path)], stdout=io.StringIO(), stderr=err) == 1
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and str(path) in lines[0]


def test_nested_arrays_within_limit_are_read(tmp_path: Path) -> None:
    path = tmp_path / "nested.gguf"
    path.write_bytes(_with_data(_head(0, 1) + _nested_bomb(reader.MAX_ARRAY_DEPTH - 1), 0))
    assert reader.read(path).metadata["bomb"] == "<array of 1 array>"


def test_header_only_counts_are_capped_before_allocation(tmp_path: Path) -> None:
    """A 40-byte file that claims 2**40 tensors fails at once, without looping over them."""
    path = tmp_path / "claims.gguf"
    path.write_bytes(BAD_FILES["huge_tensor_count"])
    with pytest.raises(ParamscopeError, match="more than the file"):
        reader.read(path)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.gguf"
    path.write_bytes(mutated(data, _FUZZ_BASE))
    with contextlib.suppress(ParamscopeError):
        reader.read(path)


def _fuzz_base() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.gguf"
        w = gguf.GGUFWriter(path, "llama")
        w.add_name("fuzz")
        w.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"] * 7)
        w.add_array("nested", [[1, 2], [3]])
        w.add_bool("b", True)
        w.add_tensor("token_embd.weight", np.ones((2, 32), np.float32))
        w.add_tensor("blk.0.q.weight", np.zeros((2, 34), np.uint8), raw_dtype=Q.Q8_0)
        w.add_tensor("ids", np.arange(3, dtype=np.int32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path.read_bytes()


_FUZZ_BASE = _fuzz_base()


def test_version_2(tmp_path: Path) -> None:
    """GGUF v2 has v3's layout (v3 only added big-endian files): the same file read as v2 gives the same."""
    path = _write_fixture(tmp_path / "v3.gguf")
    raw = bytearray(path.read_bytes())
    raw[4:8] = struct.pack("<I", 2)
    v2 = tmp_path / "v2.gguf"
    v2.write_bytes(bytes(raw))
    ours, theirs = reader.read(v2), reader.read(path)
    assert ours.metadata["gguf.version"] == 2
    assert [(r.name, r.shape, r.dtype) for r in ours.tensors] == [(r.name, r.shape, r.dtype) for r in theirs.tensors]
    ref = gguf.GGUFReader(v2)
    assert [int(t.n_elements) for t in ref.tensors] == [r.numel for r in ours.tensors]


def test_long_string_value_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "template.gguf"
    w = gguf.GGUFWriter(path, "llama")
    template = "{% for m in messages %}" * 1000
    w.add_string("tokenizer.chat_template", template)
    w.add_tensor("w", np.ones(4, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    value = reader.read(path).metadata["tokenizer.chat_template"]
    assert value.startswith(template[: reader.SHOWN_STRING_CHARS])
    assert value.endswith(f"... ({len(template)} bytes)")
