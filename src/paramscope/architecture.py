"""The architecture card: what a model's shape is, as far as its source says, extracted once.

Every cost estimate (KV cache, activations, FLOPs: :mod:`paramscope.kv_cache`,
:mod:`paramscope.activations`, :mod:`paramscope.flops`) reads the card, never a config or a file
itself. A field the source does not state is ``None`` and named in :attr:`Architecture.unknown`;
it is never guessed silently: where a documented default stands in (transformers' "no
``num_key_value_heads`` means one K/V head per query head"), the card's ``notes`` say so.

Per-layer fields are tuples with one entry per decoder layer, so hybrid models (sliding-window
every other layer, MLA, Mamba or linear-attention layers) are described as they are.

Sources (plain dicts only: reading a card never imports torch or transformers):

* :func:`from_config`: a transformers ``config.json`` (local, Hub, or a live model's
  ``config.to_dict()``); key synonyms in :data:`CONFIG_KEYS`; multimodal wrappers are read through
  their ``text_config``.
* :func:`from_gguf`: GGUF key/values (``{general.architecture}.block_count`` ...; :data:`GGUF_KEYS`,
  names as gguf-py's ``constants.Keys`` spells them); ``attention.head_count_kv`` may be one number
  or one per layer (0 on a recurrent layer).

Which layer keeps what, from a config (first rule that applies):

1. ``layer_types`` (transformers' per-layer list) or ``layers_block_type`` (Bamba, Granite hybrid):
   ``full_attention``/``attention`` -> full, ``sliding_attention``/``chunked_attention`` -> sliding,
   ``linear_attention``/``mamba``/``conv`` -> recurrent, ``moe``/``mlp`` -> none (transformers'
   ``get_layer_types_and_kwargs`` maps them the same way).
2. Bamba: attention at ``attn_layer_indices``, Mamba elsewhere. Jamba: attention where
   ``i % attn_layer_period == attn_layer_offset``, Mamba elsewhere.
3. Qwen3-Next: full attention every ``full_attention_interval``-th layer (default 4), linear
   attention elsewhere. Gemma-2 without ``layer_types``: sliding on even layers (``(i + 1) % 2``),
   Gemma-3: sliding except every ``sliding_window_pattern``-th layer (default 6), as their
   transformers configs build them.
4. Qwen2-style ``use_sliding_window``: sliding from layer ``max_window_layers`` on; otherwise a
   ``sliding_window`` (Mistral) makes every layer sliding.
5. ``mamba``/``mamba2``/``falcon_mamba``: every layer recurrent. Else every layer full.

An attention layer is ``mla`` where the config has ``kv_lora_rank`` (DeepSeek-V2/V3).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from paramscope.errors import ParamscopeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LAYER_KINDS = ("full", "sliding", "mla", "recurrent", "none")
"""What a layer keeps between tokens: ``full`` a K/V cache growing with the context; ``sliding``
one bounded by the window; ``mla`` a latent cache (DeepSeek-V2/V3 multi-head latent attention);
``recurrent`` a fixed-size state (Mamba, linear attention, RWKV); ``none`` nothing."""

MAX_LAYERS = 65_536
"""More layers than any model has: a config claiming more is not believed (the card would hold a
tuple per layer)."""
MAX_DIM = 1 << 40
"""Any width, head count or context above this is not believed (the field stays unknown)."""


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

    @property
    def v_dim(self) -> int | None:
        """The value head width: ``v_head_dim`` when stated (MLA, GGUF ``value_length``), else ``head_dim``."""
        return self.v_head_dim if self.v_head_dim is not None else self.head_dim

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values, plus ``unknown``."""
        doc: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            doc[f.name] = list(value) if isinstance(value, tuple) else value
        doc["unknown"] = list(self.unknown)
        return doc


# ---- config.json -------------------------------------------------------------------------------

CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "layers": ("num_hidden_layers", "n_layer", "n_layers", "num_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "heads": ("num_attention_heads", "n_head", "n_heads", "num_heads"),
    "kv_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv", "n_kv_heads", "multi_query_group_num"),
    "head_dim": ("head_dim", "kv_channels"),
    "v_head_dim": ("v_head_dim",),
    "sliding_window": ("sliding_window",),
    "kv_lora_rank": ("kv_lora_rank",),
    "qk_rope_head_dim": ("qk_rope_head_dim",),
    "qk_nope_head_dim": ("qk_nope_head_dim",),
    "experts": ("n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts"),
    "experts_per_token": ("num_experts_per_tok", "num_experts_per_token", "moe_top_k", "top_k_experts"),
    "shared_experts": ("n_shared_experts", "num_shared_experts", "moe_num_shared_experts"),
    "ffn_size": ("intermediate_size", "n_inner", "ffn_dim", "d_ff", "ffn_hidden_size"),
    "moe_ffn_size": ("moe_intermediate_size", "expert_intermediate_size"),
    "vocab_size": ("vocab_size", "n_vocab", "padded_vocab_size"),
    "max_context": ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx"),
}
"""Card field -> the config keys that state it, first found wins (transformers' names first, then
GPT-2 / GPT-NeoX / T5 / ChatGLM / MPT spellings)."""

NESTED = ("text_config", "language_config", "llm_config")
"""Multimodal wrappers keep the language model's shape here; the card describes that decoder."""

LAYER_TYPE_KINDS = {
    "full_attention": "full", "attention": "full", "global": "full", "global_attention": "full",
    "sliding_attention": "sliding", "chunked_attention": "sliding", "local": "sliding",
    "linear_attention": "recurrent", "mamba": "recurrent", "mamba2": "recurrent", "conv": "recurrent",
    "recurrent": "recurrent", "moe": "none", "mlp": "none",
}
"""A config's per-layer type name -> :data:`LAYER_KINDS`."""

RECURRENT_TYPES = {"mamba": "mamba1", "falcon_mamba": "mamba1", "jamba": "mamba1",
                   "mamba2": "mamba2", "bamba": "mamba2", "falcon_h1": "mamba2", "granitemoehybrid": "mamba2",
                   "zamba2": "mamba2", "nemotron_h": "mamba2", "qwen3_next": "gated_delta"}
"""model_type -> which recurrent state its non-attention layers keep (:func:`_state_elements`)."""


