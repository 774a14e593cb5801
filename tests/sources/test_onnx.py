"""The ONNX reader, checked against the onnx package reading the same models."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

import paramscope
from paramscope.cli import main
from paramscope.errors import ParamscopeError
from paramscope.records import Role
from paramscope.report import Report
from paramscope.sources import files
from paramscope.sources import onnx as reader
from tests.sources._fuzz import mutated

PACKED = {TP.INT4: 4, TP.UINT4: 4, TP.INT2: 2, TP.UINT2: 2}


# --- the reference: the onnx package's own objects, walked the way the reader's docstring says --------


def _expected_dtype(data_type: int) -> str:
    if data_type == TP.STRING:
        return "string"
    if data_type in PACKED:
        return "uint8"
    name = np.dtype(h.tensor_dtype_to_np_dtype(data_type)).name
    return name


def _reference(model: onnx.ModelProto) -> list[tuple[str, onnx.TensorProto | None, list[int], int]]:
    """(name, tensor proto or None, dense dims, data type) for every weight, in the reader's order."""
    out: list[tuple[str, onnx.TensorProto | None, list[int], int]] = []

    def graph_tensors(graph: onnx.GraphProto, prefix: str) -> None:
        for t in graph.initializer:
            out.append((prefix + t.name, t, list(t.dims), t.data_type))
        for s in graph.sparse_initializer:
            out.append((prefix + s.values.name, None, list(s.dims), s.values.data_type))
        for index, node in enumerate(graph.node):
            label = node.name or f"{node.op_type}_{index}"
            for attr in node.attribute:
                subs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
                for k, sub in enumerate(subs):
                    graph_tensors(sub, f"{prefix}{label}.{attr.name}." + (f"{k}." if len(subs) > 1 else ""))
                if node.op_type != "Constant":
                    continue
                name = prefix + node.output[0]
                if attr.name == "value":
                    out.append((name, attr.t, list(attr.t.dims), attr.t.data_type))
                elif attr.name == "value_floats":
                    out.append((name, None, [len(attr.floats)], TP.FLOAT))
                elif attr.name == "value_ints":
                    out.append((name, None, [len(attr.ints)], TP.INT64))
                elif attr.name == "value_float":
                    out.append((name, None, [], TP.FLOAT))

    graph_tensors(model.graph, "")
    return out


