"""paramscope.activations against a measured training step, and against hand calculations.

The measurement (tests/_step_memory.py) is the peak of live tensor storages during one forward and
backward pass of a tiny transformers model on CPU in fp32, less the parameters' gradients: the
estimate is given ``width=4`` and must land within 10% of it for Llama- and GPT-2-shaped models,
eager and SDPA attention, with and without gradient checkpointing, at several sequence lengths and
batch sizes.
"""

from __future__ import annotations

import pytest

from paramscope.activations import estimate, megatron
from paramscope.architecture import Architecture
from paramscope.errors import ParamscopeError


def card_of(config) -> Architecture:
    """The card, built by hand from the transformers config the model was made from."""
    if config.model_type == "gpt2":
        return Architecture(model_type="gpt2", layers=config.n_layer, hidden_size=config.n_embd, heads=config.n_head,
                            kv_heads=(config.n_head,) * config.n_layer, head_dim=config.n_embd // config.n_head,
                            layer_kinds=("full",) * config.n_layer, ffn_size=config.n_inner or 4 * config.n_embd,
                            vocab_size=config.vocab_size, tie_word_embeddings=config.tie_word_embeddings)
    return Architecture(model_type=config.model_type, layers=config.num_hidden_layers,
                        hidden_size=config.hidden_size, heads=config.num_attention_heads,
                        kv_heads=(config.num_key_value_heads,) * config.num_hidden_layers,
                        head_dim=config.hidden_size // config.num_attention_heads,
                        layer_kinds=("full",) * config.num_hidden_layers, ffn_size=config.intermediate_size,
                        vocab_size=config.vocab_size, tie_word_embeddings=config.tie_word_embeddings)


SHAPES = ((1, 32), (2, 160))
"""(micro-batch, sequence) pairs: the loss buffer dominates the first, the s² terms the second (a·s/h = 10).
bench/bench_training.py runs more."""


