"""safetensors reader: exact counts against safetensors' own ``safe_open``, hostile headers, sharded indexes."""

from __future__ import annotations

import io
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

from paramscope import inspect
from paramscope.cli import main
from paramscope.errors import ParamscopeError
from paramscope.records import Role
from paramscope.report import Report
from paramscope.sources import safetensors as reader
from paramscope.sources.files import read_path

sys.path.insert(0, str(Path(__file__).parent))
from _st_helpers import (
    LLAMA2_7B,
    LLAMA2_7B_PARAMS,
    header_bytes,
    llama_tensors,
    write_sharded,
    write_sparse,
)

REF_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool", "U16": "uint16",
              "U32": "uint32", "U64": "uint64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def reference(path: Path) -> tuple[dict[str, tuple[tuple[int, ...], str]], dict[str, str] | None]:
    """What safetensors itself reports: name -> (shape, canonical dtype), and the metadata."""
    out = {}
    with safe_open(str(path), framework="numpy") as handle:
        for key in handle.keys():  # noqa: SIM118 - safe_open is not iterable
            view = handle.get_slice(key)
            out[key] = (tuple(view.get_shape()), REF_DTYPES[view.get_dtype()])
        return out, handle.metadata()


def assert_matches_reference(path: Path) -> None:
    inv = reader.read(path)
    ref, meta = reference(path)
    assert {r.name: (r.shape, r.dtype) for r in inv.tensors} == ref
    assert len(inv.tensors) == len(ref)
    assert inv.metadata.get("__metadata__") == (meta or None) or (not meta and "__metadata__" not in inv.metadata)
    for r in inv.tensors:
        assert r.trainable is None and r.tie is None and r.origin == path.name
    report = inspect(path)
    floats = {"float32", "float16", "bfloat16", "float64", "float8_e4m3fn", "float8_e5m2"}
    assert report.total == sum(math.prod(s) for s, d in ref.values() if d in floats)
    assert report.buffers == sum(math.prod(s) for s, d in ref.values() if d not in floats)
    assert report.bytes == path.stat().st_size - 8 - struct.unpack("<Q", path.read_bytes()[:8])[0]


def test_numpy_saved_file_matches_safe_open(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "emb.weight": rng.standard_normal((50, 8)).astype(np.float32),
        "layer.0.w": rng.standard_normal((8, 8)).astype(np.float16),
        "layer.0.b": np.zeros(8, np.float64),
        "mask": np.ones((3, 3), bool),
        "ids": np.arange(7, dtype=np.int32),
        "u": np.zeros((2, 2), np.uint8),
        "i16": np.zeros(3, np.int16),
        "scalar": np.array(3.0, np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path), metadata={"format": "np", "note": "x"})
    assert_matches_reference(path)
    assert reader.read(path).metadata["__metadata__"] == {"format": "np", "note": "x"}


def test_torch_saved_bf16_fp8_matches_safe_open(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as torch_save

    tensors = {
        "a": torch.zeros(4, 5, dtype=torch.bfloat16),
        "b": torch.zeros(3, dtype=torch.float8_e4m3fn),
        "c": torch.zeros(2, 2, dtype=torch.float8_e5m2),
        "d": torch.zeros(6, dtype=torch.int64),
    }
    path = tmp_path / "t.safetensors"
    torch_save(tensors, str(path))
    assert_matches_reference(path)


def test_minilm_position_ids_is_a_buffer(tmp_path):
    tensors = {
        "embeddings.word_embeddings.weight": np.zeros((30522, 384), np.float32),
        "embeddings.position_embeddings.weight": np.zeros((512, 384), np.float32),
        "embeddings.position_ids": np.arange(512, dtype=np.int64)[None, :],
        "embeddings.LayerNorm.weight": np.ones(384, np.float32),
    }
    path = tmp_path / "minilm.safetensors"
    save_file(tensors, str(path))
    assert_matches_reference(path)
    records = {r.name: r for r in reader.read(path).tensors}
    assert records["embeddings.position_ids"].role is Role.BUFFER
    assert records["embeddings.position_ids"].shape == (1, 512)
    report = inspect(path)
    assert report.buffers == 512
    assert report.total == 30522 * 384 + 512 * 384 + 384


def test_every_spec_dtype_is_mapped():
    # The crate's Dtype enum (bitsize table) as of safetensors 0.6+: every name must map, bits exact.
    crate_bits = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
                  "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64,
                  "U64": 64, "F6_E2M3": 6, "F6_E3M2": 6, "F4": 4}
    from paramscope import dtypes

    assert {k: v[1] for k, v in reader.DTYPES.items()} == crate_bits
    for name, (canonical, bits) in reader.DTYPES.items():
        known = dtypes.get(canonical)
        # numel chosen to fill whole bytes: byte size from our table == crate's numel*bits/8
        numel = 8
        assert known.nbytes(numel) == numel * bits // 8, name


