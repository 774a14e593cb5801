"""Components by role (paramscope.components) on files written by their own libraries and on live modules.

Each fixture labels every tensor by hand with the component it is (the independent reference); the expected
per-component counts are sums of numpy's sizes of those tensors, never the classifier's own output."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import paramscope
from paramscope.components import INFERRED, classify


def _expected(labelled: dict[str, tuple[tuple[int, ...], str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for shape, component in labelled.values():
        out[component] = out.get(component, 0) + math.prod(shape)
    return out


def _counts(report) -> dict[str, int]:
    return {row.type: row.parameters for row in report.by_component}


def _gpt2(layers: int = 12, d: int = 16) -> dict[str, tuple[tuple[int, ...], str]]:
    t = {"wte.weight": ((50, d), "embedding"), "wpe.weight": ((8, d), "embedding")}
    for i in range(layers):
        for name, shape, component in [
            ("ln_1.weight", (d,), "norm"), ("ln_1.bias", (d,), "norm"),
            ("attn.c_attn.weight", (d, 3 * d), "attention"), ("attn.c_attn.bias", (3 * d,), "attention"),
            ("attn.c_proj.weight", (d, d), "attention"), ("attn.c_proj.bias", (d,), "attention"),
            ("ln_2.weight", (d,), "norm"), ("ln_2.bias", (d,), "norm"),
            ("mlp.c_fc.weight", (d, 4 * d), "mlp"), ("mlp.c_fc.bias", (4 * d,), "mlp"),
            ("mlp.c_proj.weight", (4 * d, d), "mlp"), ("mlp.c_proj.bias", (d,), "mlp"),
        ]:
            t[f"h.{i}.{name}"] = (shape, component)
    t["ln_f.weight"] = ((d,), "norm")
    t["ln_f.bias"] = ((d,), "norm")
    return t


def _llama(layers: int = 12, d: int = 8, ff: int = 20, vocab: int = 30) -> dict[str, tuple[tuple[int, ...], str]]:
    t = {"model.embed_tokens.weight": ((vocab, d), "embedding")}
    for i in range(layers):
        for name, shape, component in [
            ("self_attn.q_proj.weight", (d, d), "attention"), ("self_attn.k_proj.weight", (d // 2, d), "attention"),
            ("self_attn.v_proj.weight", (d // 2, d), "attention"), ("self_attn.o_proj.weight", (d, d), "attention"),
            ("mlp.gate_proj.weight", (ff, d), "mlp"), ("mlp.up_proj.weight", (ff, d), "mlp"),
            ("mlp.down_proj.weight", (d, ff), "mlp"),
            ("input_layernorm.weight", (d,), "norm"), ("post_attention_layernorm.weight", (d,), "norm"),
        ]:
            t[f"model.layers.{i}.{name}"] = (shape, component)
    t["model.norm.weight"] = ((d,), "norm")
    t["lm_head.weight"] = ((vocab, d), "head")
    return t


def _write_safetensors(path, labelled) -> None:
    from safetensors.numpy import save_file

    save_file({name: np.zeros(shape, np.float32) for name, (shape, _) in labelled.items()}, str(path))


@pytest.mark.parametrize("make", [_gpt2, _llama], ids=["gpt2", "llama"])
def test_safetensors_components_exact(tmp_path, make):
    labelled = make()
    path = tmp_path / "model.safetensors"
    _write_safetensors(path, labelled)
    report = paramscope.inspect(str(path))
    expected = _expected(labelled)
    assert _counts(report) == expected
    assert sum(expected.values()) == report.total
    # bytes: float32, 4 per element
    assert {row.type: row.bytes for row in report.by_component} == {k: 4 * v for k, v in expected.items()}


def test_gpt2_module_counts_per_component(tmp_path):
    path = tmp_path / "gpt2.safetensors"
    _write_safetensors(path, _gpt2(layers=3))
    rows = {row.type: row.modules for row in paramscope.inspect(str(path)).by_component}
    # 3 layers: c_attn + c_proj under attn, c_fc + c_proj under mlp, ln_1 + ln_2 (and ln_f), wte + wpe
    assert rows == {"attention": 6, "mlp": 6, "norm": 7, "embedding": 2}


def test_gguf_components_exact(tmp_path):
    from tests.sources._gguf_helpers import write_gguf

    d, ff, experts, vocab = 8, 12, 4, 30
    labelled: dict[str, tuple[tuple[int, ...], str]] = {
        "token_embd.weight": ((vocab, d), "embedding"),
        "output_norm.weight": ((d,), "norm"),
        "output.weight": ((vocab, d), "head"),
    }
    for i in range(2):
        for name, shape, component in [
            ("attn_norm.weight", (d,), "norm"), ("attn_q.weight", (d, d), "attention"),
            ("attn_k.weight", (d, d), "attention"), ("attn_v.weight", (d, d), "attention"),
            ("attn_output.weight", (d, d), "attention"), ("ffn_norm.weight", (d,), "norm"),
            ("ffn_gate_inp.weight", (experts, d), "router"),
            ("ffn_gate_exps.weight", (experts, ff, d), "experts"), ("ffn_up_exps.weight", (experts, ff, d), "experts"),
            ("ffn_down_exps.weight", (experts, d, ff), "experts"),
            ("ffn_gate_shexp.weight", (ff, d), "mlp"),
        ]:
            labelled[f"blk.{i}.{name}"] = (shape, component)
    path = tmp_path / "model.gguf"
    total = write_gguf(path, "llama", {name: shape for name, (shape, _) in labelled.items()})
    report = paramscope.inspect(str(path))
    assert report.total == total
    assert _counts(report) == _expected(labelled)
    # the reader names token_embd's class (Embedding) and no other: that is not a model's classes, so
    # "by type" is still inferred from names
    assert not report.types_known
    run = subprocess.run([sys.executable, "-m", "paramscope", str(path), "--by", "type", "--format", "csv"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.splitlines()[0] == f"{INFERRED},modules,parameters,percent,bytes"


def test_live_module_components_from_classes_and_names():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(4, 4)
            self.o_proj = nn.Linear(4, 4, bias=False)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = nn.Embedding(10, 4)  # named like nothing: the class decides
            self.stem = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.attention = Attention()
            self.mlp = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 4))
            self.scale = nn.LayerNorm(4)  # named like nothing: the class decides
            self.classifier = nn.Linear(4, 2)

    counts = _counts(paramscope.inspect(Net()))
    assert counts == {
        "embedding": 40, "conv": 3 * 4 * 9 + 4, "norm": 8 + 8, "attention": 20 + 16,
        "mlp": 30 + 28, "head": 10,
    }


@pytest.mark.parametrize(("name", "component"), [
    # BERT
    ("bert.embeddings.word_embeddings.weight", "embedding"), ("bert.embeddings.LayerNorm.weight", "norm"),
    ("bert.encoder.layer.0.attention.self.query.weight", "attention"),
    ("bert.encoder.layer.0.attention.output.dense.weight", "attention"),
    ("bert.encoder.layer.0.intermediate.dense.weight", "mlp"), ("bert.encoder.layer.0.output.dense.weight", "mlp"),
    ("bert.pooler.dense.weight", "head"), ("cls.predictions.decoder.weight", "head"),
    # T5
    ("shared.weight", "embedding"), ("encoder.block.0.layer.0.SelfAttention.q.weight", "attention"),
    ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "attention"),
    ("decoder.block.0.layer.1.EncDecAttention.o.weight", "attention"),
    ("encoder.block.0.layer.1.DenseReluDense.wo.weight", "mlp"), ("encoder.final_layer_norm.weight", "norm"),
    # Mixtral / DeepSeek / Qwen
    ("model.layers.0.block_sparse_moe.gate.weight", "router"),
    ("model.layers.0.block_sparse_moe.experts.7.w1.weight", "experts"),
    ("model.layers.3.mlp.gate.e_score_correction_bias", "router"),
    ("model.layers.3.mlp.experts.0.gate_proj.weight", "experts"),
    ("model.layers.3.mlp.shared_experts.down_proj.weight", "mlp"),
    ("model.layers.0.self_attn.kv_a_proj_with_mqa.weight", "attention"),
    ("model.layers.0.self_attn.kv_a_layernorm.weight", "norm"), ("model.layers.0.self_attn.q_norm.weight", "norm"),
    # Meta's original Llama
    ("tok_embeddings.weight", "embedding"), ("layers.0.attention.wo.weight", "attention"),
    ("layers.0.feed_forward.w2.weight", "mlp"), ("output.weight", "head"),
    # timm / torchvision
    ("conv1.weight", "conv"), ("bn1.weight", "norm"), ("layer1.0.downsample.0.weight", "conv"),
    ("fc.weight", "head"), ("head.weight", "head"), ("cls_token", "embedding"), ("pos_embed", "embedding"),
    ("patch_embed.proj.weight", "embedding"), ("blocks.0.attn.qkv.weight", "attention"),
    ("blocks.0.mlp.fc1.weight", "mlp"), ("blocks.0.norm1.weight", "norm"),
    ("mixer.A_log", "other"),
])
def test_names_of_each_scheme(name, component):
    module, _, leaf = name.rpartition(".")
    assert classify(module, leaf) == component


def test_shapes_decide_where_names_do_not():
    assert classify("features.0", "weight", 4) == "conv"  # torchvision VGG: a 4-D weight
    assert classify("features.1", "weight", 1) == "norm"  # its BatchNorm: a vector weight
    assert classify("layer1.0.downsample.1", "weight", 1) == "norm"
    assert classify("features.2", "weight", 2) == "other"
    assert classify("x", "weight", None, "Conv1D") == "other"  # transformers' Conv1D is a linear layer


def test_by_type_over_a_file_says_it_is_inferred(tmp_path):
    path = tmp_path / "gpt2.safetensors"
    _write_safetensors(path, _gpt2(layers=2))
    run = subprocess.run([sys.executable, "-m", "paramscope", str(path), "--by", "type", "--format", "csv"],
                         capture_output=True, text=True, timeout=60, check=True)
    expected = _expected(_gpt2(layers=2))
    total = sum(expected.values())
    lines = run.stdout.splitlines()
    assert lines[0] == f"{INFERRED},modules,parameters,percent,bytes"
    assert lines[1:] == [
        f"mlp,4,{expected['mlp']},{round(100 * expected['mlp'] / total, 1)},{4 * expected['mlp']}",
        f"attention,4,{expected['attention']},{round(100 * expected['attention'] / total, 1)},"
        f"{4 * expected['attention']}",
        f"embedding,2,{expected['embedding']},{round(100 * expected['embedding'] / total, 1)},"
        f"{4 * expected['embedding']}",
        f"norm,5,{expected['norm']},{round(100 * expected['norm'] / total, 1)},{4 * expected['norm']}",
    ]
    html = subprocess.run([sys.executable, "-m", "paramscope", str(path), "--format", "html"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert "By component (inferred from names)" in html
    assert "<td>attention</td>" in html


def test_hostile_numbered_names_through_every_view(tmp_path):
    """Numbers int() cannot read (5,000 digits), digits of other scripts, empty parts: ordered, folded and
    classified without an error in every view."""
    from tests.hostile._limits import assert_clean, run_cli

    huge = "9" * 5000
    names = [f"m.{n}.w.weight" for n in (huge, "10", "²", "٣", "2", "0" + huge, "", "1")] + ["a..b.weight"]
    labelled = {name: ((2,), "-") for name in names}
    path = tmp_path / "odd.safetensors"
    _write_safetensors(path, labelled)
    for extra in ([], ["--by", "type"], ["--by", "tensor"], ["--by", "module"], ["--format", "html"],
                  ["--format", "json"], ["--depth", "0"]):
        result = assert_clean(run_cli(str(path), *extra, "-o", str(tmp_path / "out")), path, expect=0)
        assert result.stderr == ""


def test_json_keeps_the_source_order_of_modules(tmp_path):
    labelled = {f"h.{i}.weight": ((2,), "-") for i in (0, 1, 10, 2)}
    path = tmp_path / "m.safetensors"
    _write_safetensors(path, labelled)
    report = paramscope.inspect(str(path))
    assert [m["path"] for m in report.to_dict()["modules"]] == ["", "h", "h.0", "h.1", "h.10", "h.2"]
    assert [n.path for n in report.modules()] == ["", "h", "h.0", "h.1", "h.2", "h.10"]
