"""paramscope.diff: name/shape comparison of two sources and the ``paramscope diff`` exit codes.

Independent values: the fixtures' state_dicts (torch) and hand calculations from the GPT-2 configs.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import struct

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
st = pytest.importorskip("safetensors.torch")

import paramscope  # noqa: E402
from paramscope.cli import main  # noqa: E402
from paramscope.diff import compare, gguf_to_hf  # noqa: E402
from paramscope.records import Inventory, Role, TensorRecord  # noqa: E402
from paramscope.report import Report  # noqa: E402

SMALL = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 1000, "n_positions": 128}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["diff", *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A spec file building the small GPT-2 (and a widened one), and its safetensors and .bin checkpoints."""
    root = tmp_path_factory.mktemp("gpt2")
    spec = root / "models.py"
    spec.write_text(
        "from transformers import GPT2Config, GPT2LMHeadModel\n"
        f"def small():\n    return GPT2LMHeadModel(GPT2Config(**{SMALL!r}))\n"
        f"def wide():\n    return GPT2LMHeadModel(GPT2Config(n_inner=512, **{SMALL!r}))\n"
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**SMALL))
    st.save_model(model, str(root / "model.safetensors"))
    torch.save(model.state_dict(), root / "pytorch_model.bin")
    return {"spec": str(spec), "dir": root, "state_dict": model.state_dict()}


def meta_gpt2(**extra):
    with torch.device("meta"):
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**SMALL, **extra}))


def test_model_vs_its_safetensors_is_equivalent(gpt2):
    path = gpt2["dir"] / "model.safetensors"
    d = compare(paramscope.inspect(meta_gpt2()), paramscope.inspect(path))
    with st.safe_open(str(path), "pt") as f:
        stored = set(f.keys())
    assert stored == set(gpt2["state_dict"]) - {"transformer.wte.weight"}  # save_model keeps one tie name
    assert d.equivalent and d.identical
    assert d.missing_keys == [] and d.unexpected_keys == [] and d.shape_mismatches == []
    # stored under lm_head.weight, the file's __metadata__ alias names transformer.wte.weight: both names are there
    assert d.tie_covered == []
    assert paramscope.inspect(path).ties == [["transformer.wte.weight", "lm_head.weight"]]
    assert all(m.a == m.b for m in d.modules)
    code, out, err = run(f"{gpt2['spec']}:small", str(path))
    assert (code, err) == (0, "")
    assert "identical" in out


def test_widened_mlp_is_different_with_exact_names_and_counts(gpt2):
    code, out, err = run(f"{gpt2['spec']}:small", f"{gpt2['spec']}:wide", "--format", "json")
    assert (code, err) == (1, "")
    doc = json.loads(out)["diff"]
    # n_inner 256 -> 512 (default n_inner = 4 * 64): c_fc [64, 256] -> [64, 512], its bias, c_proj [256, 64] -> ...
    per_layer = 64 * 256 + 256 + 256 * 64
    assert doc["a"]["parameters"] == sum(v.numel() for k, v in gpt2["state_dict"].items() if k != "lm_head.weight")
    assert doc["b"]["parameters"] - doc["a"]["parameters"] == 2 * per_layer == 66_048
    assert [(c["name"], c["a"], c["b"]) for c in doc["shape_changes"]] == [
        (f"transformer.h.{i}.mlp.{n}", a, b)
        for i in range(2)
        for n, a, b in (("c_fc.weight", [64, 256], [64, 512]), ("c_fc.bias", [256], [512]),
                        ("c_proj.weight", [256, 64], [512, 64]))
    ]
    assert doc["only_in_a"] == doc["only_in_b"] == [] and not doc["equivalent"]
    modules = {m["path"]: m["delta"] for m in doc["modules"] if m["delta"]}
    assert modules == {"": 66_048, "transformer": 66_048, "transformer.h": 66_048,
                       "transformer.h.0": per_layer, "transformer.h.1": per_layer}
    code, text, _ = run(f"{gpt2['spec']}:small", f"{gpt2['spec']}:wide")
    assert code == 1 and "transformer.h.0.mlp.c_fc.weight: [64, 256] -> [64, 512]" in text
    assert "+66,048" in text


