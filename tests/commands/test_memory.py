"""paramscope memory SOURCE: the estimate as a command; its choices are the estimator's own."""

from __future__ import annotations

import json

import pytest

from paramscope.commands import build_parser, memory

from ._run import run, safetensors


def test_choices_match_the_estimator_and_its_renderer():
    # the parser lists them itself so that start-up need not import paramscope.memory
    from paramscope import memory as estimator
    from paramscope.renderers import memory_text

    assert tuple(estimator.OPTIMIZERS) == memory.OPTIMIZERS
    assert tuple(estimator.PRECISIONS) == memory.PRECISIONS
    assert memory.FORMATS == memory_text.FORMATS
    command = build_parser().commands["memory"]
    choices = {a.dest: a.choices for a in command._actions if a.choices}
    assert choices == {"optimizer": memory.OPTIMIZERS, "precision": memory.PRECISIONS, "zero": (1, 2, 3),
                       "format": memory.FORMATS, "runtime": memory.RUNTIMES, "recompute": memory.RECOMPUTE,
                       "attention": memory.ATTENTION}
    from paramscope import kv_cache

    assert tuple(kv_cache.RUNTIMES) == memory.RUNTIMES
    assert memory.INFERENCE_DEFAULTS["runtime"] == kv_cache.DEFAULT_RUNTIME


def test_a_checkpoint_by_hand(tmp_path):
    # 1,000 x 100 + 100 float32 parameters = 100,100; ZeRO-2 over 4 GPUs with Adam, mixed bf16:
    # weights 2 B (replicated), gradients 2 B / 4, fp32 master 4 B / 4, Adam m and v 8 B / 4.
    path = safetensors(tmp_path / "m.safetensors", {"fc.weight": (1000, 100), "fc.bias": (100,)})
    code, out, err = run("memory", path, "--optimizer", "adam", "--zero", "2", "--gpus", "4", "-f", "json")
    assert (code, err) == (0, "")
    doc = json.loads(out)["memory"]
    p = 100_100
    assert (doc["parameters"], doc["weights_stored"], doc["shard"], doc["gpus"]) == (p, 4 * p, "zero2", 4)
    assert doc["per_gpu"] == {"weights": 2 * p, "gradients": 2 * p // 4, "master": 4 * p // 4,
                              "optimizer_state": 8 * p // 4, "buffers": 0}


def test_no_source_is_the_example_and_defaults_are_adamw_mixed_bf16():
    code, out, _ = run("memory", "--format", "json")
    doc = json.loads(out)["memory"]
    p = 87_018
    assert (code, doc["parameters"], doc["optimizer"], doc["precision"], doc["shard"], doc["gpus"]) == (
        0, p, "adamw", "mixed-bf16", "none", 1)
    assert doc["training_total"] == (2 + 2 + 4 + 8) * p


def test_output_file(tmp_path):
    target = tmp_path / "memory.csv"
    code, out, err = run("memory", "-f", "csv", "-o", str(target))
    assert (code, out, err) == (0, "", "")
    assert target.read_text().startswith(run("memory", "-f", "csv")[1])


def test_unknown_frozen_width_is_bad_usage():
    code, out, err = run("memory", "--frozen-as", "int3")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("paramscope: error: unknown weight format 'int3'")


# ---- inference: --arch, --context, --batch, --kv-dtype, --runtime, --fit ---------------------------------

LLAMA3_8B = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 32,
             "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
             "intermediate_size": 14336, "max_position_embeddings": 8192, "torch_dtype": "bfloat16",
             "tie_word_embeddings": False}
# Llama-3-8B by hand: embeddings and head 2 * 128256 * 4096; per layer q,o 2 * 4096^2, k,v 2 * 4096 * 1024,
# MLP 3 * 4096 * 14336, two norms 2 * 4096; final norm 4096.
LLAMA3_PARAMS = 2 * 128256 * 4096 + 32 * (2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096) + 4096
PER_TOKEN = 32 * 8 * 128 * 2 * 2  # 32 layers, 8 K/V heads of 128, K and V, 2 bytes: 131,072 B


