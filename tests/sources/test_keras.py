"""Keras reader: .keras archives and HDF5 weight files written with h5py (Keras is not installed), compared
with h5py's own view of the same files."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramscope import inspect
from paramscope.cli import main
from paramscope.errors import ParamscopeError
from paramscope.records import Role
from paramscope.sources import keras as reader
from paramscope.sources.files import read_path

# A small Keras 3 functional model's weight layout: layers/<name>/vars/<i>, plus optimizer state.
KERAS3 = {
    "layers/dense/vars/0": ((784, 128), "f4"),
    "layers/dense/vars/1": ((128,), "f4"),
    "layers/batch_normalization/vars/0": ((128,), "f4"),
    "layers/batch_normalization/vars/1": ((128,), "f4"),
    "layers/batch_normalization/vars/2": ((128,), "f4"),
    "layers/batch_normalization/vars/3": ((128,), "f4"),
    "layers/dense_1/vars/0": ((128, 10), "f2"),
    "layers/dense_1/vars/1": ((10,), "f2"),
    "optimizer/vars/0": ((), "i8"),
    "optimizer/vars/1": ((784, 128), "f4"),
    "optimizer/vars/2": ((784, 128), "f4"),
}


def write_h5(target, layout: dict[str, tuple[tuple[int, ...], str]]) -> None:
    with h5py.File(target, "w") as h5:
        for name, (shape, dtype) in layout.items():
            h5.create_dataset(name, shape=shape, dtype=dtype)  # no data written: sparse chunks


def h5py_reference(path) -> dict[str, tuple[tuple[int, ...], str]]:
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name.replace("/", ".")] = (obj.shape, obj.dtype.str)

    with h5py.File(path, "r") as h5:
        h5.visititems(visit)
    return out


def write_keras(path: Path, layout=KERAS3, compression=zipfile.ZIP_STORED, extra=()) -> Path:
    weights = io.BytesIO()
    write_h5(weights, layout)
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.6.0", "date_saved": "2026-01-01"}))
        archive.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"name": "mnist"}}))
        archive.writestr("model.weights.h5", weights.getvalue())
        for name, data in extra:
            archive.writestr(name, data)
    return path


BN_STATE = ("layers/batch_normalization/vars/2", "layers/batch_normalization/vars/3")  # moving mean, variance


def expected_counts(layout):
    params = sum(math.prod(s) for n, (s, d) in layout.items()
                 if d[0] == "f" and not n.startswith("optimizer") and n not in BN_STATE)
    return params


def assert_cli_fails(path: Path) -> None:
    stderr = io.StringIO()
    assert main([str(path)], stdout=io.StringIO(), stderr=stderr) == 1
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], lines


def test_weights_h5_matches_h5py(tmp_path):
    path = tmp_path / "model.weights.h5"
    write_h5(path, KERAS3)
    ref = h5py_reference(path)
    inv = read_path(path)
    assert inv.format == "keras"
    got = {r.name: (r.shape, r.dtype) for r in inv.tensors}
    dt = {"<f4": "float32", "<f2": "float16", "<i8": "int64"}
    assert got == {k: (s, dt[d]) for k, (s, d) in ref.items()}
    assert all(r.trainable is None for r in inv.tensors)
    roles = {r.name: r.role for r in inv.tensors}
    assert roles["optimizer.vars.1"] is Role.OPTIMIZER_STATE and roles["layers.dense.vars.0"] is Role.PARAMETER
    report = inspect(path)
    assert report.total == expected_counts(KERAS3) == 784 * 128 + 128 + 2 * 128 + 1280 + 10
    assert report.trainable is None
    assert report.buffers == 2 * 128  # BatchNormalization's last two vars: moving_mean, moving_variance


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_keras_archive(tmp_path, compression):
    path = write_keras(tmp_path / "model.keras", compression=compression)
    inv = read_path(path)
    assert inv.format == "keras"
    assert inv.metadata["keras_version"] == "3.6.0"
    assert inv.metadata["model class"] == "Sequential"
    assert {r.name for r in inv.tensors} == {k.replace("/", ".") for k in KERAS3}
    assert all(r.origin == "model.weights.h5" for r in inv.tensors)
    assert inspect(path).total == expected_counts(KERAS3)


def test_legacy_keras2_h5_with_optimizer_weights(tmp_path):
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["keras_version"] = "2.15.0"
        h5.attrs["backend"] = "tensorflow"
        mw = h5.create_group("model_weights")
        mw.attrs["layer_names"] = [b"dense"]
        g = mw.create_group("dense/dense")
        g.create_dataset("kernel:0", shape=(4, 3), dtype="f4")
        g.create_dataset("bias:0", shape=(3,), dtype="f4")
        h5.create_dataset("optimizer_weights/Adam/dense/kernel/m:0", shape=(4, 3), dtype="f4")
    inv = read_path(path)
    assert inv.metadata == {"keras_version": "2.15.0", "backend": "tensorflow"}
    report = inspect(path)
    assert report.total == 15
    assert sum(r.numel for r in inv.tensors if r.role is Role.OPTIMIZER_STATE) == 12


def test_hard_link_is_a_tie_and_cycles_are_cut(tmp_path):
    path = tmp_path / "tied.h5"
    with h5py.File(path, "w") as h5:
        d = h5.create_dataset("layers/embedding/vars/0", shape=(100, 8), dtype="f4")
        h5["layers/head/vars/0"] = d  # a second hard link: the same storage
        h5["layers/loop"] = h5["layers"]  # a cycle
        h5["soft"] = h5py.SoftLink("/layers/embedding/vars/0")
        h5["ext"] = h5py.ExternalLink("/etc/passwd", "/x")
    inv = read_path(path)
    assert sorted(r.name for r in inv.tensors) == ["layers.embedding.vars.0", "layers.head.vars.0"]
    assert len({r.tie for r in inv.tensors}) == 1 and inv.tensors[0].tie is not None
    assert inspect(path).total == 800  # counted once
    assert any("not followed" in n for n in inv.notes)


def test_probe_only_claims_keras_zips(tmp_path):
    keras_zip = write_keras(tmp_path / "a.keras")
    npz = tmp_path / "b.npz"
    np.savez(npz, x=np.zeros(2))
    other = tmp_path / "c.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("archive/data.pkl", b"x")
    for path, claimed in ((keras_zip, True), (npz, False), (other, False)):
        probed = reader.probe(path.read_bytes()[:64], path)
        assert (probed is not None) is claimed
        if probed is not None:  # reads from the archive the probe opened
            assert [r.name for r in probed.read().tensors] == [r.name for r in reader.read(path).tensors]


def test_a_keras_zip_directory_is_parsed_once_for_numpy_and_once_for_keras(tmp_path, monkeypatch):
    # numpy_files' probe opens the zip and lets it go; keras' probe opens it and its Reader reads that archive
    path = write_keras(tmp_path / "a.keras")
    parsed = []
    real = zipfile.ZipFile._RealGetContents
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", lambda self: (parsed.append(1), real(self))[1])
    assert read_path(path).format == "keras"
    assert len(parsed) == 2


# --------------------------------------------------------------------------------------------- bad input


def test_truncated_h5(tmp_path):
    good = tmp_path / "g.h5"
    write_h5(good, KERAS3)
    path = tmp_path / "t.h5"
    path.write_bytes(good.read_bytes()[:600])
    with pytest.raises(ParamscopeError, match="HDF5"):
        read_path(path)
    assert_cli_fails(path)


def test_garbage_after_signature(tmp_path):
    path = tmp_path / "g.h5"
    path.write_bytes(reader.HDF5_MAGIC + b"\xff" * 4000)
    with pytest.raises(ParamscopeError, match="HDF5"):
        read_path(path)
    assert_cli_fails(path)


def test_keras_with_garbage_weights(tmp_path):
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"not hdf5 at all" * 10)
    with pytest.raises(ParamscopeError, match="damaged HDF5"):
        read_path(path)
    assert_cli_fails(path)


def test_keras_deflate_bomb_member(tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive, archive.open(
        "model.weights.h5", "w", force_zip64=True
    ) as member:
        chunk = bytes(1 << 24)
        for _ in range(64):
            member.write(chunk)
    with pytest.raises(ParamscopeError, match="deflate bomb"):
        read_path(path)
    assert_cli_fails(path)


def test_keras_bad_config_json(tmp_path):
    path = write_keras(tmp_path / "m.keras")
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = b"{not json" if info.filename == "config.json" else src.read(info)
            dst.writestr(info.filename, data)
    with pytest.raises(ParamscopeError, match=r"config\.json is not valid JSON"):
        read_path(bad)
    assert_cli_fails(bad)


def test_truncated_keras_zip(tmp_path):
    path = write_keras(tmp_path / "m.keras")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(ParamscopeError):
        read_path(path)
    assert_cli_fails(path)


# --------------------------------------------------------------------------------------------- fuzz


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_only_paramscope_errors(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("fuzz")
    layout = {"layers/d/vars/0": ((3, 4), "f4"), "layers/d/vars/1": ((4,), "f4")}
    as_zip = data.draw(st.booleans())
    if as_zip:
        path = write_keras(tmp / "f.keras", layout)
    else:
        path = tmp / "f.h5"
        write_h5(path, layout)
    blob = bytearray(path.read_bytes())
    mode = data.draw(st.sampled_from(["flip", "truncate"]))
    if mode == "flip":
        for _ in range(data.draw(st.integers(1, 10))):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    else:
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    path.write_bytes(bytes(blob))
    head = bytes(blob[:64])
    try:
        probed = reader.probe(head, path)
        if probed is not None:
            probed.read()
    except ParamscopeError as exc:
        assert "\n" not in str(exc)


# --------------------------------------------------------------------------------------------- as Keras reports it
# Keras is not installed here: the fixtures are written with h5py in the layout keras/src/saving/saving_lib.py
# writes (layers/<snake class>[_<n>]/vars/<i>, trainable variables first), and the counts are by hand.


def _layer(cls: str, trainable: bool = True, **config) -> dict:
    return {"module": "keras.layers", "class_name": cls, "config": {"name": cls.lower(), "trainable": trainable,
                                                                      **config}}


def _keras3_model(tmp_path: Path) -> Path:
    """Sequential: input, Embedding(50, 8), eleven Dense(8, 8) (dense ... dense_10: the 11th sorts before the 3rd
    by bytes), a frozen Dense(8, 4) (dense_11), BatchNormalization(4), and a frozen nested Sequential holding a
    Dense(4, 2) and a BatchNormalization(2) (its own counters: dense, batch_normalization)."""
    layout: dict[str, tuple[tuple[int, ...], str]] = {"layers/embedding/vars/0": ((50, 8), "f4")}
    layers = [{"class_name": "InputLayer", "config": {"name": "input"}}, _layer("Embedding")]
    for k in range(11):
        group = "dense" if k == 0 else f"dense_{k}"
        layout[f"layers/{group}/vars/0"] = ((8, 8), "f4")
        layout[f"layers/{group}/vars/1"] = ((8,), "f4")
        layers.append(_layer("Dense"))
    layout["layers/dense_11/vars/0"] = ((8, 4), "f4")
    layout["layers/dense_11/vars/1"] = ((4,), "f4")
    layers.append(_layer("Dense", trainable=False))
    for i in range(4):  # gamma, beta, moving_mean, moving_variance
        layout[f"layers/batch_normalization/vars/{i}"] = ((4,), "f4")
    layers.append(_layer("BatchNormalization"))
    layout["layers/sequential/layers/dense/vars/0"] = ((4, 2), "f4")
    layout["layers/sequential/layers/dense/vars/1"] = ((2,), "f4")
    for i in range(4):
        layout[f"layers/sequential/layers/batch_normalization/vars/{i}"] = ((2,), "f4")
    layers.append({"class_name": "Sequential", "config": {"name": "head", "trainable": False,
                                                          "layers": [_layer("Dense"), _layer("BatchNormalization")]}})
    layout["optimizer/vars/0"] = ((), "i8")
    weights = io.BytesIO()
    write_h5(weights, layout)
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        archive.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"name": "m",
                                                                                           "layers": layers}}))
        archive.writestr("model.weights.h5", weights.getvalue())
    return path


def test_keras_roles_trainability_and_order_from_the_config(tmp_path):
    path = _keras3_model(tmp_path)
    inv = read_path(path)
    dense = [f"layers.dense{'' if k == 0 else f'_{k}'}.vars.{i}" for k in range(12) for i in (0, 1)]
    bn = [f"layers.batch_normalization.vars.{i}" for i in range(4)]
    nested = ["layers.sequential.layers.dense.vars.0", "layers.sequential.layers.dense.vars.1",
              *(f"layers.sequential.layers.batch_normalization.vars.{i}" for i in range(4))]
    assert [r.name for r in inv.tensors] == ["layers.embedding.vars.0", *dense, *bn, *nested, "optimizer.vars.0"]
    by_name = {r.name: r for r in inv.tensors}
    buffers = {n for n in bn[2:] + nested[4:]}
    assert {n for n, r in by_name.items() if r.role is Role.BUFFER} == buffers
    frozen = {"layers.dense_11.vars.0", "layers.dense_11.vars.1", *nested[:4]}
    assert {n for n, r in by_name.items() if r.trainable is False} == frozen
    assert by_name["layers.embedding.vars.0"].owner_type == "Embedding"
    report = inspect(path)
    # by hand: embedding 400; 11 Dense(8, 8) of 72; Dense(8, 4) 36; BN gamma+beta 8; nested Dense(4, 2) 10 and
    # BN gamma+beta 4. Buffers: moving stats 4+4 and 2+2. Frozen: dense_11 (36) and the nested model (10 + 4).
    assert report.total == 400 + 11 * 72 + 36 + 8 + 10 + 4 == 1250
    assert report.buffers == 12
    assert report.trainable == 400 + 11 * 72 + 8 == 1200
    assert report.frozen == 36 + 14 == 50
    assert report.non_embedding == 1250 - 400
    # what model.summary() would print: total = parameters + buffers, non-trainable = frozen + buffers
    assert (report.total + report.buffers, report.trainable, report.frozen + report.buffers) == (1262, 1200, 62)


def test_bare_weights_file_reads_classes_from_group_names(tmp_path):
    """No config: Keras 3 named each group after its layer's class, so BatchNormalization's moving statistics are
    still buffers and Embedding's table is still an embedding; trainability stays unknown; natural order."""
    path = tmp_path / "model.weights.h5"
    layout = {f"layers/dense_{k}/vars/0": ((3, 3), "f4") for k in (10, 2, 1)}
    layout.update({"layers/embedding/vars/0": ((10, 3), "f4"), "layers/normalization/vars/0": ((3,), "f4"),
                   "layers/normalization/vars/1": ((3,), "f4"), "layers/normalization/vars/2": ((), "i8")})
    layout.update({f"layers/batch_normalization_1/vars/{i}": ((3,), "f4") for i in range(3)})  # center=False
    write_h5(path, layout)
    inv = read_path(path)
    assert [r.name for r in inv.tensors] == [
        "layers.batch_normalization_1.vars.0", "layers.batch_normalization_1.vars.1",
        "layers.batch_normalization_1.vars.2", "layers.dense_1.vars.0", "layers.dense_2.vars.0",
        "layers.dense_10.vars.0", "layers.embedding.vars.0", "layers.normalization.vars.0",
        "layers.normalization.vars.1", "layers.normalization.vars.2"]
    report = inspect(path)
    assert report.total == 3 + 27 + 30  # gamma; three Dense kernels; the embedding table
    assert report.buffers == 3 + 3 + 3 + 3 + 1  # BN's moving mean and variance; Normalization's mean, variance, count
    assert report.non_embedding == 30 and report.trainable is None


