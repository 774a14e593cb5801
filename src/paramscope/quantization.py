"""Packed quantization schemes: which tensors hold packed weights, how many weights they stand for, and
which tensors are bookkeeping (scales, zero points, group indices) rather than parameters.

Every scheme packs whole weights into storage words, so the logical count of a packed tensor is
``stored elements * word bits // weight bits`` whichever axis the packing runs along. The layouts, from
each library's own source:

* **GPTQ** (AutoGPTQ / GPTQModel ``QuantLinear``): ``qweight`` int32 ``[in * bits / 32, out]`` (packed
  along the input axis), ``qzeros`` int32 ``[groups, out * bits / 32]``, ``scales`` fp16 ``[groups, out]``,
  ``g_idx`` int32 ``[in]``. So ``scales.cols / qzeros.cols`` is the pack factor ``32 / bits``.
* **AWQ** (AutoAWQ ``WQLinear_GEMM``; vLLM's ``awq_linear`` unpacks ``qweight.shape[-1] * (32 // w_bit)``):
  ``qweight`` int32 ``[in, out * bits / 32]`` (packed along the output axis), ``qzeros`` int32
  ``[groups, out * bits / 32]``, ``scales`` fp16 ``[groups, out]``. So ``scales.cols / qweight.cols`` is the
  pack factor. (``WQLinear_GEMV`` packs ``[out, in * bits / 32]``: the same count.)
* **bitsandbytes 4-bit** (``Params4bit``, ``QuantState.as_dict(packed=True)``): ``weight`` uint8
  ``[ceil(n / 2), 1]`` (two 4-bit codes per byte), ``weight.absmax``, ``weight.quant_map``,
  ``weight.nested_absmax``, ``weight.nested_quant_map`` (double quantization) and
  ``weight.quant_state.bitsandbytes__nf4`` (or ``__fp4``: the non-tensor fields as a JSON blob in a uint8
  tensor, ``pack_dict_to_tensor``). Logical ``n = 2 * stored`` (the blob's ``shape`` is in the data, which a
  header read does not see; an odd ``n`` would be over-counted by one).
* **bitsandbytes 8-bit** (``Linear8bitLt`` / ``Int8Params``): ``weight`` int8 ``[out, in]`` one weight per
  element, ``SCB`` float32 ``[out]`` row scales, ``weight_format`` (older saves).
* **compressed-tensors** ``pack-quantized`` (``pack_to_int32``): ``weight_packed`` int32 ``[out, in * bits / 32]``,
  ``weight_shape`` int64 ``[2]`` (the unpacked shape, in the data), ``weight_scale`` ``[out, in / group]``,
  ``weight_zero_point`` (asymmetric), ``weight_g_idx`` (actorder). ``int-quantized`` / ``float-quantized``
  store ``weight`` int8 / float8 one per element with ``weight_scale`` (and ``input_scale`` for activations).
* **MLX** (``mlx.nn.quantize`` / ``mx.quantize``): ``weight`` uint32 ``[out, in * bits / 32]``, ``scales`` and
  ``biases`` ``[out, in / group_size]``; defaults group_size 64, bits 4.
* **bitsandbytes 4-bit with a float quant_storage** (``bnb_4bit_quant_storage`` bf16/fp16/fp32, for
  QLoRA + FSDP): ``Params4bit`` views the packed bytes as that dtype, so ``weight`` is e.g. bfloat16
  ``[n / 4, 1]``; logical ``n = stored * width / 4``, the width from :mod:`paramscope.dtypes`. A float
  ``weight`` counts as packed only with the evidence of a ``quant_state`` blob beside it or a config
  that declares that storage: a float tensor next to an ``absmax`` alone proves nothing.
* **MXFP4** (gpt-oss; transformers ``integrations/mxfp4.py``, ``_convert_moe_packed_tensors``):
  ``<proj>_blocks`` uint8 ``[E, rows, cols / 32, 16]`` (32 FP4 weights in 16 bytes per block) and
  ``<proj>_scales`` uint8 E8M0 ``[E, rows, cols / 32]`` (one per block, ``blocks.shape[:-1]``). Logical
  = ``2 * blocks bytes``. Recognised without a config by that pair (both uint8, the shapes agreeing).
* **compressed-tensors NVFP4** (``nvfp4-pack-quantized``): ``weight_packed`` uint8 ``[out, in / 2]``,
  ``weight_scale`` fp8 ``[out, in / 16]``, ``weight_global_scale`` and ``input_global_scale`` fp32 ``[1]``.
* **ModelOpt NVFP4** (``quant_method`` ``modelopt``, ``quant_algo`` ``NVFP4``): ``weight`` uint8
  ``[out, in / 2]``, ``weight_scale`` float8_e4m3fn ``[out, in / 16]``, ``weight_scale_2`` and
  ``input_scale`` fp32 scalars. Recognised by the ``weight_scale_2`` beside a uint8 ``weight``.
* **KV-cache / attention scales** (compressed-tensors ``kv_cache_scheme``, FP8 checkpoints):
  ``self_attn.k_scale``, ``v_scale``, ``q_scale``, ``output_scale``: bookkeeping, marked QUANT_AUX only
  in a model already known to be quantized (a config that says so, or a packed tensor found).
* **FP8** (DeepSeek-V3 / transformers ``finegrained_fp8``: ``weight_scale_inv`` per ``weight_block_size``
  block; ``fbgemm_fp8``: ``weight_scale`` ``[out, 1]``): ``weight`` float8_e4m3fn one weight per element.

:func:`annotate` applies this to an inventory's records; :func:`config_scheme` reads the scheme from a
Hugging Face ``config.json``'s ``quantization_config`` (or MLX's top-level ``quantization``).

**Bits from shapes alone** (no config: always so for a plain URL). GPTQ: with ``g_idx`` ``[in]``,
``bits = qweight.rows * 32 / in`` exactly; else ``32 * qzeros.cols / scales.cols``. AWQ:
``32 * qweight.cols / scales.cols``. Either, when no ratio is a whole bit width, falls back to 4 bits.
MLX: ``scales`` ``[out, in / group]`` and ``weight`` ``[out, in * bits / 32]`` fix only the product
``bits * group = 32 * weight.cols / scales.cols``. When that product is MLX's default (4 x 64 = 256) the
default is taken; when exactly one (bits, group) pair of MLX's choices gives it, that pair; otherwise the
weight is ambiguous: it counts its stored elements (not a guess that may be 2x wrong), still as a
parameter, and the summary lists it under ``ambiguous`` so a note says so.
"""