def _config(tmp_path, config):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_kv_cache_and_fit_of_llama3_8b_config(tmp_path):
    path = _config(tmp_path, LLAMA3_8B)
    code, out, err = run("memory", path, "--context", "8192", "--batch", "8", "--fit", "24GiB", "-f", "json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    inference = doc["memory"]["inference"]
    weights = inference["weights_bytes"]
    assert weights == 2 * LLAMA3_PARAMS + doc["memory"]["buffers"]
    kv = inference["kv_cache"]
    assert kv["kv_bytes"] == 8 * 8192 * PER_TOKEN == 8 * 1_073_741_824
    assert kv["total"] == weights + kv["kv_bytes"]
    fit = inference["fit"]
    free = (24 << 30) - weights
    assert (fit["max_context"], fit["max_batch"]) == (free // (8 * PER_TOKEN), free // (8192 * PER_TOKEN))
    assert doc["architecture"]["kv_heads"] == [8] * 32


def test_every_line_names_its_formula(tmp_path):
    path = _config(tmp_path, {**LLAMA3_8B, "model_type": "mistral", "sliding_window": 4096})
    code, out, err = run("memory", path, "--arch", "--context", "32768", "--kv-dtype", "fp8")
    assert (code, err) == (0, "")
    assert "  layer kinds: sliding x32" in out
    assert "  sliding window: 4096" in out
    # 32 layers x 4096 tokens x 2048 elements x 1 byte
    assert "inference (context 32768, batch 1, runtime vllm, K/V float8_e4m3fn)" in out
    assert ("KV cache, sliding window         256.0 MiB (268,435,456 B)  32 layers x batch 1 x min(32768, W = 4096) "
            "tokens x 8 kv_heads x (128 + 128) = 2048 elements (float8_e4m3fn)") in out
    assert "note: the context 32768 is longer than the model's max_context 8192" in out


def test_runtime_transformers_keeps_w_minus_1(tmp_path):
    path = _config(tmp_path, {**LLAMA3_8B, "model_type": "mistral", "sliding_window": 4096})
    code, out, err = run("memory", path, "--context", "32768", "--runtime", "transformers", "-f", "json")
    assert (code, err) == (0, "")
    assert json.loads(out)["memory"]["inference"]["kv_cache"]["kv_bytes"] == 4095 * PER_TOKEN


def test_fit_without_context_solves_the_batch_at_max_context(tmp_path):
    path = _config(tmp_path, LLAMA3_8B)
    _, out, _ = run("memory", path, "--fit", "80GB", "--weights-as", "int4", "-f", "json")
    fit = json.loads(out)["memory"]["inference"]["fit"]
    assert fit["context"] == 8192 and fit["batch"] == 1
    assert fit["max_batch"] == fit["free"] // (8192 * PER_TOKEN)


def test_a_file_without_architecture_is_refused_naming_it(tmp_path):
    path = safetensors(tmp_path / "m.safetensors", {"fc.weight": (10, 10)})
    code, out, err = run("memory", path, "--context", "100")
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith(f"paramscope: {path}: the source states no architecture")


def test_a_config_without_head_dim_is_refused_naming_what_is_missing(tmp_path):
    """Weights with a config beside them that gives no head_dim (hidden 8 is not a multiple of 3 heads)."""
    _config(tmp_path, {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 8, "vocab_size": 5,
                       "intermediate_size": 8, "num_attention_heads": 3})
    path = safetensors(tmp_path / "model.safetensors", {"fc.weight": (10, 10)})
    code, out, err = run("memory", path, "--context", "100")
    assert (code, out) == (1, "") and err.count("\n") == 1, err
    assert "head_dim" in err


def test_bad_inference_options_are_usage_errors():
    for argv, fragment in ((["--kv-dtype", "fp7", "--context", "1"], "unknown KV cache dtype 'fp7'"),
                           (["--kv-dtype", "fp8"], "--kv-dtype applies only with --context or --fit"),
                           (["--batch", "2", "--runtime", "vllm"], "--batch, --runtime apply only with --context"),
                           (["--fit", "lots"], "not a size"), (["--context", "0"], "must be 1 or more"),
                           (["--runtime", "tgi"], "invalid choice")):
        code, out, err = run("memory", *argv)
        assert (code, out) == (2, "") and fragment in err, (argv, err)


def test_inference_options_need_memory_in_the_alias(tmp_path):
    code, out, err = run(_config(tmp_path, LLAMA3_8B), "--context", "100")
    assert (code, out) == (2, "") and "--context applies only with --memory" in err
    code, out, err = run(_config(tmp_path, LLAMA3_8B), "--memory", "--arch", "-f", "markdown")
    assert code == 0 and "K/V heads per layer: 8 x32" in out


def test_csv_and_markdown_carry_the_inference_rows(tmp_path):
    path = _config(tmp_path, LLAMA3_8B)
    _, out, _ = run("memory", path, "--context", "100", "--kv-dtype", "q8_0", "-f", "csv")
    # 2048 elements a token and layer = 64 Q8_0 blocks of 34 bytes
    assert f",{32 * 100 * 64 * 34}," in out
    _, out, _ = run("memory", path, "--context", "100", "--fit", "20GiB", "-f", "markdown")
    assert "| KV cache, full attention |" in out and "- longest context at batch 1:" in out


# ---- hostile architecture fields: bounded time and memory, exit 0 or one line ----------------------------

def _hostile_gguf(path, **kv):
    pytest.importorskip("gguf")
    from tests.sources._gguf_helpers import write_gguf

    def configure(w) -> None:
        for key, value in kv.items():
            if isinstance(value, list):
                w.add_array(f"llama.{key}", value)
            else:
                w.add_uint64(f"llama.{key}", value)

    write_gguf(path, "llama", {"token_embd.weight": (4, 32)}, configure)
    return str(path)


HOSTILE = {
    "huge-dims": dict(block_count=65_536, embedding_length=2**40, **{"attention.head_count": 2**40,
                      "attention.head_count_kv": 2**40, "attention.key_length": 2**40, "context_length": 2**62}),
    "too-many-layers": dict(block_count=2**62, embedding_length=64, **{"attention.head_count": 4}),
    "zero-heads": dict(block_count=4, embedding_length=64, **{"attention.head_count": 0,
                                                             "attention.head_count_kv": 0}),
    "array-mismatch": dict(block_count=5, embedding_length=64, **{"attention.head_count": 4,
                                                                 "attention.head_count_kv": [1, 2, 3]}),
    "window-no-kinds": dict(block_count=3, embedding_length=64, **{"attention.head_count": 4,
                                                                  "attention.sliding_window": 2**63}),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_gguf_architecture_is_bounded(tmp_path, name):
    from ..hostile._limits import assert_clean, run_cli

    path = _hostile_gguf(tmp_path / f"{name}.gguf", **HOSTILE[name])
    for argv in (["--arch", "--context", "1000000", "--batch", "1000000", "--fit", "1TiB"],
                 ["--context", str(10**30), "--kv-dtype", "q4_0", "--runtime", "llama.cpp", "-f", "json"]):
        result = assert_clean(run_cli("memory", path, *argv, timeout=30), path)
        assert result.seconds < 30


def test_arch_shows_a_layer_pattern_once(tmp_path):
    """Gemma-3's 5 sliding : 1 full over 62 layers, as transformers' Gemma3TextConfig builds layer_types."""
    config = {"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"], "num_hidden_layers": 62,
              "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
              "intermediate_size": 64, "vocab_size": 100, "sliding_window": 1024, "sliding_window_pattern": 6,
              "max_position_embeddings": 131072}
    code, out, err = run("memory", _config(tmp_path, config), "--arch", "--context", "4096")
    assert (code, err) == (0, "")
    assert "  layer kinds: (sliding x5, full) x10, sliding x2\n" in out
    # 52 sliding layers keep 1,024 tokens, 10 full ones 4,096: 2 heads x (16 + 16) x 2 bytes = 128 B a token
    assert "(6,815,744 B)  52 layers x batch 1 x min(4096, W = 1024) tokens" in out
    assert "(5,242,880 B)  10 layers x batch 1 x context 4096 tokens" in out