def test_legacy_keras2_batch_norm_state_by_name(tmp_path):
    path = tmp_path / "legacy_bn.h5"
    with h5py.File(path, "w") as h5:
        g = h5.create_group("model_weights/batch_normalization/batch_normalization")
        for name in ("gamma:0", "beta:0", "moving_mean:0", "moving_variance:0"):
            g.create_dataset(name, shape=(5,), dtype="f4")
        h5.create_dataset("model_weights/embedding/embedding/embeddings:0", shape=(7, 5), dtype="f4")
    report = inspect(path)
    assert (report.total, report.buffers, report.non_embedding) == (10 + 35, 10, 10)


def test_hostile_config_is_bounded(tmp_path):
    """A config nesting models far past MAX_DEPTH, and layers that are not objects: read, nothing refused."""
    config: dict = {"class_name": "Sequential", "config": {"layers": []}}
    inner = config
    for _ in range(reader.MAX_DEPTH + 10):
        nested = {"class_name": "Sequential", "config": {"trainable": False, "layers": [7, "x", None]}}
        inner["config"]["layers"].append(nested)
        inner = nested
    layers = reader._config_layers(config)
    assert len(layers) == reader.MAX_DEPTH + 1
    assert reader._config_layers({"config": {"layers": "no"}}) == {}
    assert reader._config_layers([1, 2]) == {}


