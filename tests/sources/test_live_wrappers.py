"""Wrappers unwrapped and quantized parameters counted by their logical weights, in one process.

DataParallel, torch.compile's OptimizedModule and activation checkpointing add a name segment that
paramscope drops; bitsandbytes (real, CPU), torchao (real, CPU) and float8 weights store fewer bytes
than they stand for. A ZeRO-3 stand-in built from DeepSpeed's documented attributes complements the
real 2-rank DeepSpeed run in test_live_sharded.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import paramscope
from paramscope.records import Role
from paramscope.sources import sharding

SHAPES_283 = {"0.weight": (20, 10), "0.bias": (20,), "1.weight": (3, 20), "1.bias": (3,)}


def two_linears() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 3))


def _shapes(report) -> dict:
    return {r.name: r.shape for r in report.tensors}


def test_data_parallel_drops_module_prefix():
    model = nn.DataParallel(two_linears())
    assert next(n for n, _ in model.named_parameters()) == "module.0.weight"
    report = paramscope.inspect(model)
    assert _shapes(report) == SHAPES_283
    assert report.total == 283 == sum(p.numel() for p in model.parameters())
    assert report.metadata["wrappers"] == ["DataParallel"]
    assert report.inventory.module_types[""] == "Sequential"


def test_torch_compile_drops_orig_mod_prefix():
    compiled = torch.compile(two_linears())  # no forward: nothing is compiled, only wrapped
    assert type(compiled).__name__ == "OptimizedModule"
    assert next(iter(dict(compiled.named_parameters()))) == "_orig_mod.0.weight"
    report = paramscope.inspect(compiled)
    assert _shapes(report) == SHAPES_283
    assert report.total == 283


def test_nested_wrappers_and_inner_compile():
    inner = two_linears()
    model = nn.Sequential(torch.compile(inner), nn.Linear(3, 2))  # a compiled submodule, then DataParallel
    wrapped = torch.compile(nn.DataParallel(model))
    report = paramscope.inspect(wrapped)
    assert set(_shapes(report)) == {"0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias", "1.weight", "1.bias"}
    assert report.total == 283 + 8 == sum(p.numel() for p in model.parameters())
    assert report.metadata["wrappers"] == ["OptimizedModule", "DataParallel"]  # each class once


def test_checkpoint_wrapper_segment_dropped():
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    model = two_linears()
    model[0] = checkpoint_wrapper(model[0])
    assert "0._checkpoint_wrapped_module.weight" in dict(model.named_parameters())
    report = paramscope.inspect(model)
    assert _shapes(report) == SHAPES_283
    assert report.inventory.module_types["0"] == "Linear"


def test_wrapper_subclasses_unwrap_by_mro():
    """``class MyDP(nn.DataParallel)`` is DataParallel: its ``module.`` segment goes too (as tensor kinds do)."""

    class MyDP(nn.DataParallel):
        pass

    model = MyDP(two_linears())
    assert next(n for n, _ in model.named_parameters()) == "module.0.weight"
    report = paramscope.inspect(model)
    assert _shapes(report) == SHAPES_283
    assert report.total == 283 == sum(p.numel() for p in model.parameters())
    assert report.metadata["wrappers"] == ["MyDP"]


def test_clean_name_table():
    assert sharding.clean_name("_fsdp_wrapped_module.0._checkpoint_wrapped_module.weight") == "0.weight"
    assert sharding.clean_name("layers.0._orig_mod.w") == "layers.0.w"
    assert sharding.clean_name("plain.name") == "plain.name"


def test_plain_models_unchanged_no_metadata(frozen_backbone):
    report = paramscope.inspect(frozen_backbone)
    assert report.metadata == {}
    assert (report.total, report.trainable) == (283, 63)


# ---- DeepSpeed ZeRO-3 stand-in (documented attributes: ds_shape, ds_numel, ds_tensor, ds_id, ds_status) ----


def _zero3_param(shape: tuple[int, ...], world: int, rank: int, ds_id: int) -> nn.Parameter:
    """What zero.Init leaves: param.data emptied to shape [0]; ds_tensor this rank's padded partition."""
    numel = math.prod(shape)
    part = math.ceil(numel / world)
    p = nn.Parameter(torch.empty(0))
    p.ds_shape = torch.Size(shape)
    p.ds_numel = numel
    p.ds_tensor = torch.empty(part)
    p.ds_id = ds_id
    p.ds_status = "NOT_AVAILABLE"
    p.ds_zero_partition_rank = rank
    return p


