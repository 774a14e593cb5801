"""PEFT / LoRA: trainable versus all parameters, and PEFT's own line, character for character.

Every figure is checked against PEFT's ``get_nb_trainable_parameters()`` / ``print_trainable_parameters()``
on the same model, and against hand counts.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest
import torch
from torch import nn

import paramscope
from paramscope.errors import ParamscopeError
from paramscope.training import adapter_tensors, trainable_counts, trainable_line

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


def _peft_line(model) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        model.print_trainable_parameters()
    return buf.getvalue().strip()


@pytest.fixture(scope="module")
def tiny_lora():
    """A 2-layer Llama (hidden 64) with LoRA r=8 on q_proj and v_proj."""
    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(config)
    base_total = sum(p.numel() for p in base.parameters())
    model = peft.get_peft_model(base, peft.LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    return model, base_total


def test_lora_counts_match_peft(tiny_lora):
    model, base_total = tiny_lora
    trainable, total = model.get_nb_trainable_parameters()
    # per layer: q_proj and v_proj each get A (8 x 64) and B (64 x 8); 2 layers
    assert trainable == 2 * 2 * (8 * 64 + 64 * 8) == 4096
    assert total == base_total + 4096
    assert trainable_counts(model) == (trainable, total)
    report = paramscope.inspect(model)
    assert (report.trainable, report.frozen) == (4096, base_total)


def test_lora_line_is_peft_line(tiny_lora):
    model, _ = tiny_lora
    assert trainable_line(model) == _peft_line(model)
    assert trainable_line(paramscope.inspect(model)) == _peft_line(model)


def test_adapters_listed_trainable_base_frozen(tiny_lora):
    model, _ = tiny_lora
    report = paramscope.inspect(model)
    adapters = adapter_tensors(report)
    assert len(adapters) == 2 * 2 * 2
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight" in adapters
    by_name = {r.name: r for r in report.tensors}
    assert all(by_name[n].trainable is True for n in adapters)
    assert by_name["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"].trainable is False
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(adapters)


def test_llama2_7b_lora_the_familiar_line():
    """The line everyone has seen, reproduced without a byte of weights: Llama-2-7B on the meta device."""
    config = transformers.LlamaConfig(
        vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, tie_word_embeddings=False,
    )
    with torch.device("meta"):
        base = transformers.LlamaForCausalLM(config)
    model = peft.get_peft_model(base, peft.LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    expected = "trainable params: 4,194,304 || all params: 6,742,609,920 || trainable%: 0.0622"
    assert _peft_line(model) == expected
    assert trainable_line(model) == expected


def test_lora_on_4bit_base_matches_peft():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bnb = pytest.importorskip("bitsandbytes")

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 64)
            self.q_proj = bnb.nn.Linear4bit(64, 64, bias=False, quant_type="nf4")
            self.v_proj = bnb.nn.Linear4bit(64, 64, bias=False, quant_type="nf4")
            self.out = nn.Linear(64, 50)

    base = Tiny().to("cpu")  # .to() quantizes the 4-bit weights
    for p in base.parameters():
        p.requires_grad_(False)
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    trainable, total = model.get_nb_trainable_parameters()
    # embed 3200 + two 64x64 4-bit weights (4096 each) + out 3250; LoRA: 2 x (4x64 + 64x4)
    assert (trainable, total) == (1024, 3200 + 2 * 4096 + 3250 + 1024)
    assert trainable_counts(model) == (trainable, total)
    assert trainable_line(model) == _peft_line(model)
    report = paramscope.inspect(model)
    assert report.parameter_bytes == 3200 * 4 + 2 * 2048 + 3250 * 4 + 1024 * 4  # packed 4-bit: half a byte each
    # storage also holds each 4-bit weight's side tables (absmax, quant map, nested ones), as bitsandbytes
    # serialises them; they are quantization bookkeeping, not parameters
    aux_bytes = sum(
        v.numel() * v.element_size()
        for layer in (base.q_proj, base.v_proj)
        for k, v in layer.weight.quant_state.as_dict(packed=True).items()
        if isinstance(v, torch.Tensor) and not k.startswith("quant_state.")
    )
    assert report.quant_aux_bytes == aux_bytes > 0
    assert report.bytes == report.parameter_bytes + aux_bytes  # no buffers in this model


def test_line_needs_known_trainability_and_parameters(tmp_path):
    empty = nn.Module()
    with pytest.raises(ParamscopeError, match="no parameters"):
        trainable_line(empty)
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ParamscopeError, match="trainable"):
        trainable_line(paramscope.inspect(path))
