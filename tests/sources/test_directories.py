"""Directories: any one readable checkpoint is read, several formats follow files.DIRECTORY_PREFERENCE (a note
says which was read), weights beside a config.json are never replaced by a build from it, and a
``pytorch_model.bin.index.json`` reads its shards as one set. References: torch itself (the tensors saved)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from paramscope.errors import ParamscopeError
from paramscope.pipeline import read
from paramscope.sources.files import DIRECTORY_PREFERENCE, read_path
from tests.hostile._limits import assert_clean, assert_refused, run_cli
from tests.sources._gguf_helpers import write_gguf

CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
          "num_attention_heads": 4, "num_hidden_layers": 1, "vocab_size": 100}


def _save_bin(path: Path, shapes: dict[str, tuple[int, ...]]) -> int:
    state = {name: torch.zeros(shape) for name, shape in shapes.items()}
    torch.save(state, path)
    return sum(t.numel() for t in torch.load(path, weights_only=True).values())  # torch's own count


def test_a_directory_holding_only_a_bin_is_read(tmp_path: Path) -> None:
    expected = _save_bin(tmp_path / "pytorch_model.bin", {"a.weight": (3, 5), "b.bias": (7,)})
    inventory = read_path(tmp_path)
    assert inventory.format == "pytorch"
    assert sum(r.numel for r in inventory.tensors) == expected == 22
    assert inventory.source == str(tmp_path / "pytorch_model.bin")
    assert inventory.notes == []  # one format only: nothing to explain


def test_a_directory_holding_only_a_gguf_is_read(tmp_path: Path) -> None:
    expected = write_gguf(tmp_path / "model.gguf", "llama", {"token_embd.weight": (10, 4)})
    inventory = read_path(tmp_path)
    assert inventory.format == "gguf"
    assert sum(r.numel for r in inventory.tensors) == expected == 40


def test_a_directory_holding_only_an_npz_is_read(tmp_path: Path) -> None:
    np.savez(tmp_path / "weights.npz", w=np.zeros((2, 3), np.float32))
    inventory = read_path(tmp_path)
    assert (inventory.format, [r.numel for r in inventory.tensors]) == ("numpy", [6])


def test_a_bin_beside_a_config_is_read_not_replaced_by_a_build(tmp_path: Path) -> None:
    expected = _save_bin(tmp_path / "pytorch_model.bin", {"model.embed_tokens.weight": (100, 64)})
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    inventory = read_path(tmp_path)
    assert inventory.format == "pytorch"  # the weights, not the architecture built from the config
    assert sum(r.numel for r in inventory.tensors) == expected == 6400
    assert inventory.pending["config"]["model_type"] == "llama"  # handed on to the rules stage


def test_several_formats_read_the_preferred_one_and_say_so(tmp_path: Path) -> None:
    _save_bin(tmp_path / "pytorch_model.bin", {"w": (2, 2)})
    write_gguf(tmp_path / "model.gguf", "llama", {"token_embd.weight": (10, 4)})
    inventory = read_path(tmp_path)
    assert inventory.format == "pytorch"
    assert [r.numel for r in inventory.tensors] == [4]
    assert inventory.notes == [
        "read the pytorch weights (transformers' fallback (pytorch_model.bin)); not read: model.gguf "
        "(a directory's formats are read in this order: safetensors, pytorch, keras, gguf, onnx, numpy)"]


def test_the_preference_order_is_transformers_first_then_exports() -> None:
    assert [name for name, _, _ in DIRECTORY_PREFERENCE] == ["safetensors", "pytorch", "keras", "gguf", "onnx",
                                                            "numpy"]


def test_trainer_files_are_not_taken_for_the_model(tmp_path: Path) -> None:
    _save_bin(tmp_path / "pytorch_model.bin", {"w": (3,)})
    torch.save({"state": {0: {"exp_avg": torch.zeros(9)}}}, tmp_path / "optimizer.pt")
    (tmp_path / "training_args.bin").write_bytes(b"not a model")
    inventory = read_path(tmp_path)
    assert [r.numel for r in inventory.tensors] == [3]
    assert inventory.notes == []


def test_two_checkpoints_of_one_format_are_refused_by_name(tmp_path: Path) -> None:
    write_gguf(tmp_path / "a.gguf", "llama", {"t": (2,)})
    write_gguf(tmp_path / "b.gguf", "llama", {"t": (2,)})
    with pytest.raises(ParamscopeError, match=r"several gguf checkpoints \(a.gguf, b.gguf\): name one of them"):
        read_path(tmp_path)


def test_a_bin_that_is_not_a_checkpoint_is_an_error_not_a_config_build(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x00" * 100)
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    result = run_cli(str(tmp_path))
    assert_refused(result, "pytorch_model.bin", "not a checkpoint format paramscope knows")


def _sharded(tmp_path: Path) -> dict[str, torch.Tensor]:
    first = {"embed.weight": torch.zeros(10, 4), "layer.0.weight": torch.zeros(4, 4)}
    second = {"head.weight": torch.zeros(3, 4)}
    torch.save(first, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save(second, tmp_path / "pytorch_model-00002-of-00002.bin")
    weight_map = {**dict.fromkeys(first, "pytorch_model-00001-of-00002.bin"),
                  **dict.fromkeys(second, "pytorch_model-00002-of-00002.bin")}
    (tmp_path / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": 4 * 68}, "weight_map": weight_map}))
    return {**first, **second}


def test_a_sharded_bin_is_read_as_one_set(tmp_path: Path) -> None:
    state = _sharded(tmp_path)
    inventory = read_path(tmp_path)
    assert {r.name: r.numel for r in inventory.tensors} == {name: t.numel() for name, t in state.items()}
    assert {r.name: r.origin for r in inventory.tensors}["head.weight"] == "pytorch_model-00002-of-00002.bin"
    assert inventory.metadata == {"shards": 2, "index total_size": 272}
    assert read(tmp_path).format == "pytorch"


def test_ties_stay_inside_their_shard(tmp_path: Path) -> None:
    # each shard's first storage has the key "0": joined, they must not look like one tensor
    shared = torch.zeros(6)
    torch.save({"a": shared, "b": shared}, tmp_path / "s1.bin")
    other = torch.zeros(6)
    torch.save({"c": other, "d": other}, tmp_path / "s2.bin")
    (tmp_path / "pytorch_model.bin.index.json").write_text(
        json.dumps({"weight_map": {"a": "s1.bin", "b": "s1.bin", "c": "s2.bin", "d": "s2.bin"}}))
    result = run_cli(str(tmp_path), "--format", "json")
    assert_clean(result, str(tmp_path))
    assert json.loads(result.stdout)["total"] == 12  # torch: two storages of 6, each shared by two names


def test_a_sharded_bin_index_that_lies_is_refused(tmp_path: Path) -> None:
    _sharded(tmp_path)
    (tmp_path / "pytorch_model.bin.index.json").write_text(
        json.dumps({"weight_map": {"embed.weight": "pytorch_model-00002-of-00002.bin"}}))
    with pytest.raises(ParamscopeError, match=r"puts 'embed\.weight' in 'pytorch_model-00002-of-00002\.bin'"):
        read_path(tmp_path)


def test_a_sharded_bin_index_cannot_leave_its_directory(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"a": "../x.bin"}}))
    result = run_cli(str(tmp_path))
    assert_refused(result, "pytorch_model.bin.index.json", "outside the index's directory")
