"""Memory a model's *model states* take, for inference and for training, from the shapes of a Report.

What is counted, and how (every figure is an exact integer number of bytes):

Inference
    ``weights (stored)`` is ``report.parameter_bytes``: each tensor in the dtype it is actually stored
    in (tie groups once). ``buffers`` is ``report.buffer_bytes``, non-persistent buffers (rotary
    ``inv_freq``) included: they sit in device memory even though no checkpoint holds them.
    :func:`weights_as` gives the parameter bytes as if every parameter were cast to another format
    (:data:`WEIGHT_FORMATS`). Buffers are never cast.

Training (per parameter, ``Ψ`` = trainable parameters)
    * precision (:data:`PRECISIONS`): ``fp32`` keeps 4-byte weights and 4-byte gradients;
      ``mixed-bf16`` / ``mixed-fp16`` keep 2-byte weights, 2-byte gradients and a 4-byte fp32
      master copy of every trainable weight (the optimizer steps the master copy).
    * optimizer state (:data:`OPTIMIZERS`): SGD 0 B; SGD with momentum 4 B; Adam/AdamW 8 B (fp32
      ``m`` and ``v``); 8-bit Adam (bitsandbytes ``Adam8bit``) 2 B plus two fp32 absmax values per
      block of 256 elements, and plain fp32 Adam state (8 B) for tensors under 4096 elements
      (bitsandbytes' ``min_8bit_size``); Adafactor (no momentum, as in its default ``beta1=None``) a
      factored second moment: for a weight ``[..., n, m]`` the row statistics (``prod(shape[:-1])``
      values) and column statistics (``prod(shape[:-2]) * m``), ``n + m`` fp32 values for a 2-D
      ``[n, m]``; a 1-D or 0-D tensor keeps a full fp32 second moment; plus one fp32 ``RMS`` scalar
      per tensor (as ``transformers.optimization.Adafactor`` allocates). Computed tensor by tensor
      from the real shapes in ``report.unique``. Step counters are left out.
    * gradients, master copy and optimizer state exist for **trainable** parameters only. Frozen
      parameters cost their weight bytes only (at the precision's weight width, or ``frozen_as``:
      ``"stored"`` or a :data:`WEIGHT_FORMATS` key such as ``"nf4"`` for a QLoRA base). Where the
      source cannot say what is trainable (a checkpoint file), every parameter is taken as trainable
      and the estimate's notes say so.
    * buffers are counted at their stored bytes.

Sharding (per-GPU bytes over ``gpus`` data-parallel ranks), the model-state formulas of ZeRO
(Rajbhandari et al. 2020, table 1; ``K`` = optimizer state + master bytes per parameter, 12 for
mixed-precision Adam)::

    none (DDP)            (2 + 2 + K) Ψ
    zero1  (P_os)         2Ψ + 2Ψ + KΨ/N
    zero2  (P_os+g)       2Ψ + (2 + K)Ψ/N
    zero3 / fsdp (P_os+g+p)  (2 + 2 + K)Ψ/N

A partitioned component takes ``ceil(bytes / N)`` per GPU; buffers are never partitioned; frozen
weights are partitioned with the weights in stage 3 / FSDP full shard.

Not counted here: activations (:mod:`paramscope.activations`, from the architecture card, with ``--seq``),
temporary buffers, the CUDA context, allocator fragmentation and communication buckets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from paramscope.records import Role, TensorRecord
from paramscope.report import Report

# ---- formats weights can be cast to -------------------------------------------------------------


@dataclass(frozen=True)
class WeightFormat:
    """How ``n`` weights of one tensor are stored: ``block`` weights take ``block_bytes`` bytes.

    ``scale_block`` / ``scale_bytes``: a second level of per-block scales (bitsandbytes double
    quantization quantizes the fp32 absmax of every 64-weight block to 8 bits, with one fp32 scale per
    256 such blocks). ``matrices_only``: block-quantized formats quantize weights of two or more
    dimensions; 1-D and 0-D parameters (norms, biases) stay at 16-bit (2 bytes), as the quantizers
    leave them in the compute dtype.
    """

    name: str
    description: str
    block: int
    block_bytes: int
    scale_block: int = 0
    scale_bytes: int = 0
    matrices_only: bool = False

    def tensor_bytes(self, record: TensorRecord) -> int:
        n = record.numel
        if self.matrices_only and (record.shape is None or len(record.shape) < 2):
            return 2 * n
        blocks = -(-n // self.block)
        size = blocks * self.block_bytes
        if self.scale_block:
            size += -(-blocks // self.scale_block) * self.scale_bytes
        return size

    @property
    def bits(self) -> float:
        """Bits per weight of a large matrix (block overhead included)."""
        bits = self.block_bytes * 8 / self.block
        if self.scale_block:
            bits += self.scale_bytes * 8 / (self.block * self.scale_block)
        return bits


WEIGHT_FORMATS: dict[str, WeightFormat] = {
    f.name: f
    for f in (
        WeightFormat("fp32", "float32, 4 bytes", 1, 4),
        WeightFormat("bf16", "bfloat16, 2 bytes", 1, 2),
        WeightFormat("fp16", "float16, 2 bytes", 1, 2),
        WeightFormat("fp8", "float8 (e4m3/e5m2), 1 byte, per-tensor scale left out", 1, 1),
        WeightFormat("q8_0", "GGML Q8_0: blocks of 32 int8 + one fp16 scale = 34 bytes (8.5 bits)", 32, 34,
                     matrices_only=True),
        WeightFormat("int8-rowwise", "bitsandbytes LLM.int8: int8 weights + one fp32 scale per output row", 1, 1,
                     matrices_only=True),
        WeightFormat("q4_0", "GGML Q4_0: blocks of 32 4-bit + one fp16 scale = 18 bytes (4.5 bits)", 32, 18,
                     matrices_only=True),
        WeightFormat("nf4", "bitsandbytes NF4: blocks of 64 4-bit + one fp32 absmax = 36 bytes (4.5 bits)", 64, 36,
                     matrices_only=True),
        WeightFormat("nf4-dq", "bitsandbytes NF4 double-quant: absmax as 8-bit, one fp32 per 256 blocks "
                     "(~4.127 bits)", 64, 33, scale_block=256, scale_bytes=4, matrices_only=True),
    )
}
"""Every format :func:`weights_as` knows. Per-tensor constants (quantization maps, offsets) are left out."""

ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "int8": "q8_0", "int4": "q4_0"}
"""``int8`` means GGML Q8_0 and ``int4`` GGML Q4_0; name ``int8-rowwise``, ``nf4`` or ``nf4-dq`` for bitsandbytes."""

INFERENCE_FORMATS = ("fp32", "bf16", "fp16", "fp8", "int8", "int4", "nf4", "nf4-dq")
"""The casts an estimate lists, in this order."""


def _format(name: str) -> WeightFormat:
    key = ALIASES.get(name, name)
    try:
        return WEIGHT_FORMATS[key]
    except KeyError:
        choices = ", ".join([*WEIGHT_FORMATS, *ALIASES])
        raise ValueError(f"unknown weight format {name!r}; choose from {choices}") from None


def _int8_rowwise(record: TensorRecord) -> int:
    """LLM.int8: one int8 per weight and one fp32 scale per output row (the first dimension)."""
    n = record.numel
    if record.shape is None or len(record.shape) < 2:
        return 2 * n
    return n + 4 * record.shape[0]


def _parameters(report: Report) -> list[TensorRecord]:
    return [r for r in report.unique if r.role is Role.PARAMETER]


def _bytes_as(records: list[TensorRecord], name: str) -> int:
    fmt = _format(name)
    if fmt.name == "int8-rowwise":
        return sum(_int8_rowwise(r) for r in records)
    return sum(fmt.tensor_bytes(r) for r in records)


def weights_as(report: Report, dtype: str) -> int:
    """Bytes the parameters (each tie group once) would take cast to ``dtype``.

    ``dtype`` is a key of :data:`WEIGHT_FORMATS` (``fp32 bf16 fp16 fp8 q8_0 int8-rowwise q4_0 nf4
    nf4-dq``) or an alias (``int8`` = GGML Q8_0, ``int4`` = GGML Q4_0, ``float32``...). Block formats
    round each tensor up to whole blocks and keep 1-D parameters at 2 bytes. Buffers are not included.
    """
    return _bytes_as(_parameters(report), dtype)


# ---- training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    weight: int
    grad: int
    master: int
    description: str


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision(4, 4, 0, "fp32 weights and gradients (4 + 4 bytes), no master copy"),
    "mixed-bf16": Precision(2, 2, 4, "bf16 weights and gradients (2 + 2 bytes) + fp32 master copy (4 bytes)"),
    "mixed-fp16": Precision(2, 2, 4, "fp16 weights and gradients (2 + 2 bytes) + fp32 master copy (4 bytes)"),
}

BNB_BLOCK = 256
"""bitsandbytes 8-bit optimizers quantize their state block-wise, one fp32 absmax per 256 elements per state."""
BNB_MIN_8BIT_SIZE = 4096
"""bitsandbytes keeps 32-bit state for tensors with fewer elements than this (``min_8bit_size``)."""


def _sgd(record: TensorRecord) -> int:
    return 0


def _momentum(record: TensorRecord) -> int:
    return 4 * record.numel


def _adam(record: TensorRecord) -> int:
    return 8 * record.numel


def _adam8bit(record: TensorRecord) -> int:
    n = record.numel
    if n < BNB_MIN_8BIT_SIZE:
        return 8 * n
    return 2 * n + 2 * 4 * -(-n // BNB_BLOCK)


def _adafactor(record: TensorRecord) -> int:
    """Second-moment statistics plus the one fp32 ``RMS`` scalar transformers' Adafactor keeps per tensor."""
    shape = record.shape or ()
    if len(shape) < 2:
        return 4 * record.numel + 4
    return 4 * (math.prod(shape[:-1]) + math.prod(shape[:-2]) * shape[-1]) + 4