def _check(path: Path) -> list:
    """Read ``path`` with the reader and with onnx (external data not loaded); compare every tensor."""
    inv = reader.read(path)
    model = onnx.load(str(path), load_external_data=False)
    expected = _reference(model)
    by_name = {r.name: r for r in inv.tensors}
    assert sorted(by_name) == sorted(name for name, *_ in expected)
    assert len(by_name) == len(inv.tensors)
    for name, proto, dims, data_type in expected:
        rec = by_name[name]
        numel = math.prod(dims)
        assert rec.numel == numel, name
        assert rec.dtype == _expected_dtype(data_type), name
        if data_type in PACKED:
            assert rec.shape == (-(-numel * PACKED[data_type] // 8),)
            assert rec.quant.logical_numel == numel
        else:
            assert rec.shape == tuple(dims), name
        if proto is not None and proto.data_location != TP.EXTERNAL:
            if data_type != TP.STRING:
                assert nh.to_array(proto).size == numel, name
            if proto.HasField("raw_data"):
                assert rec.nbytes == len(proto.raw_data), name
    return inv.tensors


# --- fixtures ------------------------------------------------------------------------------------


def _vi(name: str, dtype: int = TP.FLOAT, shape: list | None = None) -> onnx.ValueInfoProto:
    return h.make_tensor_value_info(name, dtype, shape)


def _const(out: str, array: np.ndarray) -> onnx.NodeProto:
    return h.make_node("Constant", [], [out], value=nh.from_array(array))


def _model(path: Path, **save: object) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        nh.from_array(rng.random((64, 32), dtype=np.float32), "encoder.layer.0.weight"),
        nh.from_array(rng.random(32).astype(np.float16), "encoder.layer.0.bias"),
        nh.from_array(np.arange(10, dtype=np.int64), "position_ids"),
        nh.from_array(np.ones((3, 3), dtype=bool), "mask"),
        nh.from_array(np.ones(5, dtype=np.float64), "double"),
        nh.from_array(np.ones((2, 2), dtype=np.uint8), "u8"),
        nh.from_array(np.ones((2, 2), dtype=np.complex64), "c64"),
        h.make_tensor("bf16", TP.BFLOAT16, [4, 4], np.zeros(16, np.uint16).tobytes(), raw=True),
        h.make_tensor("f8", TP.FLOAT8E4M3FN, [8], bytes(8), raw=True),
        h.make_tensor("int4", TP.INT4, [3, 5], [1] * 15),
        h.make_tensor("uint2", TP.UINT2, [7], [1] * 7),
        h.make_tensor("fp4", TP.FLOAT4E2M1, [9], bytes(5), raw=True),
        h.make_tensor("fp6", TP.FLOAT6E2M3, [8], bytes(6), raw=True),
        h.make_tensor("typed_floats", TP.FLOAT, [2, 3], [1.0] * 6),
        h.make_tensor("typed_ints", TP.INT32, [4], [1, 2, 3, 4]),
        h.make_tensor("strings", TP.STRING, [2], [b"a", b"bcd"]),
    ]
    sparse = h.make_sparse_tensor(
        nh.from_array(np.array([1.0, 2.0], np.float32), "sparse_w"),
        nh.from_array(np.array([1, 7], np.int64), ""),
        [4, 4],
    )
    then_g = h.make_graph(
        [_const("t_out", np.zeros(5, np.float32))], "then", [], [_vi("t_out", shape=[5])],
        initializer=[nh.from_array(np.zeros(7, np.float32), "shared_name")],
    )
    else_g = h.make_graph(
        [_const("e_out", np.zeros(5, np.float32))], "else", [], [_vi("e_out", shape=[5])],
        initializer=[nh.from_array(np.zeros(6, np.float32), "shared_name")],
    )
    inner_if = h.make_node("If", ["c"], ["inner"], then_branch=then_g, else_branch=else_g, name="inner_if")
    body = h.make_graph(
        [
            _const("step", np.ones((3, 3), np.float32)),
            h.make_node("Constant", [], ["c"], value=nh.from_array(np.array(True))),
            inner_if,
            h.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [_vi("iter", TP.INT64, []), _vi("cond_in", TP.BOOL, [])],
        [_vi("cond_out", TP.BOOL, []), _vi("inner", shape=[5])],
        initializer=[nh.from_array(np.ones(11, np.float32), "loop_w")],
    )
    loop = h.make_node("Loop", ["trip", "cond"], ["y"], body=body, name="loop0")
    nodes = [
        _const("const_value", np.ones((2, 2), np.float16)),
        h.make_node("Constant", [], ["const_floats"], value_floats=[1.0, 2.0, 3.0]),
        h.make_node("Constant", [], ["const_ints"], value_ints=[1, 2, 3, 4]),
        h.make_node("Constant", [], ["const_float"], value_float=2.5),
        loop,
    ]
    graph = h.make_graph(
        nodes, "main_graph", [_vi("trip", TP.INT64, []), _vi("cond", TP.BOOL, [])], [_vi("y", shape=[5])],
        initializer=inits, sparse_initializer=[sparse],
    )
    model = h.make_model(graph, producer_name="paramscope-test", producer_version="1.2",
                         opset_imports=[h.make_opsetid("", 21), h.make_opsetid("com.microsoft", 1)])
    model.model_version = 7
    h.set_model_props(model, {"author": "me"})
    onnx.save_model(model, str(path), **save)
    return model


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    _model(path)
    return path


def test_matches_onnx(model_path: Path) -> None:
    tensors = _check(model_path)
    names = {r.name for r in tensors}
    assert "loop0.body.inner_if.then_branch.shared_name" in names
    assert "loop0.body.inner_if.else_branch.shared_name" in names
    assert "loop0.body.step" in names and "loop0.body.loop_w" in names


def test_records(model_path: Path) -> None:
    by_name = {r.name: r for r in reader.read(model_path).tensors}
    assert by_name["encoder.layer.0.weight"].role == Role.PARAMETER
    assert by_name["position_ids"].role == by_name["mask"].role == Role.BUFFER
    assert by_name["strings"].role == Role.BUFFER and by_name["strings"].nbytes is None
    assert by_name["int4"].quant.scheme == "INT4" and by_name["int4"].nbytes == 8
    assert by_name["fp4"].nbytes == 5 and by_name["fp6"].nbytes == 6
    assert by_name["sparse_w"].shape == (4, 4) and by_name["sparse_w"].extra["sparse_values"] == 2
    assert all(r.origin == "model.onnx" and r.trainable is None for r in by_name.values())


def test_report_totals(model_path: Path) -> None:
    model = onnx.load(str(model_path))
    report = Report(reader.read(model_path))
    floating = {TP.FLOAT, TP.FLOAT16, TP.DOUBLE, TP.COMPLEX64, TP.BFLOAT16, TP.FLOAT8E4M3FN, TP.FLOAT4E2M1,
                TP.FLOAT6E2M3}
    # no node reads these tensors: each keeps its storage role but a scalar, which is a graph constant
    expected = sum(math.prod(dims) for _, _, dims, dt in _reference(model) if dt in floating and math.prod(dims) > 1)
    assert report.total == expected
    # const_ints (4, an integer Constant node's value), const_float (a scalar), the body's bool scalar "c"
    assert report.other["constant"] == 4 + 1 + 1


def test_metadata(model_path: Path) -> None:
    md = reader.read(model_path).metadata
    model = onnx.load(str(model_path))
    assert md["onnx.ir_version"] == model.ir_version
    assert md["onnx.producer_name"] == "paramscope-test"
    assert md["onnx.producer_version"] == "1.2"
    assert md["onnx.model_version"] == 7
    assert md["onnx.opset_import"] == {"ai.onnx": 21, "com.microsoft": 1}
    assert md["onnx.graph_name"] == "main_graph"
    assert md["onnx.nodes"] == len(model.graph.node)
    assert md["onnx.metadata.author"] == "me"


def test_external_data_never_opened(tmp_path: Path) -> None:
    path = tmp_path / "ext.onnx"
    _model(path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    model = onnx.load(str(path), load_external_data=False)
    external = {t.name for t in model.graph.initializer if t.data_location == TP.EXTERNAL}
    assert "encoder.layer.0.weight" in external
    (tmp_path / "weights.bin").unlink()  # gone: the reader must not need it
    tensors = _check(path)
    by_name = {r.name: r for r in tensors}
    assert by_name["encoder.layer.0.weight"].extra["external_data"]["location"] == "weights.bin"
    assert reader.read(path).metadata["onnx.external_data_files"] == ["weights.bin"]


def test_hostile_external_location_recorded_not_opened(tmp_path: Path) -> None:
    t = TP(name="w", data_type=TP.FLOAT, dims=[1000, 1000])
    t.data_location = TP.EXTERNAL
    for k, v in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "4000000")):
        entry = t.external_data.add()
        entry.key, entry.value = k, v
    graph = h.make_graph([], "g", [], [], initializer=[t])
    path = tmp_path / "hostile.onnx"
    path.write_bytes(h.make_model(graph).SerializeToString())
    inv = reader.read(path)
    assert inv.tensors[0].numel == 1_000_000
    assert inv.tensors[0].extra["external_data"]["location"] == "../../etc/passwd"


def test_big_sparse_file_not_read(tmp_path: Path) -> None:
    """A 4 GiB raw_data initializer in a sparse file: counted from dims, data skipped by a seek."""
    n = 1 << 30
    tensor = _len(1, _varint(n)) + _field(2, 0, _varint(TP.FLOAT)) + _len(8, b"huge")
    tensor_head = tensor + _tag(9, 2) + _varint(4 * n)
    tensor_len = len(tensor_head) + 4 * n
    graph_head = _tag(5, 2) + _varint(tensor_len) + tensor_head
    graph_len = len(graph_head) + 4 * n
    head = _field(1, 0, _varint(10)) + _tag(7, 2) + _varint(graph_len) + graph_head
    path = tmp_path / "big.onnx"
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + 4 * n)
    inv = reader.read(path)
    assert [(r.name, r.numel, r.nbytes) for r in inv.tensors] == [("huge", n, 4 * n)]


