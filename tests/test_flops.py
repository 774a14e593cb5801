"""paramscope.flops against torch.utils.flop_counter.FlopCounterMode, published figures and hand calculations;
the memory command's training-cost options."""

from __future__ import annotations

import json

import pytest

from paramscope.activations import estimate as activations
from paramscope.architecture import Architecture
from paramscope.errors import ParamscopeError
from paramscope.flops import GPUS, active_parameters, estimate, gpu, matmul_parameters

from .test_activations import LLAMA_2_7B, card_of

MIXTRAL = Architecture(model_type="mixtral", layers=32, hidden_size=4096, heads=32, kv_heads=(8,) * 32,
                       head_dim=128, layer_kinds=("full",) * 32, ffn_size=14336, vocab_size=32000, experts=8,
                       experts_per_token=2, moe_ffn_size=14336, tie_word_embeddings=False)
"""mistralai/Mixtral-8x7B-v0.1 config.json."""


@pytest.mark.parametrize("checkpoint", [False, True], ids=["no-recompute", "checkpointed"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_within_two_percent_of_flop_counter_mode(family, attention, checkpoint):
    pytest.importorskip("transformers")
    from . import _step_memory as step

    model = getattr(step, family)(attention, checkpoint=checkpoint)
    for batch, seq in ((1, 32), (2, 64)):
        forward, both = step.step_flops(model, step.ids(batch, seq))
        e = estimate(card_of(model.config), seq=seq, attention="eager" if attention == "eager" else "flash",
                     recompute="full" if checkpoint else "none")
        assert abs(e.forward_per_sequence * batch / forward - 1) < 0.02, (forward, e.forward_per_sequence)
        # torch counts what runs: for SDPA, the flash backward's recomputed Q·Kᵀ (our hardware FLOPs)
        assert abs(e.hardware_per_token * seq * batch / both - 1) < 0.02, (both, e.hardware_per_token)


def test_mixtral_active_parameters_and_two_n():
    assert active_parameters(MIXTRAL) == 12_879_925_248  # Mistral AI: 12.9B active of 46.7B
    e = estimate(MIXTRAL, seq=4096)
    assert e.two_n_active == 25_759_850_496
    # ours leaves out the input embedding lookup and the norms, and adds the attention scores
    assert e.forward_per_token == 2 * (12_879_925_248 - 32000 * 4096 - 65 * 4096) + 4 * 32 * 32 * 128 * 4096


def test_llama_2_7b_by_hand():
    n = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008) + 4096 * 32000
    assert matmul_parameters(LLAMA_2_7B) == n == 6_607_077_376
    assert active_parameters(LLAMA_2_7B) == 6_738_415_616  # Llama-2-7b-hf, every parameter
    e = estimate(LLAMA_2_7B, seq=4096, recompute="full", attention="flash")
    forward = 2 * n + 4 * 32 * 4096 * 4096
    assert e.forward_per_token == forward
    assert e.training_per_token == 3 * forward
    recomputed = forward - 2 * 4096 * 32000 - 2 * 32 * 4096 * 11008  # not the output layer, nor down_proj
    assert e.hardware_per_token == 3 * forward + recomputed + 2 * 32 * 4096 * 4096
    assert e.training_per_sequence == 3 * forward * 4096


def test_training_flops_equal_megatron_lm_formula_with_gqa_and_swiglu():
    # Megatron-LM megatron/training/training.py num_floating_point_operations (dense, GQA, SwiGLU), per token:
    # 12·L·h²·((1 + g/a + s/h)·(a·d/h) + (f/h)·3/2) + 6·h·V
    from fractions import Fraction as F

    llama3 = Architecture(model_type="llama", layers=32, hidden_size=4096, heads=32, kv_heads=(8,) * 32,
                          head_dim=128, layer_kinds=("full",) * 32, ffn_size=14336, vocab_size=128256)
    L, h, a, g, d, f, V, s = 32, 4096, 32, 8, 128, 14336, 128256, 8192
    megatron = 12 * L * h * h * ((1 + F(g, a) + F(s, h)) * F(a * d, h) + F(f, h) * F(3, 2)) + 6 * h * V
    assert estimate(llama3, seq=s).training_per_token == megatron


def test_sliding_window_layers_attend_over_the_window_with_flash():
    mistral = Architecture(model_type="mistral", layers=4, hidden_size=64, heads=4, kv_heads=(2,) * 4, head_dim=16,
                           layer_kinds=("sliding", "full") * 2, sliding_window=100, ffn_size=128, vocab_size=50)
    n = 4 * (64 * 64 * 2 + 2 * 64 * 32 + 3 * 64 * 128) + 64 * 50
    flash = estimate(mistral, seq=1000, attention="flash")
    eager = estimate(mistral, seq=1000, attention="eager")
    assert flash.forward_per_token == 2 * n + 4 * 4 * 16 * (100 + 1000 + 100 + 1000)
    assert eager.forward_per_token == 2 * n + 4 * 4 * 16 * 4 * 1000


def test_time_from_the_gpu_table():
    h100 = gpu("h100")
    assert h100.flops == 989e12 and "datasheet" in h100.source
    assert {g.name for g in GPUS.values()} == {"A100", "H100", "H200", "L40S", "RTX4090", "MI300X"}
    e = estimate(LLAMA_2_7B, seq=4096, tokens=2 * 10**12, gpus=1024, gpu_flops=h100.flops, mfu=0.5)
    assert e.seconds == pytest.approx(e.training_per_token * 2e12 / (1024 * 989e12 * 0.5), rel=1e-12)
    with pytest.raises(ValueError, match="unknown GPU 'V100'"):
        gpu("V100")


def test_missing_shape_is_a_paramscope_error():
    with pytest.raises(ParamscopeError, match="FLOPs need hidden_size"):
        estimate(Architecture(source="x.gguf", layers=2, heads=2, vocab_size=4), seq=8)
    zero_heads = Architecture(source="config.json", layers=2, hidden_size=8, heads=0, vocab_size=4)
    with pytest.raises(ParamscopeError, match="FLOPs need heads of 1 or more, and the source states heads = 0"):
        estimate(zero_heads, seq=8)
    with pytest.raises(ParamscopeError, match="activations need heads of 1 or more"):
        activations(zero_heads, seq=8, micro_batch=1)


# ---- the memory command's training-cost options -------------------------------------------------


class _WithCard:
    """A report with an architecture card (what h-arch's Report.architecture will carry)."""

    def __init__(self, report, card):
        self._report, self.architecture = report, card

    def __getattr__(self, name):
        return getattr(self._report, name)


def _tiny_llama_report():
    pytest.importorskip("transformers")
    from paramscope.pipeline import settle
    from paramscope.report import Report
    from paramscope.sources.live import from_module

    from . import _step_memory as step

    model = step.llama()
    return Report(settle(from_module(model))), card_of(model.config)


def test_cli_choices_match_the_estimators():
    from paramscope import activations
    from paramscope.commands import memory as command
    from paramscope.renderers import cost_text

    assert command.RECOMPUTE == activations.RECOMPUTE
    assert command.ATTENTION == activations.ATTENTION
    assert command.FORMATS == cost_text.FORMATS


def test_cli_training_cost(monkeypatch):
    import paramscope.commands.memory as command

    report, card = _tiny_llama_report()
    monkeypatch.setattr(command, "load_report", lambda args, err: _WithCard(report, card))
    from .commands._run import run

    code, out, err = run("memory", "x", "--seq", "64", "--micro-batch", "2", "--attention", "eager",
                         "--precision", "fp32", "--optimizer", "sgd", "--tokens", "1e6", "--gpu", "A100")
    assert code == 0, err
    acts = activations(card, seq=64, micro_batch=2, attention="eager", width=4)
    assert "activation peak" in out and "training time" in out and "b·a·s²" in out
    code, out, err = run("memory", "x", "--seq", "64", "--micro-batch", "2", "--attention", "eager",
                         "--precision", "fp32", "--optimizer", "sgd", "--format", "json")
    doc = json.loads(out)
    assert doc["memory"]["training"]["activations"]["peak"] == acts.peak
    weights_and_grads = 8 * report.total + (report.buffer_bytes or 0)
    assert doc["memory"]["training"]["peak_per_gpu"] == weights_and_grads + acts.peak
    assert doc["compute"]["forward_per_token"] == estimate(card, seq=64, attention="eager").forward_per_token
    code, out, _ = run("memory", "x", "--seq", "64", "--format", "markdown")
    assert code == 0 and "| memory | activation peak |" in out and "| compute | forward / token |" in out
    # with --seq the activations are there: the states' "activations are not included" note is not
    assert "model states only" not in out
    code, out, _ = run("memory", "x", "--format", "markdown")
    assert code == 0 and "model states only" in out


def test_cli_training_options_need_seq_and_a_card(monkeypatch):
    import paramscope.commands.memory as command

    from .commands._run import run

    report, card = _tiny_llama_report()
    monkeypatch.setattr(command, "load_report", lambda args, err: _WithCard(report, card))
    code, _, err = run("memory", "x", "--micro-batch", "2")
    assert code == 2 and "--micro-batch need --seq" in err
    code, _, err = run("memory", "x", "--seq", "8", "--gpu", "V100")
    assert code == 2 and "unknown GPU 'V100'" in err
    code, _, err = run("memory", "x", "--seq", "8", "--gpu-flops", "1e-320", "--tokens", "1e18", "--mfu", "1e-300")
    assert code == 2 and "the training time overflows" in err
    code, _, err = run("memory", "x", "--seq", "8", "--gpu-flops", "nan")
    assert code == 2 and "must be a positive finite number, got nan" in err
    monkeypatch.setattr(command, "load_report", lambda args, err: _WithCard(report, None))
    code, _, err = run("memory", "x", "--seq", "8")
    assert code == 1 and "needs the architecture" in err and err.count("\n") == 1