def _zero3_model(world: int, rank: int) -> nn.Module:
    model = two_linears()
    for i, (path, shape) in enumerate(SHAPES_283.items()):
        module, _, leaf = path.rpartition(".")
        setattr(model[int(module)], leaf, _zero3_param(shape, world, rank, i))
    return model


def test_zero3_stand_in_global_count_and_local_shares():
    from paramscope.distributed import local_share

    shares = []
    for rank in range(2):
        model = _zero3_model(2, rank)
        assert sum(p.numel() for p in model.parameters()) == 0  # what the naive count sees
        report = paramscope.inspect(model)
        assert report.total == 283
        assert _shapes(report) == SHAPES_283
        assert report.metadata["sharding"] == ["DeepSpeed ZeRO-3"]
        shares.append(local_share(report))
    assert shares == [100 + 10 + 30 + 2, 100 + 10 + 30 + 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=3), st.integers(1, 7))
def test_zero3_local_shares_partition_exactly(shape, world):
    """Whatever the shape and world size, the ranks' shares of a ZeRO-3 parameter add up to it."""
    shape = tuple(shape)
    total = 0
    for rank in range(world):
        _, local, _ = sharding.zero3_facts(_zero3_param(shape, world, rank, 0))
        assert 0 <= local <= math.ceil(math.prod(shape) / world)
        total += local
    assert total == math.prod(shape)


# ---- quantized live modules ---------------------------------------------------------------------------


def _bnb():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("bitsandbytes")


def test_bitsandbytes_params4bit_logical_count_and_stored_bytes():
    bnb = _bnb()
    layer = bnb.nn.Linear4bit(64, 32, bias=True, quant_type="nf4").to("cpu")  # quantizes on the move
    weight = layer.weight
    assert type(weight).__name__ == "Params4bit" and weight.dtype == torch.uint8
    assert weight.numel() == 64 * 32 // 2  # two 4-bit weights per stored byte
    report = paramscope.inspect(layer)
    assert report.total == 64 * 32 + 32 == 2080
    record = next(r for r in report.tensors if r.name == "weight")
    assert record.quant.logical_numel == math.prod(weight.quant_state.shape) == 2048
    assert (record.quant.scheme, record.quant.bits) == ("bitsandbytes-nf4", 4)
    assert record.shape == (1024, 1) and record.dtype == "uint8"
    assert report.parameter_bytes == 1024 + 32 * 4
    # absmax, quant map and (double quantization) their nested counterparts, as bitsandbytes serialises them
    serialised = weight.quant_state.as_dict(packed=True)
    tables = {f"weight.{k}": v for k, v in serialised.items()
              if isinstance(v, torch.Tensor) and not k.startswith("quant_state.")}  # the JSON blob is not live
    aux = {r.name: r for r in report.tensors if r.role is Role.QUANT_AUX}
    assert {n: (r.shape, r.dtype) for n, r in aux.items()} == {
        n: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for n, v in tables.items()
    }
    aux_bytes = sum(v.numel() * v.element_size() for v in tables.values())
    assert report.quant_aux_bytes == aux_bytes > 0
    assert report.bytes == 1024 + 32 * 4 + aux_bytes  # storage: packed weight, bias, side tables
    assert report.total == 2080  # side tables are not parameters
    assert report.metadata["quantization"] == {"scheme": "bitsandbytes-nf4", "bits": 4, "quantized_tensors": 1,
                                               "bookkeeping_tensors": len(tables), "from": "module"}