@dataclass(frozen=True)
class Optimizer:
    state: Any  # (TensorRecord) -> bytes of optimizer state for that tensor
    description: str


OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer(_sgd, "SGD: no state"),
    "sgd-momentum": Optimizer(_momentum, "SGD with momentum: one fp32 buffer (4 bytes/param)"),
    "adam": Optimizer(_adam, "Adam: fp32 m and v (8 bytes/param)"),
    "adamw": Optimizer(_adam, "AdamW: fp32 m and v (8 bytes/param)"),
    "adam-8bit": Optimizer(
        _adam8bit,
        "8-bit Adam (bitsandbytes): int8 m and v (2 bytes/param) + 2 fp32 absmax per 256-element block; "
        "tensors under 4096 elements keep fp32 state",
    ),
    "adafactor": Optimizer(
        _adafactor,
        "Adafactor (beta1=None): factored fp32 second moment, rows + columns of each matrix, full for 1-D, "
        "+ one fp32 RMS scalar per tensor",
    ),
}

SHARDS = ("none", "zero1", "zero2", "zero3", "fsdp")
"""``none``: plain data parallel, every GPU holds everything. ``fsdp`` = FSDP FULL_SHARD = ZeRO stage 3."""

_PARTITIONED = {
    "none": frozenset(),
    "zero1": frozenset({"master", "optimizer_state"}),
    "zero2": frozenset({"master", "optimizer_state", "gradients"}),
    "zero3": frozenset({"master", "optimizer_state", "gradients", "weights"}),
    "fsdp": frozenset({"master", "optimizer_state", "gradients", "weights"}),
}