def test_sub_byte_dtypes(tmp_path):
    path = tmp_path / "fp4.safetensors"
    write_sparse_raw(path, {"w": {"dtype": "F4", "shape": [4, 6], "data_offsets": [0, 12]},
                            "s": {"dtype": "F6_E2M3", "shape": [8], "data_offsets": [12, 18]}}, 18)
    records = {r.name: r for r in reader.read(path).tensors}
    assert records["w"].numel == 24 and records["w"].nbytes == 12
    assert records["s"].numel == 8 and records["s"].nbytes == 6
    odd = tmp_path / "odd.safetensors"
    write_sparse_raw(odd, {"w": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, 2)
    with pytest.raises(ParamscopeError, match="whole bytes"):
        reader.read(odd)


def test_llama2_7b_sparse_exact_total(tmp_path):
    path = tmp_path / "llama.safetensors"
    size = write_sparse(path, [(n, "BF16", s) for n, s in llama_tensors(**LLAMA2_7B)], {"format": "pt"})
    assert size > 13_000_000_000 and path.stat().st_blocks * 512 < 10_000_000  # sparse: header only on disk
    report = inspect(path)
    assert report.total == LLAMA2_7B_PARAMS == 6_738_415_616
    assert report.bytes == 2 * LLAMA2_7B_PARAMS
    assert report.buffers == 0


def test_sharded_index_exact_totals(tmp_path):
    tensors = [(n, "BF16", s) for n, s in llama_tensors(**LLAMA2_7B)]
    tensors.append(("model.rotary.inv_freq", "I64", (64,)))
    index = write_sharded(tmp_path / "ckpt", tensors, shards=3)
    for target in (index, index.parent):
        inv = read_path(target)
        assert inv.metadata["shards"] == 3
        assert len(inv.tensors) == len(tensors)
        assert {r.origin for r in inv.tensors} == {f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)}
        report = inspect(target)
        assert report.total == LLAMA2_7B_PARAMS
        assert report.buffers == 64
        assert report.bytes == json.loads(index.read_text())["metadata"]["total_size"]


def test_directory_of_shards_without_index(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    save_file({"a": np.zeros((3, 4), np.float32)}, str(d / "one.safetensors"))
    save_file({"b": np.zeros(5, np.float16)}, str(d / "two.safetensors"))
    assert reader.sniff_directory(d)
    report = inspect(d)
    assert report.total == 17
    save_file({"a": np.zeros(2, np.float32)}, str(d / "three.safetensors"))
    with pytest.raises(ParamscopeError, match="also in shard"):
        inspect(d)


def test_hf_cache_symlinked_shards_are_allowed(tmp_path):
    repo = tmp_path / "models--x"
    blobs, snap = repo / "blobs", repo / "snapshots" / "abc"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    save_file({"w": np.zeros((2, 2), np.float32)}, str(blobs / "deadbeef"))
    (snap / "model.safetensors").symlink_to("../../blobs/deadbeef")
    assert inspect(snap).total == 4


# --------------------------------------------------------------------------------------------- bad input


def write_sparse_raw(path: Path, header: object, data: int, *, raw: bytes | None = None) -> Path:
    body = raw if raw is not None else json.dumps(header).encode()
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(body)) + body)
        handle.truncate(8 + len(body) + data)
    return path


def ok_entry(begin=0, end=16, dtype="F32", shape=(2, 2)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}


