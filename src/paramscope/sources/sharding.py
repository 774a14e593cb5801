"""What wrapped, sharded and quantized live parameters really are: the knowledge :mod:`.live` consults.

``sum(p.numel() for p in model.parameters())`` is wrong exactly where a count matters most. Each
framework hides the true tensor differently, and each hides it behind attributes it documents:

* **Wrappers** (DDP, DataParallel, ``torch.compile``'s OptimizedModule, FSDP1, activation
  checkpointing, DeepSpeed's engine) put the model under one child attribute, which would prefix every
  name (``module.``, ``_orig_mod.``, ``_fsdp_wrapped_module.``). :data:`WRAPPER_CHILD` names that
  child per wrapper class, and the walk gives it its parent's path.
* **FSDP1, use_orig_params=False** replaces the original parameters by one ``FlatParameter`` per FSDP
  unit holding this rank's slice of their concatenation. Its metadata (``_fqns``, ``_shapes``,
  ``_param_infos``, ``_shared_param_infos``, ``_shard_param_infos``; torch/distributed/fsdp/
  _flat_param.py) gives back every original name and global shape, and what of each this rank holds.
* **FSDP1, use_orig_params=True** keeps the original parameters but as 1-D (often empty) views of the
  local slice: the global shape again comes from the flat parameter's metadata.
* **FSDP2 / DTensor** parameters are DTensors: ``shape`` is already global, ``_local_tensor`` is this
  rank's piece; a replicated placement is still one logical tensor.
* **DeepSpeed ZeRO-3** empties ``param.data`` (shape ``[0]``) and documents ``ds_shape``, ``ds_numel``
  and ``ds_tensor`` (this rank's partition, padded to equal size across ranks).
* **Quantized** parameters store fewer bytes than they stand for: bitsandbytes ``Params4bit`` packs two
  4-bit weights per byte (the logical shape is in ``quant_state.shape``), ``Int8Params`` stores int8
  beside an ``SCB`` scale, torchao's tensor subclasses keep logical ``shape`` and store their data in
  inner tensors (``__tensor_flatten__``). Records keep the stored shape and dtype, so bytes are right,
  and a :class:`~paramscope.records.QuantInfo` carries the logical count. The bitsandbytes side tables
  (4-bit ``absmax``/``quant_map`` and nested ones, 8-bit ``SCB``), held as attributes rather than module
  tensors, become QUANT_AUX records named as a checkpoint names them, so storage bytes include them.
  Under FSDP the packed data loses its ``quant_state``; the 4-bit module keeps it (:data:`BNB4_MODULES`).
* **Scaled** float8/int8 weights (transformers' FP8Linear, FbgemmFp8Linear) may register their scales as
  ``nn.Parameter``: named as :data:`paramscope.quantization.SUFFIXES` names bookkeeping, beside a
  low-precision weight, they are QUANT_AUX, not parameters (as the file path reads the same tensors).

Detection is by class names along the MRO and by documented attributes, never by importing the
frameworks: paramscope must not import torch.distributed, DeepSpeed, bitsandbytes or torchao to
notice them (and stand-ins built from the documented attributes are recognised the same way).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

WRAPPER_CHILD: dict[str, str] = {
    "DistributedDataParallel": "module",
    "DataParallel": "module",
    "OptimizedModule": "_orig_mod",
    "FullyShardedDataParallel": "_fsdp_wrapped_module",
    "CheckpointWrapper": "_checkpoint_wrapped_module",
    "OffloadWrapper": "_checkpoint_wrapped_module",
    "DeepSpeedEngine": "module",
}
"""Wrapper class name -> the child attribute that holds the wrapped model (its name is dropped from paths).
Looked up along the MRO (:func:`wrapper_child`), so a user's ``class MyDDP(DistributedDataParallel)`` unwraps too."""

ELIDED_SEGMENTS = frozenset({"_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod"})
"""Path segments dropped wherever they appear in names a framework recorded (FSDP1's ``_fqns``)."""

FSDP1_UNIT = "FullyShardedDataParallel"

BNB4_MODULES = frozenset({"Linear4bit", "Embedding4bit"})
"""bitsandbytes module classes (anywhere in the MRO) that keep their weight's ``quant_state`` on the module too:
FSDP replaces ``Params4bit`` by plain views (or DTensors) of the packed data, and bitsandbytes itself restores
the logical shape from ``module.quant_state`` (``fix_4bit_weight_quant_state_from_module``); so does paramscope."""