from __future__ import annotations

from collections.abc import Mapping  # collections is loaded already (records' enum loads functools, which loads it)

from paramscope import quant_names
from paramscope.records import QuantInfo, Role, TensorRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

# ---- the tables -------------------------------------------------------------------------------------

SUFFIXES = quant_names.SUFFIXES  # the table, shared with the live reader: paramscope.quant_names
# Suffixes with no dot before them (gpt-oss ``gate_up_proj_blocks``): looked up by ending, not by leaf.
UNDOTTED = tuple(s for s in SUFFIXES if not s.startswith("."))
SUFFIX_TUPLE = quant_names.SUFFIX_TUPLE
_BY_LEAF: dict[str, list[str]] = {}
for _suffix_name in sorted(SUFFIXES, key=len, reverse=True):  # longest first within one leaf
    if _suffix_name in UNDOTTED:
        continue
    _BY_LEAF.setdefault(_suffix_name.rpartition(".")[2], []).append(_suffix_name)

# Bits a storage word of each dtype holds (the packing container).
WORD_BITS = {"int32": 32, "uint32": 32, "int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int64": 64}

# quant_method in config.json -> scheme name paramscope shows.
CONFIG_METHODS = {
    "gptq": "gptq",
    "awq": "awq",
    "bitsandbytes": "bitsandbytes",
    "compressed-tensors": "compressed-tensors",
    "fp8": "fp8",
    "fbgemm_fp8": "fp8",
    "mlx": "mlx",
    "mxfp4": "mxfp4",
    "modelopt": "nvfp4",
}
# bnb_4bit_quant_type / quant_state blob suffix -> scheme name
BNB4_TYPES = {"nf4": "bitsandbytes-nf4", "fp4": "bitsandbytes-fp4"}

