"""Packed quantization counted as logical weights: one toy Llama (2 layers, hidden 256, intermediate 512)
written in each scheme's real storage layout must count exactly what the unquantized model counts.

The layouts (shapes, dtypes, names) follow each library: AutoGPTQ/GPTQModel ``QuantLinear``, AutoAWQ
``WQLinear_GEMM``, bitsandbytes ``Params4bit`` + ``QuantState.as_dict(packed=True)`` and ``Int8Params``,
compressed-tensors ``pack_to_int32``, ``mlx.nn.quantize``, DeepSeek-V3 FP8 (see paramscope/quantization.py).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from paramscope.errors import ParamscopeError
from paramscope.hf_config import apply_config
from paramscope.quantization import config_scheme
from paramscope.records import QuantInfo, Role
from paramscope.report import Report
from paramscope.sources.files import read_path
from tests.sources._st_helpers import llama_tensors, write_sparse

TOY = dict(vocab=1000, hidden=256, layers=2, intermediate=512, heads=4, kv_heads=2)
TOY_TENSORS = llama_tensors(**TOY)
TOY_PARAMS = sum(math.prod(shape) for _, shape in TOY_TENSORS)  # the hand sum; checked against transformers below
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GROUP = 128


def _is_linear(name: str) -> bool:
    return name.startswith("model.layers.") and name.rpartition(".")[0].rpartition(".")[2] in LINEAR


LINEARS = [(n, s) for n, s in TOY_TENSORS if _is_linear(n)]
PLAIN = [(n, s) for n, s in TOY_TENSORS if not _is_linear(n)]
PLAIN_PARAMS = sum(math.prod(s) for _, s in PLAIN)
LINEAR_PARAMS = TOY_PARAMS - PLAIN_PARAMS


def _plain_arrays(dtype=np.float16) -> dict[str, np.ndarray]:
    return {n: np.zeros(s, dtype) for n, s in PLAIN}


def _read(path: Path, config: dict | None) -> Report:
    return Report(apply_config(read_path(path), config))


def _aux(report: Report) -> list[str]:
    return [r.name for r in report.tensors if r.role is Role.QUANT_AUX]


def test_toy_hand_count_is_what_transformers_counts():
    code = (
        "import torch\nfrom transformers import LlamaConfig, LlamaForCausalLM\n"
        "c = LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=2,"
        " num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)\n"
        "with torch.device('meta'):\n    m = LlamaForCausalLM(c)\n"
        "print(sum(p.numel() for p in m.parameters()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert int(out.stdout.split()[-1]) == TOY_PARAMS == 1_692_928


# ---- GPTQ / AWQ --------------------------------------------------------------------------------------


def _gptq(bits: int) -> dict[str, np.ndarray]:
    """AutoGPTQ QuantLinear: qweight [in*bits/32, out], qzeros [in/g, out*bits/32], scales [in/g, out], g_idx [in]."""
    arrays = _plain_arrays()
    for name, (out_f, in_f) in LINEARS:
        base = name.removesuffix(".weight")
        arrays[base + ".qweight"] = np.zeros((in_f * bits // 32, out_f), np.int32)
        arrays[base + ".qzeros"] = np.zeros((in_f // GROUP, out_f * bits // 32), np.int32)
        arrays[base + ".scales"] = np.zeros((in_f // GROUP, out_f), np.float16)
        arrays[base + ".g_idx"] = np.arange(in_f, dtype=np.int32) // GROUP
    return arrays


def _awq(bits: int) -> dict[str, np.ndarray]:
    """AutoAWQ WQLinear_GEMM: qweight [in, out*bits/32], qzeros [in/g, out*bits/32], scales [in/g, out]."""
    arrays = _plain_arrays()
    for name, (out_f, in_f) in LINEARS:
        base = name.removesuffix(".weight")
        arrays[base + ".qweight"] = np.zeros((in_f, out_f * bits // 32), np.int32)
        arrays[base + ".qzeros"] = np.zeros((in_f // GROUP, out_f * bits // 32), np.int32)
        arrays[base + ".scales"] = np.zeros((in_f // GROUP, out_f), np.float16)
    return arrays


def _stored(arrays: dict[str, np.ndarray], leaf: str) -> int:
    return sum(a.size for n, a in arrays.items() if n.endswith(leaf))


@pytest.mark.parametrize(
    ("layout", "bits", "config", "scheme"),
    [
        (_gptq, 4, {"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128}}, "gptq"),
        (_gptq, 4, None, "gptq"),
        (_gptq, 8, None, "gptq"),  # bits from scales cols / qzeros cols, no config
        (_gptq, 2, {"quantization_config": {"quant_method": "gptq", "bits": 2}}, "gptq"),
        (_awq, 4, {"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128,
                                           "version": "gemm"}}, "awq"),
        (_awq, 4, None, "awq"),  # qweight cols != scales cols: AWQ's layout
    ],
)
def test_gptq_awq(tmp_path, layout, bits, config, scheme):
    arrays = layout(bits)
    save_file(arrays, tmp_path / "model.safetensors")
    report = _read(tmp_path / "model.safetensors", config)
    assert report.total == TOY_PARAMS
    assert report.stored_elements == PLAIN_PARAMS + _stored(arrays, ".qweight")
    assert report.stored_elements == PLAIN_PARAMS + LINEAR_PARAMS * bits // 32
    per_linear = 3 if layout is _gptq else 2
    assert len(_aux(report)) == per_linear * len(LINEARS)
    assert report.other["quant_aux"] == sum(
        a.size for n, a in arrays.items() if n.endswith((".qzeros", ".scales", ".g_idx"))
    )
    # bytes: everything the file stores for the model (packed words and their scales), as numpy counts it
    assert report.bytes == sum(a.nbytes for a in arrays.values())
    assert report.buffers == 0
    qweights = [r for r in report.tensors if r.name.endswith(".qweight")]
    assert all(r.role is Role.PARAMETER and r.quant.scheme == scheme and r.quant.bits == bits for r in qweights)
    assert report.metadata["quantization"]["scheme"] == scheme


# ---- bitsandbytes ------------------------------------------------------------------------------------


def _bnb4(quant_type: str, double: bool) -> dict[str, np.ndarray]:
    """Params4bit: weight uint8 [n/2, 1]; QuantState.as_dict(packed=True) beside it (blocksize 64)."""
    arrays = _plain_arrays()
    for name, shape in LINEARS:
        n = math.prod(shape)
        arrays[name] = np.zeros(((n + 1) // 2, 1), np.uint8)
        blob = {"quant_type": quant_type, "blocksize": 64, "dtype": "float16", "shape": list(shape)}
        if double:
            arrays[name + ".absmax"] = np.zeros(n // 64, np.uint8)
            arrays[name + ".nested_absmax"] = np.zeros(-(-(n // 64) // 256), np.float32)
            arrays[name + ".nested_quant_map"] = np.zeros(256, np.float32)
            blob.update(nested_blocksize=256, nested_dtype="float32", nested_offset=0.0)
        else:
            arrays[name + ".absmax"] = np.zeros(n // 64, np.float32)
        arrays[name + ".quant_map"] = np.zeros(16, np.float32)
        raw = json.dumps(blob).encode()
        arrays[name + f".quant_state.bitsandbytes__{quant_type}"] = np.frombuffer(raw, np.uint8).copy()
    return arrays


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("with_config", [False, True])
def test_bitsandbytes_4bit(tmp_path, quant_type, double, with_config):
    arrays = _bnb4(quant_type, double)
    save_file(arrays, tmp_path / "model.safetensors")
    config = {"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                      "bnb_4bit_quant_type": quant_type}} if with_config else None
    report = _read(tmp_path / "model.safetensors", config)
    assert report.total == TOY_PARAMS
    assert report.stored_elements == PLAIN_PARAMS + LINEAR_PARAMS // 2
    assert len(_aux(report)) == len(LINEARS) * (5 if double else 3)
    assert "parameter" not in {r.role.value for r in report.tensors if ".weight." in r.name}
    weights = [r for r in report.tensors if _is_linear(r.name)]
    assert {(r.quant.scheme, r.quant.bits) for r in weights} == {(f"bitsandbytes-{quant_type}", 4)}
    assert sum(r.nbytes for r in weights) == LINEAR_PARAMS // 2  # stored bytes stay the packed ones


def test_bitsandbytes_8bit(tmp_path):
    """Int8Params: weight int8 [out, in] + SCB float32 [out] (+ weight_format in older saves)."""
    arrays = _plain_arrays()
    for name, shape in LINEARS:
        arrays[name] = np.zeros(shape, np.int8)
        arrays[name.removesuffix("weight") + "SCB"] = np.zeros(shape[0], np.float32)
        arrays[name.removesuffix("weight") + "weight_format"] = np.zeros((), np.uint8)
    save_file(arrays, tmp_path / "model.safetensors")
    for config in (None, {"quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": True}}):
        report = _read(tmp_path / "model.safetensors", config)
        assert report.total == report.stored_elements == TOY_PARAMS
        assert report.buffers == 0
        assert len(_aux(report)) == 2 * len(LINEARS)
        assert report.other["quant_aux"] == sum(s[0] + 1 for _, s in LINEARS)


# ---- compressed-tensors, MLX, FP8 --------------------------------------------------------------------

CT_CONFIG = {"quantization_config": {
    "quant_method": "compressed-tensors", "format": "pack-quantized",
    "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
        "num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": 128}}},
}}


@pytest.mark.parametrize("config", [CT_CONFIG, None])
def test_compressed_tensors_pack_quantized(tmp_path, config):
    """pack_to_int32: weight_packed int32 [out, in/8], weight_shape [2], weight_scale / weight_zero_point."""
    arrays = _plain_arrays()
    for name, (out_f, in_f) in LINEARS:
        base = name.removesuffix(".weight")
        arrays[base + ".weight_packed"] = np.zeros((out_f, in_f // 8), np.int32)
        arrays[base + ".weight_shape"] = np.array([out_f, in_f], np.int64)
        arrays[base + ".weight_scale"] = np.zeros((out_f, in_f // GROUP), np.float16)
        arrays[base + ".weight_zero_point"] = np.zeros((out_f // 8, in_f // GROUP), np.int32)
    save_file(arrays, tmp_path / "model.safetensors")
    report = _read(tmp_path / "model.safetensors", config)
    assert report.total == TOY_PARAMS
    assert report.stored_elements == PLAIN_PARAMS + LINEAR_PARAMS // 8
    assert len(_aux(report)) == 3 * len(LINEARS)
    assert report.buffers == 0
    assert {r.quant.scheme for r in report.tensors if r.quant} == {"compressed-tensors"}


def _mlx(bits_of) -> dict[str, np.ndarray]:
    """mlx.nn.quantize: weight uint32 [out, in*bits/32], scales and biases [out, in/64]; embeddings too."""
    arrays = _plain_arrays()
    for name, (out_f, in_f) in [*LINEARS, ("model.embed_tokens.weight", (1000, 256)), ("lm_head.weight", (1000, 256))]:
        base = name.removesuffix(".weight")
        bits = bits_of(base)
        arrays[name] = np.zeros((out_f, in_f * bits // 32), np.uint32)
        arrays[base + ".scales"] = np.zeros((out_f, in_f // 64), np.float16)
        arrays[base + ".biases"] = np.zeros((out_f, in_f // 64), np.float16)
    return arrays


def test_mlx_4bit_with_an_8bit_override(tmp_path):
    override = "model.layers.1.mlp.down_proj"
    arrays = _mlx(lambda base: 8 if base == override else 4)
    save_file(arrays, tmp_path / "model.safetensors")
    config = {"quantization": {"group_size": 64, "bits": 4, override: {"group_size": 64, "bits": 8}}}
    report = _read(tmp_path / "model.safetensors", config)
    assert report.total == TOY_PARAMS
    packed = [r for r in report.tensors if r.quant is not None]
    assert len(packed) == len(LINEARS) + 2
    assert report.stored_elements == PLAIN_PARAMS - 2 * 1000 * 256 + sum(r.stored_numel for r in packed)
    assert report.stored_elements == (TOY_PARAMS - 512 * 256) // 8 + 512 * 256 // 4 + (
        PLAIN_PARAMS - 2 * 1000 * 256) * 7 // 8
    assert len(_aux(report)) == 2 * len(packed)
    # without the config the 8-bit layer's shapes fit 8-bit group 64 and 4-bit group 128 alike: it counts its
    # stored uint32 words (512*256/4) instead of a guess, and a note says so; the 4-bit layers (4 x 64 = the
    # MLX default) are still exact
    bare = _read(tmp_path / "model.safetensors", None)
    assert bare.total == TOY_PARAMS - 512 * 256 + 512 * 256 // 4
    assert bare.metadata["quantization"]["ambiguous"] == [override + ".weight"]
    assert any("fit several bit widths" in n for n in bare.notes)


def test_fp8_block_scales(tmp_path):
    """DeepSeek-V3 / finegrained_fp8: weight float8_e4m3fn [out, in], weight_scale_inv f32 per 128x128 block."""
    tensors = [(n, "BF16", s) for n, s in PLAIN]
    for name, (out_f, in_f) in LINEARS:
        tensors.append((name, "F8_E4M3", (out_f, in_f)))
        tensors.append((name + "_scale_inv", "F32", (-(-out_f // 128), -(-in_f // 128))))
    write_sparse(tmp_path / "model.safetensors", tensors)
    config = {"quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}}
    for cfg in (config, None):
        report = _read(tmp_path / "model.safetensors", cfg)
        assert report.total == report.stored_elements == TOY_PARAMS
        assert len(_aux(report)) == len(LINEARS)
        assert report.other["quant_aux"] == sum(-(-o // 128) * -(-i // 128) for _, (o, i) in LINEARS)
        assert {(r.quant.scheme, r.quant.bits) for r in report.tensors if r.quant} == {("fp8", 8)}


def test_fbgemm_fp8_row_scales_and_input_scale(tmp_path):
    tensors = [(n, "BF16", s) for n, s in PLAIN]
    for name, (out_f, in_f) in LINEARS:
        tensors += [(name, "F8_E4M3", (out_f, in_f)), (name + "_scale", "F32", (out_f, 1)),
                    (name.removesuffix("weight") + "input_scale", "F32", (1,))]
    write_sparse(tmp_path / "model.safetensors", tensors)
    report = _read(tmp_path / "model.safetensors", {"quantization_config": {"quant_method": "fbgemm_fp8"}})
    assert report.total == TOY_PARAMS
    assert len(_aux(report)) == 2 * len(LINEARS)


# ---- what is left alone ------------------------------------------------------------------------------


def test_unquantized_file_is_returned_unchanged(tmp_path):
    save_file(_plain_arrays(), tmp_path / "model.safetensors")
    inv = read_path(tmp_path / "model.safetensors")
    assert apply_config(inv, None) is inv
    assert apply_config(inv, {"model_type": "llama"}) is inv


def test_a_float_scales_tensor_alone_is_not_quantization(tmp_path):
    save_file({"layer.scales": np.zeros(4, np.float32), "layer.weight": np.zeros((4, 4), np.float32)},
              tmp_path / "m.safetensors")
    inv = read_path(tmp_path / "m.safetensors")
    assert apply_config(inv, None) is inv


def test_config_scheme_table():
    assert config_scheme({"quantization_config": {"quant_method": "gptq", "bits": 3}}).bits == 3
    assert config_scheme({"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                                  "bnb_4bit_quant_type": "nf4"}}).variant == "bitsandbytes-nf4"
    assert config_scheme(CT_CONFIG).bits == 4
    assert config_scheme({"quantization": {"group_size": 32, "bits": 6}}).bits == 6
    assert config_scheme({"quantization_config": {"quant_method": "made-up"}}) is None
    assert config_scheme({"quantization_config": "nonsense"}) is None
    assert config_scheme(None) is None


def test_json_carries_logical_and_stored(tmp_path):
    arrays = _gptq(4)
    save_file(arrays, tmp_path / "model.safetensors")
    doc = _read(tmp_path / "model.safetensors", None).to_dict()
    assert doc["total"] == TOY_PARAMS
    assert doc["stored_elements"] == PLAIN_PARAMS + LINEAR_PARAMS // 8
    q = next(t for t in doc["tensors"] if t["name"] == "model.layers.0.self_attn.q_proj.qweight")
    assert q["quant"] == {"scheme": "gptq", "bits": 4, "logical": 256 * 256, "stored_elements": 256 * 256 // 8}
    assert q["numel"] == 256 * 256


_NAMES = st.sampled_from([
    "a.qweight", "a.qzeros", "a.scales", "a.g_idx", "a.weight", "a.biases", "a.SCB", "a.weight.absmax",
    "a.weight.quant_state.bitsandbytes__nf4", "a.weight_packed", "a.weight_shape", "a.weight_scale",
    "a.weight_scale_inv", "a.input_scale", "lm_head.weight", "model.embed_tokens.weight",
])
_DTYPES = st.sampled_from([np.int32, np.uint32, np.uint8, np.int8, np.float16, np.float32, np.int64])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tensors=st.dictionaries(_NAMES, st.tuples(_DTYPES, st.lists(st.integers(0, 5), max_size=3)), max_size=8),
    config=st.one_of(st.none(), st.sampled_from([
        CT_CONFIG, {"quantization": {"bits": 3}}, {"quantization_config": {"quant_method": "awq", "bits": 5}},
        {"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}},
        {"tie_word_embeddings": True}, {"quantization_config": {"quant_method": "gptq", "bits": True}},
    ])),
)
def test_fuzz_any_names_shapes_and_configs(tmp_path, tensors, config):
    """Whatever names, dtypes and shapes a file holds: counts stay non-negative and nothing but
    ParamscopeError escapes."""
    path = tmp_path / "f.safetensors"
    save_file({n: np.zeros(s, d) for n, (d, s) in tensors.items()}, path)
    try:
        report = _read(path, config)
    except ParamscopeError:
        return
    assert report.total >= 0 and report.stored_elements >= 0
    report.to_dict()
    assert report.size_label


def test_config_json_beside_the_weights_is_handed_on_by_read_path_and_applied_by_the_rules_stage(tmp_path):
    from paramscope.pipeline import settle

    save_file(_awq(4), tmp_path / "model.safetensors")
    config = {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "tie_word_embeddings": False,
        "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    for path in (tmp_path, tmp_path / "model.safetensors"):
        read = read_path(path)  # the reader reads: the config is handed on, not applied
        assert read.pending["config"] == config and "quantization" not in read.metadata
        report = Report(settle(read))
        assert report.total == TOY_PARAMS
        assert report.metadata["quantization"]["scheme"] == "awq"
        assert report.metadata["quantization"]["from"] == "config.json"


def _bnb_single(shape_in_blob: list[int], stored: int) -> dict[str, np.ndarray]:
    blob = json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": shape_in_blob}).encode()
    return {
        "l.weight": np.zeros((stored, 1), np.uint8),
        "l.weight.absmax": np.zeros(1, np.float32),
        "l.weight.quant_map": np.zeros(16, np.float32),
        "l.weight.quant_state.bitsandbytes__nf4": np.frombuffer(blob, np.uint8).copy(),
    }


@pytest.mark.parametrize(("blob_shape", "expected"), [([3, 5], 15), ([4, 4], 16), ([100, 100], 16), ("x", 16)])
def test_bnb_odd_count_comes_from_the_quant_state_blob(tmp_path, blob_shape, expected):
    """An odd n packs into ceil(n/2) bytes: the blob's shape gives n exactly; a blob that disagrees with
    the stored bytes (or is not a shape) is ignored and 2 * stored is used."""
    arrays = _bnb_single(blob_shape, 8)
    save_file(arrays, tmp_path / "model.safetensors")
    indexed = tmp_path / "indexed"
    indexed.mkdir()
    save_file(arrays, indexed / "model-00001-of-00001.safetensors")
    (indexed / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": dict.fromkeys(arrays, "model-00001-of-00001.safetensors")}))
    # a file, a directory of shards, and an index
    for path in (tmp_path / "model.safetensors", tmp_path, indexed / "model.safetensors.index.json"):
        report = _read(path, None)
        assert report.total == expected
        assert report.stored_elements == 8


@pytest.mark.parametrize(("shape", "expected"), [((4, 20), 80), ((4, 24), 96), ((5, 20), 96)])
def test_compressed_tensors_exact_count_from_weight_shape(tmp_path, shape, expected):
    """in = 20 packs into ceil(20 * 4 / 32) = 3 words a row: weight_shape gives 4 * 20; a weight_shape that
    disagrees with the packed rows is ignored (4 rows * 3 words * 8)."""
    arrays = {"l.weight_packed": np.zeros((4, 3), np.int32), "l.weight_shape": np.array(shape, np.int64),
              "l.weight_scale": np.zeros((4, 1), np.float16)}
    save_file(arrays, tmp_path / "model.safetensors")
    assert _read(tmp_path / "model.safetensors", CT_CONFIG).total == expected


def test_a_qweight_that_is_no_packing_word_leaves_its_module_alone(tmp_path):
    save_file({"l.qweight": np.zeros((2, 4), np.float32), "l.scales": np.zeros((1, 4), np.float16)},
              tmp_path / "m.safetensors")
    inv = read_path(tmp_path / "m.safetensors")
    assert apply_config(inv, None) is inv


# ---- review round 4: MXFP4, float bnb storage, NVFP4 + KV scales, shape-only bits, local blobs ----------

OUT, IN = 256, 512  # one linear layer [out, in] for the single-module fixtures below


def _one(tmp_path: Path, arrays: dict[str, np.ndarray], config: dict | None) -> Report:
    save_file(arrays, tmp_path / "model.safetensors")
    return _read(tmp_path / "model.safetensors", config)


def _gpt_oss_experts(experts=4, hidden=256, inter=128) -> dict[str, np.ndarray]:
    """gpt-oss checkpoint layout (transformers integrations/mxfp4.py): blocks u8 [E, rows, cols/32, 16],
    E8M0 scales u8 [E, rows, cols/32], biases f32 [E, rows]."""
    p = "model.layers.0.mlp.experts."
    return {
        p + "gate_up_proj_blocks": np.zeros((experts, 2 * inter, hidden // 32, 16), np.uint8),
        p + "gate_up_proj_scales": np.full((experts, 2 * inter, hidden // 32), 127, np.uint8),
        p + "gate_up_proj_bias": np.zeros((experts, 2 * inter), np.float32),
        p + "down_proj_blocks": np.zeros((experts, hidden, inter // 32, 16), np.uint8),
        p + "down_proj_scales": np.full((experts, hidden, inter // 32), 127, np.uint8),
        p + "down_proj_bias": np.zeros((experts, hidden), np.float32),
        "model.layers.0.mlp.router.weight": np.zeros((experts, hidden), np.float32),
        "model.layers.0.mlp.router.bias": np.zeros((experts,), np.float32),
    }


GPT_OSS_CONFIG = {"model_type": "gpt_oss", "num_local_experts": 4, "num_experts_per_tok": 2,
                  "quantization_config": {"quant_method": "mxfp4"}}


@pytest.mark.parametrize("config", [GPT_OSS_CONFIG, None], ids=["config", "names-only"])
def test_gpt_oss_mxfp4_experts_count_two_weights_per_byte(tmp_path, config):
    import torch
    from transformers.integrations.mxfp4 import _convert_moe_packed_tensors

    arrays = _gpt_oss_experts()
    report = _one(tmp_path, arrays, config)
    E, H, Ii = 4, 256, 128
    # hand count: gate_up [E, 2I, H] + bias [E, 2I], down [E, H, I] + bias [E, H], router [E, H] + [E]
    hand = E * (2 * Ii * H + 2 * Ii + H * Ii + H) + E * H + E
    assert report.total == hand
    # transformers' own dequantization gives exactly the logical tensor our count stands for
    for proj in ("gate_up_proj", "down_proj"):
        p = "model.layers.0.mlp.experts." + proj
        dense = _convert_moe_packed_tensors(torch.from_numpy(arrays[p + "_blocks"]),
                                            torch.from_numpy(arrays[p + "_scales"]))
        record = next(r for r in report.tensors if r.name == p + "_blocks")
        assert record.numel == dense.numel() and record.quant.scheme == "mxfp4" and record.quant.bits == 4
        assert next(r for r in report.tensors if r.name == p + "_scales").role is Role.QUANT_AUX
    assert report.metadata["quantization"]["scheme"] == "mxfp4"
    if config is not None:  # the routed experts include the packed blocks: active = rest + routed * k / E
        routed = E * (2 * Ii * H + 2 * Ii + H * Ii + H)
        assert report.active == hand - routed + routed * 2 // 4


def test_blocks_without_matching_scales_are_left_alone(tmp_path):
    arrays = {"a.x_blocks": np.zeros((4, 8, 16), np.uint8), "a.x_scales": np.zeros((4, 7), np.uint8),
              "b.y_blocks": np.zeros((4, 8, 16), np.float16), "b.y_scales": np.zeros((4, 8), np.uint8)}
    report = _one(tmp_path, arrays, None)
    assert "quantization" not in report.metadata
    assert report.total == 4 * 8 * 16  # the float16 tensor; uint8 tensors stay buffers
    assert report.buffers == 4 * 7 + 4 * 8 + 4 * 8 * 16


def _bnb_state_dict(quant_storage, out_f=33, in_f=255):
    import bitsandbytes as bnb
    import torch

    torch.manual_seed(0)
    lin = bnb.nn.Linear4bit(in_f, out_f, bias=True, quant_type="nf4", compress_statistics=True,
                            quant_storage=quant_storage)
    lin.weight = bnb.nn.Params4bit(torch.randn(out_f, in_f), requires_grad=False, quant_type="nf4",
                                   compress_statistics=True, quant_storage=quant_storage)
    lin = lin.to("cpu")
    return {"model.proj." + k: v.contiguous() for k, v in lin.state_dict().items()}


@pytest.mark.parametrize("storage", ["bfloat16", "float16", "float32", "uint8"])
@pytest.mark.parametrize("with_config", [True, False], ids=["config", "no-config"])
def test_real_bitsandbytes_4bit_with_float_quant_storage(tmp_path, storage, with_config):
    """QLoRA + FSDP: bnb views the packed bytes as quant_storage (bf16 [2104, 1] for 33 x 255 weights)."""
    import torch
    from safetensors.torch import save_file as torch_save

    sd = _bnb_state_dict(getattr(torch, storage))
    assert sd["model.proj.weight"].dtype == getattr(torch, storage)
    torch_save(sd, str(tmp_path / "model.safetensors"))
    config = {"model_type": "llama", "quantization_config": {
        "quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_quant_storage": storage}} if with_config else None
    report = _read(tmp_path / "model.safetensors", config)
    weight = next(r for r in report.tensors if r.name == "model.proj.weight")
    assert weight.numel == 33 * 255  # exact (odd) n, from the quant_state blob
    assert report.total == 33 * 255 + 33  # nn.Linear(255, 33) with bias
    assert weight.quant.scheme == "bitsandbytes-nf4"
    assert {r.name for r in report.tensors if r.role is Role.QUANT_AUX} == {
        k for k in sd if k.startswith("model.proj.weight.")}


def test_bnb_float_storage_from_the_shapes_when_no_blob_is_readable(tmp_path):
    """The reviewer's fp32-storage layout; the blob read away (as for a remote file): stored * 32 / 4."""
    from paramscope.hf_config import apply_config as apply

    arrays = {"l.weight": np.zeros((OUT * IN // 8, 1), np.float32),
              "l.weight.absmax": np.zeros(OUT * IN // 64, np.float32),
              "l.weight.quant_map": np.zeros(16, np.float32),
              "l.weight.quant_state.bitsandbytes__nf4": np.frombuffer(json.dumps(
                  {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [OUT, IN]}).encode(),
                  np.uint8).copy()}
    save_file(arrays, tmp_path / "model.safetensors")
    inventory = read_path(tmp_path / "model.safetensors")
    remote = Report(apply(inventory.replace(source="hf:someone/model", pending={}), None))  # no small tensors
    assert remote.total == OUT * IN


def test_float_weight_beside_absmax_alone_is_not_packed(tmp_path):
    arrays = {"l.weight": np.zeros((OUT, IN), np.float16), "l.weight.absmax": np.zeros(8, np.float32)}
    report = _one(tmp_path, arrays, None)
    assert report.total == OUT * IN + 8 and "quantization" not in report.metadata  # absmax stays a float tensor


NVFP4 = {"model_type": "llama", "quantization_config": {
    "quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
    "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "float", "group_size": 16}}},
    "kv_cache_scheme": {"num_bits": 8, "type": "float"}}}


@pytest.mark.parametrize("config", [NVFP4, None], ids=["config", "no-config"])
def test_compressed_tensors_nvfp4_and_kv_scales(tmp_path, config):
    a = "model.layers.0.self_attn."
    arrays = {a + "o_proj.weight_packed": np.zeros((OUT, IN // 2), np.uint8),
              a + "o_proj.weight_scale": np.zeros((OUT, IN // 16), np.uint8),
              a + "o_proj.weight_global_scale": np.zeros((1,), np.float32),
              a + "o_proj.input_global_scale": np.zeros((1,), np.float32),
              a + "k_scale": np.zeros((), np.float32), a + "v_scale": np.zeros((), np.float32),
              "model.norm.weight": np.zeros((IN,), np.float16)}
    report = _one(tmp_path, arrays, config)
    assert report.total == OUT * IN + IN  # the unpacked o_proj [OUT, IN] and the norm: nothing else is a parameter
    assert set(_aux(report)) == set(arrays) - {a + "o_proj.weight_packed", "model.norm.weight"}
    assert report.metadata["quantization"]["bits"] == 4


def test_kv_scales_of_an_unquantized_model_are_left_as_read(tmp_path):
    arrays = {"attn.k_scale": np.zeros((1,), np.float32), "attn.q_proj.weight": np.zeros((4, 4), np.float32)}
    report = _one(tmp_path, arrays, None)
    assert report.total == 17 and "quantization" not in report.metadata


def _gptq_layer(bits: int, with_g_idx: bool, group=128) -> dict[str, np.ndarray]:
    """AutoGPTQ QuantLinear: qweight [in*bits/32, out], qzeros [groups, out*bits/32], scales [groups, out]."""
    arrays = {"l.qweight": np.zeros((IN * bits // 32, OUT), np.int32),
              "l.qzeros": np.zeros((IN // group, OUT * bits // 32), np.int32),
              "l.scales": np.zeros((IN // group, OUT), np.float16), "l.bias": np.zeros((OUT,), np.float16)}
    if with_g_idx:
        arrays["l.g_idx"] = np.zeros((IN,), np.int32)
    return arrays


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("with_g_idx", [True, False], ids=["g_idx", "no-g_idx"])
def test_gptq_bits_from_shapes_without_a_config(tmp_path, bits, with_g_idx):
    report = _one(tmp_path, _gptq_layer(bits, with_g_idx), None)
    assert report.total == OUT * IN + OUT
    assert report.metadata["quantization"]["bits"] == bits


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_awq_bits_from_shapes_without_a_config(tmp_path, bits):
    arrays = {"l.qweight": np.zeros((IN, OUT * bits // 32), np.int32),
              "l.qzeros": np.zeros((IN // 128, OUT * bits // 32), np.int32),
              "l.scales": np.zeros((IN // 128, OUT), np.float16)}
    report = _one(tmp_path, arrays, None)
    assert report.total == OUT * IN and report.metadata["quantization"]["scheme"] == "awq"


def _mlx_layer(bits: int, group: int) -> dict[str, np.ndarray]:
    return {"l.weight": np.zeros((OUT, IN * bits // 32), np.uint32),
            "l.scales": np.zeros((OUT, IN // group), np.float16),
            "l.biases": np.zeros((OUT, IN // group), np.float16)}


@pytest.mark.parametrize(("bits", "group", "expected", "ambiguous"), [
    (4, 64, OUT * IN, False),          # bits*group 256: MLX's default, taken
    (3, 32, OUT * IN, False),          # 96: only 3-bit group 32 fits
    (4, 32, OUT * IN * 4 // 32, True),  # 128: 4-bit g32 or 2-bit g64 -> stored uint32 words, with a note
    (4, 128, OUT * IN * 4 // 32, True),  # 512: 4-bit g128 or 8-bit g64
    (8, 64, OUT * IN * 8 // 32, True),
])
def test_mlx_bits_without_a_config(tmp_path, bits, group, expected, ambiguous):
    report = _one(tmp_path, _mlx_layer(bits, group), None)
    assert report.total == expected
    assert ("ambiguous" in report.metadata["quantization"]) is ambiguous
    assert any("fit several bit widths" in n for n in report.notes) is ambiguous
    config = {"quantization": {"group_size": group, "bits": bits}}  # the config always settles it
    assert _one(tmp_path, _mlx_layer(bits, group), config).total == OUT * IN


def test_blobs_are_read_only_from_local_files_inside_the_directory(tmp_path, monkeypatch):
    from paramscope.records import TensorRecord
    from paramscope.sources.safetensors import small_tensor_reader as safetensors_blobs

    sub = tmp_path / "model"
    sub.mkdir()
    save_file({"x.weight_shape": np.array([3, 5], np.int64)}, sub / "a.safetensors")
    monkeypatch.chdir(tmp_path)
    records = [TensorRecord("x.weight_shape", (2,), "int64", origin="a.safetensors")]
    assert safetensors_blobs(str(sub), records)(["x.weight_shape"]) == {
        "x.weight_shape": np.array([3, 5], np.int64).tobytes()}
    for source in ("hf:model", "https://host/model", "http://host/model", "s3://bucket/model",
                   "hf:" + str(sub), "https://" + str(sub)):
        assert safetensors_blobs(source, records)(["x.weight_shape"]) == {}, source
    # an origin that climbs out of (or reaches into a subfolder of) the directory read is never opened
    for origin in ("../model/a.safetensors", "model/a.safetensors", str(sub / "a.safetensors"), ".."):
        escaping = [TensorRecord("x.weight_shape", (2,), "int64", origin=origin)]
        assert safetensors_blobs(str(tmp_path), escaping)(["x.weight_shape"]) == {}, origin
        assert safetensors_blobs(str(sub / "a.safetensors"), escaping)(["x.weight_shape"]) == {}, origin


def test_modelopt_nvfp4(tmp_path):
    """ModelOpt NVFP4 (nvidia/*-FP4): weight uint8 [out, in/2], weight_scale fp8 [out, in/16], fp32 scalars."""
    arrays = {"l.weight": np.zeros((OUT, IN // 2), np.uint8), "l.weight_scale": np.zeros((OUT, IN // 16), np.uint8),
              "l.weight_scale_2": np.zeros((), np.float32), "l.input_scale": np.zeros((), np.float32)}
    report = _one(tmp_path, arrays, None)
    assert report.total == OUT * IN
    assert set(_aux(report)) == {"l.weight_scale", "l.weight_scale_2", "l.input_scale"}
    assert report.metadata["quantization"]["scheme"] == "nvfp4"


def test_kv_scales_alone_in_a_model_the_config_calls_quantized(tmp_path):
    arrays = {"a.k_scale": np.zeros((), np.float32), "a.v_scale": np.zeros((), np.float32),
              "a.q_proj.weight": np.zeros((4, 4), np.float16)}
    report = _one(tmp_path, arrays, NVFP4)
    assert report.total == 16 and set(_aux(report)) == {"a.k_scale", "a.v_scale"}


def test_the_rules_stage_replaces_records_and_inventories_never_changes_them(tmp_path):
    """Records and inventories are immutable: settling a read returns new ones and leaves the read as it was."""
    from paramscope.pipeline import settle

    save_file(_awq(4), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "quantization_config": {"quant_method": "awq", "bits": 4, "version": "gemm"}}))
    read = read_path(tmp_path)
    before = ([(r.name, r.role, r.quant, r.tie, r.extra) for r in read.tensors], dict(read.metadata),
              list(read.notes), list(read.tensors))
    settled = settle(read)
    assert settled is not read and settled.metadata["quantization"]["scheme"] == "awq"
    after = ([(r.name, r.role, r.quant, r.tie, r.extra) for r in read.tensors], dict(read.metadata),
             list(read.notes), list(read.tensors))
    assert after[:3] == before[:3] and all(a is b for a, b in zip(after[3], before[3], strict=True))
    packed = [r for r in settled.tensors if r.quant is not None]
    assert len(packed) == 14 and not any(r.quant for r in read.tensors)  # 2 layers x 7 projections, all new records
    assert not {id(r) for r in packed} & {id(r) for r in read.tensors}
    assert Report(settled).total == TOY_PARAMS


def test_record_replace_copies_with_the_changes():
    from paramscope.records import TensorRecord

    record = TensorRecord("a.qweight", (4, 8), "int32", Role.BUFFER, None, ("t", 1), "Linear", True, None, "f",
                          {"k": 1})
    quant = QuantInfo("gptq", 256, 4)
    copy = record.replace(role=Role.PARAMETER, quant=quant, tie=None)
    assert (copy.role, copy.quant, copy.tie, copy.numel) == (Role.PARAMETER, quant, None, 256)
    assert (copy.name, copy.shape, copy.dtype, copy.owner_type, copy.persistent, copy.origin, copy.extra) == (
        "a.qweight", (4, 8), "int32", "Linear", True, "f", {"k": 1})
    assert (record.role, record.quant, record.tie, record.numel) == (Role.BUFFER, None, ("t", 1), 32)


# ---- the scale modules decided over columns (quantization.changes' bulk pass) --------------------------------


def _fp8_table(extra: list[tuple[str, str, tuple[int, ...]]] = ()):
    """A DeepSeek-V3-like table: FP8 weights beside block scales, plus ``extra`` entries."""
    from paramscope.records import Table
    from paramscope.sources.safetensors import DTYPES

    entries = [("model.embed.weight", "BF16", (10, 4))]
    for layer in range(3):
        for proj, (o, i) in (("q", (256, 128)), ("o", (128, 300))):
            name = f"model.layers.{layer}.attn.{proj}_proj"
            entries += [(f"{name}.weight", "F8_E4M3", (o, i)), (f"{name}.weight_scale_inv", "F32", (-(-o // 128),
                                                                                                     -(-i // 128)))]
    entries += list(extra)
    names = [n for n, _, _ in entries]
    dtypes = [DTYPES[d][0] for _, d, _ in entries]
    shapes = [s for _, _, s in entries]
    numel = [math.prod(s) for s in shapes]
    return Table(names, shapes, dtypes, [Role.PARAMETER] * len(names), numel, numel, ["f"] * len(names))


@pytest.mark.parametrize("extra", [
    [],
    [("lone.weight_scale_inv", "F32", (1, 1))],  # a scale with no weight: nothing changes for it
    [("bf.weight", "BF16", (4, 4)), ("bf.weight_scale_inv", "F32", (1, 1))],  # not stored one per element
    [("i8.weight", "I8", (4, 8)), ("i8.weight_scale", "F32", (4, 1))],  # int8 beside a row scale
    [("sc.weight_scale_inv", "F32", (1, 1)), ("sc.weight", "F8_E4M3", (4, 4))],  # a scale before its weight
    [("model.layers.0.attn.q_proj.weight", "F8_E4M3", (8, 8))],  # a name given twice: its last place decides
])
@pytest.mark.parametrize("config", [None, CT_CONFIG])
def test_bulk_scale_modules_are_what_the_module_loop_decides(extra, config):
    from paramscope import quantization

    table = _fp8_table(extra)
    cq = config_scheme(config)
    candidates = [i for i, n in enumerate(table.names) if n.endswith(quantization.SUFFIX_TUPLE)]
    assert quantization._bulk_scaled(table.names, candidates, (table.dtypes, table.shapes), cq) is not None
    bulk = quantization.changes(table.names, table.row, cq, None, False, (table.dtypes, table.shapes))
    loop = quantization.changes(table.names, table.row, cq, None, False)  # no columns: module by module
    assert bulk is not None and loop is not None
    assert bulk[0] == loop[0] and bulk[1] == loop[1]  # the same changes (the bulk pass lists the weights first)
    # the bulk pass hands its changes split (packed, packings, bookkeeping); the table they make is the loop's
    # dict's, each record replaced as annotate replaces it
    assert isinstance(bulk[0], quantization.SplitChanges) and dict(bulk[0]) == loop[0] and len(bulk[0]) == len(loop[0])
    by_hand = [r.replace(role=Role.PARAMETER, quant=loop[0][i]) if loop[0].get(i) is not None
               else r.replace(role=Role.QUANT_AUX) if i in loop[0] else r for i, r in enumerate(table.rows())]
    assert table.repacked(bulk[0]).rows() == table.repacked(loop[0]).rows() == by_hand
    # every bulk packing stands for its entry's stored elements (FP8, int8): the repacked table keeps the numel
    # column, which is then each entry's product of its shape (the reference: math.prod), the loop's numel
    assert bulk[0].stored and table.repacked(bulk[0]).numel is table.numel
    assert table.repacked(loop[0]).numel == [math.prod(shape) for shape in table.shapes] == table.numel
    # by hand: six FP8 weights (and the int8 one) stand for their stored elements; each beside scale is bookkeeping
    packed = {table.names[i]: q for i, q in bulk[0].items() if q is not None}
    assert packed["model.layers.0.attn.o_proj.weight"] == QuantInfo("fp8", 128 * 300, 8)
    int8 = [("i8.weight", "compressed-tensors" if config else "int8")] if any(n == "i8.weight" for n, _, _ in extra) \
        else []
    fp8 = [("sc.weight", "fp8")] if any(n == "sc.weight" for n, _, _ in extra) else []
    assert sorted((n, q.scheme) for n, q in packed.items() if not n.startswith("model.")) == int8 + fp8
    more = len(int8) + len(fp8)
    assert bulk[1]["quantized_tensors"] == 6 + more and bulk[1]["bookkeeping_tensors"] == 6 + more
    if len(set(table.names)) < len(table.names):  # the later q_proj weight (8 x 8) is the one packed
        assert packed["model.layers.0.attn.q_proj.weight"] == QuantInfo("fp8", 64, 8)
        assert table.names.index("model.layers.0.attn.q_proj.weight") not in bulk[0]


def test_bulk_scale_modules_from_a_scale_listed_first():
    from paramscope import quantization

    table = _fp8_table()
    for column in ("names", "shapes", "dtypes", "roles", "numel", "nbytes", "origins"):  # the first scale first
        values = getattr(table, column)
        values.insert(0, values.pop(2))
    assert table.names[:3] == ["model.layers.0.attn.q_proj.weight_scale_inv", "model.embed.weight",
                               "model.layers.0.attn.q_proj.weight"]
    bulk = quantization.changes(table.names, table.row, None, None, False, (table.dtypes, table.shapes))
    assert bulk is not None and bulk[0][2] == QuantInfo("fp8", 256 * 128, 8) and bulk[0][0] is None
    assert bulk[1]["quantized_tensors"] == 6 and bulk[1]["bookkeeping_tensors"] == 6


def test_a_module_with_two_scales_is_left_to_the_loop():
    from paramscope import quantization

    table = _fp8_table([("x.weight", "F8_E4M3", (4, 4)), ("x.weight_scale", "F32", (4, 1)),
                        ("x.input_scale", "F32", (1,))])
    candidates = [i for i, n in enumerate(table.names) if n.endswith(quantization.SUFFIX_TUPLE)]
    assert quantization._bulk_scaled(table.names, candidates, (table.dtypes, table.shapes), None) is None
    found = quantization.changes(table.names, table.row, None, None, False, (table.dtypes, table.shapes))
    assert found is not None and found[1]["quantized_tensors"] == 7 and found[1]["bookkeeping_tensors"] == 8


def test_candidates_never_misses_a_suffix_and_passes_plain_names():
    # reference: str.endswith over the whole table, name by name; the test over the names' last characters may
    # say True without one (changes then finds none) but never False with one
    import random

    from paramscope import quantization

    plain = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.norm.weight", "lm_head.bias",
             "", "w", "x.weight_scale_in", "x.weight_scal"]
    assert quantization.candidates(plain) is False
    rng = random.Random(5)
    pieces = [*quantization.SUFFIX_TUPLE, "weight", ".", "_", "x", "scale", "inv", "weight_"]
    for suffix in quantization.SUFFIX_TUPLE:
        for name in (suffix, "m" + suffix, "model.layers.7.mlp" + suffix):
            assert quantization.candidates([*plain, name]) is True, name
    for _ in range(3000):
        names = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(0, 3))]
        if any(name.endswith(quantization.SUFFIX_TUPLE) for name in names):
            assert quantization.candidates(names) is True, names
    # a false alarm changes nothing: the long suffix's last characters alone
    assert quantization.candidates(["foo_scale_inv"]) is True
    assert quantization.changes(["foo_scale_inv"], None, None) is None


def test_repacked_table_is_the_records_changed_one_by_one():
    # reference: each record replaced as quantization.annotate replaces it (packed: a parameter with its QuantInfo;
    # bookkeeping: QUANT_AUX, all else kept), the rest untouched
    from paramscope.records import Table, TensorRecord

    records = [TensorRecord("a.qweight", (4, 2), "int32", role=Role.BUFFER),
               TensorRecord("a.scales", (1, 16), "float16"),
               TensorRecord("b.weight", (3, 3), "float16", trainable=True),
               TensorRecord("c.weight", (8, 8), "float8_e4m3fn"),
               TensorRecord("c.weight_scale_inv", (1, 1), "float32")]
    table = Table.from_records(records)
    gptq, fp8 = QuantInfo("gptq", 64, 4), QuantInfo("fp8", 64, 8)
    changes = {0: gptq, 1: None, 3: fp8, 4: None}
    repacked = table.repacked(changes)
    expected = [r.replace(role=Role.PARAMETER, quant=changes[i]) if changes.get(i) is not None
                else r.replace(role=Role.QUANT_AUX) if i in changes else r for i, r in enumerate(records)]
    assert repacked.rows() == expected
    assert repacked.numel == [64, 16, 9, 64, 1] and repacked.sparse["quant"] == {0: gptq, 3: fp8}
    assert table.roles[0] is Role.BUFFER and "quant" not in table.sparse  # the given table is not changed


def test_stored_split_changes_set_numel_over_an_earlier_packing():
    # an entry packed before counts its old packing's elements (64, not its shape's 16): a packing that stands for
    # the stored elements sets them again (by hand: 16 = 4 x 4), as a dict of the same changes does
    from paramscope.quantization import SplitChanges
    from paramscope.records import Table, TensorRecord

    table = Table.from_records([TensorRecord("a.weight", (4, 4), "float8_e4m3fn", quant=QuantInfo("gptq", 64, 4)),
                                TensorRecord("a.weight_scale", (1, 1), "float32")])
    fp8 = QuantInfo("fp8", 16, 8)
    assert table.numel == [64, 1]
    split = table.repacked(SplitChanges([0], [fp8], [1], stored=True))
    assert split.numel == [16, 1] and split.numel is not table.numel and table.numel == [64, 1]
    assert split.rows() == table.repacked({0: fp8, 1: None}).rows()
    assert split.roles == [Role.PARAMETER, Role.QUANT_AUX] and split.sparse["quant"] == {0: fp8}


def test_fp8_table_settled_twice_is_settled_once():
    # the second pass sees packed and bookkeeping entries already (prior): its split changes are looked up by index,
    # and the table, summary and notes come out as the first pass left them. By hand: six FP8 weights (128 x 300 and
    # 256 x 128 elements, three of each) counted as stored, six scales made bookkeeping
    from paramscope.records import Inventory

    table = _fp8_table()
    once = apply_config(Inventory(source="t", format="safetensors", table=table), None)
    twice = apply_config(once, None)
    assert once.table.roles.count(Role.QUANT_AUX) == 6 and sum(once.table.numel[i] for i, r in
                                                              enumerate(once.table.roles) if r is Role.PARAMETER) \
        == 10 * 4 + 3 * (256 * 128 + 128 * 300)
    assert twice.table.roles == once.table.roles and twice.table.numel == once.table.numel
    assert twice.table.sparse == once.table.sparse and twice.notes == once.notes
    assert twice.metadata["quantization"] == once.metadata["quantization"]
    summary = once.metadata["quantization"]
    assert summary["quantized_tensors"] == 6 == summary["bookkeeping_tensors"] and summary["from"] == "tensor names"


def test_split_changes_are_the_dict_they_stand_for():
    # reference: the dict of the three lists (packed index -> its packing, bookkeeping index -> None)
    from paramscope.quantization import SplitChanges

    fp8, other = QuantInfo("fp8", 64, 8), QuantInfo("fp8", 16, 8)
    split = SplitChanges([0, 4], [fp8, other], [1, 5])
    expected = {0: fp8, 4: other, 1: None, 5: None}
    assert split == expected and dict(split) == expected and len(split) == 4 and bool(split)
    assert split[4] is other and split[1] is None and 2 not in split and 5 in split and list(split) == [0, 4, 1, 5]
    assert split.split() == ([0, 4], [fp8, other], [1, 5])
    assert not SplitChanges([], [], []) and SplitChanges([], [], [3]) == {3: None}
    with pytest.raises(KeyError):
        split[2]


def test_names_ending_with_a_suffix_are_the_endswith_ones():
    # reference: str.endswith over the whole suffix table, name by name; the pass tests each name against the
    # suffixes ending with its last character only
    import random

    from paramscope import quant_names

    rng = random.Random(7)
    pieces = [*quant_names.SUFFIX_TUPLE, "", ".weight", "_scale", "inv", ".", "x", "é", "☃"]
    names = ["", ".", "qweight", ".qweight", "a.weight_scale_inv", "a.weight_scale_in", "a.SCB", "a.scb"]
    for _ in range(5000):
        head = "".join(rng.choice("ab._") for _ in range(rng.randint(0, 5)))
        tail = rng.choice(pieces)
        names.append(head + tail[: rng.randint(0, len(tail))] if rng.random() < 0.3 else head + tail)
    expected = [i for i, name in enumerate(names) if name.endswith(quant_names.SUFFIX_TUPLE)]
    assert quant_names.ending_with_a_suffix(names) == expected
    assert len(expected) > 1000 and len(names) - len(expected) > 1000
    # by what each name has past its module (a table's modules): the same places, the suffixes of several dots
    # among them (tested name by name) and names with no dot, or only a leading one
    modules = [name.rpartition(".")[0] for name in names]
    assert quant_names.ending_with_a_suffix(names, modules) == expected
    several = [i for i in expected if names[i].endswith(tuple(s for s in quant_names.SUFFIX_TUPLE if s.count(".") > 1))]
    assert several and any("." not in names[i] for i in expected) and any(names[i].rfind(".") == 0 for i in expected)
    tricky = ["absmax", "x.absmax", "weight.absmax", "a.weight.absmax", "a_blocks", ".qweight", "qweight", "a.SCB",
              "a.b.SCB", "a.weight_scale_inv", "a.weight_scale_inv.x", "nested_absmax.weight", ""]
    reference = [i for i, name in enumerate(tricky) if name.endswith(quant_names.SUFFIX_TUPLE)]
    assert quant_names.ending_with_a_suffix(tricky, [n.rpartition(".")[0] for n in tricky]) == reference
    assert quant_names.ending_with_a_suffix(["a.weight", "b"], ["a", ""]) == []