def test_probe(model_path: Path, tmp_path: Path) -> None:
    head = model_path.read_bytes()[:64]
    probed = reader.probe(head, model_path)
    assert probed is not None and len(probed.read().tensors) == len(reader.read(model_path).tensors)
    assert reader.probe(head, Path("MODEL.ONNX")) is not None
    assert reader.probe(head, Path("model.bin")) is None
    assert reader.probe(b"\x00\x01", model_path) is None
    assert reader.probe(b"PK\x03\x04", model_path) is None
    assert files.read_path(model_path).format == "onnx"


def test_schema_names_and_kinds_are_onnx_protos() -> None:
    # the independent reference: the onnx package's own descriptors of onnx.proto
    from google.protobuf.descriptor import FieldDescriptor as F

    wire_types = {
        reader.INT: {F.TYPE_INT64, F.TYPE_INT32, F.TYPE_ENUM}, reader.STR: {F.TYPE_STRING, F.TYPE_BYTES},
        reader.STRS: {F.TYPE_STRING}, reader.DIMS: {F.TYPE_INT64}, reader.N_FIXED32: {F.TYPE_FLOAT},
        reader.N_VARINT: {F.TYPE_INT64}, reader.N_LEN: {F.TYPE_BYTES},
        reader.DATA: {F.TYPE_FLOAT, F.TYPE_INT32, F.TYPE_BYTES, F.TYPE_INT64, F.TYPE_DOUBLE, F.TYPE_UINT64},
    }
    checked = 0
    for kind, fields in reader.SCHEMA.items():
        proto = getattr(onnx, reader.KIND_NAMES[kind]).DESCRIPTOR
        for number, (name, field_kind) in fields.items():
            field = proto.fields_by_number[number]
            assert field.name == name, (reader.KIND_NAMES[kind], number)
            if type(field_kind) is int:
                assert field.message_type.name == reader.KIND_NAMES[field_kind]
            elif field_kind != reader.UNREAD:
                assert field.type in wire_types[field_kind], (reader.KIND_NAMES[kind], name)
            checked += 1
    assert checked == 54  # every field of the table
    # a ModelProto may start with any of its fields: probe knows them all
    assert {number for number, _ in reader.MODEL_FIRST_FIELDS} == set(onnx.ModelProto.DESCRIPTOR.fields_by_number)


def test_cli(model_path: Path) -> None:
    out = io.StringIO()
    assert main([str(model_path), "--format", "json"], stdout=out, stderr=io.StringIO()) == 0
    assert '"format": "onnx"' in out.getvalue()


# --- hand-built protobuf for hostile files --------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _field(field: int, wire: int, payload: bytes) -> bytes:
    return _tag(field, wire) + payload


def _len(field: int, payload: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(payload)) + payload


def _tensor(name: str = "w", dims: tuple[int, ...] = (2, 2), dtype: int = TP.FLOAT, raw: int | None = 16) -> bytes:
    out = b"".join(_field(1, 0, _varint(d)) for d in dims) + _field(2, 0, _varint(dtype)) + _len(8, name.encode())
    return out + (_len(9, bytes(raw)) if raw is not None else b"")


def _model_bytes(*graph_fields: bytes) -> bytes:
    return _field(1, 0, _varint(9)) + _len(7, b"".join(graph_fields))


def _nested_ifs(depth: int) -> bytes:
    graph = _len(5, _tensor())
    for _ in range(depth):
        attr = _len(1, b"then_branch") + _len(6, graph)
        graph = _len(1, _len(4, b"If") + _len(5, attr))
    return _model_bytes(graph)