BNB4_STATE_TENSORS: dict[str, tuple[str, ...]] = {
    "absmax": ("absmax",),
    "quant_map": ("code",),
    "nested_absmax": ("state2", "absmax"),
    "nested_quant_map": ("state2", "code"),
}
"""Name bitsandbytes serialises a 4-bit side table under (``QuantState.as_dict(packed=True)``, the file suffixes
``weight.absmax`` ...) -> attribute path on the live ``QuantState``. Recorded as QUANT_AUX tensors."""

BNB8_STATE_TENSORS: dict[str, str] = {"SCB": "SCB"}
"""Module-level name of an ``Int8Params``' side table in a state_dict (``<module>.SCB``) -> attribute on the
parameter. (``CB`` is the int8 data itself: not a second tensor.)"""

SCALED_WEIGHT_SCHEMES: dict[str, str] = {
    "float8_e4m3fn": "fp8", "float8_e4m3fnuz": "fp8", "float8_e5m2": "fp8", "float8_e5m2fnuz": "fp8", "int8": "int8",
}
"""One-weight-per-element stored dtypes that a scale beside them marks as quantized -> scheme (as the file path
names them: transformers' FP8Linear / FbgemmFp8Linear, compressed-tensors int8)."""

# Tensor class names (anywhere in the MRO) -> the kind of special parameter.
TENSOR_KINDS: dict[str, str] = {
    "DTensor": "dtensor",
    "Params4bit": "bnb4",
    "Int8Params": "bnb8",
    "TorchAOBaseTensor": "subclass",
    "AffineQuantizedTensor": "subclass",
}

SHARDING_LABELS: dict[str, str] = {
    "fsdp1-flat": "FSDP1 (FlatParameter, use_orig_params=False)",
    "fsdp1-orig": "FSDP1 (use_orig_params=True)",
    "dtensor": "DTensor (FSDP2 fully_shard / tensor parallel)",
    "zero3": "DeepSpeed ZeRO-3",
}
"""Kinds of sharding :mod:`.live` can report, as shown in ``Inventory.metadata['sharding']``."""

QUANT_AUX_BUFFERS = frozenset({
    "weight_scale", "weight_scale_inv", "scale", "scale_inv", "input_scale", "SCB", "absmax", "quant_map",
    "weight_zero_point", "zero_point", "scales", "qzeros", "g_idx",
})
"""Buffer names that are a quantization scheme's bookkeeping when their module holds a quantized weight."""

LOW_PRECISION_DTYPES = frozenset({
    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
    "int8", "uint8", "int4", "uint4", "int32",
})
"""Stored weight dtypes that mark a module as quantized (so its scale buffers are QUANT_AUX)."""

BNB4_BITS = 4
BNB8_BITS = 8


_KIND_CACHE: dict[type, str | None] = {}
_CHILD_CACHE: dict[type, str | None] = {}
_BNB4_MODULE_CACHE: dict[type, bool] = {}
_FSDP1_CACHE: dict[type, bool] = {}


def wrapper_child(cls: type) -> str | None:
    """The attribute holding the wrapped model if ``cls`` (or a base class) is a known wrapper, else None."""
    try:
        return _CHILD_CACHE[cls]
    except KeyError:
        pass
    child = next((WRAPPER_CHILD[b.__name__] for b in cls.__mro__ if b.__name__ in WRAPPER_CHILD), None)
    _CHILD_CACHE[cls] = child
    return child


def is_fsdp1_unit(cls: type) -> bool:
    """Whether ``cls`` is FSDP1's ``FullyShardedDataParallel`` or a subclass of it."""
    unit = _FSDP1_CACHE.get(cls)
    if unit is None:
        unit = _FSDP1_CACHE[cls] = any(b.__name__ == FSDP1_UNIT for b in cls.__mro__)
    return unit


def module_quant_state(module: Any, key: str) -> Any:
    """The ``quant_state`` a bitsandbytes 4-bit module keeps for its ``weight`` (None for anything else)."""
    if key != "weight":
        return None
    cls = type(module)
    is_bnb4 = _BNB4_MODULE_CACHE.get(cls)
    if is_bnb4 is None:
        is_bnb4 = _BNB4_MODULE_CACHE[cls] = any(b.__name__ in BNB4_MODULES for b in cls.__mro__)
    if not is_bnb4:
        return None
    state = module.__dict__.get("quant_state")
    return state if state is not None and getattr(state, "shape", None) is not None else None


