"""paramscope.kv_cache: the K/V cache and recurrent state, checked against what transformers allocates.

Independent reference: tiny random models built with transformers on CPU, one per attention kind,
run for a prompt of ``PROMPT`` tokens and one decoding step (``CONTEXT`` tokens cached, ``BATCH``
sequences); the bytes of the tensors their ``Cache`` holds (K/V of every layer, conv and recurrent
states of linear-attention / Mamba layers) are summed and must equal ``--runtime transformers``
exactly. The cache's bookkeeping scalars (a sliding layer's ``_sliding_window_tensor``) are left out.

Convention found: a transformers sliding layer's K/V tensors hold ``W - 1`` tokens (a view), while
their storage during decoding holds ``W`` (the ``torch.cat`` of the window and the new token): the
storage equals the ``vllm`` convention, ``min(L, W)``. Both are asserted.

Published figures: Llama-2-7B at 4,096 tokens fp16 = 2 GiB; Llama-3-8B (8 KV heads) at 8,192 = 1 GiB.
"""

from __future__ import annotations

import pytest

from paramscope import architecture, kv_cache

PROMPT, BATCH = 11, 2
CONTEXT = PROMPT + 1

BASE = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=4, vocab_size=128,
            intermediate_size=96, max_position_embeddings=256)

CASES = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", dict(sliding_window=8)),
    "gemma2": ("Gemma2Config", dict(sliding_window=8, head_dim=16)),
    "gemma3": ("Gemma3TextConfig", dict(sliding_window=8, head_dim=16, num_hidden_layers=7)),
    "qwen2": ("Qwen2Config", dict(use_sliding_window=True, sliding_window=8, max_window_layers=2)),
    "deepseek_v3": ("DeepseekV3Config", dict(
        kv_lora_rank=16, q_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=12,
        n_routed_experts=4, num_experts_per_tok=2, first_k_dense_replace=1, moe_intermediate_size=32, n_group=1,
        topk_group=1, num_key_value_heads=4)),
    "qwen3_next": ("Qwen3NextConfig", dict(
        linear_num_key_heads=2, linear_key_head_dim=8, linear_num_value_heads=4, linear_value_head_dim=8,
        linear_conv_kernel_dim=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
        shared_expert_intermediate_size=32, head_dim=16)),
    "jamba": ("JambaConfig", dict(attn_layer_period=2, attn_layer_offset=1, mamba_d_state=8, mamba_d_conv=4,
                                  mamba_expand=2, num_experts=2, expert_layer_period=2, expert_layer_offset=1)),
    "bamba": ("BambaConfig", dict(attn_layer_indices=[1, 3], mamba_n_heads=8, mamba_d_head=16, mamba_d_state=8,
                                  mamba_d_conv=4, mamba_expand=2, mamba_n_groups=1)),
}


def _cache_tensors(cache):
    torch = pytest.importorskip("torch")
    for layer in cache.layers:
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                yield tensor
        for name in ("conv_states", "recurrent_states"):
            states = getattr(layer, name, None)
            if isinstance(states, dict):
                yield from (t for t in states.values() if isinstance(t, torch.Tensor))


