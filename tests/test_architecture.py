"""paramscope.architecture: the card read from config.json, GGUF key/values and live models.

Independent references: transformers' own configs (the per-layer ``layer_types`` each config class
builds from the raw keys), gguf-py's ``constants.Keys`` (the GGUF key names) and its ``GGUFWriter``
(files with scalar and per-layer ``head_count_kv``), and hand-written configs of published models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import paramscope
from paramscope import architecture
from paramscope.architecture import from_config, from_gguf

KINDS = {"full_attention": "full", "sliding_attention": "sliding", "linear_attention": "recurrent"}


@pytest.mark.parametrize("keys", [
    {"num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 2,
     "vocab_size": 100, "intermediate_size": 256, "max_position_embeddings": 512},
    {"n_layer": 4, "n_embd": 64, "n_head": 8, "n_head_kv": 2, "n_vocab": 100, "n_inner": 256, "n_positions": 512},
    {"n_layers": 4, "d_model": 64, "n_heads": 8, "n_kv_heads": 2, "vocab_size": 100, "d_ff": 256, "n_ctx": 512},
    {"num_layers": 4, "hidden_size": 64, "num_attention_heads": 8, "multi_query_group_num": 2,
     "padded_vocab_size": 100, "ffn_hidden_size": 256, "seq_length": 512, "kv_channels": 8},
])
def test_synonyms_give_one_card(keys):
    card = from_config(keys)
    assert (card.layers, card.hidden_size, card.heads, card.kv_heads, card.head_dim, card.vocab_size,
            card.ffn_size, card.max_context) == (4, 64, 8, (2,) * 4, 8, 100, 256, 512)
    assert card.layer_kinds == ("full",) * 4
    assert card.unknown == ()


def test_unknown_is_said_never_guessed():
    card = from_config({"model_type": "mystery", "hidden_size": 64})
    assert set(card.unknown) == {"layers", "heads", "kv_heads", "head_dim", "layer_kinds", "vocab_size"}
    # a default that stands in is named in the notes
    card = from_config({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10})
    assert card.kv_heads == (4, 4) and card.head_dim == 16
    assert any("num_key_value_heads not stated" in n for n in card.notes)
    assert any("head_dim not stated" in n for n in card.notes)


@pytest.mark.parametrize("value", [True, -3, 0, "32", 1.5, 10**30, None, [1, 2]])
def test_hostile_values_leave_fields_unknown(value):
    card = from_config({"num_hidden_layers": value, "hidden_size": value, "num_attention_heads": value,
                        "layer_types": value, "sliding_window": value})
    assert card.layers is None and card.hidden_size is None and card.layer_kinds is None


def test_too_many_layers_is_not_believed():
    card = from_config({"num_hidden_layers": 10**9, "hidden_size": 64, "num_attention_heads": 4})
    assert card.layers is None and card.kv_heads is None
    assert any("more than paramscope believes" in n for n in card.notes)


def test_layer_types_that_do_not_match_the_layers_are_unknown():
    card = from_config({"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 4,
                        "layer_types": ["full_attention", "sliding_attention"]})
    assert card.layer_kinds is None and "layer_kinds" in card.unknown


CONFIGS = {
    "Gemma2Config": dict(num_hidden_layers=5, sliding_window=16, head_dim=16),
    "Gemma3TextConfig": dict(num_hidden_layers=13, sliding_window=16, head_dim=16),
    "Qwen2Config": dict(num_hidden_layers=6, use_sliding_window=True, sliding_window=16, max_window_layers=4),
    "Qwen3NextConfig": dict(num_hidden_layers=8),
    "JambaConfig": dict(num_hidden_layers=8, attn_layer_period=4, attn_layer_offset=2),
    "MistralConfig": dict(num_hidden_layers=3, sliding_window=16),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_layer_kinds_match_transformers_layer_types(name):
    """The raw keys, without ``layer_types``, give the kinds transformers' cache builds from the config."""
    transformers = pytest.importorskip("transformers")
    from transformers.cache_utils import get_layer_types_and_kwargs

    config = getattr(transformers, name)(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                         vocab_size=100, **CONFIGS[name])
    raw = {k: v for k, v in config.to_dict().items() if k not in ("layer_types", "layers_block_type")}
    expected = tuple(KINDS[t] for t in get_layer_types_and_kwargs(config)[0])
    assert from_config(raw).layer_kinds == expected


def test_sliding_window_pattern_of_older_gemma3_configs():
    raw = {"model_type": "gemma3_text", "num_hidden_layers": 8, "hidden_size": 64, "num_attention_heads": 4,
           "num_key_value_heads": 1, "head_dim": 16, "sliding_window": 512, "sliding_window_pattern": 4,
           "vocab_size": 10}
    assert from_config(raw).layer_kinds == ("sliding",) * 3 + ("full",) + ("sliding",) * 3 + ("full",)