@pytest.mark.parametrize("checkpoint", [False, True], ids=["no-recompute", "checkpointed"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_within_ten_percent_of_a_measured_training_step(family, attention, checkpoint):
    pytest.importorskip("transformers")
    from . import _step_memory as step

    model = getattr(step, family)(attention, checkpoint=checkpoint)
    card = card_of(model.config)
    for batch, seq in SHAPES:
        measured = step.step_peak(model, step.ids(batch, seq))
        est = estimate(card, seq=seq, micro_batch=batch, width=4, recompute="full" if checkpoint else "none",
                       attention="eager" if attention == "eager" else "flash")
        assert abs(est.peak / measured - 1) < 0.10, (batch, seq, measured, est.peak)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("checkpoint", [False, True], ids=["no-recompute", "checkpointed"])
def test_bf16_within_ten_percent_with_width_two(attention, checkpoint):
    # bf16 checks the terms that keep fp32 whatever the width: RMSNorm's upcast input and rsqrt, the
    # log-sum-exp, Llama's fp32 softmax kept beside its bf16 copy, the loss buffer.
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from . import _step_memory as step

    model = step.llama(attention, checkpoint=checkpoint).to(torch.bfloat16)
    measured = step.step_peak(model, step.ids(2, 160))
    est = estimate(card_of(model.config), seq=160, micro_batch=2, width=2,
                   recompute="full" if checkpoint else "none", attention="eager" if attention == "eager" else "flash")
    assert abs(est.peak / measured - 1) < 0.10, (measured, est.peak)


LLAMA_2_7B = Architecture(model_type="llama", layers=32, hidden_size=4096, heads=32, kv_heads=(32,) * 32,
                          head_dim=128, layer_kinds=("full",) * 32, ffn_size=11008, vocab_size=32000,
                          tie_word_embeddings=False)


def test_llama_2_7b_per_layer_by_hand():
    e = estimate(LLAMA_2_7B, seq=4096, micro_batch=1, width=2, attention="flash")
    s, h, f, a = 4096, 4096, 11008, 32
    by_hand = (2 * s * h * 4  # two norm inputs, fp32 (RMSNorm upcasts)
               + 4 * s * h * 2  # two RMSNorms' two outputs, bf16
               + 2 * s * 4  # two rsqrt, fp32
               + s * (2 * a * 128 + 2 * 32 * 128) * 2  # Q, K, V, attention output
               + s * a * 4  # log-sum-exp, fp32
               + 4 * s * f * 2)  # gate, SiLU, up, product
    assert e.per_layer == by_hand == 763_920_384
    loss = 3 * s * 32000 * 4
    final = s * h * 4 + 2 * s * h * 2 + s * 4
    rope = 2 * s * 128 * 2
    assert e.loss_buffer == loss
    assert e.peak == 32 * by_hand + rope + final + loss


def test_eager_adds_the_probabilities_and_selective_drops_them():
    flash = estimate(LLAMA_2_7B, seq=2048, micro_batch=2, attention="flash")
    eager = estimate(LLAMA_2_7B, seq=2048, micro_batch=2, attention="eager")
    selective = estimate(LLAMA_2_7B, seq=2048, micro_batch=2, attention="eager", recompute="selective")
    s, b, a = 2048, 2, 32
    # eager: Q, K, V, O at 4·a·d (the same as flash's 2·a·d + 2·g·d without GQA), no lse, + b·a·s² twice:
    # Llama's softmax in fp32 (4 bytes) and its bf16 copy (2 bytes)
    assert eager.per_layer - flash.per_layer == b * a * s * s * (4 + 2) - s * b * a * 4
    assert selective.per_layer == eager.per_layer - b * a * s * s * (4 + 2)
    gpt = estimate(Architecture(model_type="gpt2", layers=1, hidden_size=64, heads=4, vocab_size=10), seq=8,
                   micro_batch=1, attention="eager")
    assert {t.name: t.bytes for t in gpt.terms}["attention probabilities"] == 4 * 8 * 8 * 2  # no fp32 copy


def test_full_recompute_keeps_layer_inputs():
    e = estimate(LLAMA_2_7B, seq=4096, micro_batch=1, recompute="full", attention="flash")
    none = estimate(LLAMA_2_7B, seq=4096, micro_batch=1, attention="flash")
    inputs = 32 * 4096 * 4096 * 2
    rope = 2 * 4096 * 128 * 2
    working = 2 * 4096 * 11008 * 2
    assert e.peak == inputs + rope + max(none.stored - 32 * none.per_layer - rope, none.per_layer + working)


def test_tensor_and_sequence_parallel_split_the_terms():
    one = estimate(LLAMA_2_7B, seq=1024, micro_batch=1)
    tp = estimate(LLAMA_2_7B, seq=1024, micro_batch=1, tp=4)
    sp = estimate(LLAMA_2_7B, seq=1024, micro_batch=1, tp=4, sp=True)
    norms = 2 * 1024 * 4096 * 4 + 4 * 1024 * 4096 * 2 + 2 * 1024 * 4
    assert tp.per_layer == norms + (one.per_layer - norms) // 4
    assert sp.per_layer == one.per_layer // 4


def test_megatron_reference_formula():
    gpt = Architecture(model_type="gpt2", layers=24, hidden_size=2048, heads=16, kv_heads=(16,) * 24,
                       head_dim=128, layer_kinds=("full",) * 24, vocab_size=50257)
    s, b, h, a = 2048, 4, 2048, 16
    assert megatron(gpt, seq=s, micro_batch=b) == 24 * s * b * h * (34 + 5 * a * s // h)
    assert megatron(gpt, seq=s, micro_batch=b, recompute="selective", tp=8, sp=True) == 24 * s * b * h * 34 // 8
    assert megatron(gpt, seq=s, micro_batch=b, recompute="full") == 24 * 2 * s * b * h


def test_moe_counts_the_active_experts():
    mixtral = Architecture(model_type="mixtral", layers=32, hidden_size=4096, heads=32, kv_heads=(8,) * 32,
                           head_dim=128, layer_kinds=("full",) * 32, ffn_size=14336, vocab_size=32000,
                           experts=8, experts_per_token=2, moe_ffn_size=14336)
    e = estimate(mixtral, seq=1024, micro_batch=1)
    terms = {t.name: t.bytes for t in e.terms}
    assert terms["MoE expert MLPs"] == 4 * 1024 * 14336 * 2 * 2
    assert terms["router logits, probabilities"] == 2 * 1024 * 8 * 2


def test_unknown_shape_is_a_paramscope_error_and_bad_settings_are_value_errors():
    with pytest.raises(ParamscopeError, match="activations need hidden_size, heads"):
        estimate(Architecture(source="config.json", layers=2, vocab_size=10), seq=8, micro_batch=1)
    with pytest.raises(ValueError, match="unknown recompute"):
        estimate(LLAMA_2_7B, seq=8, micro_batch=1, recompute="some")
    with pytest.raises(ValueError, match="seq must be"):
        estimate(LLAMA_2_7B, seq=0, micro_batch=1)
    with pytest.raises(ValueError, match="micro_batch must be a whole number from 1 to 2\\^32"):
        estimate(LLAMA_2_7B, seq=8, micro_batch=10**400)
    hostile = Architecture(source="config.json", layers=10**400, hidden_size=-8, heads=2, vocab_size=10)
    with pytest.raises(ParamscopeError, match=r"activations cannot use layers = over 2\^64, hidden_size = -8: each"):
        estimate(hostile, seq=8, micro_batch=1)


def test_an_unlisted_model_type_is_said_to_be_assumed():
    e = estimate(Architecture(model_type="newthing", layers=1, hidden_size=8, heads=2, vocab_size=10),
                 seq=4, micro_batch=1)
    assert any("'newthing' is not in the table" in n for n in e.notes)
    assert any("4·h = 32" in n for n in e.notes)