def test_bitsandbytes_int8params():
    bnb = _bnb()
    layer = bnb.nn.Linear8bitLt(64, 32, has_fp16_weights=False)
    quantize = getattr(bnb.nn.Int8Params, "_quantize", None)
    if quantize is None:
        pytest.skip("this bitsandbytes has no CPU Int8Params._quantize")
    layer.weight = bnb.nn.Int8Params(torch.randn(32, 64), requires_grad=False, has_fp16_weights=False)._quantize("cpu")
    assert layer.weight.dtype == torch.int8
    report = paramscope.inspect(layer)
    assert report.total == 2080
    record = next(r for r in report.tensors if r.name == "weight")
    assert record.quant.scheme == "bitsandbytes-int8" and record.quant.logical_numel == 2048
    assert report.parameter_bytes == 2048 + 32 * 4
    scb = next(r for r in report.tensors if r.name == "SCB")  # where state_dict() puts it
    assert "SCB" in layer.state_dict()
    assert (scb.role, scb.shape, scb.dtype) == (Role.QUANT_AUX, tuple(layer.weight.SCB.shape), "float32")
    assert report.quant_aux_bytes == layer.weight.SCB.numel() * 4 == 32 * 4
    assert report.bytes == 2048 + 32 * 4 + 32 * 4


def test_torchao_int8_weight_only():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantization = pytest.importorskip("torchao.quantization")
    model = nn.Sequential(nn.Linear(64, 32))
    quantization.quantize_(model, quantization.Int8WeightOnlyConfig())
    weight = model[0].weight
    report = paramscope.inspect(model)
    assert report.total == 64 * 32 + 32 == 2080
    record = next(r for r in report.tensors if r.name == "0.weight")
    assert record.quant.logical_numel == 2048
    assert record.quant.scheme == f"torchao:{type(weight).__name__}"
    assert record.quant.bits == 8  # qdata: one int8 per weight
    names, _ = weight.__tensor_flatten__()
    stored = sum(t.numel() * t.element_size() for t in (getattr(weight, n) for n in names) if t is not None)
    assert record.shape == (stored,) and record.dtype == "uint8"
    assert stored >= 2048 + 32 * 4  # int8 data and float32 per-row scales at least


def test_float8_weight_with_scale_buffer():
    layer = nn.Linear(64, 32)
    layer.weight = nn.Parameter(layer.weight.detach().to(torch.float8_e4m3fn), requires_grad=False)
    layer.register_buffer("weight_scale", torch.ones(()))
    report = paramscope.inspect(layer)
    assert report.total == 2080
    assert report.parameter_bytes == 2048 * 1 + 32 * 4
    scale = next(r for r in report.tensors if r.name == "weight_scale")
    assert scale.role is Role.QUANT_AUX
    assert report.other == {"quant_aux": 1}
    assert report.buffers == 0


def _fp8_layers():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp8 = pytest.importorskip("transformers.integrations.finegrained_fp8")
        fbgemm = pytest.importorskip("transformers.integrations.fbgemm_fp8")
    with torch.device("meta"):
        return fp8.FP8Linear(1024, 512, block_size=(128, 128)), fbgemm.FbgemmFp8Linear(1024, 512, bias=True)