def test_multimodal_wrapper_reads_text_config():
    raw = {"model_type": "gemma3", "vision_config": {"hidden_size": 1152, "num_hidden_layers": 27},
           "text_config": {"model_type": "gemma3_text", "num_hidden_layers": 2, "hidden_size": 64,
                           "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 10,
                           "layer_types": ["sliding_attention", "full_attention"], "sliding_window": 1024}}
    card = from_config(raw)
    assert (card.model_type, card.layers, card.layer_kinds, card.sliding_window) == (
        "gemma3_text", 2, ("sliding", "full"), 1024)


def test_deepseek_v3_card():
    card = from_config({"model_type": "deepseek_v3", "num_hidden_layers": 61, "hidden_size": 7168,
                        "num_attention_heads": 128, "num_key_value_heads": 128, "kv_lora_rank": 512,
                        "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128, "vocab_size": 129280,
                        "n_routed_experts": 256, "num_experts_per_tok": 8, "n_shared_experts": 1,
                        "moe_intermediate_size": 2048, "intermediate_size": 18432})
    assert card.layer_kinds == ("mla",) * 61
    assert (card.kv_lora_rank, card.qk_rope_head_dim, card.head_dim, card.v_dim) == (512, 64, 192, 128)
    assert (card.experts, card.experts_per_token, card.shared_experts, card.moe_ffn_size) == (256, 8, 1, 2048)


# ---- GGUF ----------------------------------------------------------------------------------------

def test_gguf_keys_are_gguf_py_constants():
    gguf = pytest.importorskip("gguf")
    K = gguf.Keys
    expected = {"layers": K.LLM.BLOCK_COUNT, "hidden_size": K.LLM.EMBEDDING_LENGTH,
                "heads": K.Attention.HEAD_COUNT, "kv_heads": K.Attention.HEAD_COUNT_KV,
                "head_dim": K.Attention.KEY_LENGTH, "v_head_dim": K.Attention.VALUE_LENGTH,
                "sliding_window": K.Attention.SLIDING_WINDOW, "kv_lora_rank": K.Attention.KV_LORA_RANK,
                "experts": K.LLM.EXPERT_COUNT, "experts_per_token": K.LLM.EXPERT_USED_COUNT,
                "shared_experts": K.LLM.EXPERT_SHARED_COUNT, "ffn_size": K.LLM.FEED_FORWARD_LENGTH,
                "moe_ffn_size": K.LLM.EXPERT_FEED_FORWARD_LENGTH, "vocab_size": K.LLM.VOCAB_SIZE,
                "max_context": K.LLM.CONTEXT_LENGTH, "ssm_conv_kernel": K.SSM.CONV_KERNEL,
                "ssm_inner_size": K.SSM.INNER_SIZE, "ssm_state_size": K.SSM.STATE_SIZE,
                "ssm_group_count": K.SSM.GROUP_COUNT, "rope_dims": K.Rope.DIMENSION_COUNT}
    assert {k: "{arch}." + v for k, v in architecture.GGUF_KEYS.items()} == expected


def _gguf(path: Path, arch: str, layers: int, kv: int | list[int], **extra: int) -> str:
    pytest.importorskip("gguf")
    from tests.sources._gguf_helpers import write_gguf

    def configure(w) -> None:
        w.add_block_count(layers)
        w.add_embedding_length(64)
        w.add_head_count(8)
        w.add_head_count_kv(kv)
        w.add_context_length(4096)
        w.add_feed_forward_length(128)
        for key, value in extra.items():
            w.add_uint32(f"{arch}.{key}", value)

    write_gguf(path, arch, {"token_embd.weight": (10, 64)}, configure)
    return str(path)


def test_gguf_scalar_head_count_kv(tmp_path):
    card = paramscope.inspect(_gguf(tmp_path / "m.gguf", "llama", 4, 2)).architecture
    assert (card.source, card.layers, card.heads, card.kv_heads, card.head_dim, card.max_context) == (
        "gguf", 4, 8, (2, 2, 2, 2), 8, 4096)
    assert card.layer_kinds == ("full",) * 4