def test_legacy_keras2_model_config_gives_trainable_and_order(tmp_path):
    """A Keras 2 .h5 (tf.keras save_format="h5" layout): the root model_config attribute names each layer of
    model_weights/, its class and trainable flag; its layer order is the listing order."""
    path = tmp_path / "legacy_config.h5"
    layers = [{"class_name": "InputLayer", "config": {"name": "input_1"}},
              {"class_name": "Dense", "config": {"name": "dense_10", "trainable": True}},
              {"class_name": "BatchNormalization", "config": {"name": "batch_normalization", "trainable": False}},
              {"class_name": "Dense", "config": {"name": "dense_2", "trainable": True}}]
    with h5py.File(path, "w") as h5:
        h5.attrs["keras_version"] = "2.15.0"
        h5.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": layers}})
        for name, shape in (("dense_10", (6, 4)), ("dense_2", (4, 2))):
            h5.create_dataset(f"model_weights/{name}/{name}/kernel:0", shape=shape, dtype="f4")
            h5.create_dataset(f"model_weights/{name}/{name}/bias:0", shape=shape[1:], dtype="f4")
        for var in ("gamma:0", "beta:0", "moving_mean:0", "moving_variance:0"):
            h5.create_dataset(f"model_weights/batch_normalization/batch_normalization/{var}", shape=(4,), dtype="f4")
    inv = read_path(path)
    assert [r.name.rpartition(".")[2] for r in inv.tensors] == [
        "bias:0", "kernel:0", "beta:0", "gamma:0", "moving_mean:0", "moving_variance:0", "bias:0", "kernel:0"]
    assert [r.name.split(".")[1] for r in inv.tensors] == ["dense_10"] * 2 + ["batch_normalization"] * 4 + [
        "dense_2"] * 2
    report = inspect(path)
    # by hand: Dense(6, 4) 28 + Dense(4, 2) 10 trainable; BN gamma + beta 8 frozen; moving stats 8 buffers
    assert (report.total, report.trainable, report.frozen, report.buffers) == (46, 38, 8, 8)


def test_legacy_model_config_that_is_not_one_is_ignored(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = "{not json"
        h5.create_dataset("model_weights/d/d/kernel:0", shape=(2, 2), dtype="f4")
    report = inspect(path)
    assert (report.total, report.trainable) == (4, None)