BAD_HEADERS = {
    "duplicate key": (b'{"a":' + json.dumps(ok_entry()).encode() + b',"a":' + json.dumps(ok_entry()).encode() + b"}",
                      16, "more than once"),
    "duplicate inner key": (b'{"a":{"dtype":"F32","dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}', 16,
                            "more than once"),
    "invalid utf-8": (b'{"\xff\xfe":' + json.dumps(ok_entry()).encode() + b"}", 16, "UTF-8"),
    "not json": (b"{not json at all}", 0, "not valid JSON"),
    "json array": (b"[1, 2, 3]", 0, "not an object"),
    "NaN literal": (b'{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,16]}}', 16, "not valid JSON"),
    "bool shape": (json.dumps({"a": ok_entry(shape=(True, 4))}).encode(), 16, "non-negative integers"),
    "float shape": (json.dumps({"a": {"dtype": "F32", "shape": [2.0, 2], "data_offsets": [0, 16]}}).encode(), 16,
                    "non-negative integers"),
    "negative shape": (json.dumps({"a": ok_entry(shape=(-2, -2))}).encode(), 16, "non-negative integers"),
    "overflowing shape": (json.dumps({"a": ok_entry(shape=(2**40, 2**40))}).encode(), 16, "overflows 64 bits"),
    "overflowing bytes": (json.dumps({"a": ok_entry(shape=(2**62,))}).encode(), 16, "overflows 64 bits"),
    "unknown dtype": (json.dumps({"a": ok_entry(dtype="F128")}).encode(), 16, "unknown dtype"),
    "size mismatch": (json.dumps({"a": ok_entry(end=12)}).encode(), 12, "needs 16"),
    "overlapping offsets": (json.dumps({"a": ok_entry(0, 16), "b": ok_entry(8, 24)}).encode(), 24, "overlaps"),
    "gap": (json.dumps({"a": ok_entry(0, 16), "b": ok_entry(20, 36)}).encode(), 36, "gap of 4"),
    "not starting at 0": (json.dumps({"a": ok_entry(4, 20)}).encode(), 20, "gap of 4"),
    "reversed offsets": (json.dumps({"a": ok_entry(16, 0)}).encode(), 16, "data_offsets"),
    "out of range offsets": (json.dumps({"a": ok_entry(0, 16)}).encode(), 8, "truncated"),
    "trailing data": (json.dumps({"a": ok_entry(0, 16)}).encode(), 100, "trailing data"),
    "metadata not str": (json.dumps({"__metadata__": {"k": 1}}).encode(), 0, "strings to strings"),
    "missing data_offsets": (json.dumps({"a": {"dtype": "F32", "shape": [1]}}).encode(), 4, "missing data_offsets"),
    "three offsets": (json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}).encode(), 4,
                      "begin, end"),
    "lone surrogate": (b'{"\\ud800":' + json.dumps(ok_entry()).encode() + b"}", 16, "surrogate"),
    "deep nesting": (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", 0, "nested too deeply|not valid JSON"),
    "huge int literal": (b'{"a":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,16]}}', 16,
                         "JSON|integers"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_bad_headers(tmp_path, case, capsys):
    body, data, message = BAD_HEADERS[case]
    path = write_sparse_raw(tmp_path / "bad.safetensors", None, data, raw=body)
    with pytest.raises(ParamscopeError, match=message) as info:
        read_path(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)
    assert_cli_fails(path, capsys)


def assert_cli_fails(path: Path, capsys) -> None:
    capsys.readouterr()
    stderr = io.StringIO()
    assert main([str(path)], stdout=io.StringIO(), stderr=stderr) == 1
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], lines


def test_huge_declared_header_length(tmp_path, capsys):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 1_000_000_000) + b'{"a": 1}')
    with pytest.raises(ParamscopeError, match="exceeds the safetensors limit"):
        read_path(path)
    assert_cli_fails(path, capsys)


def test_header_longer_than_file(tmp_path, capsys):
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 5000) + b'{"a": 1}')
    with pytest.raises(ParamscopeError, match="runs past the end"):
        read_path(path)
    assert_cli_fails(path, capsys)


@pytest.mark.parametrize("size", [0, 3, 7])
def test_truncated_prefix(tmp_path, size):
    path = tmp_path / "t.safetensors"
    path.write_bytes(b"\x10" * size)
    with pytest.raises(ParamscopeError):
        read_path(path)