@pytest.fixture(scope="module", params=sorted(CASES))
def allocated(request):
    """(config dict, bytes of the cache's tensors, bytes of their storages) after a real forward."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    name, extra = CASES[request.param]
    config = getattr(transformers, name)(**{**BASE, **extra})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, trust_remote_code=False).eval()
    with torch.no_grad():
        out = model(torch.randint(0, 128, (BATCH, PROMPT)), use_cache=True)
        out = model(torch.randint(0, 128, (BATCH, 1)), cache=out.past_key_values, use_cache=True)
    tensors = list(_cache_tensors(out.past_key_values))
    assert tensors, "the model cached nothing: the walk above no longer finds transformers' cache tensors"
    return (request.param, config.to_dict(), sum(t.numel() * t.element_size() for t in tensors),
            sum(t.untyped_storage().nbytes() for t in tensors))


def test_runtime_transformers_equals_what_transformers_allocates(allocated):
    name, config, held, _ = allocated
    card = architecture.from_config(config)
    estimate = kv_cache.estimate(card, context=CONTEXT, batch=BATCH, kv_dtype_name="float32",
                                 runtime="transformers")
    assert estimate.kv_bytes + estimate.state_bytes == held, (name, estimate.lines)


def test_sliding_storage_is_the_window(allocated):
    """The storage behind a sliding layer holds W tokens while decoding: the vLLM convention, min(L, W)."""
    name, config, _, storage = allocated
    card = architecture.from_config(config)
    estimate = kv_cache.estimate(card, context=CONTEXT, batch=BATCH, kv_dtype_name="float32", runtime="vllm")
    assert estimate.kv_bytes + estimate.state_bytes == storage, (name, estimate.lines)


# ---- hand-checked figures --------------------------------------------------------------------

LLAMA2_7B = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 32000, "intermediate_size": 11008,
             "max_position_embeddings": 4096}
LLAMA3_8B = {**LLAMA2_7B, "num_key_value_heads": 8, "vocab_size": 128256, "intermediate_size": 14336,
             "max_position_embeddings": 8192}


def test_published_llama2_7b_and_llama3_8b():
    assert kv_cache.estimate(architecture.from_config(LLAMA2_7B), context=4096,
                             kv_dtype_name="float16").kv_bytes == 2_147_483_648
    assert kv_cache.estimate(architecture.from_config(LLAMA3_8B), context=8192,
                             kv_dtype_name="fp16").kv_bytes == 1_073_741_824


@pytest.mark.parametrize(("name", "per_token_bytes"), [
    ("float32", 4 * 2048), ("bf16", 2 * 2048), ("fp8", 2048),
    # llama.cpp block types: 2048 elements = 64 blocks of 32; Q8_0 34 B, Q4_0 18 B a block
    ("q8_0", 64 * 34), ("q4_0", 64 * 18),
])
def test_kv_dtypes_bytes_per_element_include_block_scales(name, per_token_bytes):
    card = architecture.from_config(LLAMA3_8B)
    assert kv_cache.estimate(card, context=1, kv_dtype_name=name).kv_bytes == 32 * per_token_bytes


DEEPSEEK_V3 = {"model_type": "deepseek_v3", "num_hidden_layers": 61, "hidden_size": 7168,
               "num_attention_heads": 128, "num_key_value_heads": 128, "kv_lora_rank": 512,
               "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128, "vocab_size": 129280,
               "n_routed_experts": 256, "num_experts_per_tok": 8, "n_shared_experts": 1,
               "max_position_embeddings": 163840}


def test_mla_latent_for_vllm_llama_cpp_and_transformers_5_full_heads_for_transformers_4():
    card = architecture.from_config(DEEPSEEK_V3)
    assert set(card.layer_kinds) == {"mla"}
    # vLLM / llama.cpp: (512 + 64) elements per token and layer, 2 bytes each
    for runtime in ("vllm", "llama.cpp", "transformers"):
        e = kv_cache.estimate(card, context=1000, kv_dtype_name="bf16", runtime=runtime)
        assert e.kv_bytes == 61 * 1000 * 576 * 2
    # transformers 4: 128 heads x (128 + 64) keys + 128 heads x 128 values
    e = kv_cache.estimate(card, context=1000, kv_dtype_name="bf16", runtime="transformers-4")
    assert e.kv_bytes == 61 * 1000 * 128 * (192 + 128) * 2
    # the table says which layout each runtime caches
    from paramscope.renderers.memory_text import inference_rows

    def labels(runtime: str) -> list[str]:
        kv = kv_cache.estimate(card, context=1000, kv_dtype_name="bf16", runtime=runtime)
        return [item for _, item, _, _ in inference_rows(kv_cache.Inference(card=card, kv=kv, fit=None,
                weights_bytes=0, weights_as=None, show_card=False)) if item.startswith("KV cache")]

    assert labels("vllm") == ["KV cache, MLA latent"]
    assert labels("transformers-4") == ["KV cache, MLA, full per-head K/V"]


def test_sliding_window_layers_stop_growing_and_fit_reports_unbounded():
    mistral = {**LLAMA3_8B, "model_type": "mistral", "sliding_window": 4096}
    card = architecture.from_config(mistral)
    short = kv_cache.estimate(card, context=4096, kv_dtype_name="fp16").kv_bytes
    assert kv_cache.estimate(card, context=100_000, kv_dtype_name="fp16").kv_bytes == short
    fit = kv_cache.solve(card, budget=short + 10, weights_bytes=0, context=4096, batch=1, kv_dtype_name="fp16")
    assert fit.max_context_unbounded and fit.max_batch == 1


def test_solve_is_the_largest_that_fits():
    card = architecture.from_config(LLAMA3_8B)
    per_token = 32 * 2048 * 2  # 131,072 B
    weights = 16_060_522_496
    budget = 24 << 30
    fit = kv_cache.solve(card, budget=budget, weights_bytes=weights, context=8192, batch=8, kv_dtype_name="fp16")
    free = budget - weights
    assert fit.max_context == free // (8 * per_token)
    assert fit.max_batch == free // (8192 * per_token)
    # one byte less than the weights leaves nothing: neither fits
    none = kv_cache.solve(card, budget=weights - 1, weights_bytes=weights, context=8192, batch=1)
    assert none.max_context is None and none.max_batch is None


def test_recurrent_state_does_not_grow_with_context():
    config = {"model_type": "mamba", "num_hidden_layers": 2, "hidden_size": 8, "intermediate_size": 16,
              "state_size": 4, "conv_kernel": 3, "vocab_size": 10}
    card = architecture.from_config(config)
    assert card.layer_kinds == ("recurrent", "recurrent")
    for length in (1, 10_000):
        e = kv_cache.estimate(card, context=length, batch=3, kv_dtype_name="bf16")
        assert (e.kv_bytes, e.state_bytes) == (0, 2 * 3 * 16 * (3 + 4) * 2)
    # llama.cpp keeps the state in float32 whatever the K/V type
    assert kv_cache.estimate(card, context=1, kv_dtype_name="q8_0", runtime="llama.cpp").state_bytes == 2 * 16 * 7 * 4


@pytest.mark.parametrize(("text", "size"), [("24GiB", 24 << 30), ("24GB", 24 * 10**9), ("80G", 80 << 30),
                                            ("1.5TiB", 3 << 39), ("1000", 1000)])
def test_parse_size(text, size):
    assert kv_cache.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GiB", "-1GiB", "nanGB", "1e99999999GB", "1/2GB", "24 parsecs", "0", "2e20GiB"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        kv_cache.parse_size(text)


def test_unknown_dtype_and_runtime_are_refused():
    card = architecture.from_config(LLAMA3_8B)
    with pytest.raises(ValueError, match="unknown KV cache dtype 'fp7'"):
        kv_cache.estimate(card, context=1, kv_dtype_name="fp7")
    with pytest.raises(ValueError, match="unknown runtime 'tgi'"):
        kv_cache.estimate(card, context=1, runtime="tgi")


# ---- the HTML memory panel's script computes what kv_cache does -------------------------------------

PANEL_CARDS = {
    "llama3": LLAMA3_8B,
    "mistral": {**LLAMA3_8B, "model_type": "mistral", "sliding_window": 4096},
    "gemma3": {"model_type": "gemma3_text", "num_hidden_layers": 12, "hidden_size": 1152, "num_attention_heads": 4,
               "num_key_value_heads": 1, "head_dim": 256, "sliding_window": 512, "vocab_size": 262144,
               "max_position_embeddings": 32768},
    "deepseek_v3": DEEPSEEK_V3,
    "jamba": {"model_type": "jamba", "num_hidden_layers": 8, "hidden_size": 64, "num_attention_heads": 4,
              "num_key_value_heads": 2, "attn_layer_period": 4, "attn_layer_offset": 2, "mamba_d_state": 16,
              "mamba_d_conv": 4, "mamba_expand": 2, "vocab_size": 100},
}


def test_html_panel_script_equals_kv_cache(tmp_path):
    """memory.js (run by node) against kv_cache.estimate, for every card, runtime and a few settings."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    from paramscope.records import Inventory
    from paramscope.renderers import html
    from paramscope.report import Report

    script = Path(html.__file__).parent / "assets" / "memory.js"
    settings = [(1, 1), (4095, 3), (4097, 2), (100_000, 8), (10**9, 1000)]
    cases, expected = [], []
    for config in PANEL_CARDS.values():
        card = architecture.from_config(config)
        report = Report(Inventory("m", "config", [], architecture=card))
        doc, _ = html._memory_data(report)
        for runtime in kv_cache.RUNTIMES:
            for kv in html.MEMORY_KV_DTYPES:
                for context, batch in settings:
                    cases.append([doc, context, batch, kv, runtime])
                    e = kv_cache.estimate(card, context=context, batch=batch, kv_dtype_name=kv, runtime=runtime)
                    expected.append([str(e.kv_bytes), str(e.state_bytes)])
    runner = tmp_path / "run.js"
    runner.write_text(
        f"const m = require({json.dumps(str(script))});\n"
        "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        "console.log(JSON.stringify(cases.map(c => { const e = m.estimate(...c); "
        "return [e.kv.toString(), e.state.toString()]; })));\n")
    out = subprocess.run([node, str(runner)], input=json.dumps(cases), capture_output=True, text=True, timeout=60,
                         check=True)
    assert json.loads(out.stdout) == expected


def test_html_page_has_the_panel_with_the_default_figures():
    from paramscope.records import Inventory
    from paramscope.renderers import html
    from paramscope.report import Report

    card = architecture.from_config(LLAMA3_8B)
    report = Report(Inventory("m", "config", [], architecture=card))
    panel = html._memory(report)
    # default: 4096 tokens, batch 1, float16, vllm: 4096 x 131,072 B = 512 MiB
    assert 'id="mem-full" data-value="536870912"' in panel
    assert '<script type="application/json" id="paramscope-memory">' in panel and "http" not in panel.split(
        "paramscope-memory")[1]
    # a source without a card has no panel (and the golden pages stay as they were)
    assert html._memory(Report(Inventory("m", "safetensors", []))) == ""
