"""Inference memory beyond the weights: the K/V cache and the recurrent state, from an architecture card.

For a context of ``L`` tokens and ``B`` sequences, each layer of the card
(:class:`paramscope.architecture.Architecture`) keeps, by its kind:

``full``       ``B * L * kv_heads * (head_dim + v_head_dim)`` elements (K and V, every token).
``sliding``    the same over ``min(L, W)`` tokens, ``W`` the window. transformers' ``DynamicCache``
               keeps ``W - 1`` (``DynamicSlidingWindowLayer.update`` slices ``[-W + 1:]``): the
               ``transformers`` runtime uses ``min(L, W - 1)``.
``mla``        multi-head latent attention (DeepSeek-V2/V3). vLLM, llama.cpp and transformers 5
               cache the latent: ``kv_lora_rank + qk_rope_head_dim`` elements per token and layer,
               no separate V (vLLM ``MLAAttention``: one head of ``kv_lora_rank + qk_rope_head_dim``;
               llama.cpp ``deepseek2``: ``n_embd_head_k = kv_lora_rank + n_rot``, one K/V head, V a
               view of K; transformers 5 ``DeepseekV3Attention``: ``cache.update(kv_nope, k_rot)``,
               "performed while the latent KV is still compressed"). transformers 4
               (``transformers-4``) cached the decompressed per-head K
               (``heads * (qk_nope + qk_rope)``) and V (``heads * v_head_dim``).
``recurrent``  a fixed state per sequence (Mamba conv + SSM, linear attention): ``B * state``
               elements whatever ``L`` is, in the state dtype (llama.cpp keeps it in float32;
               transformers and vLLM in the model's dtype, taken as the K/V dtype).
``none``       nothing.

Elements become bytes through :mod:`paramscope.dtypes` (block formats: llama.cpp's ``q8_0`` cache
stores 32 elements in 34 bytes, ``q4_0`` in 18; each token's row of a layer is rounded up to
whole blocks, as ``ggml_row_size`` does).

Not counted: activations and temporary buffers, the CUDA context, allocator fragmentation, vLLM's
block rounding (``block_size`` tokens per page) and llama.cpp's padding of the cache to 256 cells.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from paramscope import dtypes
from paramscope.architecture import Architecture

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

RUNTIMES = {
    "vllm": "vLLM: MLA caches the latent (kv_lora_rank + qk_rope_head_dim); sliding layers keep W tokens",
    "llama.cpp": "llama.cpp: MLA caches the latent (kv_lora_rank + n_rot); sliding layers keep W tokens; "
                 "recurrent state in float32",
    "transformers": "transformers 5 DynamicCache: MLA caches the latent; sliding layers keep W - 1 tokens",
    "transformers-4": "transformers 4 DynamicCache: MLA caches full per-head K and V; sliding layers keep W - 1 tokens",
}
"""Whose cache layout is counted. The default is :data:`DEFAULT_RUNTIME`."""
DEFAULT_RUNTIME = "vllm"

KV_DTYPES = {
    "float32": "float32", "fp32": "float32",
    "float16": "float16", "fp16": "float16", "f16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float8_e4m3fn": "float8_e4m3fn", "fp8": "float8_e4m3fn", "fp8_e4m3": "float8_e4m3fn",
    "float8_e5m2": "float8_e5m2", "fp8_e5m2": "float8_e5m2",
    "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1", "q5_0": "Q5_0", "q5_1": "Q5_1", "iq4_nl": "IQ4_NL",
}
"""``--kv-dtype`` names (torch's, vLLM's ``fp8``, llama.cpp's ``--cache-type-k`` ones) -> :mod:`paramscope.dtypes`."""

STATE_DTYPE = {"llama.cpp": "float32"}
"""The recurrent state's dtype where the runtime fixes it (llama.cpp ``type_r``/``type_s`` = F32);
elsewhere the K/V dtype."""

MAX_SEARCH = 1 << 40
"""The largest context or batch :func:`solve` tries (any believable one is far smaller)."""


def kv_dtype(name: str) -> str:
    """The :mod:`paramscope.dtypes` name of a ``--kv-dtype`` spelling; ValueError for an unknown one."""
    try:
        return KV_DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown KV cache dtype {name!r}; choose from {', '.join(KV_DTYPES)}") from None


@dataclass(frozen=True)
class Line:
    """One kind of layer's share: ``layers`` layers, each caching ``tokens`` tokens of ``per_token``
    elements (K and V together) per sequence, or a fixed ``per_sequence`` state."""

    kind: str
    layers: int
    tokens: int
    per_token: int
    per_sequence: int
    dtype: str
    bytes: int
    formula: str


@dataclass(frozen=True)
class KVEstimate:
    """The inference memory of one setting; every figure an exact integer of bytes."""

    runtime: str
    context: int
    batch: int
    kv_dtype: str
    state_dtype: str
    lines: list[Line]
    kv_bytes: int
    state_bytes: int
    weights_bytes: int | None
    total: int | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _width(card: Architecture, kind: str, kv: int, runtime: str) -> tuple[int, str] | None:
    """Elements one token adds to one layer of ``kind`` with ``kv`` K/V heads, and how, or None if unknown."""
    if kind in ("full", "sliding"):
        if card.head_dim is None or card.v_dim is None:
            return None
        return kv * (card.head_dim + card.v_dim), f"{kv} kv_heads x ({card.head_dim} + {card.v_dim})"
    if kind == "mla":
        rank, rope, nope = card.kv_lora_rank, card.qk_rope_head_dim, card.qk_nope_head_dim
        if runtime == "transformers-4":
            heads, v = card.heads, card.v_head_dim
            if heads is None or rope is None or nope is None or v is None:
                return None
            return heads * (nope + rope + v), f"{heads} heads x ({nope} + {rope} + {v}) (K and V per head)"
        if rank is None or rope is None:
            return None
        return rank + rope, f"kv_lora_rank {rank} + qk_rope_head_dim {rope} (latent)"
    return 0, ""


def _layer_bytes(per: int, tokens: int, dtype: str) -> int:
    """One layer's bytes for one sequence: each token's row rounded up to whole blocks."""
    return dtypes.get(dtype).nbytes(per) * tokens if per else 0


def estimate(card: Architecture, *, context: int, batch: int = 1, kv_dtype_name: str = "float16",
             runtime: str = DEFAULT_RUNTIME, weights_bytes: int | None = None) -> KVEstimate:
    """The K/V cache and recurrent state for ``batch`` sequences of ``context`` tokens (module docstring).

    ValueError for an unknown runtime or dtype, or a card whose layers cannot be priced (named)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if context < 0 or batch < 0:
        raise ValueError("context and batch must be 0 or more")
    dtype = kv_dtype(kv_dtype_name)
    state_dtype = STATE_DTYPE.get(runtime, dtype)
    if dtypes.get(state_dtype).block_elements != 1:
        state_dtype = "float32"  # no runtime keeps a recurrent state block-quantized
    missing = _missing(card)
    if missing:
        raise ValueError(f"the architecture does not state {', '.join(missing)}: the KV cache cannot be estimated")
    kinds, kv_heads = card.layer_kinds, card.kv_heads
    assert kinds is not None and kv_heads is not None
    states = card.recurrent_state_elements or (0,) * len(kinds)
    window = card.sliding_window
    if not len(kinds) == len(kv_heads) == len(states):
        raise ValueError("the architecture's per-layer fields disagree on the number of layers")
    # layers alike are priced once: a card may list 65,536 layers, and --fit prices it ~80 times
    groups: dict[tuple[str, int, int], int] = {}
    widths: dict[tuple[str, int], tuple[int, str]] = {}  # (kind, K/V heads) -> elements per token, and how
    for (kind, kv, state), count in Counter(zip(kinds, kv_heads, states, strict=True)).items():
        width = _width(card, kind, kv, runtime)
        if width is None:
            raise ValueError(f"the architecture does not state what a {kind} layer caches per token")
        widths[kind, kv] = width
        key = (kind, kv, state if kind == "recurrent" else width[0])
        groups[key] = groups.get(key, 0) + count
    lines: list[Line] = []
    notes: list[str] = []
    for (kind, kv, per), count in groups.items():
        if kind == "recurrent":
            size = count * batch * dtypes.get(state_dtype).nbytes(per)
            formula = f"{count} layers x batch {batch} x {per} state elements ({state_dtype}), any context"
            lines.append(Line(kind, count, 0, 0, per, state_dtype, size, formula))
            continue
        if kind == "none" or per == 0:
            lines.append(Line(kind, count, 0, 0, 0, dtype, 0, f"{count} layers keep nothing"))
            continue
        tokens, span = context, f"context {context}"
        if kind == "sliding":
            assert window is not None
            short = runtime.startswith("transformers")  # DynamicSlidingWindowLayer keeps W - 1
            keep = window - 1 if short else window
            tokens, span = min(context, keep), f"min({context}, {'W - 1' if short else 'W'} = {keep})"
        width = widths[kind, kv]
        size = count * batch * _layer_bytes(per, tokens, dtype)
        formula = f"{count} layers x batch {batch} x {span} tokens x {width[1]} = {per} elements ({dtype})"
        lines.append(Line(kind, count, tokens, per, 0, dtype, size, formula))
    kv_bytes = sum(line.bytes for line in lines if line.kind != "recurrent")
    state_bytes = sum(line.bytes for line in lines if line.kind == "recurrent")
    if card.max_context is not None and context > card.max_context:
        notes.append(f"the context {context} is longer than the model's max_context {card.max_context}")
    if "sliding" in kinds and runtime == "llama.cpp":
        notes.append("llama.cpp keeps a sliding layer's window plus one micro-batch (n_ubatch), padded to 256 cells")
    total = None if weights_bytes is None else weights_bytes + kv_bytes + state_bytes
    return KVEstimate(runtime, context, batch, dtype, state_dtype, lines, kv_bytes, state_bytes, weights_bytes,
                      total, notes)


def _missing(card: Architecture) -> list[str]:
    need = ["layers", "layer_kinds", "kv_heads"]
    kinds = card.layer_kinds or ()
    if "full" in kinds or "sliding" in kinds:
        need.append("head_dim")
    if "sliding" in kinds:
        need.append("sliding_window")
    if "recurrent" in kinds:
        need.append("recurrent_state_elements")
    return [name for name in need if getattr(card, name) is None]


def cache_bytes(card: Architecture, context: int, batch: int, kv_dtype_name: str, runtime: str) -> int:
    """K/V cache plus recurrent state, in bytes (:func:`estimate`'s ``kv_bytes + state_bytes``)."""
    e = estimate(card, context=context, batch=batch, kv_dtype_name=kv_dtype_name, runtime=runtime)
    return e.kv_bytes + e.state_bytes


@dataclass(frozen=True)
class Fit:
    """What fits in ``budget`` bytes after the weights: the longest context for the batch given, and the
    largest batch for the context given (None where not even 1 fits; ``unbounded`` where the cache stops
    growing: every layer sliding or recurrent)."""

    budget: int
    weights_bytes: int
    context: int
    batch: int
    free: int
    max_context: int | None
    max_context_unbounded: bool
    max_batch: int | None
    model_max_context: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _largest(fits: Any, low: int, high: int) -> int:
    """The largest n in [low, high] with fits(n), given fits(low) and that fits is monotone."""
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def solve(card: Architecture, *, budget: int, weights_bytes: int, context: int, batch: int,
          kv_dtype_name: str = "float16", runtime: str = DEFAULT_RUNTIME) -> Fit:
    """The largest context (for ``batch``) and batch (for ``context``) whose cache fits ``budget - weights``.

    The cache grows monotonically with both, so each is a binary search over exact byte counts."""
    free = budget - weights_bytes

    def size(length: int, sequences: int) -> int:
        return cache_bytes(card, length, sequences, kv_dtype_name, runtime)

    max_context: int | None = None
    unbounded = False
    if free >= 0 and size(1, batch) <= free:
        if size(MAX_SEARCH, batch) <= free:
            unbounded, max_context = True, None
        else:
            max_context = _largest(lambda n: size(n, batch) <= free, 1, MAX_SEARCH)
    max_batch: int | None = None
    per = size(context, 1) if free >= 0 else None  # one sequence's cache at the context given
    if per is not None and per <= free:
        max_batch = MAX_SEARCH if per == 0 else min(MAX_SEARCH, free // per)
    return Fit(budget, weights_bytes, context, batch, free, max_context, unbounded, max_batch, card.max_context)


SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
              "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
"""``--fit`` units: SI (``GB`` = 10^9) and binary (``GiB``, and the bare ``G`` as GPU tools use it, = 2^30)."""


def parse_size(value: str) -> int:
    """``24GiB``, ``24GB``, ``80G``, ``1.5TiB``, ``1000000`` -> bytes; ValueError otherwise."""
    import re
    from fractions import Fraction

    text = value.strip().replace(" ", "").lower()
    number = text.rstrip("kmgtib")
    unit = text[len(number):]
    # plain decimals only: an exponent (1e99999999) would make Python build a huge integer first
    if unit not in SIZE_UNITS or not re.fullmatch(r"[0-9]{1,20}(\.[0-9]{1,20})?", number):
        raise ValueError(f"not a size: {value!r} (say e.g. 24GiB, 24GB or 80G)")
    size = int(Fraction(number) * SIZE_UNITS[unit])
    if size <= 0 or size > 1 << 60:
        raise ValueError(f"size out of range: {value!r}")
    return size


@dataclass(frozen=True)
class Inference:
    """What the inference options asked for, for the renderers: the card (shown when ``show_card``), the
    cache at one setting, the fit, and the weights counted (as stored, or cast to ``weights_as``; buffers
    included)."""

    card: Architecture | None
    kv: KVEstimate | None
    fit: Fit | None
    weights_bytes: int | None
    weights_as: str | None
    show_card: bool

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"weights_bytes": self.weights_bytes, "weights_as": self.weights_as or "stored"}
        if self.kv is not None:
            doc["kv_cache"] = self.kv.to_dict()
        if self.fit is not None:
            doc["fit"] = self.fit.to_dict()
        return doc