def _int(value: Any) -> int | None:
    """A whole, positive, believable number, or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            return None
    return value if 0 < value <= MAX_DIM else None


def _first(config: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return None


def _decoder(config: dict[str, Any]) -> dict[str, Any]:
    for key in NESTED:
        inner = config.get(key)
        if isinstance(inner, dict) and _first(inner, CONFIG_KEYS["layers"]) is not None:
            return inner
    return config


def _state_elements(kind: str | None, c: dict[str, Any], hidden: int | None) -> int | None:
    """Elements of one sequence's fixed state in one recurrent layer, as transformers allocates it.

    mamba1 (``MambaCache``/Jamba): conv ``[d_inner, d_conv]`` + SSM ``[d_inner, d_state]``.
    mamba2 (Bamba, Falcon-H1): conv ``[d_inner + 2 * n_groups * d_state, d_conv]`` + SSM
    ``[n_heads, head_dim, d_state]``. gated_delta (Qwen3-Next linear attention): conv
    ``[2 * key_heads * key_dim + value_heads * value_dim, d_conv]`` + recurrent
    ``[value_heads, key_dim, value_dim]``.
    """
    g = c.get
    if kind == "mamba1":
        expand = _int(_first(c, ("mamba_expand", "expand")))
        inner = _int(g("intermediate_size")) if g("model_type") in ("mamba", "falcon_mamba") else None
        if inner is None and expand and hidden:
            inner = expand * hidden
        d_state = _int(_first(c, ("mamba_d_state", "state_size")))
        d_conv = _int(_first(c, ("mamba_d_conv", "conv_kernel")))
        if inner and d_state and d_conv:
            return inner * (d_conv + d_state)
    elif kind == "mamba2":
        expand = _int(_first(c, ("mamba_expand", "expand")))
        heads = _int(_first(c, ("mamba_n_heads", "num_heads")))
        head_dim = _int(_first(c, ("mamba_d_head", "head_dim")))
        d_state = _int(_first(c, ("mamba_d_state", "state_size")))
        d_conv = _int(_first(c, ("mamba_d_conv", "conv_kernel")))
        groups = _int(_first(c, ("mamba_n_groups", "n_groups")))
        inner = heads * head_dim if heads and head_dim else (expand * hidden if expand and hidden else None)
        if inner and heads and head_dim and d_state and d_conv and groups:
            return (inner + 2 * groups * d_state) * d_conv + heads * head_dim * d_state
    elif kind == "gated_delta":
        kh, kd = _int(g("linear_num_key_heads")), _int(g("linear_key_head_dim"))
        vh, vd = _int(g("linear_num_value_heads")), _int(g("linear_value_head_dim"))
        d_conv = _int(g("linear_conv_kernel_dim"))
        if kh and kd and vh and vd and d_conv:
            return (2 * kh * kd + vh * vd) * d_conv + vh * kd * vd
    return None


def _layer_kinds(c: dict[str, Any], layers: int, model_type: str | None, notes: list[str]) -> tuple[str, ...] | None:
    """The kind of every layer by the rules of the module docstring, or None when the config's list is unusable."""
    listed = c.get("layer_types")
    if not isinstance(listed, list):
        listed = c.get("layers_block_type")
    if isinstance(listed, list):
        kinds = [LAYER_TYPE_KINDS.get(t) if isinstance(t, str) else None for t in listed]
        if len(kinds) != layers or None in kinds:
            notes.append(f"layer_types ({len(listed)} entries) does not describe the {layers} layers: kinds unknown")
            return None
        return tuple(kinds)  # type: ignore[arg-type]
    indices = c.get("attn_layer_indices")
    if isinstance(indices, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        chosen = set(indices)
        return tuple("full" if i in chosen else "recurrent" for i in range(layers))
    period, offset = c.get("attn_layer_period"), c.get("attn_layer_offset")
    if model_type == "jamba" and _int(period) and isinstance(offset, int) and 0 <= offset < period:
        return tuple("full" if i % period == offset else "recurrent" for i in range(layers))
    if model_type in ("mamba", "mamba2", "falcon_mamba"):
        return ("recurrent",) * layers
    if model_type == "qwen3_next":
        interval = _int(c.get("full_attention_interval")) or 4
        return tuple("recurrent" if (i + 1) % interval else "full" for i in range(layers))
    window = _int(c.get("sliding_window"))
    if model_type == "gemma2" and window:
        return tuple("sliding" if (i + 1) % 2 else "full" for i in range(layers))
    if model_type in ("gemma3", "gemma3_text") and window:
        pattern = _int(c.get("sliding_window_pattern")) or 6
        return tuple("sliding" if (i + 1) % pattern else "full" for i in range(layers))
    if "use_sliding_window" in c:
        first = _int(c.get("max_window_layers")) or 0
        if c.get("use_sliding_window") is True and window:
            return tuple("sliding" if i >= first else "full" for i in range(layers))
        return ("full",) * layers
    return ("sliding" if window else "full",) * layers


def from_config(config: dict[str, Any], source: str = "config.json") -> Architecture:
    """The card of a transformers config (a dict as read from ``config.json``); see the module docstring."""
    if not isinstance(config, dict):
        return Architecture(source=source, notes=("the config is not a JSON object",))
    outer_type = config.get("model_type")
    c = _decoder(config)
    notes: list[str] = []
    model_type = c.get("model_type") if isinstance(c.get("model_type"), str) else outer_type
    model_type = model_type if isinstance(model_type, str) else None
    stated = {name: _first(c, keys) for name, keys in CONFIG_KEYS.items()}
    num = {name: _int(value) for name, value in stated.items()}
    layers = num["layers"]
    if layers is not None and layers > MAX_LAYERS:
        notes.append(f"{layers} layers is more than paramscope believes ({MAX_LAYERS}): layers unknown")
        layers = None
    hidden, heads = num["hidden_size"], num["heads"]
    head_dim = num["head_dim"]
    if head_dim is None and hidden and heads and hidden % heads == 0 and num["kv_lora_rank"] is None:
        head_dim = hidden // heads
        notes.append(f"head_dim not stated: hidden_size / heads = {head_dim}")
    kinds = _layer_kinds(c, layers, model_type, notes) if layers else None
    if kinds is not None and _int(c.get("kv_lora_rank")):
        kinds = tuple("mla" if k == "full" else k for k in kinds)
    kv_heads: tuple[int, ...] | None = None
    kv = stated["kv_heads"]
    if isinstance(kv, list) and layers and len(kv) == layers and all(_int(h) or h == 0 for h in kv):
        kv_heads = tuple(int(h) for h in kv)
    elif layers and num["kv_heads"]:
        kv_heads = (num["kv_heads"],) * layers
    elif layers and heads and kv is None:
        kv_heads = (heads,) * layers
        notes.append("num_key_value_heads not stated: one K/V head per query head (transformers' default)")
    if kv_heads is None and kinds is not None and not set(kinds) - {"recurrent", "none"}:
        kv_heads = (0,) * len(kinds)  # no attention layer: nothing to ask
    if kv_heads is not None and kinds is not None:
        kv_heads = tuple(0 if k in ("recurrent", "none") else h for h, k in zip(kv_heads, kinds, strict=True))
    state: tuple[int, ...] | None = None
    if kinds is not None and "recurrent" in kinds:
        per_layer = _state_elements(RECURRENT_TYPES.get(model_type or ""), c, hidden)
        if per_layer is None:
            notes.append("the recurrent layers' state size is unknown (its keys are not ones paramscope reads)")
        else:
            state = tuple(per_layer if k == "recurrent" else 0 for k in kinds)
    v_head_dim = num["v_head_dim"]
    if kinds is not None and "mla" in kinds and head_dim is None and num["qk_nope_head_dim"] and num[
            "qk_rope_head_dim"]:
        head_dim = num["qk_nope_head_dim"] + num["qk_rope_head_dim"]  # type: ignore[operator]
    window = num["sliding_window"] if kinds is not None and "sliding" in kinds else None
    listed = c.get("layer_types")
    if window is None and isinstance(listed, list) and "chunked_attention" in listed:
        # Llama 4's chunked layers: transformers caches them as a window of attention_chunk_size
        window = _int(c.get("attention_chunk_size"))
    tie = config.get("tie_word_embeddings", c.get("tie_word_embeddings"))
    return Architecture(
        source=source, model_type=model_type, layers=layers, hidden_size=hidden, heads=heads, kv_heads=kv_heads,
        head_dim=head_dim, v_head_dim=v_head_dim, layer_kinds=kinds, sliding_window=window,
        kv_lora_rank=num["kv_lora_rank"], qk_rope_head_dim=num["qk_rope_head_dim"],
        qk_nope_head_dim=num["qk_nope_head_dim"], recurrent_state_elements=state, experts=num["experts"],
        experts_per_token=num["experts_per_token"], shared_experts=_count(stated["shared_experts"]),
        ffn_size=num["ffn_size"], moe_ffn_size=num["moe_ffn_size"], vocab_size=num["vocab_size"],
        max_context=num["max_context"], tie_word_embeddings=tie if isinstance(tie, bool) else None,
        notes=tuple(notes),
    )


def _count(value: Any) -> int | None:
    """A count that may be 0 (shared experts)."""
    return 0 if value == 0 and not isinstance(value, bool) else _int(value)


# ---- GGUF --------------------------------------------------------------------------------------

GGUF_KEYS: dict[str, str] = {
    "layers": "block_count",
    "hidden_size": "embedding_length",
    "heads": "attention.head_count",
    "kv_heads": "attention.head_count_kv",
    "head_dim": "attention.key_length",
    "v_head_dim": "attention.value_length",
    "sliding_window": "attention.sliding_window",
    "kv_lora_rank": "attention.kv_lora_rank",
    "experts": "expert_count",
    "experts_per_token": "expert_used_count",
    "shared_experts": "expert_shared_count",
    "ffn_size": "feed_forward_length",
    "moe_ffn_size": "expert_feed_forward_length",
    "vocab_size": "vocab_size",
    "max_context": "context_length",
    "ssm_conv_kernel": "ssm.conv_kernel",
    "ssm_inner_size": "ssm.inner_size",
    "ssm_state_size": "ssm.state_size",
    "ssm_group_count": "ssm.group_count",
    "rope_dims": "rope.dimension_count",
}
"""Card field -> GGUF key after ``{general.architecture}.`` (gguf-py ``constants.Keys.LLM`` /
``Keys.Attention`` / ``Keys.SSM``)."""

GGUF_SLIDING_PATTERN = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2, "llama4": 4}
"""llama.cpp's default SWA period for architectures whose GGUF states only the window (its loaders'
``hparams.set_swa_pattern(n)``: layer ``il`` slides when ``il % n < n - 1``, every n-th is full). A
GGUF ``attention.sliding_window_pattern`` (a period, or one bool per layer) overrides it."""
GGUF_IMPLIED_WINDOW = {"llama4": 8192}
"""Windows llama.cpp fixes in code, not in the file (Llama 4's chunked attention: ``n_swa = 8192``)."""


