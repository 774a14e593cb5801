"""The architecture card: what a model's shape is, as far as its source says, extracted once.

Every cost estimate (KV cache, activations, FLOPs: :mod:`paramscope.kv_cache`,
:mod:`paramscope.activations`, :mod:`paramscope.flops`) reads the card, never a config or a file
itself. A field the source does not state is ``None`` and named in :attr:`Architecture.unknown`;
it is never guessed silently.

Per-layer fields are tuples with one entry per decoder layer, so hybrid models (sliding-window
every other layer, MLA, Mamba or linear-attention layers) are described as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LAYER_KINDS = ("full", "sliding", "mla", "recurrent", "none")
"""What a layer keeps between tokens: ``full`` a K/V cache growing with the context; ``sliding``
one bounded by the window; ``mla`` a latent cache (DeepSeek-V2/V3 multi-head latent attention);
``recurrent`` a fixed-size state (Mamba, linear attention, RWKV); ``none`` nothing."""


@dataclass(frozen=True)
class Architecture:
    """A model's architecture as its source states it. ``None`` means unknown (and is listed in ``unknown``)."""

    source: str | None = None
    """where the card was read from: ``config.json``, ``gguf``, ``live``."""
    model_type: str | None = None
    layers: int | None = None
    hidden_size: int | None = None
    heads: int | None = None
    """attention (query) heads per layer."""
    kv_heads: tuple[int, ...] | None = None
    """K/V heads, one entry per layer (0 where the layer has no attention)."""
    head_dim: int | None = None
    """query/key head dimension (``head_dim`` when stated, else hidden_size / heads)."""
    v_head_dim: int | None = None
    layer_kinds: tuple[str, ...] | None = None
    """one of :data:`LAYER_KINDS` per layer."""
    sliding_window: int | None = None
    kv_lora_rank: int | None = None
    """MLA latent width (DeepSeek ``kv_lora_rank``)."""
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    recurrent_state_elements: tuple[int, ...] | None = None
    """fixed state elements per layer and sequence (recurrent layers; 0 elsewhere)."""
    experts: int | None = None
    experts_per_token: int | None = None
    shared_experts: int | None = None
    ffn_size: int | None = None
    """dense MLP intermediate size."""
    moe_ffn_size: int | None = None
    """intermediate size of one routed expert."""
    vocab_size: int | None = None
    max_context: int | None = None
    tie_word_embeddings: bool | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def unknown(self) -> tuple[str, ...]:
        """The fields the source did not state (besides the optional ones that only some architectures have)."""
        required = ("layers", "hidden_size", "heads", "kv_heads", "head_dim", "layer_kinds", "vocab_size")
        return tuple(name for name in required if getattr(self, name) is None)
