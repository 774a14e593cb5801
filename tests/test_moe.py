"""Mixture of experts: total vs active per token and the "8x7B" size label, from configs and GGUF key/values.

Every figure is computed by hand from the config's numbers, and the totals are checked against
``sum(p.numel() for p in model.parameters())`` of the transformers model built on the meta device.
"""

from __future__ import annotations

import math

import gguf
import pytest

import paramscope
from paramscope import moe
from paramscope.hf_config import apply_config
from paramscope.report import Report
from paramscope.sources.files import read_path
from tests.sources._gguf_helpers import write_gguf
from tests.sources._st_helpers import LLAMA2_7B, LLAMA2_7B_PARAMS, llama_tensors, write_sparse


@pytest.fixture(scope="module")
def torch_meta():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from paramscope.sources.live import from_module

    def build(model_class, config):
        with torch.device("meta"):
            model = model_class(config)
        reference = sum(p.numel() for p in model.parameters())
        return from_module(model), reference

    return build


def test_mixtral_8x7b_total_active_and_label(torch_meta):
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig()  # the defaults are Mixtral-8x7B's
    inventory, reference = torch_meta(MixtralForCausalLM, config)
    report = Report(apply_config(inventory, config.to_dict()))
    assert report.total == reference == 46_702_792_704
    # by hand: per layer 8 experts of (w1, w3: 14336x4096; w2: 4096x14336), 2 of them used per token
    h, i, layers, experts, k = 4096, 14336, 32, 8, 2
    routed = layers * experts * 3 * h * i
    assert routed == 45_097_156_608
    active = report.total - routed + routed * k // experts
    assert report.active == active == 12_879_925_248
    assert report.size_label == "8x7B"
    assert report.metadata["moe"] == {"experts": 8, "experts_per_token": 2, "shared_experts": 0}
    doc = report.to_dict()
    assert (doc["total"], doc["active"], doc["size_label"]) == (46_702_792_704, 12_879_925_248, "8x7B")


def test_qwen2_moe_shared_expert_is_always_active(torch_meta):
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    config = Qwen2MoeConfig(
        vocab_size=100, hidden_size=16, intermediate_size=32, moe_intermediate_size=8,
        shared_expert_intermediate_size=24, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        num_experts=4, num_experts_per_tok=2, tie_word_embeddings=False,
    )
    inventory, reference = torch_meta(Qwen2MoeForCausalLM, config)
    report = Report(apply_config(inventory, config.to_dict()))
    h, v, mi, si, e = 16, 100, 8, 24, 4
    attention = 3 * (h * h + h) + h * h  # q, k, v with bias; o without
    per_layer = attention + e * h + e * 3 * h * mi + 3 * h * si + h + 2 * h  # router, experts, shared, its gate, norms
    total = 2 * v * h + 2 * per_layer + h
    assert report.total == reference == total
    routed = 2 * e * 3 * h * mi
    assert report.active == total - routed + routed * 2 // 4
    assert report.metadata["moe"] == {"experts": 4, "experts_per_token": 2, "shared_experts": 1}


def _deepseek_like(hidden=64, vocab=100, layers=3, dense_inter=128, moe_inter=32, experts=8, shared=1):
    """(name, shape) of a DeepSeek-style model: per-expert modules, shared experts, the first layer dense."""
    out = [("model.embed_tokens.weight", (vocab, hidden))]
    for n in range(layers):
        p = f"model.layers.{n}."
        out += [(p + f"self_attn.{x}_proj.weight", (hidden, hidden)) for x in "qkvo"]
        out += [(p + "input_layernorm.weight", (hidden,)), (p + "post_attention_layernorm.weight", (hidden,))]
        mlp = [("gate_proj", (None, hidden)), ("up_proj", (None, hidden)), ("down_proj", (hidden, None))]

        def shaped(width, mlp=mlp):
            return [(name, tuple(width if d is None else d for d in shape)) for name, shape in mlp]

        if n == 0:
            out += [(p + f"mlp.{m}.weight", s) for m, s in shaped(dense_inter)]
            continue
        out.append((p + "mlp.gate.weight", (experts, hidden)))
        for j in range(experts):
            out += [(p + f"mlp.experts.{j}.{m}.weight", s) for m, s in shaped(moe_inter)]
        out += [(p + f"mlp.shared_experts.{m}.weight", s) for m, s in shaped(moe_inter * shared)]
    out += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    return out