def test_gguf_per_layer_head_count_kv_marks_recurrent_layers(tmp_path):
    """A hybrid (Jamba-style) file: 40 layers, attention every 8th, K/V heads 0 on the Mamba layers."""
    kv = [2 if i % 8 == 4 else 0 for i in range(40)]
    path = _gguf(tmp_path / "j.gguf", "jamba", 40, kv,
                 **{"ssm.conv_kernel": 4, "ssm.inner_size": 128, "ssm.state_size": 16})
    card = paramscope.inspect(path).architecture
    assert card.kv_heads == tuple(kv)
    assert card.layer_kinds == tuple("full" if h else "recurrent" for h in kv)
    # llama.cpp: (d_conv - 1) * d_inner conv state + d_state * d_inner SSM state per recurrent layer
    assert card.recurrent_state_elements == tuple(0 if h else 3 * 128 + 16 * 128 for h in kv)


def test_gguf_gemma2_window_follows_llama_cpp_pattern(tmp_path):
    path = _gguf(tmp_path / "g.gguf", "gemma2", 4, 4, **{"attention.sliding_window": 4096})
    card = paramscope.inspect(path).architecture
    assert card.layer_kinds == ("sliding", "full", "sliding", "full") and card.sliding_window == 4096


@pytest.mark.parametrize(("metadata", "kinds"), [
    ({"attention.sliding_window": 512, "attention.sliding_window_pattern": 3}, "ssfssf"),  # a period
    ({"attention.sliding_window": 512, "attention.sliding_window_pattern": [True, False] * 3}, "sfsfsf"),
    ({"attention.sliding_window": 512}, "ssssss"),  # llama: no period known, every layer slides
])
def test_gguf_sliding_window_pattern_key(metadata, kinds):
    """llama.cpp's set_swa_pattern(n): layer il slides when il % n < n - 1."""
    md = {"general.architecture": "llama", "llama.block_count": 6, "llama.embedding_length": 64,
          "llama.attention.head_count": 4, **{f"llama.{k}": v for k, v in metadata.items()}}
    assert from_gguf(md).layer_kinds == tuple({"s": "sliding", "f": "full"}[k] for k in kinds)


def test_gguf_metadata_without_architecture():
    card = from_gguf({"general.name": "x"})
    assert card.layers is None and "general.architecture is not stated" in card.notes


# ---- live models and the report ----------------------------------------------------------------

def test_live_model_card_is_its_config():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.Gemma2Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                       num_hidden_layers=4, vocab_size=100, intermediate_size=96, sliding_window=32)
    with torch.device("meta"):
        model = transformers.Gemma2ForCausalLM(config)
    card = paramscope.inspect(model).architecture
    assert card.source == "live"
    assert card.layer_kinds == tuple(KINDS[t] for t in config.layer_types)
    assert (card.kv_heads, card.head_dim, card.sliding_window) == ((2,) * 4, 16, 32)


def test_a_module_without_config_has_no_card():
    torch = pytest.importorskip("torch")
    assert paramscope.inspect(torch.nn.Linear(2, 2)).architecture is None


def test_reading_a_card_from_a_gguf_imports_neither_torch_nor_transformers(tmp_path):
    path = _gguf(tmp_path / "m.gguf", "llama", 2, 2)
    code = ("import sys, paramscope.pipeline as p; c = p.read(sys.argv[1]).architecture; "
            "assert c.layers == 2; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_card_to_dict_is_json():
    card = from_config({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                        "num_key_value_heads": 2, "vocab_size": 10})
    doc = json.loads(json.dumps(card.to_dict()))
    assert doc["kv_heads"] == [2, 2] and doc["layer_kinds"] == ["full", "full"] and doc["unknown"] == []


def test_json_report_carries_the_card_and_validates(tmp_path):
    from importlib.resources import files

    jsonschema = pytest.importorskip("jsonschema")
    from paramscope.renderers import render, render_chunks

    path = _gguf(tmp_path / "m.gguf", "llama", 3, [2, 0, 2])
    report = paramscope.inspect(path)
    for text in (render(report, "json"), "".join(render_chunks(report, "json"))):
        doc = json.loads(text)
        assert doc["architecture"]["kv_heads"] == [2, 0, 2]
        assert doc["architecture"]["layer_kinds"] == ["full", "recurrent", "full"]
        jsonschema.validate(doc, json.loads(files("paramscope").joinpath("schema/report-v1.json").read_text()))


def test_chunked_attention_window_is_the_chunk():
    """transformers' get_layer_types_and_kwargs gives a chunked layer a window of attention_chunk_size."""
    card = from_config({"model_type": "llama4_text", "num_hidden_layers": 4, "hidden_size": 64,
                        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 10,
                        "attention_chunk_size": 8192,
                        "layer_types": ["chunked_attention"] * 3 + ["full_attention"]})
    assert card.layer_kinds == ("sliding",) * 3 + ("full",) and card.sliding_window == 8192
