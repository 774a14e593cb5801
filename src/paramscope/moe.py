"""Mixture of experts: how many experts a model has, how many each token uses, and which tensors are
routed experts.

The counts come from a Hugging Face config (key names differ per family, hence the tables) or from
GGUF key/values (``{arch}.expert_count``, ``{arch}.expert_used_count``, ``{arch}.expert_shared_count``).
They are kept in ``Inventory.metadata["moe"]`` as ``{"experts": E, "experts_per_token": k,
"shared_experts": s}``; :mod:`paramscope.report` turns them into ``active`` and ``size_label``.

Routed-expert tensors are found by name, in the three layouts checkpoints use:

* one module per expert: ``...experts.<i>.<proj>.weight`` (Mixtral in transformers 4, DeepSeek, Qwen-MoE files);
* fused 3-D tensors under a module named ``experts`` whose leading dimension is E (transformers 5 fuses
  experts: Mixtral's ``mlp.experts.gate_up_proj`` ``[E, 2*I, H]`` and ``mlp.experts.down_proj`` ``[E, H, I]``);
* GGUF's stacked ``blk.N.ffn_{gate,up,down}_exps.weight``.

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

GGUF_KEYS = {"experts": "expert_count", "experts_per_token": "expert_used_count",
             "shared_experts": "expert_shared_count"}

_PER_EXPERT = r"(?:^|\.)experts\.\d+\."
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
    experts = per_token = shared = None
    for layer in layers:
        experts = experts if experts is not None else _first(layer, EXPERT_KEYS)
        per_token = per_token if per_token is not None else _first(layer, PER_TOKEN_KEYS)
        if shared is None:
            shared = _first(layer, SHARED_KEYS)
            if shared is None and any((_count(layer.get(k)) or 0) > 0 for k in SHARED_WIDTH_KEYS):
                shared = 1
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
    """Is this tensor (part of) a routed expert? See the module docstring for the three layouts."""
    name = record.name
    if "exp" not in name:  # cheap reject: most names of a model
        return False
    module = record.module
    if module.rpartition(".")[2] == "experts" and record.shape and record.shape[0] == experts:
        return True
    return _routed_name().search(name) is not None