DEFAULT_BITS = {"gptq": 4, "awq": 4, "compressed-tensors": 4, "mlx": 4, "mxfp4": 4}
MLX_DEFAULT_GROUP = 64
MLX_BITS = (2, 3, 4, 5, 6, 8)
MLX_GROUPS = (32, 64, 128)
GPTQ_BITS = (2, 3, 4, 8)
# bnb_4bit_quant_storage in a config (a torch dtype name, with or without "torch.") -> canonical dtype name
BNB_STORAGE = {"uint8": "uint8", "int8": "int8", "bfloat16": "bfloat16", "float16": "float16",
               "float32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


class ConfigQuant:
    """What a config.json says about quantization: the method, bits, and MLX per-module overrides."""

    __slots__ = ("bits", "method", "overrides", "storage", "variant")

    def __init__(self, method: str, bits: int | None = None, variant: str | None = None,
                 overrides: dict[str, int] | None = None, storage: str | None = None) -> None:
        self.method = method
        self.bits = bits
        self.variant = variant
        self.overrides = overrides or {}
        self.storage = storage
        """bitsandbytes 4-bit: the dtype the packed bytes are viewed as (``bnb_4bit_quant_storage``)."""

    def __repr__(self) -> str:
        return f"ConfigQuant({self.method!r}, bits={self.bits}, variant={self.variant!r})"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 64 else None


def _ct_bits(qc: dict[str, Any]) -> int | None:
    """compressed-tensors: the weights' num_bits of the first config group that states one."""
    groups = qc.get("config_groups")
    if isinstance(groups, dict):
        for group in groups.values():
            weights = group.get("weights") if isinstance(group, dict) else None
            if isinstance(weights, dict) and _int(weights.get("num_bits")):
                return weights["num_bits"]
    return None


def config_scheme(config: dict[str, Any] | None) -> ConfigQuant | None:
    """The quantization a Hugging Face (or MLX) config declares, or None."""
    if not isinstance(config, dict):
        return None
    qc = config.get("quantization_config")
    mlx = config.get("quantization")
    if isinstance(mlx, dict) and ("bits" in mlx or "group_size" in mlx) and not (
        isinstance(qc, dict) and qc.get("quant_method") in CONFIG_METHODS
    ):
        overrides = {
            k: v["bits"] for k, v in mlx.items() if isinstance(v, dict) and _int(v.get("bits"))
        }
        return ConfigQuant("mlx", _int(mlx.get("bits")) or DEFAULT_BITS["mlx"], overrides=overrides)
    if not isinstance(qc, dict):
        return None
    method = CONFIG_METHODS.get(str(qc.get("quant_method", "")).lower())
    if method is None:
        return None
    if method == "bitsandbytes":
        if qc.get("load_in_4bit"):
            kind = str(qc.get("bnb_4bit_quant_type", "fp4")).lower()
            storage = BNB_STORAGE.get(str(qc.get("bnb_4bit_quant_storage", "uint8")).removeprefix("torch."))
            return ConfigQuant("bitsandbytes", 4, BNB4_TYPES.get(kind, "bitsandbytes-fp4"), storage=storage)
        if qc.get("load_in_8bit"):
            return ConfigQuant("bitsandbytes", 8, "bitsandbytes-int8")
        return ConfigQuant("bitsandbytes")
    if method == "compressed-tensors":
        return ConfigQuant(method, _ct_bits(qc), str(qc.get("format", "")) or None)
    if method == "fp8":
        return ConfigQuant(method, 8)
    if method == "mxfp4":
        return ConfigQuant(method, 4)
    return ConfigQuant(method, _int(qc.get("bits")) or _int(qc.get("w_bit")), str(qc.get("version", "")) or None)


# ---- small data blobs: the few facts a packed layout keeps in the data, not the header ----------------
# The bytes come from the reader (``Inventory.pending["small_tensors"]``, for safetensors
# :func:`paramscope.sources.safetensors.small_tensor_reader`): this module never opens a file.


def _bnb_logical(blob: bytes | None, stored: int, word_bytes: int = 1) -> int | None:
    """n from a QuantState JSON blob's ``shape``, if it agrees with the ceil(n / 2) bytes stored (padded to
    whole storage words of ``word_bytes``)."""
    import json

    if blob is None:
        return None
    try:
        state = json.loads(blob.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    shape = state.get("shape") if isinstance(state, dict) else None
    if not isinstance(shape, list) or not shape or len(shape) > 8 or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 40 for d in shape
    ):
        return None
    n = 1
    for d in shape:
        n *= d
    return n if -(-((n + 1) // 2) // word_bytes) == stored else None


def _ct_logical(blob: bytes | None, packed: TensorRecord, bits: int) -> int | None:
    """out * in from compressed-tensors' int64 ``weight_shape``, if it agrees with the packed shape."""
    if blob is None or len(blob) != 16 or packed.shape is None or len(packed.shape) != 2:
        return None
    out_f = int.from_bytes(blob[:8], "little", signed=True)
    in_f = int.from_bytes(blob[8:], "little", signed=True)
    if out_f != packed.shape[0] or in_f < 0 or -(-in_f * bits // 32) != packed.shape[1]:
        return None
    return out_f * in_f


# ---- annotating records -----------------------------------------------------------------------------


def _suffix(name: str) -> str | None:
    """The table's suffix ``name`` ends with (its last dotted part picks the few candidates)."""
    for suffix in _BY_LEAF.get(name.rpartition(".")[2], ()):
        if name.endswith(suffix):
            return suffix
    for suffix in UNDOTTED:
        if name.endswith(suffix) and len(name) > len(suffix) and name[-len(suffix) - 1] != ".":
            return suffix
    return None


def _cols(record: TensorRecord | None) -> int | None:
    if record is None or not record.shape:
        return None
    return record.shape[-1]


def _word_bits(dtype: str) -> int | None:
    """Bits of one storage element of ``dtype`` from the dtype table (a float container: bnb quant_storage)."""
    from paramscope import dtypes

    known = dtypes.DTYPES.get(dtype)
    if known is None or known.block_elements != 1 or known.kind not in ("int", "uint", "float"):
        return None
    return known.block_bytes * 8


def _packed(record: TensorRecord, scheme: str, bits: int, any_word: bool = False) -> QuantInfo | None:
    """How the record, as a parameter, stands for its logical weights, or None if it is not a packing word.

    ``any_word``: any int/uint/float dtype may be the container (bitsandbytes ``quant_storage``), not only
    the integer words of :data:`WORD_BITS`.
    """
    word = _word_bits(record.dtype) if any_word else WORD_BITS.get(record.dtype)
    if word is None or record.shape is None or bits <= 0 or (record.stored_numel * word) % bits:
        return None
    logical = record.stored_numel * word // bits
    return QuantInfo(scheme, logical, bits)


def _gptq_or_awq(base: str, get: Any, cq: ConfigQuant | None) -> tuple[str, int]:
    """GPTQ packs along the input axis (qweight cols = out), AWQ along the output axis (cols = out/pack)."""
    if cq is not None and cq.method in ("gptq", "awq") and cq.bits:
        return cq.method, cq.bits  # the config settles both: no shapes to compare
    qweight, scales, qzeros = get(base + ".qweight"), get(base + ".scales"), get(base + ".qzeros")
    q_cols, s_cols, z_cols = _cols(qweight), _cols(scales), _cols(qzeros)
    if cq is not None and cq.method in ("gptq", "awq"):
        scheme = cq.method
    elif q_cols is not None and s_cols is not None and q_cols != s_cols:
        scheme = "awq"
    else:
        scheme = "gptq"
    if cq is not None and cq.bits:
        return scheme, cq.bits
    g_idx = get(base + ".g_idx")
    if scheme == "gptq" and qweight is not None and qweight.shape and g_idx is not None and g_idx.shape:
        rows, inputs = qweight.shape[0], g_idx.shape[0]  # qweight [in * bits / 32, out], g_idx [in]: exact
        if inputs and (rows * 32) % inputs == 0 and (rows * 32) // inputs in GPTQ_BITS:
            return scheme, (rows * 32) // inputs
    # the packed axis's width against the unpacked one: bits = 32 * packed cols / scales cols
    packed_cols = q_cols if scheme == "awq" else z_cols
    if s_cols and packed_cols and (32 * packed_cols) % s_cols == 0 and (32 * packed_cols) // s_cols in GPTQ_BITS:
        return scheme, (32 * packed_cols) // s_cols
    return scheme, DEFAULT_BITS[scheme]


def _mlx_bits(weight: TensorRecord, scales: TensorRecord | None, cq: ConfigQuant | None, base: str) -> int | None:
    """Bits per weight of an MLX weight; None when the shapes allow several answers (see module doc)."""
    if cq is not None and cq.method == "mlx":
        return cq.overrides.get(base, cq.bits or DEFAULT_BITS["mlx"])
    w_cols, s_cols = _cols(weight), _cols(scales)
    if not (w_cols and s_cols) or (32 * w_cols) % s_cols:
        return None
    product = 32 * w_cols // s_cols  # bits * group_size
    if product == DEFAULT_BITS["mlx"] * MLX_DEFAULT_GROUP:
        return DEFAULT_BITS["mlx"]
    fits = [b for b in MLX_BITS for g in MLX_GROUPS if b * g == product]
    return fits[0] if len(fits) == 1 else None


def summary_of(records: Iterable[TensorRecord]) -> dict[str, Any] | None:
    """What ``metadata["quantization"]`` says, for files and live modules alike: the main scheme, the bits
    per weight (one value, or the sorted list), how many tensors are packed and how many are bookkeeping;
    None when there is neither."""
    return _summary((record.role, record.quant) for record in records)


def _summary(pairs: Iterable[tuple[Role, QuantInfo | None]]) -> dict[str, Any] | None:
    """:func:`summary_of` from each tensor's (role, packing)."""
    return _summary_counted((role, quant, 1) for role, quant in pairs)


def _summary_counted(items: Iterable[tuple[Role, QuantInfo | None, int]]) -> dict[str, Any] | None:
    """:func:`_summary` from (role, packing, how many tensors have them): a model repeats a few packings."""
    schemes: dict[str, int] = {}
    bits_seen: set[float] = set()
    aux = 0
    for role, quant, count in items:
        if role is Role.QUANT_AUX:
            aux += count
        elif quant is not None:
            schemes[quant.scheme] = schemes.get(quant.scheme, 0) + count
            if quant.bits is not None:
                bits_seen.add(quant.bits)
    if not schemes and not aux:
        return None
    summary: dict[str, Any] = {
        "scheme": max(schemes, key=lambda s: schemes[s]) if schemes else None,
        "bits": sorted(bits_seen)[0] if len(bits_seen) == 1 else sorted(bits_seen),
        "quantized_tensors": sum(schemes.values()),
        "bookkeeping_tensors": aux,
    }
    if len(schemes) > 1:
        summary["schemes"] = schemes
    return summary


candidates = quant_names.candidates  # whether any name has a suffix of the table: vocabulary, tested before this


def annotate(
    tensors: list[TensorRecord], cq: ConfigQuant | None, read_blobs: Any = None
) -> tuple[list[TensorRecord], dict[str, Any]] | None:
    """Packed weights as logical parameters, bookkeeping as QUANT_AUX; None when nothing is quantized.

    ``read_blobs(names) -> {name: bytes}`` (a reader's ``pending["small_tensors"]``), when given, reads the
    unpacked shapes bitsandbytes and compressed-tensors keep in the data, for exact odd-sized counts.
    """
    found = changes([r.name for r in tensors], tensors.__getitem__, cq, read_blobs)
    if found is None:
        return None
    change, summary = found
    out = list(tensors)
    for index, quant in change.items():
        record = tensors[index]
        out[index] = (record.replace(role=Role.PARAMETER, quant=quant) if quant is not None
                      else record.replace(role=Role.QUANT_AUX))
    return out, summary


def changes(
    names: list[str], row: Any, cq: ConfigQuant | None, read_blobs: Any = None, prior: bool = True,
    columns: tuple[list[str], list[tuple[int, ...] | None]] | None = None, distinct: bool | None = None,
    modules: list[str] | None = None,
) -> tuple[Mapping[int, QuantInfo | None], dict[str, Any]] | None:
    """:func:`annotate` over a table: ``names`` is the names column and ``row(i)`` the record of entry ``i``
    (made only for the candidates' modules). Returns the summary and, by index, what changes: a
    :class:`QuantInfo` for a tensor that becomes a packed parameter, None for one that becomes bookkeeping
    (``Role.QUANT_AUX``, all else kept), as a dict or, from the pass over columns, a :class:`SplitChanges`; or None
    when nothing is quantized.
    ``prior``: some entry may already be packed or bookkeeping (a reader said so), so the summary must look at
    every record; without it the changed ones alone decide it.
    ``columns``: the table's (dtypes, shapes) columns, where there is a table: a module of the commonest kind
    (an FP8 or int8 weight beside its scales, DeepSeek-V3's 45,000) is then decided from them, no record made.
    ``distinct``: whether no name is given twice, where the caller knows (a table's ``distinct`` fact); else
    looked at when needed. ``modules``: each name's module (a table's :meth:`~paramscope.records.Table.modules`),
    where the caller has them: the suffixes are then found by what each name has past its module.

    One pass with C-level suffix tests finds the candidates; only their modules are looked at again.
    """
    candidates = quant_names.ending_with_a_suffix(names, modules)
    if columns is not None and candidates:
        bulk = _bulk_scaled(names, candidates, columns, cq, distinct)
        if bulk is not None:
            final, counted = bulk
            return _finish(final, [], [], bool(final), names, row, cq, prior, counted) if final else None
    marked: dict[str, dict[str, int]] = {}  # module base -> suffix -> index
    simple = _SIMPLE_LEAVES
    for index in candidates:
        name = names[index]
        base, dot, leaf = name.rpartition(".")
        suffix = simple.get(leaf) if dot else None  # the one suffix a dotted leaf can be (the common case)
        if suffix is None:
            suffix = _suffix(name)
            if suffix is None:
                continue
            base = name[: -len(suffix)]
        found = marked.get(base)
        if found is None:
            marked[base] = {suffix: index}
        else:
            found[suffix] = index
    if not marked:
        return None
    # in C; a name given twice keeps its last index, as a loop would
    by_name = dict(zip(names, range(len(names)), strict=True))
    final: dict[int, QuantInfo | None] = {}
    ambiguous: list[str] = []
    packed = False
    kv_only: list[int] = []  # attention k/v/q/output scales: bookkeeping once the model is known quantized
    shared: dict[tuple[str, int, int], QuantInfo] = {}  # one QuantInfo per (scheme, weights, bits): read-only

    def get(name: str) -> TensorRecord | None:
        i = by_name.get(name)
        return row(i) if i is not None else None

    blob_names = [names[i] for found in marked.values() for suffix, i in found.items()
                  if suffix == ".weight_shape" or "quant_state" in suffix]
    blobs: dict[str, bytes] = read_blobs(blob_names) if read_blobs is not None and blob_names else {}

    families_of: dict[tuple[str, ...], set[str]] = {}  # a model repeats a few suffix sets across its modules
    scaled_only: dict[tuple[str, ...], list[str] | None] = {}  # suffix set -> its aux suffixes, if only "scaled"
    one_per_element = _ONE_PER_ELEMENT
    compressed_int8 = cq is not None and cq.method == "compressed-tensors"
    for base, found in marked.items():
        change: dict[int, QuantInfo | None] = {}
        suffixes = tuple(found)
        families = families_of.get(suffixes)
        if families is None:
            families = families_of[suffixes] = {SUFFIXES[s][1] for s in found}
            scaled_only[suffixes] = _scaled_only(found, families)
        weight_index = by_name.get(base + ".weight")
        aux_suffixes = scaled_only[suffixes]
        if aux_suffixes is not None and columns is not None:
            # The last branch below, the only one such a module can reach, decided from the columns: a weight
            # stored one per element (FP8, int8) beside its scales
            if weight_index is None:
                continue
            dtype, shape = columns[0][weight_index], columns[1][weight_index]
            kind = one_per_element.get(dtype)
            if kind is None:
                continue
            final[weight_index] = _scale_quant(shared, kind, dtype, shape, compressed_int8)
            packed = True
            for suffix in aux_suffixes:
                index = found[suffix]
                if index != weight_index:
                    final[index] = None
            continue
        weight = row(weight_index) if weight_index is not None else None
        if families == {"kv"}:
            kv_only.extend(found.values())
            continue
        if ".qweight" in found:
            scheme, bits = _gptq_or_awq(base, get, cq)
            new = _packed(row(found[".qweight"]), scheme, bits)
            if new is not None:
                change[found[".qweight"]] = new
        elif ".weight_packed" in found:
            bits = (cq.bits if cq is not None and cq.method == "compressed-tensors" else None) or 4
            scheme = "compressed-tensors"
            new = _packed(row(found[".weight_packed"]), scheme, bits)
            if new is not None:
                exact = _ct_logical(blobs.get(base + ".weight_shape"), row(found[".weight_packed"]), bits)
                if exact is not None:
                    new = QuantInfo(scheme, exact, bits)
                change[found[".weight_packed"]] = new
        elif "_blocks" in found and found.get("_scales") is not None:
            blocks, scales = row(found["_blocks"]), row(found["_scales"])
            if not (blocks.dtype == scales.dtype == "uint8" and blocks.shape and scales.shape
                    and len(blocks.shape) >= 2 and blocks.shape[:-1] == scales.shape):
                continue  # not the MXFP4 pair: some other model's "_blocks"
            scheme, bits = "mxfp4", 4
            new = _packed(blocks, scheme, bits)
            if new is not None:
                change[found["_blocks"]] = new
        elif "bnb4" in families and weight is not None:
            kind = next((BNB4_TYPES[s.rpartition("__")[2]] for s in found if "quant_state" in s), None)
            declared = cq is not None and cq.method == "bitsandbytes" and cq.bits == 4
            scheme = kind or (cq.variant if declared and cq.variant in BNB4_TYPES.values() else None)  # type: ignore[union-attr]
            scheme = scheme or "bitsandbytes-4bit"
            bits = 4
            # a float container needs evidence: the quant_state blob, or the config's quant_storage
            float_ok = kind is not None or (declared and cq.storage == weight.dtype)  # type: ignore[union-attr]
            new = _packed(weight, scheme, bits, any_word=float_ok)
            if new is not None:
                blob = next((blobs.get(row(i).name) for s, i in found.items() if "quant_state" in s), None)
                word = _word_bits(weight.dtype) or 8
                exact = _bnb_logical(blob, weight.stored_numel, word // 8)
                if exact is not None:
                    new = QuantInfo(scheme, exact, bits)
                change[weight_index] = new
        elif "bnb8" in families and weight is not None and weight.dtype == "int8":
            scheme, bits = "bitsandbytes-int8", 8
            change[weight_index] = QuantInfo(scheme, weight.stored_numel, 8)
        elif (".scales" in found or ".biases" in found) and weight is not None and weight.dtype == "uint32":
            mlx_bits = _mlx_bits(weight, get(base + ".scales"), cq, base)
            scheme = "mlx"
            if mlx_bits is None:  # several (bits, group) fit: count what is stored, and say so
                ambiguous.append(weight.name)
                change[weight_index] = QuantInfo(scheme, weight.stored_numel, None)
            else:
                new = _packed(weight, scheme, mlx_bits)
                if new is not None:
                    change[weight_index] = new
        elif ".weight_scale_2" in found and ".weight_scale" in found and weight is not None and weight.dtype == "uint8":
            scheme, bits = "nvfp4", 4  # ModelOpt NVFP4: two FP4 codes per byte, fp8 block scales, fp32 global scale
            new = _packed(weight, scheme, bits)
            if new is not None:
                change[weight_index] = new
        elif "scaled" in families and weight is not None and weight.dtype in _ONE_PER_ELEMENT:
            scheme, bits = _ONE_PER_ELEMENT[weight.dtype]
            if weight.dtype == "int8" and cq is not None and cq.method == "compressed-tensors":
                scheme = "compressed-tensors"
            change[weight_index] = QuantInfo(scheme, weight.stored_numel, bits)
        else:
            continue  # a suffix alone (a float "scales" of some other model) proves nothing
        if not change:
            continue  # the would-be packed tensor is no packing word: leave the module as read
        for suffix, index in found.items():
            if SUFFIXES[suffix][0] == "aux" and index not in change:
                change[index] = None
        for index, quant in change.items():
            final[index] = quant
            packed = packed or quant is not None
    return _finish(final, kv_only, ambiguous, packed, names, row, cq, prior)


def _finish(final: Mapping[int, QuantInfo | None], kv_only: list[int], ambiguous: list[str], packed: bool,
            names: list[str], row: Any, cq: ConfigQuant | None, prior: bool,
            counted: list[tuple[Role, QuantInfo | None, int]] | None = None,
            ) -> tuple[Mapping[int, QuantInfo | None], dict[str, Any]] | None:
    """:func:`changes`' answer from what its pass found: the attention scales made bookkeeping where the model is
    quantized, and the summary. ``counted``: where the pass counted ``final``'s values itself, (role, packing,
    how many) as :func:`_summary_counted` takes them."""
    if not packed and not (kv_only and cq is not None):
        return None
    if kv_only:  # a quantized model's attention scales (found by the module loop, whose answer is a dict)
        final = final if isinstance(final, dict) else dict(final)
        for index in kv_only:
            final[index] = None
    if prior:
        def after(index: int) -> tuple[Role, QuantInfo | None]:
            record = row(index)
            if index not in final:
                return record.role, record.quant
            quant = final[index]
            return (Role.PARAMETER, quant) if quant is not None else (Role.QUANT_AUX, record.quant)

        summary = _summary(map(after, range(len(names))))
    elif counted is not None and not kv_only:
        summary = _summary_counted(counted)
    else:  # counted by object in C (the shared packings and None), each distinct one looked at once
        from collections import Counter

        values = list(final.values())
        by_id = dict(zip(map(id, values), values, strict=True))
        summary = _summary_counted(
            (Role.PARAMETER, by_id[key], count) if by_id[key] is not None else (Role.QUANT_AUX, None, count)
            for key, count in Counter(map(id, values)).items()
        )
    assert summary is not None  # something was packed, or kv scales became bookkeeping
    if summary["scheme"] is None:
        summary["scheme"] = cq.method  # type: ignore[union-attr]
    summary["from"] = "config.json" if cq is not None else "tensor names"
    if ambiguous:
        summary["ambiguous"] = ambiguous
    return final, summary


def _scale_quant(made: dict[tuple[str, int, float], QuantInfo], kind: tuple[str, float], dtype: str,
                 shape: tuple[int, ...] | None, compressed_int8: bool) -> QuantInfo:
    """The QuantInfo of a one-element-per-value weight (FP8/int8 with a scale) of ``dtype`` and ``shape``:
    one object per (scheme, stored elements, bits), shared through ``made``. compressed-tensors' int8 is
    named for its scheme."""
    scheme, bits = kind
    if dtype == "int8" and compressed_int8:
        scheme = "compressed-tensors"
    stored = 0
    if shape is not None:
        stored = 1
        for dim in shape:
            stored *= dim
    quant = made.get((scheme, stored, bits))
    if quant is None:
        quant = made[scheme, stored, bits] = QuantInfo(scheme, stored, bits)
    return quant


class SplitChanges(Mapping):
    """:func:`changes`' answer (index -> QuantInfo, or None for bookkeeping) kept as the three lists the bulk pass
    makes: the packed indices, their packings in the same order, the bookkeeping indices (no index in two). The
    columns are set from the lists (:meth:`paramscope.records.Table.repacked` asks :meth:`split`); the mapping, a
    dict made on first use, serves whoever looks an index up. Read-only, as the dict it stands for is to be."""

    __slots__ = ("_dict", "aux", "packed", "quants", "stored")

    def __init__(self, packed: list[int], quants: list[QuantInfo], aux: list[int], stored: bool = False) -> None:
        self.packed, self.quants, self.aux = packed, quants, aux
        # every packing's logical elements are its entry's stored elements (a weight stored one per element, FP8 or
        # int8: :func:`_scale_quant`), which the table counts already: repacked leaves the numel column as it is
        self.stored = stored
        self._dict: dict[int, QuantInfo | None] | None = None

    def split(self) -> tuple[list[int], list[QuantInfo], list[int]]:
        return self.packed, self.quants, self.aux

    def _as_dict(self) -> dict[int, QuantInfo | None]:
        if self._dict is None:
            from itertools import repeat

            made: dict[int, QuantInfo | None] = dict(zip(self.packed, self.quants, strict=True))
            made.update(zip(self.aux, repeat(None)))
            self._dict = made
        return self._dict

    def __getitem__(self, index: int) -> QuantInfo | None:
        return self._as_dict()[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._as_dict())

    def __len__(self) -> int:
        return len(self._as_dict())

    def __bool__(self) -> bool:
        return bool(self.packed or self.aux)


def _bulk_scaled(names: list[str], candidates: list[int], columns: tuple[list[str], list[tuple[int, ...] | None]],
                 cq: ConfigQuant | None, distinct: bool | None = None,
                 ) -> tuple[Mapping[int, QuantInfo | None], list[tuple[Role, QuantInfo | None, int]]] | None:
    """:func:`changes`' pass over a table where every candidate is the one suffix of its module and each such
    suffix can reach only the last branch (DeepSeek-V3: ``<module>.weight_scale_inv`` beside an FP8 ``weight``),
    done over whole columns in C: the same changes as the loop (the packed weights first, then their scales), and
    their count by (role, packing) for the summary. None where that does not hold (the loop then decides).
    ``candidates``: the places of the names that end with a suffix of the table, in order
    (:func:`paramscope.quant_names.ending_with_a_suffix`)."""
    from collections import Counter
    from itertools import compress, repeat
    from operator import add, eq, itemgetter, methodcaller, sub

    chosen = list(map(names.__getitem__, candidates))
    leaf = chosen[0].rpartition(".")[2]
    # One last part (the common file)? Each candidate ends with a suffix of the table: where all end with one
    # character that ends one suffix alone (DeepSeek-V3's "v", of ".weight_scale_inv"), all end with that suffix,
    # found by their last characters (one-character strings are shared: nothing made), no suffix tested again
    single = quant_names.BY_LAST.get(chosen[0][-1:]) == ("." + leaf,) and len(set(map(itemgetter(-1), chosen))) == 1
    single = single or all(map(str.endswith, chosen, repeat("." + leaf)))
    if single:
        leaves = {leaf}
    else:
        parts = list(map(methodcaller("rpartition", "."), chosen))
        if "" in set(map(itemgetter(1), parts)):  # a name with no dot
            return None
        leaves = set(map(itemgetter(2), parts))
        del parts
    simple = _SIMPLE_LEAVES
    if not leaves <= simple.keys():
        return None
    if any(_scaled_only({simple[leaf]: 0}, {SUFFIXES[simple[leaf]][1]}) is None for leaf in leaves):
        return None
    if distinct is None:  # (a table knows: Table.fact)
        distinct = len(set(names)) == len(names)
    before = list(map(sub, candidates, repeat(1)))
    # Each module's weight, found where a sorted header puts it, just before its scale, when no name is given
    # twice (a dict of every name gives a name's last place): with one last part "weight" + tail (DeepSeek-V3's
    # "weight_scale_inv"), a scale's name is its weight's name and the tail, compared in C with no base cut out.
    # One suffix among the candidates and no name given twice: no base can come twice (a base and the suffix make
    # the name), so no module holds two of them.
    weights: list[int | None] | None = None
    if single and distinct and leaf.startswith("weight") and candidates[0] > 0:
        tail = leaf[len("weight"):]
        if all(map(eq, chosen, map(add, map(names.__getitem__, before), repeat(tail)))):
            weights = before
    if weights is None:
        if single:
            bases = list(map(itemgetter(slice(None, -len(leaf) - 1)), chosen))
        else:
            bases = list(map(itemgetter(0), map(methodcaller("rpartition", "."), chosen)))
        # A module with two suffixes (a weight scale and an input scale) is the loop's
        if not (distinct and single) and len(set(bases)) != len(bases):
            return None
        wanted = list(map(add, bases, repeat(".weight")))
        if candidates[0] > 0 and distinct and all(map(eq, map(names.__getitem__, before), wanted)):
            weights = before
        else:
            by_name = dict(zip(names, range(len(names)), strict=True))
            weights = list(map(by_name.get, wanted))
        del wanted, bases
    del chosen
    dtypes, shapes = columns
    kinds = _ONE_PER_ELEMENT
    keep: list[bool] | None  # which scales' weights are kept; None: every one
    if weights is not before and None in weights:  # (a scale's neighbour is always there)
        keep = [w is not None and dtypes[w] in kinds for w in weights]
        kept = list(compress(weights, keep))
        kept_dtypes = list(map(dtypes.__getitem__, kept))
    else:  # every scale's weight found: kept where stored one per element
        kept_dtypes = list(map(dtypes.__getitem__, weights))
        if kept_dtypes.count(kept_dtypes[0]) == len(kept_dtypes):  # one dtype (the common file): all or none
            keep, kept = None, weights if kept_dtypes[0] in kinds else []
        else:
            keep = list(map(kinds.__contains__, kept_dtypes))
            kept = list(compress(weights, keep))
            kept_dtypes = list(compress(kept_dtypes, keep))
    if not kept:
        return {}, []
    compressed_int8 = cq is not None and cq.method == "compressed-tensors"
    made: dict[tuple[str, int, float], QuantInfo] = {}
    kept_shapes = list(map(shapes.__getitem__, kept))
    # A weight's packing follows from its dtype and shape, which a model repeats (a few of each): counted in C first
    # (the distinct keys in first-seen order), then one QuantInfo per distinct key, shared through made
    keys: list[Any]
    if kept_dtypes.count(kept_dtypes[0]) == len(kept_dtypes):  # one dtype (the common file): keyed by shape alone
        dtype = kept_dtypes[0]
        keys = kept_shapes
        counts = Counter(keys)
        of_key = {shape: _scale_quant(made, kinds[dtype], dtype, shape, compressed_int8) for shape in counts}
    else:
        keys = list(zip(kept_dtypes, kept_shapes, strict=True))
        counts = Counter(keys)
        of_key = {(dtype, shape): _scale_quant(made, kinds[dtype], dtype, shape, compressed_int8)
                  for dtype, shape in counts}
    del kept_dtypes
    # a weight's name ends with ".weight", no suffix of the table: the packed and the bookkeeping never meet
    aux = candidates if keep is None else list(compress(candidates, keep))
    final = SplitChanges(kept, list(map(of_key.__getitem__, keys)), aux, stored=True)
    counted: list[tuple[Role, QuantInfo | None, int]] = [
        (Role.PARAMETER, of_key[key], count) for key, count in counts.items()]
    counted.append((Role.QUANT_AUX, None, len(kept)))
    return final, counted


def _scaled_only(found: dict[str, int], families: set[str]) -> list[str] | None:
    """The aux suffixes of a module whose suffixes can reach only the last branch of :func:`changes` (a weight
    stored one per element beside its scales: no packed word, no bitsandbytes, MLX or NVFP4 mark), else None."""
    if "scaled" not in families or families & {"bnb4", "bnb8"}:
        return None
    if any(s in found for s in (".qweight", ".weight_packed", ".scales", ".biases")) or (
            "_blocks" in found and "_scales" in found) or (".weight_scale_2" in found and ".weight_scale" in found):
        return None
    return [s for s in found if SUFFIXES[s][0] == "aux"]


_SIMPLE_LEAVES = {leaf: group[0] for leaf, group in _BY_LEAF.items() if group == ["." + leaf]}
"""Last dotted parts that name exactly one suffix of the table, that part itself (``weight_scale_inv``): a name
ending so has that suffix, no other looked at (:func:`_suffix` otherwise)."""

# Quantized dtypes stored one weight per element, recognised by a scale beside them.
_ONE_PER_ELEMENT: dict[str, tuple[str, int]] = {
    name: ("fp8", 8) for name in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")
}
_ONE_PER_ELEMENT["int8"] = ("int8", 8)
