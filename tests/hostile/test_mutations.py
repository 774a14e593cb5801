"""A property test per reader: mutated copies of a valid file of each format, each run through the CLI
under 2 GiB of address space and a per-file alarm, must end in exit 0 or one line naming the file.

The valid files are written by each format's reference library (safetensors, gguf-py, numpy, torch,
onnx, h5py), so the mutations start from what real tools write.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ._mutate import assert_all_clean, write_mutations

CASES_PER_FORMAT = 120


def _safetensors(folder: Path) -> Path:
    from safetensors.numpy import save_file

    path = folder / "base.safetensors"
    save_file({"model.layers.0.weight": np.zeros((4, 3), np.float16), "model.layers.0.bias": np.zeros(4, np.float32),
               "lm_head.weight": np.zeros((2, 3), np.int8)}, str(path), metadata={"format": "pt"})
    return path


def _gguf(folder: Path) -> Path:
    gguf = pytest.importorskip("gguf")
    path = folder / "base.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    writer.add_tensor("token_embd.weight", np.zeros((3, 32), np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _npy(folder: Path) -> Path:
    path = folder / "base.npy"
    np.save(path, np.zeros((3, 5), np.float32))
    return path


def _npz(folder: Path) -> Path:
    path = folder / "base.npz"
    np.savez(path, w=np.zeros((3, 5), np.float32), b=np.zeros(5, np.float64))
    return path


def _torch_zip(folder: Path) -> Path:
    torch = pytest.importorskip("torch")
    path = folder / "base.pt"
    torch.save({"w": torch.zeros(3, 4), "b": torch.zeros(4, dtype=torch.float16), "step": 3}, path)
    return path


def _torch_legacy(folder: Path) -> Path:
    torch = pytest.importorskip("torch")
    path = folder / "legacy.pt"
    torch.save({"w": torch.zeros(3, 4)}, path, _use_new_zipfile_serialization=False)
    return path


def _onnx(folder: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((4, 3), np.float32), "fc.weight")
    node = helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="fc")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weight])
    path = folder / "base.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def _h5(folder: Path) -> Path:
    h5py = pytest.importorskip("h5py")
    path = folder / "base.h5"
    with h5py.File(path, "w") as handle:
        group = handle.create_group("model_weights/dense/dense")
        group.create_dataset("kernel:0", data=np.zeros((3, 4), np.float32))
        group.create_dataset("bias:0", data=np.zeros(4, np.float32))
    return path


def _keras(folder: Path) -> Path:
    """A Keras 3 archive: metadata, model config and the weights as HDF5 in the layout Keras 3 writes."""
    import zipfile

    h5py = pytest.importorskip("h5py")
    weights = folder / "model.weights.h5"
    with h5py.File(weights, "w") as handle:
        handle.create_dataset("layers/dense/vars/0", data=np.zeros((4, 3), np.float32))
        handle.create_dataset("layers/dense/vars/1", data=np.zeros(3, np.float32))
    path = folder / "base.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", '{"keras_version": "3.0"}')
        archive.writestr("config.json", '{"class_name": "Sequential", "config": {"name": "s"}}')
        archive.write(weights, "model.weights.h5")
    return path


BASES = {"safetensors": _safetensors, "gguf": _gguf, "npy": _npy, "npz": _npz, "torch-zip": _torch_zip,
         "torch-legacy": _torch_legacy, "onnx": _onnx, "h5": _h5,
         "keras": _keras}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(BASES))
def test_mutated_files_end_cleanly(fmt, tmp_path):
    base = BASES[fmt](tmp_path)
    # The unmutated file is read: otherwise every mutation would be refused for the wrong reason.
    assert_all_clean([base])
    seen = assert_all_clean(write_mutations(base, tmp_path / "mutated", CASES_PER_FORMAT, seed=11))
    assert seen.get(1, 0) > 0, f"no mutation of the {fmt} file was refused: the mutations did not reach the reader"