BAD_FILES: dict[str, bytes] = {
    "truncated_varint": b"\x08\xff\xff",
    "varint_too_long": b"\x08" + b"\xff" * 11 + b"\x01",
    "length_beyond_file": _field(1, 0, b"\x09") + _tag(7, 2) + _varint(10**6) + b"\x00" * 10,
    "length_beyond_parent": _model_bytes(_tag(5, 2) + _varint(50) + _tensor()),
    "deep_subgraphs": _nested_ifs(reader.MAX_SUBGRAPH_DEPTH + 5),
    "raw_data_mismatch": _model_bytes(_len(5, _tensor(raw=15))),
    "negative_dim": _model_bytes(_len(5, _tensor(dims=(2, -2), raw=0))),
    "dims_overflow": _model_bytes(_len(5, _tensor(dims=(2**40, 2**40), raw=None))),
    "too_many_dims": _model_bytes(_len(5, _tensor(dims=(1,) * 100, raw=4))),
    "group_wire_type_3": _model_bytes(_len(5, _tensor() + _tag(20, 3))),
    "group_wire_type_4": _field(1, 0, b"\x09") + _tag(30, 4),
    "wire_type_7": _field(1, 0, b"\x09") + _tag(30, 7),
    "field_zero": _field(1, 0, b"\x09") + b"\x02\x00",
    "unknown_data_type": _model_bytes(_len(5, _tensor(dtype=99, raw=None))),
    "undefined_data_type": _model_bytes(_len(5, _tensor(dtype=0, raw=None))),
    "string_with_raw_data": _model_bytes(_len(5, _tensor(dtype=TP.STRING, raw=4))),
    "duplicate_names": _model_bytes(_len(5, _tensor()), _len(5, _tensor())),
    "no_graph": _field(1, 0, b"\x09") + _len(2, b"producer"),
    "graph_as_varint": _field(1, 0, b"\x09") + _field(7, 0, b"\x05"),
    "data_type_as_bytes": _model_bytes(_len(5, _len(2, b"\x01") + _len(8, b"w"))),
    "float_data_count_mismatch": _model_bytes(_len(5, _tensor(raw=None) + _len(4, bytes(12)))),
    "external_length_mismatch": _model_bytes(
        _len(5, _tensor(raw=None) + _field(14, 0, b"\x01") + _len(13, _len(1, b"length") + _len(2, b"99")))
    ),
    "external_length_not_number": _model_bytes(
        _len(5, _tensor(raw=None) + _field(14, 0, b"\x01") + _len(13, _len(1, b"length") + _len(2, b"x")))
    ),
    "truncated_fixed64": _field(1, 0, b"\x09") + _tag(30, 1) + b"\x00\x00",
    "truncated_in_tensor": _model_bytes(_len(5, _tensor()))[:-5],
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.onnx"
    path.write_bytes(BAD_FILES[case])
    with pytest.raises(ParamscopeError) as info:
        reader.read(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    if reader.probe(BAD_FILES[case][:64], path) is not None:
        err = io.StringIO()
        assert main([str(path)], stdout=io.StringIO(), stderr=err) == 1
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and str(path) in lines[0]


def test_nesting_within_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "nested.onnx"
    path.write_bytes(_nested_ifs(reader.MAX_SUBGRAPH_DEPTH - 1))
    [record] = reader.read(path).tensors
    assert record.name == "If_0.then_branch." * (reader.MAX_SUBGRAPH_DEPTH - 1) + "w"


def _fuzz_base() -> bytes:
    rng = np.random.default_rng(1)
    sub = h.make_graph([_const("s", np.ones(3, np.float32))], "sub", [], [_vi("s", shape=[3])],
                      initializer=[nh.from_array(np.ones(2, np.float32), "si")])
    graph = h.make_graph(
        [_const("c", np.ones((2, 2), np.float16)), h.make_node("If", ["x"], ["y"], then_branch=sub, else_branch=sub)],
        "g", [_vi("x", TP.BOOL, [])], [_vi("y", shape=[3])],
        initializer=[nh.from_array(rng.random((3, 4), dtype=np.float32), "w"),
                     nh.from_array(np.arange(3, dtype=np.int64), "i"),
                     h.make_tensor("t", TP.FLOAT, [2], [1.0, 2.0])],
    )
    return h.make_model(graph, producer_name="fuzz").SerializeToString()


_FUZZ_BASE = _fuzz_base()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.onnx"
    path.write_bytes(mutated(data, _FUZZ_BASE))
    with contextlib.suppress(ParamscopeError):
        reader.read(path)


def test_name_cap_is_exact(tmp_path: Path) -> None:
    from paramscope.records import MAX_NAME_LENGTH as MAX_NAME

    # "<node>.<attr>." + leaf: 65,536 characters in all is read, one more is refused
    for leaf_len, ok in ((MAX_NAME - 4, True), (MAX_NAME - 3, False)):
        attr = _len(1, b"g") + _len(6, _len(5, _tensor("w" * leaf_len)))
        node = _len(1, _len(3, b"n") + _len(4, b"If") + _len(5, attr))
        path = tmp_path / f"cap{leaf_len}.onnx"
        path.write_bytes(_model_bytes(node))
        if ok:
            [record] = reader.read(path).tensors
            assert record.name == "n.g." + "w" * leaf_len and len(record.name) == MAX_NAME
        else:
            with pytest.raises(ParamscopeError, match=f"a tensor name of {MAX_NAME + 1:,} characters"):
                reader.read(path)


# --- roles by use (issue 13) -----------------------------------------------------------------------

# name -> (array, role): the hand reference. Each tensor's role is what the operator reading it says
# (onnx/docs/Operators.md for the input's meaning, PyTorch for parameter vs buffer), whatever stores it.
_RNG = np.random.default_rng(1)
ROLE_TENSORS: dict[str, tuple[np.ndarray, Role]] = {
    "conv.w": (_RNG.random((8, 3, 3, 3), dtype=np.float32), Role.PARAMETER),
    "conv.b": (_RNG.random(8, dtype=np.float32), Role.PARAMETER),
    "bn.scale": (np.ones(8, np.float32), Role.PARAMETER),
    "bn.bias": (np.zeros(8, np.float32), Role.PARAMETER),
    "bn.mean": (np.zeros(8, np.float32), Role.BUFFER),  # running stats: buffers, as PyTorch counts them
    "bn.var": (np.ones(8, np.float32), Role.BUFFER),
    "clip.min": (np.array(0.0, np.float32), Role.CONSTANT),
    "clip.max": (np.array(6.0, np.float32), Role.CONSTANT),
    "flat.shape": (np.array([1, -1], np.int64), Role.CONSTANT),
    "fc.w": (_RNG.random((72, 10), dtype=np.float32), Role.PARAMETER),
    "fc.b": (_RNG.random(10, dtype=np.float32), Role.PARAMETER),  # Added after the MatMul: a bias
    "half": (np.array(0.5, np.float32), Role.CONSTANT),  # GELU's 0.5, a Mul operand
    "two": (np.array(2.0, np.float32), Role.CONSTANT),  # an exponent
    "ln.w": (np.ones(10, np.float32), Role.PARAMETER),
    "ln.b": (np.zeros(10, np.float32), Role.PARAMETER),
    "emb": (_RNG.random((20, 10), dtype=np.float32), Role.PARAMETER),  # Gather's data, and the tied head
    "ids": (np.array([[1, 2, 3, 4]], np.int64), Role.CONSTANT),  # Gather's indices
    "w16": (_RNG.random((10, 10)).astype(np.float16), Role.PARAMETER),  # Cast to float, then a MatMul weight
    "q": (np.ones((10, 10), np.int8), Role.PARAMETER),  # dequantized into a MatMul: a weight
    "q.scale": (np.array(0.1, np.float32), Role.QUANT_AUX),
    "q.zero": (np.array(0, np.int8), Role.QUANT_AUX),
    "mask": (np.triu(np.full((4, 4), -np.inf, np.float32), 1), Role.CONSTANT),  # Where's fill: a causal mask
}
ROLE_NODES = [
    h.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"]),
    h.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"]),
    h.make_node("Clip", ["bn", "clip.min", "clip.max"], ["relu6"]),
    h.make_node("Reshape", ["relu6", "flat.shape"], ["flat"]),
    h.make_node("MatMul", ["flat", "fc.w"], ["fc"]),
    h.make_node("Add", ["fc", "fc.b"], ["fcb"]),
    h.make_node("Mul", ["fcb", "half"], ["halved"]),
    h.make_node("Pow", ["halved", "two"], ["squared"]),
    h.make_node("LayerNormalization", ["squared", "ln.w", "ln.b"], ["normed"]),
    h.make_node("Gather", ["emb", "ids"], ["embedded"]),
    h.make_node("Transpose", ["emb"], ["emb.T"], perm=[1, 0]),
    h.make_node("MatMul", ["normed", "emb.T"], ["logits"]),
    h.make_node("Cast", ["w16"], ["w32"], to=TP.FLOAT),
    h.make_node("MatMul", ["embedded", "w32"], ["proj"]),
    h.make_node("DequantizeLinear", ["q", "q.scale", "q.zero"], ["qf"]),
    h.make_node("Identity", ["qf"], ["qf2"]),
    h.make_node("MatMul", ["proj", "qf2"], ["qout"]),
    h.make_node("Where", ["cond", "qout", "mask"], ["out"]),
]


def _roles_model(path: Path, as_constants: bool) -> None:
    """The same graph with its tensors as initializers, or as Constant nodes (paddle2onnx's way): value
    tensors, and value_float for the scalar bounds."""
    if as_constants:
        consts = []
        for name, (array, _) in ROLE_TENSORS.items():
            if name in ("clip.min", "clip.max"):
                consts.append(h.make_node("Constant", [], [name], value_float=float(array)))
            else:
                consts.append(h.make_node("Constant", [], [name], value=nh.from_array(array, name)))
        graph = h.make_graph(consts + ROLE_NODES, "g", [_vi("x"), _vi("cond", TP.BOOL)], [_vi("out")])
    else:
        inits = [nh.from_array(array, name) for name, (array, _) in ROLE_TENSORS.items()]
        graph = h.make_graph(ROLE_NODES, "g", [_vi("x"), _vi("cond", TP.BOOL)], [_vi("out")], initializer=inits)
    onnx.save_model(h.make_model(graph), str(path))


@pytest.mark.parametrize("as_constants", [False, True], ids=["initializers", "constant-nodes"])
def test_roles_by_use_not_by_storage(tmp_path: Path, as_constants: bool) -> None:
    path = tmp_path / "roles.onnx"
    _roles_model(path, as_constants)
    inv = reader.read(path)
    assert {r.name: r.role for r in inv.tensors} == {name: role for name, (_, role) in ROLE_TENSORS.items()}
    report = Report(inv)
    by_role: dict[Role, int] = {}
    for array, role in ROLE_TENSORS.values():
        by_role[role] = by_role.get(role, 0) + array.size
    # by hand: conv 216 + 8, bn 8 + 8, fc 720 + 10, ln 10 + 10, emb 200, w16 100, q 100
    assert report.total == by_role[Role.PARAMETER] == 1390
    assert [r.name for r in inv.tensors if r.owner_type == "Embedding"] == ["emb"]  # Gather's data: a table
    assert report.non_embedding == 1390 - 200
    assert report.buffers == by_role[Role.BUFFER] == 16
    assert report.other == {"quant_aux": 2, "constant": by_role[Role.CONSTANT]}
    assert by_role[Role.CONSTANT] == 1 + 1 + 2 + 1 + 1 + 4 + 16
    assert inv.notes == ["7 graph constants (scalars, shapes) not counted"]


def test_constants_hidden_from_the_tree_listed_in_json(tmp_path: Path) -> None:
    path = tmp_path / "roles.onnx"
    _roles_model(path, as_constants=True)
    out = io.StringIO()
    assert main([str(path), "--no-color"], stdout=out, stderr=io.StringIO()) == 0
    tree = out.getvalue()
    assert "conv" in tree and "bn" in tree
    for name in ("clip", "flat", "half", "two", "ids", "mask"):
        assert f"── {name}" not in tree, name
    assert re.search(r"^constant +26$", tree, re.M)  # the elements of the 7 constants, in the summary only
    assert re.search(r"^parameters +1,390 ", tree, re.M) and re.search(r"^buffers +16$", tree, re.M)
    assert "note: 7 graph constants (scalars, shapes) not counted" in tree
    out = io.StringIO()
    assert main([str(path), "--format", "json"], stdout=out, stderr=io.StringIO()) == 0
    data = json.loads(out.getvalue())
    assert data["other"] == {"quant_aux": 2, "constant": 26}
    constants = {t["name"]: t["numel"] for t in data["tensors"] if t["role"] == "constant"}  # listed, by role
    assert constants == {"clip.min": 1, "clip.max": 1, "flat.shape": 2, "half": 1, "two": 1, "ids": 4, "mask": 16}
    jsonschema = pytest.importorskip("jsonschema")
    from importlib.resources import files

    jsonschema.validate(data, json.loads(files("paramscope").joinpath("schema/report-v1.json").read_text()))


def test_subgraph_constants_and_outer_weights(tmp_path: Path) -> None:
    """An If branch holding a Constant conv weight (a parameter) and a scalar (a constant), and reading an outer
    initializer as a MatMul weight: uses are found across graphs by value name."""
    then_g = h.make_graph(
        [_const("k", np.ones((4, 3, 1, 1), np.float32)), _const("eps", np.array(1e-5, np.float32)),
         h.make_node("Conv", ["x", "k"], ["y"]), h.make_node("Add", ["y", "eps"], ["t_out"])],
        "then", [], [_vi("t_out")],
    )
    else_g = h.make_graph([h.make_node("MatMul", ["x", "outer"], ["e_out"])], "else", [], [_vi("e_out")])
    graph = h.make_graph(
        [h.make_node("If", ["c"], ["out"], then_branch=then_g, else_branch=else_g, name="branch")],
        "g", [_vi("x"), _vi("c", TP.BOOL)], [_vi("out")],
        initializer=[nh.from_array(np.ones((3, 5), np.float32), "outer")],
    )
    path = tmp_path / "if.onnx"
    onnx.save_model(h.make_model(graph), str(path))
    roles = {r.name: r.role for r in reader.read(path).tensors}
    assert roles == {"outer": Role.PARAMETER, "branch.then_branch.k": Role.PARAMETER,
                     "branch.then_branch.eps": Role.CONSTANT}


def test_cycle_of_pass_through_nodes_ends(tmp_path: Path) -> None:
    """A graph whose pass-through nodes loop (a -> b -> a), hostile: the walk marks each value once."""
    nodes = [h.make_node("Identity", ["w"], ["a"]), h.make_node("Transpose", ["a"], ["b"]),
             h.make_node("Identity", ["b"], ["a"]), h.make_node("Cast", ["b"], ["w"], to=TP.FLOAT),
             h.make_node("Conv", ["x", "a"], ["y"])]
    graph = h.make_graph(nodes, "g", [_vi("x")], [_vi("y")],
                         initializer=[nh.from_array(np.ones((2, 2, 1, 1), np.float32), "w")])
    path = tmp_path / "cycle.onnx"
    path.write_bytes(h.make_model(graph).SerializeToString())  # not SSA: onnx.checker would refuse it
    [record] = reader.read(path).tensors
    assert record.role == Role.PARAMETER  # reached through the loop: the Conv's weight


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_gpt2_export_counts_its_parameters(tmp_path: Path, tied: bool) -> None:
    """A real torch.onnx export (the TorchScript exporter: the dynamo one needs onnxscript) of a tiny GPT-2:
    its count is the model's own, sum(p.numel() for p in model.parameters()), and the exporter's ~60 scalar and
    shape Constant nodes are graph constants. Tied, the exporter writes the head as its own initializer (the
    embedding transposed, ``onnx::MatMul_<n>``): the reader names it after its MatMul's module
    (``m.lm_head.weight``) and the tie rule finds it equal to the embedding transposed: counted once."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import warnings

    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=64,
                                     tie_word_embeddings=tied)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()  # distinct values: the exporter merges equal initializers (fresh LayerNorms are all ones)

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, ids: Any) -> Any:
            mask, positions = torch.ones_like(ids), torch.arange(ids.shape[1]).unsqueeze(0)
            return self.m(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits

    path = tmp_path / "gpt2.onnx"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(Logits(), (torch.ones(1, 8, dtype=torch.long),), str(path), dynamo=False,
                              opset_version=17)
    except Exception as exc:  # an exporter that cannot run offline here is not what this test checks
        pytest.skip(f"torch.onnx.export failed: {type(exc).__name__}")
    report = Report(reader.read(path))
    expected = sum(p.numel() for p in model.parameters())
    # the hand count: wte 100*32 + wpe 64*32 + 2 blocks of 12,704 + ln_f 64, + the head 32*100 when untied
    assert expected == 30_720 + (0 if tied else 3_200)
    assert report.total == expected + (3_200 if tied else 0)  # the file alone, before the tie rule
    settled = paramscope.inspect(path)
    assert settled.total == expected
    assert settled.ties == ([["m.transformer.wte.weight", "m.lm_head.weight"]] if tied else [])
    assert settled.stored_elements == report.total  # the file holds the head twice when tied
    assert report.buffers == 0
    assert report.non_embedding == report.total - 100 * 32 - 64 * 32  # wte and wpe: Gather's data
    assert sorted(r.name for r in reader.read(path).tensors if r.owner_type == "Embedding") == [
        "m.transformer.wpe.weight", "m.transformer.wte.weight"]
    exported = onnx.load(str(path))
    constants = [n for n in exported.graph.node if n.op_type == "Constant"]
    non_weights = [t for t in exported.graph.initializer if not t.name.startswith("m.") and t.data_type != TP.FLOAT]
    assert inv_constants(path) == len(constants) + len(non_weights)


def inv_constants(path: Path) -> int:
    return sum(r.role is Role.CONSTANT for r in reader.read(path).tensors)


def _reading_nodes(count: int, inputs: tuple[bytes, ...]) -> bytes:
    """``count`` Add nodes, each reading ``inputs`` (the same bytes repeated: fast to build, not SSA)."""
    node = _len(1, b"".join(_len(1, name) for name in inputs) + _len(2, b"y") + _len(4, b"Add"))
    return node * count


def test_node_inputs_past_the_cap_fall_back_to_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "MAX_NODE_INPUTS", 10)
    path = tmp_path / "many.onnx"
    path.write_bytes(_model_bytes(_reading_nodes(6, (b"x", b"w")), _len(5, _tensor("w", (4,))),
                                  _len(5, _tensor("k", (1,), raw=4))))
    inv = reader.read(path)
    assert [(r.name, r.role) for r in inv.tensors] == [("w", Role.PARAMETER), ("k", Role.CONSTANT)]
    assert inv.notes[0] == ("the graph's nodes read more than 10 values: roles were set by storage (scalars and "
                            "integer Constant values as graph constants), not by use")
    path.write_bytes(_model_bytes(_reading_nodes(5, (b"x", b"w")), _len(5, _tensor("w", (4,)))))
    assert reader.read(path).notes == []  # 10 inputs: kept


@pytest.mark.slow
def test_a_million_nodes_are_bounded(tmp_path: Path) -> None:
    """A million nodes reading a stored tensor (each use kept: at the cap) and a million reading two values
    (past it: dropped), through the CLI under the hostile-input limits (2 GiB, 60 s)."""
    from tests.hostile._limits import assert_clean, run_cli

    for inputs in ((b"w",), (b"x", b"w")):
        path = tmp_path / "million.onnx"
        path.write_bytes(_model_bytes(_reading_nodes(1_000_000, inputs), _len(5, _tensor("w", (4,)))))
        result = run_cli(path, "--format", "json")
        assert_clean(result, path, expect=0)
        data = json.loads(result.stdout)
        assert data["total"] == 4  # an Add operand of 4 floats: a parameter, by use or by storage
        assert ("more than 1,000,000 values" in " ".join(data["notes"])) == (len(inputs) == 2)


# --- a head stored as its embedding transposed (torch.onnx with constant folding), and read through a Transpose


def _head_model(path: Path, head: np.ndarray | None, *, head_name: str = "onnx::MatMul_7",
                node: str = "/lm_head/MatMul", extra: list[onnx.TensorProto] = (), rows: int = 1000,
                cols: int = 64, external: bool = False) -> np.ndarray:
    """Gather(embedding) -> MatMul(., head) named ``node``; ``head`` None: the embedding read again through a
    Transpose (the unfolded export). Returns the embedding."""
    emb = np.random.default_rng(0).standard_normal((rows, cols)).astype(np.float32)
    nodes = [h.make_node("Gather", ["model.embed_tokens.weight", "ids"], ["x"], name="/model/embed_tokens/Gather")]
    inits = [nh.from_array(emb, "model.embed_tokens.weight"), *extra]
    if head is None:
        nodes.append(h.make_node("Transpose", ["model.embed_tokens.weight"], ["t"], name="/lm_head/Transpose"))
        nodes.append(h.make_node("MatMul", ["x", "t"], ["y"], name=node))
    else:
        nodes.append(h.make_node("MatMul", ["x", head_name], ["y"], name=node))
        inits.append(nh.from_array(head, head_name))
    graph = h.make_graph(nodes, "g", [_vi("ids", TP.INT64, [1, 4])], [_vi("y")], inits)
    model = h.make_model(graph, producer_name="pytorch")
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
                  size_threshold=0)
    else:
        onnx.save(model, str(path))
    return emb


def test_a_folded_head_equal_to_its_embedding_transposed_is_a_stored_copy(tmp_path: Path) -> None:
    path = tmp_path / "tied.onnx"
    emb = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
    assert np.array_equal(_head_model(path, np.ascontiguousarray(emb.T)), emb)  # the head: the embedding, .T
    report = paramscope.inspect(path)
    assert report.ties == [["model.embed_tokens.weight", "lm_head.weight"]]  # named by its MatMul's module
    assert (report.total, report.stored_elements, report.bytes) == (emb.size, 2 * emb.size, 2 * emb.nbytes)
    assert report.non_embedding == 0
    assert "lm_head.weight is a stored copy of model.embed_tokens.weight, transposed (equal at 1,024 sampled " \
        "positions): counted once" in report.notes
    [head] = [r for r in reader.read(path).tensors if r.name == "lm_head.weight"]
    assert head.extra == {"onnx_name": "onnx::MatMul_7"}


@pytest.mark.parametrize("where", [(0, 0), (999, 63), (618, 48)])  # corners and the first sampled position
def test_a_head_that_differs_at_a_sampled_position_is_its_own_weight(tmp_path: Path, where: tuple[int, int]) -> None:
    from paramscope.ties import sample_positions

    assert where in sample_positions(1000, 64)
    emb = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
    head = np.ascontiguousarray(emb.T)
    head[where[1], where[0]] += 1
    _head_model(tmp_path / "untied.onnx", head)
    report = paramscope.inspect(tmp_path / "untied.onnx")
    assert report.ties == [] and report.total == report.stored_elements == 2 * emb.size


def test_sample_positions_cover_the_matrix() -> None:
    from paramscope.ties import sample_positions

    positions = sample_positions(50_257, 768)
    assert len(positions) == len(set(positions)) == 1024
    assert len({i for i, _ in positions}) == 1024 and len({j for _, j in positions}) > 600
    assert all(0 <= i < 50_257 and 0 <= j < 768 for i, j in positions)
    assert sample_positions(3, 4) == [(i, j) for i in range(3) for j in range(4)]  # small: every element


def test_a_folded_head_keeps_its_name_where_no_module_or_a_taken_one_would_name_it(tmp_path: Path) -> None:
    emb = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
    _head_model(tmp_path / "a.onnx", np.ascontiguousarray(emb.T), node="MatMul_3")  # not a module path
    assert paramscope.inspect(tmp_path / "a.onnx").ties == [["model.embed_tokens.weight", "onnx::MatMul_7"]]
    taken = nh.from_array(np.ones((2, 2), np.float32), "lm_head.weight")  # the file's own name wins
    _head_model(tmp_path / "b.onnx", np.ascontiguousarray(emb.T), extra=[taken])
    names = [r.name for r in reader.read(tmp_path / "b.onnx").tensors]
    assert names == ["model.embed_tokens.weight", "lm_head.weight", "onnx::MatMul_7"]


def test_an_unfolded_tied_head_is_the_embedding_read_again(tmp_path: Path) -> None:
    path = tmp_path / "unfolded.onnx"
    emb = _head_model(path, None)
    report = paramscope.inspect(path)
    assert report.ties == [["model.embed_tokens.weight", "lm_head.weight"]]
    assert (report.total, report.stored_elements, report.bytes) == (emb.size, emb.size, emb.nbytes)


def test_an_external_head_is_not_sampled(tmp_path: Path) -> None:
    """External data is never opened (test_external_data_never_opened): no elements to compare, no tie."""
    emb = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
    _head_model(tmp_path / "ext.onnx", np.ascontiguousarray(emb.T), external=True)
    report = paramscope.inspect(tmp_path / "ext.onnx")
    assert report.ties == [] and report.total == 2 * emb.size


def test_a_config_beside_an_external_export_ties_the_folded_head(tmp_path: Path) -> None:
    """No elements to compare, but config.json says tie_word_embeddings: the folded head ([D, V]) is the
    embedding ([V, D]) stored a second time."""
    emb = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
    _head_model(tmp_path / "ext.onnx", np.ascontiguousarray(emb.T), external=True)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "tie_word_embeddings": True}))
    report = paramscope.inspect(tmp_path / "ext.onnx")
    assert report.ties == [["model.embed_tokens.weight", "lm_head.weight"]]
    assert (report.total, report.stored_elements) == (emb.size, 2 * emb.size)


@pytest.mark.slow
def test_mutated_tied_exports_end_cleanly(tmp_path: Path) -> None:
    """A folded tied head and an unfolded one, mutated (tests/hostile/_mutate.py): the naming, the alias and the
    sampled reads end with exit 0 or one line, under the hostile-input limits."""
    from tests.hostile._mutate import assert_all_clean, write_mutations

    emb = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)  # 2,048 elements: sampled
    _head_model(tmp_path / "folded.onnx", np.ascontiguousarray(emb.T), rows=64, cols=32)
    _head_model(tmp_path / "unfolded.onnx", None, rows=64, cols=32)
    bases = [tmp_path / "folded.onnx", tmp_path / "unfolded.onnx"]
    assert paramscope.inspect(bases[0]).ties == paramscope.inspect(bases[1]).ties != []
    assert_all_clean(bases)
    for k, base in enumerate(bases):
        seen = assert_all_clean(write_mutations(base, tmp_path / f"mutated{k}", 80, seed=13 + k))
        assert seen.get(1, 0) > 0


def test_elements_are_read_from_a_regular_file_only(tmp_path: Path) -> None:
    """The sampler opens the file again: a FIFO swapped in meanwhile is not waited on, a short file reads None."""
    import os

    path = tmp_path / "tied.onnx"
    emb = _head_model(path, None, rows=64, cols=32)
    read = reader.read(path).pending["elements"]
    assert read("model.embed_tokens.weight", [0, 2047]) == [emb[0, 0].tobytes(), emb[63, 31].tobytes()]
    assert read("model.embed_tokens.weight", [2048]) is None  # past the tensor
    assert read("nothing", [0]) is None
    path.unlink()
    os.mkfifo(path)
    assert read("model.embed_tokens.weight", [0]) is None
