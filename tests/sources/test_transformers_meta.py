"""Transformer architectures built on the meta device, checked against their published counts."""

from __future__ import annotations

import pytest
import torch

import paramscope

transformers = pytest.importorskip("transformers")


def _meta(model_class, config):
    with torch.device("meta"):
        return model_class(config)


def test_gpt2_small_counts_its_tie_once():
    model = _meta(transformers.GPT2LMHeadModel, transformers.GPT2Config())
    report = paramscope.inspect(model)
    assert report.total == 124_439_808  # published GPT-2 small count
    assert report.ties == [["transformer.wte.weight", "lm_head.weight"]]
    # torchinfo's figure: the tie counted twice (124,439,808 + 50,257 * 768)
    assert sum(r.numel for r in report.tensors if r.role.value == "parameter") == 163_037_184
    # less wte (50,257 x 768) and wpe (1,024 x 768)
    assert report.non_embedding == 124_439_808 - 38_597_376 - 786_432 == 85_056_000
    assert all(p.device.type == "meta" for p in model.parameters())


def test_llama2_7b_on_meta():
    config = transformers.LlamaConfig(
        vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=32, tie_word_embeddings=False,
    )
    report = paramscope.inspect(_meta(transformers.LlamaForCausalLM, config))
    assert report.total == 6_738_415_616  # published Llama-2-7B count
    assert report.ties == []
    assert report.bytes == 6_738_415_616 * 4 + report.buffer_bytes
    assert len([r for r in report.tensors if r.role.value == "parameter"]) == 291
    layer = next(n for n in report.modules() if n.path == "model.layers.0")
    # attention 4 x 4096^2, MLP 3 x 4096 x 11008, two RMSNorm weights
    assert layer.parameters == 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096 == 202_383_360