def test_truncated_real_file(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    save_file({"a": np.zeros((10, 10), np.float32)}, str(path))
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 1)
    with pytest.raises(ParamscopeError, match="truncated"):
        read_path(path)
    assert_cli_fails(path, capsys)


def test_max_header_size_boundary(tmp_path):
    assert reader.MAX_HEADER_SIZE == 100_000_000
    ok = json.dumps({"a": ok_entry()}).encode()
    body = ok + b" " * (reader.MAX_HEADER_SIZE - len(ok))
    path = write_sparse_raw(tmp_path / "edge.safetensors", None, 16, raw=body)
    assert reader.read(path).tensors[0].shape == (2, 2)
    with safe_open(str(path), framework="numpy") as handle:  # the reference accepts it too
        assert list(handle.keys()) == ["a"]


def make_index(directory: Path, weight_map: dict, shards: dict[str, dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, tensors in shards.items():
        save_file(tensors, str(directory / name))
    index = directory / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


BAD_INDEXES = {
    "parent dir": ({"a": "../x.safetensors"}, "outside the index's directory"),
    "absolute": ({"a": "/etc/passwd"}, "outside the index's directory"),
    "missing shard": ({"a": "nope.safetensors"}, "missing"),
    "tensor not in shard": ({"a": "s1.safetensors", "zzz": "s1.safetensors"}, "no shard holds it"),
    "wrong shard": ({"a": "s2.safetensors", "b": "s1.safetensors"}, "it is in 's1.safetensors'"),
    "non-str shard": ({"a": 3}, "shard file names"),
}


@pytest.mark.parametrize("case", sorted(BAD_INDEXES))
def test_bad_indexes(tmp_path, case, capsys):
    weight_map, message = BAD_INDEXES[case]
    (tmp_path / "x.safetensors").write_bytes(b"")
    index = make_index(tmp_path / "ck", weight_map, {"s1.safetensors": {"a": np.zeros(2, np.float32)},
                                                      "s2.safetensors": {"b": np.zeros(2, np.float32)}})
    with pytest.raises(ParamscopeError, match=message):
        read_path(index)
    assert_cli_fails(index, capsys)


@pytest.mark.parametrize("order", ["read", "other"])
def test_index_in_the_shards_order_or_not_is_checked_alike(tmp_path, order):
    # the weight map compared in step with the names read (listed shard by shard, as read) or looked up name by name:
    # the same answers. By hand: 2 + 3 + 4 elements, no note; a tensor put in the wrong shard named; one unlisted noted
    shards = {"s1.safetensors": {"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)},
              "s2.safetensors": {"c": np.zeros(4, np.float32)}}
    listed = [("a", "s1"), ("b", "s1"), ("c", "s2")]
    if order == "other":
        listed = [listed[1], listed[0], listed[2]]
    good = {name: shard + ".safetensors" for name, shard in listed}
    inventory = read_path(make_index(tmp_path / "good", good, shards))
    assert [r.name for r in inventory.tensors] == ["a", "b", "c"] and inventory.notes == []
    assert Report(inventory).total == 9 and inventory.metadata["shards"] == 2
    wrong = {**good, "b": "s2.safetensors"}
    with pytest.raises(ParamscopeError, match=r"weight_map puts 'b' in 's2.safetensors', but it is in 's1.safet"):
        read_path(make_index(tmp_path / "wrong", wrong, shards))
    unlisted = {name: shard for name, shard in good.items() if name != "b"}
    inventory = read_path(make_index(tmp_path / "unlisted", unlisted, shards))
    assert inventory.notes == ["1 tensors are in the shards but not in the index's weight_map; they are counted."]
    assert Report(inventory).total == 9


def test_index_symlink_escaping_directory(tmp_path, capsys):
    outside = tmp_path / "outside.safetensors"
    save_file({"a": np.zeros(2, np.float32)}, str(outside))
    index = make_index(tmp_path / "ck", {"a": "link.safetensors"}, {})
    os.symlink(outside, tmp_path / "ck" / "link.safetensors")
    with pytest.raises(ParamscopeError, match="is a link to"):
        read_path(index)
    assert_cli_fails(index, capsys)


def test_index_without_weight_map(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text('{"metadata": {}}')
    with pytest.raises(ParamscopeError, match="weight_map"):
        read_path(index)


def test_bad_shard_named_in_error(tmp_path):
    index = make_index(tmp_path / "ck", {"a": "s1.safetensors"}, {"s1.safetensors": {"a": np.zeros(2, np.float32)}})
    with open(tmp_path / "ck" / "s1.safetensors", "ab") as handle:
        handle.write(b"junk")
    with pytest.raises(ParamscopeError, match="trailing data") as info:
        read_path(index)
    assert "s1.safetensors" in str(info.value)


# --------------------------------------------------------------------------------------------- fuzz


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_only_paramscope_errors(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("fuzz")
    head, size = header_bytes([("a", "F32", (2, 3)), ("b", "I64", (4,)), ("c", "BF16", (5,))], {"k": "v"})
    blob = bytearray(head + bytes(size))
    mode = data.draw(st.sampled_from(["flip", "truncate", "random", "json"]))
    if mode == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(head) - 1))
            blob[i] = data.draw(st.integers(0, 255))
    elif mode == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    elif mode == "random":
        blob = bytearray(data.draw(st.binary(max_size=300)))
    else:
        value = data.draw(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                                       lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c,
                                                                                          max_size=4), max_leaves=20))
        body = json.dumps({"a": value} if data.draw(st.booleans()) else value).encode()
        blob = bytearray(struct.pack("<Q", len(body)) + body + bytes(data.draw(st.integers(0, 64))))
    path = tmp / "f.safetensors"
    path.write_bytes(bytes(blob))
    try:
        read_path(path)
    except ParamscopeError as exc:
        assert "\n" not in str(exc)


def test_check_weight_map_agrees_notes_and_names_the_first_disagreement():
    from paramscope.sources.safetensors import check_weight_map

    owner = {"a": "s1", "b": "s1", "c": "s2"}
    assert check_weight_map("idx", {"a": "s1", "b": "s1", "c": "s2"}, owner) == []
    assert check_weight_map("idx", {"c": "s2"}, owner) == [
        "2 tensors are in the shards but not in the index's weight_map; they are counted."]
    with pytest.raises(ParamscopeError, match=r"^idx: weight_map puts 'b' in 's2', but it is in 's1'$"):
        check_weight_map("idx", {"a": "s1", "b": "s2", "z": "s1"}, owner)
    with pytest.raises(ParamscopeError, match=r"^idx: weight_map puts 'z' in 's1', but no shard holds it$"):
        check_weight_map("idx", {"a": "s1", "z": "s1"}, owner)


def test_a_plain_file_is_settled_without_the_architecture_module(tmp_path):
    # No config beside the weights: no card to build, so paramscope.architecture (dataclasses, inspect, ast) is not
    # imported on the way to a report
    path = tmp_path / "m.safetensors"
    write_sparse(path, [("a.weight", "BF16", (2, 3))])
    code = ("import sys; from paramscope import pipeline; from paramscope.report import Report; "
            f"r = Report(pipeline.read({str(path)!r})); assert r.total == 6, r.total; "
            "print('paramscope.architecture' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # this run's paramscope
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"


def test_shards_read_into_one_table_match_safe_open_row_by_row(tmp_path):
    """A sharded set is read into one set of columns, the (dtype, shape) checks shared between shards: each row's
    name, shape, dtype, size and shard must still be what safe_open reads from that shard."""
    shards = {
        "s1.safetensors": {"a": np.zeros((4, 4), np.float16), "b": np.zeros(3, np.float32)},
        "s2.safetensors": {"c": np.zeros((4, 4), np.float16), "d": np.zeros((4, 4), np.int8)},
        "s3.safetensors": {"e": np.zeros(3, np.float32), "f": np.zeros((2, 4, 4), np.float16)},
    }
    weight_map = {name: shard for shard, tensors in shards.items() for name in tensors}
    index = make_index(tmp_path / "set", weight_map, shards)
    inv = reader.read(index)
    expected = []
    for shard in shards:
        with safe_open(str(index.parent / shard), framework="numpy") as handle:
            for name in sorted(handle.keys()):
                array = handle.get_tensor(name)
                expected.append((name, array.shape, array.nbytes, shard))
    rows = [(r.name, r.shape, r.nbytes, r.origin) for r in inv.tensors]
    assert sorted(rows, key=lambda row: (row[3], row[0])) == expected  # each shard's rows in its header's order
    assert {r.name: r.dtype for r in inv.tensors} == {"a": "float16", "b": "float32", "c": "float16", "d": "int8",
                                                     "e": "float32", "f": "float16"}
    # the second shard reuses the first's (F16, 4, 4) check, and a lie about its size there is still found
    lie = index.parent / "s2.safetensors"
    raw = bytearray(lie.read_bytes())
    n = struct.unpack_from("<Q", raw)[0]
    header = json.loads(raw[8 : 8 + n])
    header["c"]["shape"] = [4, 2]
    text = json.dumps(header, separators=(",", ":")).encode().ljust(n)
    assert len(text) == n
    lie.write_bytes(bytes(raw[:8]) + text + bytes(raw[8 + n :]))
    with pytest.raises(ParamscopeError, match=r"s2\.safetensors: tensor 'c': data_offsets \[0, 32\] hold 32 bytes"):
        inspect(index)


def test_index_shards_plain_linked_and_not_files(tmp_path):
    # a plain shard is taken at one look; a link inside the directory is resolved and allowed; a directory or
    # a missing name under a plain name gets the resolving path's own message
    index = make_index(tmp_path / "ck", {"a": "s1.safetensors", "b": "link.safetensors"},
                       {"s1.safetensors": {"a": np.zeros(2, np.float32)}})
    save_file({"b": np.zeros(3, np.float32)}, str(tmp_path / "ck" / "real.safetensors"))
    os.symlink("real.safetensors", tmp_path / "ck" / "link.safetensors")
    table = read_path(index).table
    assert table.names == ["a", "b"] and table.numel == [2, 3]
    assert table.origins == ["s1.safetensors", "link.safetensors"]
    for name, message in (("sub", "is missing"), ("gone.safetensors", "is missing")):
        (tmp_path / "ck" / "sub").mkdir(exist_ok=True)
        index = make_index(tmp_path / "ck", {"a": "s1.safetensors", "b": name}, {})
        with pytest.raises(ParamscopeError, match=f"shard '{name}' {message}"):
            read_path(index)


@pytest.mark.parametrize("text", [
    '{"weight_map": {"a": "s1", "b": "s2"}, "metadata": {"total_size": 4}}',
    '{"weight_map": {"a:b": "s:1", "c": "s2"}}',  # colons in strings: counted, then parsed again by pairs
    '{"weight_map": {"a": "s1", "a": "s2"}}',  # a key twice
    '{"weight_map": {"a:": "s1", "a:": "s2"}}',  # a key twice, among colons in strings
    '{"x": [{"k": 1}, [{"k": 2, "k": 3}]], "weight_map": {}}',  # twice deep inside a list
    '{"x": [{"k": 1}, [{"k": 2}], {"": {"": null}}], "weight_map": {}}',
    '{"weight_map": {"a": "s1"}, "weight_map": {"b": "s2"}}',
    '{"weight_map": {"a": "s1"}',  # not JSON
    '{"weight_map": {"a": NaN}}',
])
def test_index_json_is_what_the_pairs_parse_gives(text):
    # reference: json with a hook that refuses a key given twice (the checked way, one call per object)
    from paramscope.sources.safetensors import _parse_json

    def strict(pairs):
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ParamscopeError("i", "has a key more than once")
        return dict(pairs)

    try:
        expected = json.loads(text, object_pairs_hook=strict, parse_constant=lambda c: (_ for _ in ()).throw(
            ValueError(c)))
    except ParamscopeError:
        with pytest.raises(ParamscopeError, match="more than once"):
            _parse_json("i", text.encode(), what="index")
        return
    except ValueError:
        with pytest.raises(ParamscopeError, match="not valid JSON"):
            _parse_json("i", text.encode(), what="index")
        return
    assert _parse_json("i", text.encode(), what="index") == expected