COMPONENTS = ("weights", "gradients", "master", "optimizer_state", "buffers")

ACTIVATIONS_NOTE = (
    "model states only: activations depend on sequence length, micro-batch and recomputation "
    "(--seq S --micro-batch b adds them; see paramscope.activations)"
)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of model states for inference and training. Every field is computed by :func:`estimate`.

    ``training`` and ``per_gpu`` map each of :data:`COMPONENTS` to bytes (whole model / one GPU);
    ``inference_as`` maps each of :data:`INFERENCE_FORMATS` to parameter bytes as if cast.
    """

    source: str
    format: str
    optimizer: str
    precision: str
    shard: str
    gpus: int
    parameters: int
    trainable: int
    frozen: int
    trainable_assumed: bool
    # inference
    weights_stored: int | None
    buffers: int | None
    inference_stored: int | None
    inference_as: dict[str, int]
    # training
    weights_trainable: int
    weights_frozen: int
    training: dict[str, int]
    training_total: int
    per_gpu: dict[str, int]
    per_gpu_total: int
    formats: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Every field, as plain JSON-ready values."""
        return asdict(self)


def estimate(
    report: Report,
    *,
    optimizer: str = "adamw",
    precision: str = "mixed-bf16",
    shard: str = "none",
    gpus: int = 1,
    frozen_as: str = "precision",
) -> MemoryEstimate:
    """Memory of ``report``'s model states; the rules are in this module's docstring.

    ``optimizer`` one of :data:`OPTIMIZERS`, ``precision`` one of :data:`PRECISIONS`, ``shard`` one
    of :data:`SHARDS` over ``gpus`` ranks. ``frozen_as``: width of frozen weights during training,
    ``"precision"`` (default), ``"stored"`` or a :func:`weights_as` format (``"nf4"`` for QLoRA).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if shard not in SHARDS:
        raise ValueError(f"unknown sharding {shard!r}; choose from {', '.join(SHARDS)}")
    if not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be a whole number of 1 or more, got {gpus!r}")
    prec = PRECISIONS[precision]
    opt = OPTIMIZERS[optimizer]

    params = _parameters(report)
    assumed = any(r.trainable is None for r in params)
    trainable = [r for r in params if r.trainable is not False] if assumed else [r for r in params if r.trainable]
    frozen = [] if assumed else [r for r in params if r.trainable is False]
    n_trainable = sum(r.numel for r in trainable)
    n_frozen = sum(r.numel for r in frozen)

    notes: list[str] = []
    if assumed:
        notes.append(
            "the source does not say which parameters are trainable: every parameter is taken as trainable"
        )
    if report.parameter_bytes is None or report.buffer_bytes is None:
        notes.append("some tensors have a dtype paramscope does not know: stored sizes are unknown")

    if frozen_as == "precision":
        weights_frozen = prec.weight * n_frozen
    elif frozen_as == "stored":
        weights_frozen = sum(r.nbytes or 0 for r in frozen)
    else:
        weights_frozen = _bytes_as(frozen, frozen_as)
    buffers = report.buffer_bytes
    training = {
        "weights": prec.weight * n_trainable + weights_frozen,
        "gradients": prec.grad * n_trainable,
        "master": prec.master * n_trainable,
        "optimizer_state": sum(opt.state(r) for r in trainable),
        "buffers": buffers or 0,
    }
    split = _PARTITIONED[shard] if gpus > 1 else frozenset()
    per_gpu = {k: (-(-v // gpus) if k in split else v) for k, v in training.items()}
    if shard != "none" and gpus == 1:
        notes.append(f"{shard} over 1 GPU partitions nothing")
    if shard == "none" and gpus > 1:
        notes.append(f"no sharding: each of the {gpus} GPUs holds every model state (plain data parallel)")
    notes.append(ACTIVATIONS_NOTE)

    stored = report.parameter_bytes
    formats = {
        "precision": prec.description,
        "optimizer": opt.description,
        "frozen weights": {"precision": f"{prec.weight} bytes each (the precision's weight width)",
                           "stored": "as stored"}.get(frozen_as, f"as {frozen_as}"),
    }
    casts = [name for name in INFERENCE_FORMATS if name not in ("fp32", "bf16", "fp16")]
    formats.update({name: _format(name).description for name in casts})
    formats["block formats"] = "each tensor rounded up to whole blocks; 1-D parameters kept at 2 bytes"
    return MemoryEstimate(
        source=report.source,
        format=report.format,
        optimizer=optimizer,
        precision=precision,
        shard=shard,
        gpus=gpus,
        parameters=report.total,
        trainable=n_trainable,
        frozen=n_frozen,
        trainable_assumed=assumed,
        weights_stored=stored,
        buffers=buffers,
        inference_stored=None if stored is None or buffers is None else stored + buffers,
        inference_as={name: _bytes_as(params, name) for name in INFERENCE_FORMATS},
        weights_trainable=prec.weight * n_trainable,
        weights_frozen=weights_frozen,
        training=training,
        training_total=sum(training.values()),
        per_gpu=per_gpu,
        per_gpu_total=sum(per_gpu.values()),
        formats=formats,
        notes=notes,
    )
