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