def tensor_kind(cls: type) -> str | None:
    """The special kind of a tensor class (``dtensor``, ``bnb4``, ``bnb8``, ``subclass``) or None for plain ones."""
    try:
        return _KIND_CACHE[cls]
    except KeyError:
        pass
    kind = None
    for base in cls.__mro__:
        kind = TENSOR_KINDS.get(base.__name__)
        if kind is not None:
            break
    if kind is None and cls.__name__ not in ("Parameter", "Tensor", "Buffer") and "__tensor_flatten__" in vars(cls):
        kind = "subclass"  # another wrapper subclass: inner tensors hold the data, like torchao's
    _KIND_CACHE[cls] = kind
    return kind


TYPE_NAMES: dict[type, str] = {}
"""Cache of :func:`module_type_name` (read directly by the walk: one dict lookup per module)."""


def module_type_name(cls: type) -> str:
    """A module's class name, FSDP2's dynamic ``FSDPLinear`` (bases FSDPModule, Linear) shown as ``Linear``."""
    name = TYPE_NAMES.get(cls)
    if name is None:
        name = cls.__name__
        bases = cls.__bases__
        if name.startswith("FSDP") and len(bases) == 2 and bases[0].__name__ == "FSDPModule":
            name = bases[1].__name__
        TYPE_NAMES[cls] = name
    return name


def clean_name(name: str) -> str:
    """``_fsdp_wrapped_module.0._checkpoint_wrapped_module.weight`` -> ``0.weight``."""
    if "_" not in name:
        return name
    return ".".join(part for part in name.split(".") if part not in ELIDED_SEGMENTS)


class FlatOriginal:
    """One original parameter inside an FSDP1 FlatParameter: global shape, this rank's share, its tie key."""

    __slots__ = ("flat", "index", "local_numel", "shape", "tie")

    def __init__(self, flat: Any, index: int, shape: tuple[int, ...], local_numel: int) -> None:
        self.flat = flat
        self.index = index
        self.shape = shape
        self.local_numel = local_numel
        self.tie: Hashable = ("fsdp1", id(flat), index)


def _dims(shape: Any) -> tuple[int, ...]:
    """A declared shape as a tuple of non-negative ints (ValueError for anything else)."""
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise ValueError(f"negative dimension in shape {list(dims)}")
    return dims


def flat_param_of(unit: Any) -> Any:
    """The FlatParameter of an FSDP1 unit (``FullyShardedDataParallel``), or None (no params, or not FSDP1)."""
    handle = unit.__dict__.get("_handle")
    flat = getattr(handle, "flat_param", None)
    return flat if flat is not None and getattr(flat, "_is_flat_param", False) else None


def flat_originals(flat: Any) -> list[FlatOriginal]:
    """Every original parameter of a FlatParameter, in its order, with this rank's share of each."""
    shapes = flat._shapes
    shard_infos = getattr(flat, "_shard_param_infos", None)  # absent for NO_SHARD: every rank holds all
    out = []
    for i, declared in enumerate(shapes):
        shape = _dims(declared)
        if shard_infos is None:
            local = math.prod(shape)
        else:
            info = shard_infos[i]
            local = int(info.numel_in_shard) if info.in_shard else 0
        out.append(FlatOriginal(flat, i, shape, local))
    return out


def flat_index(units: list[Any]) -> dict[tuple[int, str], FlatOriginal]:
    """(id(module), attribute name) -> the original parameter that attribute stands for, for every
    FSDP1 unit in ``units``; shared parameters (``_shared_param_infos``) map to their primary's entry."""
    index: dict[tuple[int, str], FlatOriginal] = {}
    for unit in units:
        flat = flat_param_of(unit)
        if flat is None:
            continue
        originals = flat_originals(flat)
        for original, info in zip(originals, flat._param_infos, strict=True):
            index[(id(info.module), info.param_name)] = original
        for shared in getattr(flat, "_shared_param_infos", ()):
            primary = index.get((id(shared.prim_module), shared.prim_param_name))
            if primary is not None:
                index[(id(shared.module), shared.param_name)] = primary
    return index


def flat_names(flat: Any) -> list[tuple[str, FlatOriginal, str, Any, str]]:
    """(name relative to the FSDP unit, original, owner class, owner module, attribute name) for every name a
    FlatParameter stands for, shared names included (they carry their primary's tie key)."""
    originals = flat_originals(flat)
    out = []
    by_key: dict[tuple[int, str], FlatOriginal] = {}
    for fqn, original, info in zip(flat._fqns, originals, flat._param_infos, strict=True):
        out.append((clean_name(fqn), original, module_type_name(type(info.module)), info.module, info.param_name))
        by_key[(id(info.module), info.param_name)] = original
    for shared in getattr(flat, "_shared_param_infos", ()):
        primary = by_key.get((id(shared.prim_module), shared.prim_param_name))
        if primary is not None:
            prefix = clean_name(shared.module_name)
            name = f"{prefix}.{shared.param_name}" if prefix else shared.param_name
            out.append((name, primary, module_type_name(type(shared.module)), shared.module, shared.param_name))
    return out