def test_deepseek_style_file_with_per_expert_modules(tmp_path):
    tensors = _deepseek_like()
    write_sparse(tmp_path / "model.safetensors", [(n, "BF16", s) for n, s in tensors])
    config = {"model_type": "deepseek_v3", "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1,
              "first_k_dense_replace": 1, "moe_intermediate_size": 32}
    report = Report(apply_config(read_path(tmp_path / "model.safetensors"), config))
    total = sum(math.prod(s) for _, s in tensors)
    assert report.total == total
    routed = 2 * 8 * 3 * 32 * 64  # layers 1 and 2, eight experts of three 32x64 matrices
    assert report.active == total - routed + routed * 2 // 8
    assert report.metadata["moe"] == {"experts": 8, "experts_per_token": 2, "shared_experts": 1}
    assert total - routed + routed // 8 == 112_576  # one expert path: everything else plus one expert's share
    assert report.size_label == "8x113K"


def test_gguf_moe_from_its_key_values(tmp_path):
    e, k, h, ff, vocab = 4, 2, 32, 64, 50
    path = tmp_path / "moe.gguf"
    # numpy order is ggml's ne reversed: [E, rows, cols]
    tensors = {
        "token_embd.weight": (vocab, h),
        "blk.0.attn_q.weight": (h, h), "blk.0.attn_k.weight": (h, h), "blk.0.attn_v.weight": (h, h),
        "blk.0.attn_output.weight": (h, h), "blk.0.attn_norm.weight": (h,), "blk.0.ffn_norm.weight": (h,),
        "blk.0.ffn_gate_inp.weight": (e, h),
        "blk.0.ffn_gate_exps.weight": (e, ff, h), "blk.0.ffn_up_exps.weight": (e, ff, h),
        "blk.0.ffn_down_exps.weight": (e, h, ff),
        "blk.0.ffn_gate_shexp.weight": (ff, h), "blk.0.ffn_up_shexp.weight": (ff, h),
        "blk.0.ffn_down_shexp.weight": (h, ff),
        "output_norm.weight": (h,), "output.weight": (vocab, h),
    }

    def experts(w: gguf.GGUFWriter) -> None:
        w.add_block_count(1)
        w.add_expert_count(e)
        w.add_expert_used_count(k)
        w.add_expert_shared_count(1)

    reference = write_gguf(path, "qwen2moe", tensors, experts)
    report = Report(apply_config(read_path(path), None))
    assert report.total == reference == sum(math.prod(s) for s in tensors.values())
    routed = 3 * e * ff * h
    assert report.active == reference - routed + routed * k // e
    assert report.metadata["moe"] == {"experts": 4, "experts_per_token": 2, "shared_experts": 1}
    assert report.size_label.startswith("4x")
    # the file alone, as the CLI reads it: read_path applies what the GGUF key/values say
    assert paramscope.inspect(path).active == report.active


