"""Mixture of experts: how many experts a model has, how many each token uses, and which tensors are
routed experts.

The counts come from a Hugging Face config (key names differ per family, hence the tables) or from
GGUF key/values (``{arch}.expert_count``, ``{arch}.expert_used_count``, ``{arch}.expert_shared_count``).
They are kept in ``Inventory.metadata["moe"]`` as ``{"experts": E, "experts_per_token": k,
"shared_experts": s}``; :mod:`paramscope.report` turns them into ``active`` and ``size_label``.

Routed-expert tensors are found by name, in the layouts checkpoints use:

* one module per expert: ``...experts.<i>.<proj>.weight`` (Mixtral in transformers 4, DeepSeek, Qwen-MoE files),
  or ``...experts.expert_<i>.<proj>.weight`` (Switch Transformers, NLLB-MoE);
* fused tensors under a module named ``experts`` whose leading dimension is E (transformers 5 fuses
  experts: Mixtral's ``mlp.experts.gate_up_proj`` ``[E, 2*I, H]`` and ``mlp.experts.down_proj`` ``[E, H, I]``;
  gpt-oss's MXFP4 ``experts.gate_up_proj_blocks`` ``[E, 2*I, H/32, 16]`` and its ``[E, 2*I]`` biases);
* DBRX's ``ffn.experts.mlp.{w1,v1,w2}``, 2-D ``[E*I, H]`` (transformers ``DbrxExpertGLU``: the experts
  are stacked along the rows, so the leading dimension is a multiple of E);
* JetMoE's ``input_linear.weight`` / ``output_linear.weight`` ``[E, out, in]`` (``JetMoeParallelExperts``,
  both in ``mlp`` and in the mixture-of-attention ``self_attention.experts``);
* GGUF's stacked ``blk.N.ffn_{gate,up,down}_exps.weight``.

Experts per token come from the config; a family that routes a fixed number with no key for it gets it
from :data:`DEFAULT_PER_TOKEN` by ``model_type``: Switch Transformers routes top-1
(``SwitchTransformersTop1Router``: ``argmax`` over the router's logits), NLLB-MoE top-2
(``NllbMoeTop2Router``). Any other config without a per-token key is treated as dense (no guess).

Shared experts (``shared_expert``, ``shared_experts``, GGUF ``*_shexp``) and the router (``gate``,
``ffn_gate_inp``) match none of these: they are always active.
"""

from __future__ import annotations

import functools
import re

from paramscope.records import TensorRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Config keys, first present wins: routed experts, experts per token, shared experts.
EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts", "num_routed_experts")
PER_TOKEN_KEYS = ("num_experts_per_tok", "num_experts_per_token", "moe_top_k", "top_k_experts", "experts_per_token")
SHARED_KEYS = ("n_shared_experts", "num_shared_experts", "moe_num_shared_experts")
# Qwen2-MoE states one shared expert by its width alone.
SHARED_WIDTH_KEYS = ("shared_expert_intermediate_size",)
# Nested configs some families use (multimodal wrappers, DBRX's ffn_config).
NESTED_KEYS = ("text_config", "ffn_config", "language_config", "llm_config")

# model_type -> experts per token, for families whose router fixes it (no config key says so).
DEFAULT_PER_TOKEN = {"switch_transformers": 1, "nllb-moe": 2, "gptsan-japanese": 1}

GGUF_KEYS = {"experts": "expert_count", "experts_per_token": "expert_used_count",
             "shared_experts": "expert_shared_count"}

_PER_EXPERT = r"(?:^|\.)experts\.(?:expert_)?\d+\."
# Fused layouts named by their own leaves (no "experts." parent with leading dim E):
# name ending -> rule on the shape: "rows" leading dim a multiple of E (DBRX), "lead" leading dim == E, 3-D.
FUSED_ENDINGS: dict[str, str] = {
    "experts.mlp.w1": "rows", "experts.mlp.v1": "rows", "experts.mlp.w2": "rows",
    ".input_linear.weight": "lead", ".output_linear.weight": "lead",
}
FUSED_TUPLE = tuple(FUSED_ENDINGS)
_GGUF_STACKED = r"(?:^|\.)ffn_[a-z_]+_exps\."


@functools.cache
def _routed_name() -> re.Pattern[str]:
    return re.compile(f"{_PER_EXPERT}|{_GGUF_STACKED}")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _first(config: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = _count(config.get(key))
        if value is not None:
            return value
    return None


def from_config(config: dict[str, Any] | None) -> dict[str, int] | None:
    """``{"experts", "experts_per_token", "shared_experts"}`` from a config, or None for a dense model."""
    if not isinstance(config, dict):
        return None
    layers = [config] + [config[k] for k in NESTED_KEYS if isinstance(config.get(k), dict)]
    default = DEFAULT_PER_TOKEN.get(config.get("model_type"))  # type: ignore[arg-type]
    experts = per_token = shared = None
    for layer in layers:
        experts = experts if experts is not None else _first(layer, EXPERT_KEYS)
        per_token = per_token if per_token is not None else _first(layer, PER_TOKEN_KEYS)
        if shared is None:
            shared = _first(layer, SHARED_KEYS)
            if shared is None and any((_count(layer.get(k)) or 0) > 0 for k in SHARED_WIDTH_KEYS):
                shared = 1
    if per_token is None:
        per_token = default
    if experts is None or experts < 2 or not per_token or per_token > experts:
        return None
    return {"experts": experts, "experts_per_token": per_token, "shared_experts": shared or 0}


def from_gguf(metadata: dict[str, Any]) -> dict[str, int] | None:
    """The same from GGUF key/values (``{general.architecture}.expert_count`` ...), or None."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        return None
    found = {field: _count(metadata.get(f"{arch}.{key}")) for field, key in GGUF_KEYS.items()}
    experts, per_token = found["experts"], found["experts_per_token"]
    if experts is None or experts < 2 or not per_token or per_token > experts:
        return None
    return {"experts": experts, "experts_per_token": per_token, "shared_experts": found["shared_experts"] or 0}


def is_routed(record: TensorRecord, experts: int) -> bool:
    """Is this tensor (part of) a routed expert? See the module docstring for the layouts."""
    name = record.name
    shape = record.shape
    if name.endswith(FUSED_TUPLE):
        if not shape or not experts:
            return False
        rule = next(FUSED_ENDINGS[e] for e in FUSED_TUPLE if name.endswith(e))
        if rule == "rows":
            return len(shape) == 2 and shape[0] % experts == 0 and shape[0] >= experts
        return len(shape) == 3 and shape[0] == experts
    if "exp" not in name:  # cheap reject: most names of a model
        return False
    module = record.module
    if module.rpartition(".")[2] == "experts" and shape and shape[0] == experts:
        return True
    return _routed_name().search(name) is not None