def test_missing_file_is_trouble_with_one_line(gpt2):
    code, out, err = run(f"{gpt2['spec']}:small", str(gpt2["dir"] / "nope.safetensors"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("paramscope: ") and "nope.safetensors" in err
    assert "Traceback" not in err


def test_bad_usage_is_trouble():
    assert run("only-one")[0] == 2
    assert run("a", "b", "--format", "yaml")[0] == 2


@pytest.mark.skipif(importlib.util.find_spec("paramscope.sources.torch_pickle") is None,
                    reason="the torch-pickle .bin reader (paramscope.sources.torch_pickle) is not in this build")
def test_model_vs_its_pytorch_bin(gpt2):
    code, out, err = run(f"{gpt2['spec']}:small", str(gpt2["dir"] / "pytorch_model.bin"), "--format", "json")
    assert (code, err) == (0, "")
    doc = json.loads(out)["diff"]
    assert doc["b"]["tensors"] == len(gpt2["state_dict"])  # torch.save keeps both names of the tie
    assert doc["identical"] and doc["tie_changes"] == []


def _sparse_safetensors(path, state):
    """A valid safetensors header for ``state`` (meta tensors), then a sparse data section."""
    header, offset = {}, 0
    for name, t in state.items():
        size = t.numel() * t.element_size()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
    os.truncate(path, 8 + len(blob) + offset)


def test_default_gpt2_on_meta_vs_header_only_checkpoint(tmp_path):
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied: one name stored
    path = tmp_path / "gpt2.safetensors"
    _sparse_safetensors(path, state)
    a, b = paramscope.inspect(model), paramscope.inspect(path)
    # GPT-2 small by hand: wte 50257*768 + wpe 1024*768 + 12 layers + ln_f.
    layer = 2 * 768 + (768 * 2304 + 2304) + (768 * 768 + 768) + 2 * 768 + (768 * 3072 + 3072) + (3072 * 768 + 768)
    assert a.total == b.total == 50257 * 768 + 1024 * 768 + 12 * layer + 2 * 768 == 124_439_808
    d = compare(a, b)
    assert d.equivalent and d.tie_covered == ["lm_head.weight"]
    # Drop one layer's MLP from the checkpoint and add a stray tensor: what load_state_dict would say.
    del state["transformer.h.11.mlp.c_proj.weight"]
    state["extra.weight"] = torch.empty(3, device="meta")
    _sparse_safetensors(path, state)
    d = compare(a, paramscope.inspect(path))
    assert d.missing_keys == ["transformer.h.11.mlp.c_proj.weight"]
    assert d.unexpected_keys == ["extra.weight"]
    assert not d.equivalent


def _report(names_shapes, fmt="safetensors", dtype="float32", metadata=None, trainable=None, ties=None):
    ties = ties or {}
    records = [TensorRecord(n, s, dtype, Role.PARAMETER, trainable, ties.get(n)) for n, s in names_shapes]
    return Report(Inventory("x", fmt, records, metadata=metadata or {}))


def test_wrapper_prefixes_are_stripped():
    plain = _report([("encoder.weight", (4, 4)), ("head.bias", (4,))])
    wrapped = _report([("module._orig_mod.encoder.weight", (4, 4)), ("module._orig_mod.head.bias", (4,))])
    fsdp = _report([("_fsdp_wrapped_module.encoder.weight", (4, 4)), ("head.bias", (4,))])
    assert compare(plain, wrapped).equivalent
    assert compare(plain, fsdp).equivalent
    d = compare(plain, wrapped, normalize=False)
    assert len(d.only_in_a) == len(d.only_in_b) == 2


def test_leading_model_prefix_only_on_one_side():
    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False)
    with torch.device("meta"):
        causal, base = transformers.LlamaForCausalLM(cfg), transformers.LlamaModel(cfg)
    d = compare(paramscope.inspect(causal), paramscope.inspect(base))
    assert d.missing_keys == ["lm_head.weight"] and d.unexpected_keys == [] and d.shape_mismatches == []


def test_gguf_names_map_to_hugging_face_llama():
    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    hf = paramscope.inspect(model)
    stems = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    gguf_names = []
    for name, tensor in model.state_dict().items():
        if name in top:
            gguf = top[name]
        else:
            _, _, i, *rest = name.split(".")
            gguf = f"blk.{i}.{stems['.'.join(rest[:-1])]}.{rest[-1]}"
        assert gguf_to_hf(gguf) == name
        gguf_names.append((gguf, tuple(tensor.shape)))
    quant = _report(gguf_names, fmt="gguf", dtype="Q4_K", metadata={"general.architecture": "llama"})
    d = compare(hf, quant)
    assert d.equivalent and not d.identical
    assert len(d.dtype_changes) == len(gguf_names) and d.dtype_changes[0].b == "Q4_K"
    assert d.ignored_non_persistent == ["model.rotary_emb.inv_freq", "model.rotary_emb.original_inv_freq"]
    assert d.exit_code() == 0 and d.exit_code(strict=True) == 1
    assert not compare(hf, quant, normalize=False).equivalent
    other = _report(gguf_names, fmt="gguf", metadata={"general.architecture": "gpt2"})
    assert not compare(hf, other).equivalent  # not llama-family: names left alone


def test_ties_differ_but_shapes_match():
    names = [("emb.weight", (10, 4)), ("head.weight", (10, 4))]
    tied = _report(names, ties={"emb.weight": "t", "head.weight": "t"})
    untied = _report(names)
    d = compare(tied, untied)
    assert d.equivalent and not d.identical
    assert [(c.name, c.a, c.b) for c in d.tie_changes] == [
        ("emb.weight", ["emb.weight", "head.weight"], ["emb.weight"]),
        ("head.weight", ["emb.weight", "head.weight"], ["head.weight"]),
    ]
    assert (d.a.parameters, d.b.parameters) == (40, 80)


def test_markdown_and_text_render(gpt2):
    for fmt in ("text", "markdown"):
        code, out, _ = run(f"{gpt2['spec']}:small", f"{gpt2['spec']}:wide", "--format", fmt)
        assert code == 1 and "shape changes (6)" in out