def test_dense_models_have_no_active_figure_and_a_plain_label(tmp_path, torch_meta):
    write_sparse(tmp_path / "llama.safetensors", [(n, "F16", s) for n, s in llama_tensors(**LLAMA2_7B)])
    report = Report(apply_config(read_path(tmp_path / "llama.safetensors"), {"model_type": "llama"}))
    assert report.total == LLAMA2_7B_PARAMS
    assert report.active is None
    assert report.size_label == "7B"

    from transformers import GPT2Config, GPT2LMHeadModel

    inventory, reference = torch_meta(GPT2LMHeadModel, GPT2Config())
    report = Report(apply_config(inventory, GPT2Config().to_dict()))
    assert report.total == reference == 124_439_808
    assert report.size_label == "124M"
    assert report.active is None


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"num_local_experts": 8, "num_experts_per_tok": 2}, (8, 2, 0)),
        ({"num_experts": 128, "num_experts_per_tok": 8}, (128, 8, 0)),  # Qwen3-MoE
        ({"num_experts": 60, "num_experts_per_tok": 4, "shared_expert_intermediate_size": 5632}, (60, 4, 1)),
        ({"n_routed_experts": 256, "num_experts_per_tok": 8, "n_shared_experts": 1}, (256, 8, 1)),  # DeepSeek-V3
        ({"ffn_config": {"moe_num_experts": 16, "moe_top_k": 4}}, (16, 4, 0)),  # DBRX
        ({"text_config": {"num_local_experts": 16, "num_experts_per_tok": 1}}, (16, 1, 0)),  # Llama 4 Scout
        ({"num_experts": 1, "num_experts_per_tok": 1}, None),
        ({"num_local_experts": 8}, None),
        ({"num_local_experts": 2, "num_experts_per_tok": 4}, None),
        ({"num_local_experts": True, "num_experts_per_tok": 1}, None),
        ({"hidden_size": 4096}, None),
    ],
)
def test_expert_counts_from_config_keys(config, expected):
    found = moe.from_config(config)
    if expected is None:
        assert found is None
    else:
        assert (found["experts"], found["experts_per_token"], found["shared_experts"]) == expected


def test_expert_counts_from_gguf_metadata():
    meta = {"general.architecture": "deepseek2", "deepseek2.expert_count": 64, "deepseek2.expert_used_count": 6,
            "deepseek2.expert_shared_count": 2}
    assert moe.from_gguf(meta) == {"experts": 64, "experts_per_token": 6, "shared_experts": 2}
    assert moe.from_gguf({"general.architecture": "llama", "llama.expert_count": 0}) is None
    assert moe.from_gguf({}) is None


# ---- review round 4: DBRX, JetMoE and Switch-style experts -------------------------------------------


def _routed_reference(model, is_expert_module) -> int:
    """Parameters inside the modules the model itself routes tokens to (by class / position, not by name)."""
    seen: set[int] = set()
    total = 0
    for _, module in model.named_modules():
        if is_expert_module(module):
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
    return total


def _meta_model(build):
    import torch

    with torch.device("meta"):
        return build()