def test_fp8_scales_registered_as_parameters_are_quant_aux():
    """transformers' FP8Linear (weight_scale_inv) and FbgemmFp8Linear (weight_scale) make their scales
    nn.Parameters; they are bookkeeping beside a float8 weight, as the file path reads the same tensors."""
    block, fbgemm = _fp8_layers()
    params = dict(block.named_parameters())
    assert isinstance(params["weight_scale_inv"], nn.Parameter) and params["weight"].dtype == torch.float8_e4m3fn
    report = paramscope.inspect(block)
    assert report.total == 1024 * 512  # the weights; parameters() would add the (512/128) x (1024/128) scales
    assert sum(p.numel() for p in block.parameters()) == 1024 * 512 + 4 * 8
    roles = {r.name: r.role for r in report.tensors}
    assert roles == {"weight": Role.PARAMETER, "weight_scale_inv": Role.QUANT_AUX}
    assert report.metadata["quantization"] == {"scheme": "fp8", "bits": 8, "quantized_tensors": 1,
                                               "bookkeeping_tensors": 1, "from": "module"}
    assert report.quant_aux_bytes == 4 * 8 * 4  # float32 block scales

    report = paramscope.inspect(fbgemm)
    assert report.total == 1024 * 512 + 512  # weight and bias; weight_scale [512, 1] is not a parameter
    roles = {r.name: r.role for r in report.tensors}
    assert roles["weight_scale"] is Role.QUANT_AUX and roles["bias"] is Role.PARAMETER
    assert report.metadata["quantization"] == {"scheme": "fp8", "bits": 8, "quantized_tensors": 1,
                                               "bookkeeping_tensors": 1, "from": "module"}
    assert report.trainable == sum(p.numel() for n, p in fbgemm.named_parameters()
                                   if p.requires_grad and n != "weight_scale")


def test_scale_parameter_of_a_float_module_stays_a_parameter():
    layer = nn.Linear(4, 4)
    layer.weight_scale = nn.Parameter(torch.ones(4))
    report = paramscope.inspect(layer)
    assert report.total == 16 + 4 + 4
    assert "quantization" not in report.metadata


def test_scale_buffer_of_a_float_module_stays_a_buffer():
    layer = nn.Linear(4, 4)
    layer.register_buffer("scale", torch.ones(4))
    assert paramscope.inspect(layer).buffers == 4


def test_no_framework_imported_by_the_unwrapping():
    """Detection is by names and attributes: a plain model must not pull in torch.distributed et al."""
    code = (
        "import sys, torch, paramscope\n"
        "before = set(sys.modules)\n"
        "m = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 3))\n"
        "assert paramscope.count(m) == 283\n"
        "new = set(sys.modules) - before\n"
        "bad = [n for n in new if n.split('.')[0] in ('deepspeed', 'bitsandbytes', 'torchao', 'peft')"
        " or n.startswith('torch.distributed.fsdp')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


_GARBAGE = st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=3), st.lists(st.integers(-3, 3), max_size=3))


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "ds_numel": _GARBAGE, "ds_tensor": _GARBAGE, "ds_id": _GARBAGE,
    "ds_zero_partition_rank": _GARBAGE, "_is_flat_param": st.booleans(),
    "_shapes": _GARBAGE, "_fqns": _GARBAGE, "_param_infos": _GARBAGE, "_shard_param_infos": _GARBAGE,
}), _GARBAGE)
def test_lying_framework_attributes_raise_only_paramscope_error(attrs, ds_shape):
    """A parameter dressed up with inconsistent ZeRO-3 / FlatParameter attributes: a count or one clean error."""
    model = nn.Linear(2, 2)
    model.weight = nn.Parameter(torch.empty(0))
    for name, value in attrs.items():
        setattr(model.weight, name, value)
    if "ds_numel" in attrs:
        model.weight.ds_shape = ds_shape
    try:
        report = paramscope.inspect(model)
    except paramscope.ParamscopeError as exc:
        assert "\n" not in str(exc)
        return
    # No error: the count is exactly what the attributes consistently say. The bias (2) is real; the emptied
    # weight counts 0 as a plain tensor, 0 as a FlatParameter (one that survived its lying metadata can only
    # stand for no originals), or ds_shape's product as ZeRO-3 (which must then equal ds_numel).
    if attrs.get("_is_flat_param"):
        weight = 0
    elif "ds_numel" in attrs:
        weight = math.prod(int(d) for d in ds_shape)
        assert weight == int(attrs["ds_numel"])
    else:
        weight = 0
    assert report.total == 2 + weight