def from_gguf(metadata: dict[str, Any]) -> Architecture:
    """The card of GGUF key/values (as the gguf reader keeps them); see the module docstring."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        return Architecture(source="gguf", notes=("general.architecture is not stated",))

    def get(name: str) -> Any:
        return metadata.get(f"{arch}.{GGUF_KEYS[name]}")

    num = {name: _int(get(name)) for name in GGUF_KEYS}
    notes: list[str] = []
    layers = num["layers"]
    if layers is not None and layers > MAX_LAYERS:
        notes.append(f"{layers} layers is more than paramscope believes ({MAX_LAYERS}): layers unknown")
        layers = None
    heads, hidden = num["heads"], num["hidden_size"]
    raw_kv = get("kv_heads")
    kv_heads: tuple[int, ...] | None = None
    if isinstance(raw_kv, list) and layers and len(raw_kv) == layers and all(
            _int(h) or (h == 0 and not isinstance(h, bool)) for h in raw_kv):
        kv_heads = tuple(int(h) for h in raw_kv)
    elif isinstance(raw_kv, str) or (isinstance(raw_kv, list) and layers):
        notes.append(f"{arch}.attention.head_count_kv is a per-layer array paramscope could not read in full")
    elif layers and num["kv_heads"]:
        kv_heads = (num["kv_heads"],) * layers
    elif layers and raw_kv == 0 and not isinstance(raw_kv, bool):
        kv_heads = (0,) * layers  # no attention anywhere (llama.cpp's Mamba / RWKV files)
    elif layers and heads and raw_kv is None:
        kv_heads = (heads,) * layers
        notes.append("attention.head_count_kv not stated: one K/V head per query head (llama.cpp's default)")
    head_dim = num["head_dim"]
    if head_dim is None and hidden and heads and hidden % heads == 0:
        head_dim = hidden // heads
        notes.append(f"attention.key_length not stated: embedding_length / head_count = {head_dim}")
    kinds: tuple[str, ...] | None = None
    window = num["sliding_window"] or GGUF_IMPLIED_WINDOW.get(arch)
    if layers:
        # a layer with no K/V head keeps a recurrent state (llama.cpp writes 0 there for Mamba/RWKV layers)
        kinds = ("full",) * layers if kv_heads is None else tuple("full" if h else "recurrent" for h in kv_heads)
        if num["ssm_state_size"] and kv_heads is None:
            kinds = ("recurrent",) * layers
        swa = metadata.get(f"{arch}.attention.sliding_window_pattern")
        period = _int(swa) or (None if isinstance(swa, list) else GGUF_SLIDING_PATTERN.get(arch))
        if window and isinstance(swa, list) and len(swa) == layers:
            kinds = tuple("sliding" if s and k == "full" else k for s, k in zip(swa, kinds, strict=True))
        elif window and period:
            n = period
            kinds = tuple("sliding" if (i + 1) % n and k == "full" else k for i, k in enumerate(kinds))
        elif window:
            kinds = tuple("sliding" if k == "full" else k for k in kinds)
    rank = num["kv_lora_rank"]
    rope = num["rope_dims"] if rank else None
    if rank and kinds is not None:
        kinds = tuple("mla" if k == "full" else k for k in kinds)
    state = None
    if kinds is not None and "recurrent" in kinds:
        inner, d_state, d_conv = num["ssm_inner_size"], num["ssm_state_size"], num["ssm_conv_kernel"]
        groups = num["ssm_group_count"] or 0
        if inner and d_state and d_conv:
            # llama.cpp's recurrent memory (llama-memory-recurrent / hparams.n_embd_r, n_embd_s):
            # r = (d_conv - 1) * (d_inner + 2 * n_group * d_state), s = d_state * d_inner
            per = (d_conv - 1) * (inner + 2 * groups * d_state) + d_state * inner
            state = tuple(per if k == "recurrent" else 0 for k in kinds)
        else:
            notes.append("the recurrent layers' state size is unknown (no ssm.* keys)")
    vocab = num["vocab_size"]
    if vocab is None:
        tokens = metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, list):
            vocab = len(tokens)
        elif isinstance(tokens, str):  # the reader's summary of a long array: "<array of 128256 string>"
            import re

            # a string value may mimic it ("<array of "): only the whole pattern, digits bounded, is taken
            summary = re.fullmatch(r"<array of ([0-9]{1,15}) [a-z0-9_]+>", tokens)
            vocab = _int(int(summary[1])) if summary else None
    return Architecture(
        source="gguf", model_type=arch, layers=layers, hidden_size=hidden, heads=heads, kv_heads=kv_heads,
        head_dim=head_dim, v_head_dim=num["v_head_dim"], layer_kinds=kinds,
        sliding_window=window if kinds is not None and "sliding" in kinds else None, kv_lora_rank=rank,
        qk_rope_head_dim=rope, recurrent_state_elements=state, experts=num["experts"],
        experts_per_token=num["experts_per_token"], shared_experts=_count(get("shared_experts")),
        ffn_size=num["ffn_size"] if not isinstance(get("ffn_size"), list) else None,
        moe_ffn_size=num["moe_ffn_size"], vocab_size=vocab, max_context=num["max_context"], notes=tuple(notes),
    )


# ---- what the estimates share: the model type's layer family, the sizes they accept --------------------

@dataclass(frozen=True)
class Family:
    """What the card does not say but the activations depend on, per ``model_type``."""

    mlp: str  # "gated" (SwiGLU/GeGLU: gate, up, down) or "plain" (fc, act, proj)
    norm: str  # "rms" or "layer"
    rope: bool
    softmax_fp32: bool = False
    """eager attention takes the softmax in fp32 and casts it back (transformers' ``eager_attention_forward``
    of Llama and its descendants: ``softmax(..., dtype=torch.float32).to(query.dtype)``): below fp32 the
    probabilities are kept twice, fp32 for the softmax's backward and at the width for ``P·V``."""