def dtensor_facts(param: Any) -> tuple[tuple[int, ...], int, dict[str, Any]]:
    """(global shape, local numel, extra) of a DTensor parameter; nothing is gathered."""
    local = param.__dict__.get("_local_tensor")
    if local is None:
        local = param._local_tensor
    placements = getattr(param, "placements", ())
    extra = {"local_numel": int(local.numel()), "placements": [repr(p) for p in placements]}
    return tuple(int(d) for d in param.shape), int(local.numel()), extra


def zero3_facts(param: Any) -> tuple[tuple[int, ...], int, dict[str, Any]]:
    """(global shape, local numel, extra) of a ZeRO-3 parameter from its documented ``ds_*`` attributes.

    ``ds_tensor`` is padded to the same length on every rank; the real share is what of ``ds_numel``
    falls inside this rank's window ``[rank * len, (rank + 1) * len)``.
    """
    shape = _dims(param.ds_shape)
    numel = int(param.ds_numel)
    if numel != math.prod(shape):
        raise ValueError(f"ds_numel {numel} is not the product of ds_shape {list(shape)}")
    part = getattr(param, "ds_tensor", None)
    if part is None:
        return shape, 0, {"local_numel": 0, "ds_id": getattr(param, "ds_id", None)}
    size = int(part.numel())
    rank = getattr(param, "ds_zero_partition_rank", None)
    local = int(getattr(part, "ds_numel", size)) if rank is None else max(0, min(size, numel - int(rank) * size))
    return shape, local, {"local_numel": local, "ds_id": getattr(param, "ds_id", None), "partition_numel": size}


def bnb4_facts(param: Any) -> tuple[int, str, Any] | None:
    """(logical numel, scheme, quant_state) of a quantized ``Params4bit``, or None while it still holds
    unquantized data."""
    state = getattr(param, "quant_state", None)
    if state is None or not getattr(param, "bnb_quantized", True):
        return None
    return bnb4_logical(state)


def bnb4_logical(state: Any) -> tuple[int, str, Any]:
    """(logical numel, scheme, state) from a bitsandbytes ``QuantState`` (its ``shape`` is the unpacked one)."""
    logical = math.prod(_dims(state.shape))
    return logical, f"bitsandbytes-{getattr(state, 'quant_type', 'nf4')}", state


def bnb4_side_tables(state: Any) -> list[tuple[str, Any]]:
    """(serialised name, tensor) of a 4-bit ``QuantState``'s side tables (:data:`BNB4_STATE_TENSORS`)."""
    out = []
    nested = getattr(state, "state2", None)
    for name, path in BNB4_STATE_TENSORS.items():
        obj = state
        for attr in path:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "element_size") and not (path[0] == "state2" and nested is state):
            out.append((name, obj))
    return out


def bnb8_side_tables(param: Any) -> list[tuple[str, Any]]:
    """(state_dict name, tensor) of an ``Int8Params``' side tables (:data:`BNB8_STATE_TENSORS`)."""
    out = []
    for name, attr in BNB8_STATE_TENSORS.items():
        t = getattr(param, attr, None)
        if t is not None and hasattr(t, "element_size"):
            out.append((name, t))
    return out


def subclass_facts(param: Any) -> tuple[int, int, dict[str, Any]] | None:
    """(logical numel, stored bytes, extra) of a wrapper tensor subclass (torchao) from its inner tensors."""
    flatten = getattr(param, "__tensor_flatten__", None)
    if flatten is None:
        return None
    try:
        names, _ctx = flatten()
    except Exception:  # a subclass whose flatten needs more than it has: treat as a plain tensor
        return None
    inner: dict[str, list[Any]] = {}
    stored = 0
    first_bits: float | None = None
    logical = math.prod(int(d) for d in param.shape)
    for name in names:
        t = getattr(param, name, None)
        if t is None or not hasattr(t, "element_size"):
            continue
        size = int(t.numel() * t.element_size())
        stored += size
        inner[name] = [list(t.shape), str(t.dtype).removeprefix("torch.")]
        if first_bits is None and logical:
            first_bits = 8 * size / logical
    return logical, stored, {"inner": inner, "bits": first_bits}
