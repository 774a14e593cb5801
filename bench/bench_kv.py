"""KV cache at serving scale: paramscope's estimate vs hf-mem and ``accelerate estimate-memory``.

The question of issue 14: can I serve this at 32k context with batch 8? For each published config
(values as on the Hub's ``config.json``, written here so the bench runs offline) this prints the K/V
cache (plus recurrent state) paramscope computes for each runtime convention, and what hf-mem 0.5
computes with its own function (``hf_mem.safetensors.kv_cache.compute_safetensors_kv_cache_size``,
called on the same dict: its CLI fetches from the Hub). ``accelerate estimate-memory`` counts weights
only (no K/V cache): its ``calculate_maximum_sizes`` on the same meta model is compared with
paramscope's weights in a second table (at bf16, as both are asked for).

Why the numbers differ is printed under the table (:data:`WHY`).

Run: ``.venv/bin/python bench/bench_kv.py [--context 32768] [--batch 8]`` (needs hf-mem and accelerate:
``pip install hf-mem accelerate``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from paramscope import architecture, kv_cache

LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"}
CONFIGS: dict[str, dict] = {
    "Llama-2-7B": {**LLAMA, "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
                   "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32000,
                   "max_position_embeddings": 4096},
    "Llama-3-8B": {**LLAMA, "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
                   "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
                   "max_position_embeddings": 8192, "rope_theta": 500000.0},
    "Mistral-7B-v0.1": {"model_type": "mistral", "architectures": ["MistralForCausalLM"], "torch_dtype": "bfloat16",
                        "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
                        "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 32000,
                        "max_position_embeddings": 32768, "sliding_window": 4096},
    "Qwen2.5-7B": {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "torch_dtype": "bfloat16",
                   "num_hidden_layers": 28, "hidden_size": 3584, "num_attention_heads": 28, "num_key_value_heads": 4,
                   "intermediate_size": 18944, "vocab_size": 152064, "max_position_embeddings": 131072,
                   "sliding_window": 131072, "use_sliding_window": False, "max_window_layers": 28},
    "Gemma-2-9B": {"model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], "torch_dtype": "bfloat16",
                   "num_hidden_layers": 42, "hidden_size": 3584, "num_attention_heads": 16, "num_key_value_heads": 8,
                   "head_dim": 256, "intermediate_size": 14336, "vocab_size": 256000,
                   "max_position_embeddings": 8192, "sliding_window": 4096},
    "Gemma-3-27B (text)": {"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
                           "torch_dtype": "bfloat16", "num_hidden_layers": 62, "hidden_size": 5376,
                           "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128,
                           "intermediate_size": 21504, "vocab_size": 262208, "max_position_embeddings": 131072,
                           "sliding_window": 1024, "sliding_window_pattern": 6},
    "DeepSeek-V3": {"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"],
                    "torch_dtype": "bfloat16", "num_hidden_layers": 61, "hidden_size": 7168,
                    "num_attention_heads": 128, "num_key_value_heads": 128, "kv_lora_rank": 512, "q_lora_rank": 1536,
                    "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128, "intermediate_size": 18432,
                    "moe_intermediate_size": 2048, "n_routed_experts": 256, "n_shared_experts": 1,
                    "num_experts_per_tok": 8, "first_k_dense_replace": 3, "n_group": 8, "topk_group": 4,
                    "vocab_size": 129280, "max_position_embeddings": 163840},
    "Qwen3-Next-80B-A3B": {"model_type": "qwen3_next", "architectures": ["Qwen3NextForCausalLM"],
                           "torch_dtype": "bfloat16", "num_hidden_layers": 48, "hidden_size": 2048,
                           "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256,
                           "linear_num_key_heads": 16, "linear_key_head_dim": 128, "linear_num_value_heads": 32,
                           "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4, "full_attention_interval": 4,
                           "num_experts": 512, "num_experts_per_tok": 10, "moe_intermediate_size": 512,
                           "shared_expert_intermediate_size": 512, "intermediate_size": 5120,
                           "vocab_size": 151936, "max_position_embeddings": 262144},
}

ACCELERATE_SKIPPED = {"DeepSeek-V3", "Qwen3-Next-80B-A3B"}
"""Building these on the meta device takes minutes (tens of thousands of expert modules): weights table skips them."""

WHY = {
    "Mistral-7B-v0.1": "every layer slides over 4,096 tokens (paramscope: min(L, W), transformers W - 1); hf-mem "
                       "reads sliding layers only from layer_types / sliding_window_pattern, which Mistral's "
                       "config lacks, so it counts every layer at the full context.",
    "Qwen2.5-7B": "use_sliding_window is false: every layer full in all three.",
    "Gemma-2-9B": "hybrid (sliding every other layer): hf-mem reserves the full context for sliding layers too "
                  "('engines unify page sizes'); paramscope counts the window, as transformers allocates it.",
    "Gemma-3-27B (text)": "5 of every 6 layers slide over 1,024 tokens; hf-mem counts them at full context "
                          "(the +682% unsloth measured is the same effect against the allocation).",
    "DeepSeek-V3": "MLA: hf-mem multiplies 128 K/V heads by hidden/heads = 56; vLLM, llama.cpp and transformers 5 "
                   "cache the 576-wide latent; transformers 4 cached 128 heads x (192 + 128).",
    "Qwen3-Next-80B-A3B": "36 of 48 layers are linear attention with a fixed state; hf-mem counts them as "
                          "attention layers at full context. llama.cpp keeps the recurrent state in float32 "
                          "(its column is higher by the state's second half).",
}


def _hf_mem(config: dict, context: int, batch: int) -> int | None:
    try:
        from hf_mem.safetensors.kv_cache import compute_safetensors_kv_cache_size
    except ImportError:
        return None
    return compute_safetensors_kv_cache_size(config=dict(config), cache_dtype="BF16", max_model_len=context,
                                             batch_size=batch)


def _accelerate_weights(config: dict) -> int | None:
    """``accelerate estimate-memory``'s figure: calculate_maximum_sizes of the model built from the config on
    the meta device (in the config's dtype, bfloat16 here), parameters and buffers together."""
    try:
        import torch
        import transformers
        from accelerate.utils import calculate_maximum_sizes
    except ImportError:
        return None
    built = transformers.AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(built)
    total, _ = calculate_maximum_sizes(model)
    return total


def _ours_weights(config: dict) -> tuple[int, int]:
    """(parameter bytes, buffer bytes) of paramscope's report on the config."""
    import paramscope

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(config))
        report = paramscope.inspect(str(path))
    return report.parameter_bytes or 0, report.buffer_bytes or 0


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:,.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=32768)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-weights", action="store_true", help="skip the weights table (builds meta models)")
    args = parser.parse_args()
    L, B = args.context, args.batch
    print(f"K/V cache + recurrent state at context {L:,}, batch {B}, bf16 (GiB)\n")
    head = (f"{'model':<20} {'vllm':>9} {'llama.cpp':>9} {'transformers':>12} {'tf-4':>9} {'hf-mem':>9} "
            f"{'hf-mem/vllm':>11}")
    print(head)
    print("-" * len(head))
    for name, config in CONFIGS.items():
        card = architecture.from_config(config)
        ours = {r: kv_cache.cache_bytes(card, L, B, "bf16", r) for r in kv_cache.RUNTIMES}
        peer = _hf_mem(config, L, B)
        ratio = "-" if peer is None or not ours["vllm"] else f"{peer / ours['vllm']:.2f}x"
        print(f"{name:<20} {_gib(ours['vllm']):>9} {_gib(ours['llama.cpp']):>9} {_gib(ours['transformers']):>12} "
              f"{_gib(ours['transformers-4']):>9} {_gib(peer):>9} {ratio:>11}")
    print("\nwhy they differ:")
    for name, why in WHY.items():
        print(f"  {name}: {why}")
    if args.no_weights:
        return
    print("\nweights at bf16 (bytes): paramscope vs accelerate estimate-memory (calculate_maximum_sizes)\n")
    print(f"{'model':<20} {'parameters':>16} {'buffers':>8} {'accelerate':>16} {'acc - params':>12} {'seconds':>8}")
    for name, config in CONFIGS.items():
        if name in ACCELERATE_SKIPPED:
            print(f"{name:<20} {'(skipped: meta build takes minutes)':>40}")
            continue
        start = time.perf_counter()
        (params, buffers), peer = _ours_weights(config), _accelerate_weights(config)
        gap = "-" if peer is None else f"{peer - params:,}"
        print(f"{name:<20} {params:>16,} {buffers:>8,} {peer or 0:>16,} {gap:>12} {time.perf_counter() - start:>8.1f}")
    print("\naccelerate counts parameters and buffers (rotary inv_freq, Gemma's normalizer) together: its figure is "
          "paramscope's parameters + buffers exactly. It has no K/V cache.")


if __name__ == "__main__":
    main()