@pytest.mark.parametrize("family", ["dbrx", "jetmoe", "switch"])
def test_fused_and_named_expert_layouts_are_routed(family):
    import warnings

    import transformers

    from paramscope.sources.live import from_module

    warnings.simplefilter("ignore")
    if family == "dbrx":  # ffn.experts.mlp.{w1,v1,w2} [E*I, H]
        config = transformers.DbrxConfig(vocab_size=100, d_model=32, n_heads=4, n_layers=2, attn_config={
            "kv_n_heads": 2, "rope_theta": 10000.0}, ffn_config={"moe_num_experts": 4, "moe_top_k": 2,
                                                               "ffn_hidden_size": 64})
        model = _meta_model(lambda: transformers.AutoModelForCausalLM.from_config(config))
        routed = _routed_reference(model, lambda m: type(m).__name__ == "DbrxExperts")
        experts, k = 4, 2
        assert routed == 2 * 3 * 4 * 64 * 32  # layers x (w1, v1, w2) x E*I x H
    elif family == "jetmoe":  # input_linear / output_linear [E, out, in], in the MLP and the attention experts
        config = transformers.JetMoeConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_local_experts=4,
                                           num_experts_per_tok=2, kv_channels=8, num_key_value_heads=4)
        model = _meta_model(lambda: transformers.AutoModelForCausalLM.from_config(config))
        routed = _routed_reference(model, lambda m: type(m).__name__ == "JetMoeParallelExperts")
        experts, k = 4, 2
    else:  # Switch: experts.expert_<i>.{wi,wo}, top-1 routing with no per-token key in the config
        config = transformers.SwitchTransformersConfig(
            vocab_size=100, d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4, num_experts=4,
            d_kv=8, num_sparse_encoder_layers=1, num_sparse_decoder_layers=1)
        assert "num_experts_per_tok" not in config.to_dict()
        model = _meta_model(lambda: transformers.SwitchTransformersForConditionalGeneration(config))
        routed = sum(p.numel() for n, p in model.named_parameters() if ".mlp.experts." in n)
        assert routed == 2 * 4 * 2 * 32 * 64  # sparse layers x E x (wi, wo) x d_model x d_ff
        experts, k = 4, 1
    assert routed > 0
    report = Report(apply_config(from_module(model), config.to_dict()))
    assert report.total == sum(p.numel() for p in model.parameters())
    assert report.metadata["moe"]["experts"] == experts and report.metadata["moe"]["experts_per_token"] == k
    assert report.active == report.total - routed + routed * k // experts


def test_dbrx_file_at_real_size(tmp_path):
    """DBRX-132B's expert tensors as a checkpoint names them: 40 layers of w1/v1/w2 [16 * 10752, 6144]."""
    h, i, e, layers = 6144, 10752, 16, 40
    tensors = [(f"transformer.blocks.{n}.ffn.experts.mlp.{w}", "BF16", (e * i, h))
               for n in range(layers) for w in ("w1", "v1", "w2")]
    tensors += [(f"transformer.blocks.{n}.ffn.router.layer.weight", "BF16", (e, h)) for n in range(layers)]
    write_sparse(tmp_path / "model.safetensors", tensors)
    config = {"model_type": "dbrx", "ffn_config": {"moe_num_experts": e, "moe_top_k": 4}}
    report = Report(apply_config(read_path(tmp_path / "model.safetensors"), config))
    routed = layers * 3 * e * i * h
    assert report.total == routed + layers * e * h
    assert report.active == layers * e * h + routed * 4 // e


@pytest.mark.parametrize(("config", "expected"), [
    ({"model_type": "switch_transformers", "num_experts": 128}, (128, 1, 0)),  # SwitchTransformersTop1Router
    ({"model_type": "nllb-moe", "num_experts": 128}, (128, 2, 0)),  # NllbMoeTop2Router
    ({"model_type": "switch_transformers", "num_experts": 8, "num_experts_per_tok": 2}, (8, 2, 0)),  # key wins
    ({"model_type": "llama", "num_experts": 8}, None),  # no key, no known default: dense, no guess
])
def test_fixed_top_k_families(config, expected):
    found = moe.from_config(config)
    if expected is None:
        assert found is None
    else:
        assert (found["experts"], found["experts_per_token"], found["shared_experts"]) == expected


def test_fused_layout_rules_need_the_expert_shape():
    from paramscope.records import TensorRecord

    assert moe.is_routed(TensorRecord("a.experts.mlp.w1", (4 * 64, 32), "float32"), 4)
    assert not moe.is_routed(TensorRecord("a.experts.mlp.w1", (66, 32), "float32"), 4)
    assert moe.is_routed(TensorRecord("l.mlp.input_linear.weight", (4, 64, 32), "float32"), 4)
    assert not moe.is_routed(TensorRecord("l.mlp.input_linear.weight", (64, 32), "float32"), 4)
    assert not moe.is_routed(TensorRecord("l.mlp.input_linear.weight", (5, 64, 32), "float32"), 4)
    assert moe.is_routed(TensorRecord("m.experts.expert_3.wi.weight", (64, 32), "float32"), 4)