FAMILIES: dict[str, Family] = {
    # transformers' modeling_<type>.py for each: LlamaMLP/MistralMLP/Qwen2MLP... are gated, with RMSNorm.
    **{t: Family("gated", "rms", True, softmax_fp32=True) for t in (
        "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
        "gemma3_text", "phi3", "deepseek_v2", "deepseek_v3", "olmo2", "granite", "cohere")},
    # GPT-2 (Conv1D c_fc/c_proj, LayerNorm, learned positions), GPT-NeoX/Falcon-style plain MLPs.
    "gpt2": Family("plain", "layer", False),
    "gpt_neox": Family("plain", "layer", True),
    "gptj": Family("plain", "layer", True),
    "falcon": Family("plain", "layer", True),
    "opt": Family("plain", "layer", False),
    "bloom": Family("plain", "layer", False),
    "phi": Family("plain", "layer", True),
}
DEFAULT_FAMILY = Family("gated", "rms", True, softmax_fp32=True)


LIMIT = 1 << 32
"""The largest dimension, count, sequence or batch taken (no model comes near; beyond it the products
would leave the range of a float when printed)."""
SIZES = ("layers", "hidden_size", "heads", "head_dim", "ffn_size", "moe_ffn_size", "vocab_size", "experts",
         "experts_per_token", "shared_experts", "sliding_window")


def check_sizes(card: Architecture, what: str) -> None:
    """Refuse a card with a negative or absurdly large figure (a hostile or broken source)."""
    values = [(n, getattr(card, n)) for n in SIZES] + [("kv_heads", k) for k in card.kv_heads or ()]
    bad = [f"{n} = {v if v.bit_length() < 64 else 'over 2^64'}" for n, v in values
           if v is not None and not 0 <= v <= LIMIT]
    if bad:
        raise ParamscopeError(card.source or "architecture",
                              f"{what} cannot use {', '.join(bad[:3])}: each must be between 0 and 2^32")


def require(card: Architecture, what: str, *names: str) -> None:
    """Refuse (one ParamscopeError naming the source) a card that lacks ``names`` or states them below 1, or that
    states any size out of range; ``what`` names the estimate that needs them."""
    missing = [n for n in names if getattr(card, n) is None]
    if missing:
        raise ParamscopeError(card.source or "architecture",
                              f"{what} need {', '.join(missing)}, which the source does not state")
    check_sizes(card, what)
    zero = [n for n in names if getattr(card, n) < 1]
    if zero:  # a hostile or broken config: 0 heads would divide by zero
        raise ParamscopeError(card.source or "architecture",
                              f"{what} need {', '.join(zero)} of 1 or more, and the source states "
                              + ", ".join(f"{n} = {getattr(card, n)}" for n in zero))


def family_of(card: Architecture) -> tuple[Family, list[str]]:
    """The card's :class:`Family`, and a note when its model type is not in :data:`FAMILIES`."""
    family = FAMILIES.get(card.model_type or "")
    if family is not None:
        return family, []
    return DEFAULT_FAMILY, [f"model type {card.model_type!r} is not in the table: taken as a gated MLP with "
                            "RMSNorm and rotary positions (Llama's layout)"]
