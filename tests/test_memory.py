"""paramscope.memory: model-state memory for inference and training, every figure checked exactly.

Independent values: hand calculations from the architecture (Llama-2-7B), the ZeRO paper's formulas
(Rajbhandari et al. 2020, table 1), and the state that torch / transformers optimizers really allocate
after one step on a small CPU model.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

torch = pytest.importorskip("torch")

import paramscope  # noqa: E402
from paramscope.memory import estimate, weights_as  # noqa: E402
from paramscope.renderers.memory_text import render as render_memory  # noqa: E402

# Llama-2-7B by hand: embed + head 2*32000*4096, per layer 4*4096^2 (q,k,v,o) + 3*4096*11008 (mlp)
# + 2*4096 (norms), 32 layers, final norm 4096.
PSI = 2 * 32000 * 4096 + 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 4096
LLAMA_BUFFERS = 2 * 64 * 4  # rotary inv_freq and original_inv_freq: head_dim/2 = 64 float32 each


@pytest.fixture(scope="module")
def llama7b():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=32, tie_word_embeddings=False,
    )
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    return paramscope.inspect(model)


def test_llama7b_adam_mixed_precision_is_16_bytes_per_parameter(llama7b):
    assert PSI == 6_738_415_616 == llama7b.total == llama7b.trainable
    assert llama7b.buffer_bytes == LLAMA_BUFFERS == 512
    e = estimate(llama7b, optimizer="adam", precision="mixed-bf16")
    assert e.training == {
        "weights": 2 * PSI, "gradients": 2 * PSI, "master": 4 * PSI, "optimizer_state": 8 * PSI, "buffers": 512,
    }
    # the model states without buffers: 16 bytes a parameter, by hand 16 x 6,738,415,616 = 107,814,649,856
    assert e.training_total - e.training["buffers"] == 107_814_649_856
    assert e.training_total == 107_814_649_856 + 512
    assert e.per_gpu_total == e.training_total  # one GPU, nothing sharded
    assert not e.trainable_assumed and e.frozen == 0
    assert any("activations" in n for n in e.notes)


@pytest.mark.parametrize(
    ("shard", "per_gpu"),
    [
        # Table 1 with K = 12, N = 8, Psi = 6,738,415,616 (Psi / 8 = 842,301,952):
        ("none", 107_814_649_856),   # (2 + 2 + K) Psi = 16 Psi
        ("zero1", 37_061_285_888),   # 2 Psi + 2 Psi + K Psi / N = 5.5 Psi
        ("zero2", 25_269_058_560),   # 2 Psi + (2 + K) Psi / N = 3.75 Psi
        ("zero3", 13_476_831_232),   # (2 + 2 + K) Psi / N = 2 Psi
        ("fsdp", 13_476_831_232),    # FSDP full shard = stage 3
    ],
)
def test_llama7b_zero_stages_over_8_gpus(llama7b, shard, per_gpu):
    e = estimate(llama7b, optimizer="adamw", precision="mixed-bf16", shard=shard, gpus=8)
    assert e.per_gpu_total == per_gpu + 512  # buffers are replicated, never partitioned
    assert e.training_total == 16 * PSI + 512


def test_llama7b_zero_components(llama7b):
    e = estimate(llama7b, optimizer="adam", shard="zero2", gpus=8)
    assert e.per_gpu == {
        "weights": 2 * PSI, "gradients": 2 * PSI // 8, "master": 4 * PSI // 8,
        "optimizer_state": 8 * PSI // 8, "buffers": 512,
    }


def test_llama7b_weights_as(llama7b):
    # The model is built in float32: stored bytes are 4 per parameter.
    assert llama7b.parameter_bytes == 4 * PSI == weights_as(llama7b, "fp32")
    assert weights_as(llama7b, "bf16") == weights_as(llama7b, "fp16") == 2 * PSI
    assert weights_as(llama7b, "fp8") == PSI
    vectors = 32 * 2 * 4096 + 4096  # norms: kept at 2 bytes by the block formats
    matrices = PSI - vectors  # every matrix's size is a multiple of 64 here
    assert weights_as(llama7b, "int8") == weights_as(llama7b, "q8_0") == matrices // 32 * 34 + 2 * vectors
    assert weights_as(llama7b, "int4") == matrices // 32 * 18 + 2 * vectors == 3_790_741_504
    assert weights_as(llama7b, "nf4") == matrices // 64 * 36 + 2 * vectors
    blocks = matrices // 64  # NF4 double-quant: 32 bytes of nibbles + 1 byte absmax, fp32 per 256 blocks
    assert weights_as(llama7b, "nf4-dq") == blocks * 33 + blocks // 256 * 4 + 2 * vectors
    # LLM.int8: one byte a weight, one fp32 per output row (embed 32000, head 32000, q/k/v/o 4096, gate/up 11008,
    # down 4096 rows).
    rows = 32000 + 32000 + 32 * (4 * 4096 + 2 * 11008 + 4096)
    assert weights_as(llama7b, "int8-rowwise") == matrices + 4 * rows + 2 * vectors
    e = estimate(llama7b)
    assert e.inference_stored == 4 * PSI + 512
    assert e.inference_as["int4"] == 3_790_741_504


def lora_like():
    """A frozen base (Linear 100->50, BatchNorm 50) and a small trainable head (Linear 50->4)."""
    model = torch.nn.Sequential(torch.nn.Linear(100, 50), torch.nn.BatchNorm1d(50), torch.nn.Linear(50, 4))
    for p in (*model[0].parameters(), *model[1].parameters()):
        p.requires_grad_(False)
    return model


def test_frozen_base_pays_weights_only():
    report = paramscope.inspect(lora_like())
    frozen, trainable = 100 * 50 + 50 + 2 * 50, 50 * 4 + 4
    assert (report.frozen, report.trainable) == (frozen, trainable) == (5150, 204)
    buffers = 2 * 50 * 4 + 8  # running_mean, running_var (float32) and num_batches_tracked (int64)
    e = estimate(report, optimizer="adam", precision="mixed-bf16")
    assert e.training == {
        "weights": 2 * (frozen + trainable), "gradients": 2 * trainable, "master": 4 * trainable,
        "optimizer_state": 8 * trainable, "buffers": buffers,
    }
    assert e.training_total == 10_708 + 408 + 816 + 1632 + 408
    e32 = estimate(report, optimizer="adamw", precision="fp32")
    assert e32.training == {
        "weights": 4 * 5354, "gradients": 4 * 204, "master": 0, "optimizer_state": 8 * 204, "buffers": 408,
    }
    stored = estimate(report, frozen_as="stored")
    assert stored.training["weights"] == 4 * 5150 + 2 * 204
    assert stored.weights_frozen == 4 * 5150 and stored.weights_trainable == 2 * 204
    nf4 = estimate(report, frozen_as="nf4")  # QLoRA-like: [50, 100] weight in NF4, 1-D at 2 bytes
    assert nf4.weights_frozen == 5000 // 64 * 36 + 36 + 2 * (50 + 100)


def small_model():
    return torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.ReLU(), torch.nn.Linear(20, 10),
                               torch.nn.Conv2d(3, 8, 3))


def _state_bytes(optimizer) -> int:
    return sum(
        v.numel() * v.element_size()
        for state in optimizer.state.values()
        for key, v in state.items()
        if torch.is_tensor(v) and key != "step"
    )


def _one_step(model, optimizer) -> int:
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    return _state_bytes(optimizer)


def test_sgd_momentum_adam_adafactor_by_hand_and_by_real_optimizers():
    model = small_model()
    report = paramscope.inspect(model)
    n = 20 * 30 + 20 + 10 * 20 + 10 + 8 * 3 * 3 * 3 + 8
    assert report.total == n == 1054
    by_hand = {
        "sgd": 0,
        "sgd-momentum": 4 * n,
        "adam": 8 * n,
        # [20,30]: 20+30; [20]: 20; [10,20]: 10+20; [10]: 10; conv [8,3,3,3]: rows 8*3*3 + cols 8*3*3; bias 8;
        # and one fp32 RMS scalar for each of the 6 tensors.
        "adafactor": 4 * ((20 + 30) + 20 + (10 + 20) + 10 + (72 + 72) + 8) + 4 * 6,
    }
    for name, value in by_hand.items():
        assert estimate(report, optimizer=name, precision="fp32").training["optimizer_state"] == value
    assert _one_step(model, torch.optim.SGD(model.parameters(), lr=0.1)) == by_hand["sgd"]
    assert _one_step(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)) == by_hand["sgd-momentum"]
    assert _one_step(model, torch.optim.AdamW(model.parameters())) == by_hand["adam"]
    transformers = pytest.importorskip("transformers")
    ada = transformers.optimization.Adafactor(
        model.parameters(), lr=1e-3, relative_step=False, scale_parameter=False, warmup_init=False
    )
    assert _one_step(model, ada) == by_hand["adafactor"]


def test_adam_8bit_blockwise_state():
    model = torch.nn.Linear(100, 50)  # weight 5000 >= 4096 elements: 8-bit; bias 50: 32-bit state
    e = estimate(paramscope.inspect(model), optimizer="adam-8bit")
    assert e.training["optimizer_state"] == (2 * 5000 + 2 * 4 * 20) + 8 * 50  # ceil(5000 / 256) = 20 blocks


def test_file_source_assumes_everything_trainable(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Linear(4, 2))
    path = tmp_path / "m.safetensors"
    st.save_model(model, str(path))
    report = paramscope.inspect(path)
    assert report.trainable is None
    e = estimate(report, optimizer="sgd-momentum", precision="fp32")
    n = 8 * 4 + 4 + 4 * 2 + 2
    assert e.trainable_assumed and e.trainable == n and e.frozen == 0
    assert e.training == {"weights": 4 * n, "gradients": 4 * n, "master": 0, "optimizer_state": 4 * n, "buffers": 0}
    assert any("taken as trainable" in note for note in e.notes)


def test_partitioning_rounds_up_and_one_gpu_partitions_nothing():
    model = torch.nn.Linear(3, 1)  # 4 parameters
    report = paramscope.inspect(model)
    e = estimate(report, optimizer="adam", shard="zero3", gpus=3)
    assert e.per_gpu == {"weights": 3, "gradients": 3, "master": 6, "optimizer_state": 11, "buffers": 0}
    one = estimate(report, optimizer="adam", shard="zero3", gpus=1)
    assert one.per_gpu == one.training


@pytest.mark.parametrize("kwargs", [{"optimizer": "lion"}, {"precision": "fp8"}, {"shard": "zero4"}, {"gpus": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        estimate(paramscope.inspect(torch.nn.Linear(2, 2)), **kwargs)
    with pytest.raises(ValueError):
        weights_as(paramscope.inspect(torch.nn.Linear(2, 2)), "int3")


def test_renderers():
    e = estimate(paramscope.inspect(lora_like()), optimizer="adam", shard="zero2", gpus=2)
    doc = json.loads(render_memory(e, "json"))
    assert doc["memory"]["training_total"] == e.training_total
    assert doc["memory"]["per_gpu"]["gradients"] == 204  # 2 * 204 / 2
    rows = list(csv.DictReader(io.StringIO(render_memory(e, "csv"))))
    total = next(r for r in rows if r["section"] == "training" and r["item"] == "total")
    assert int(total["bytes"]) == e.training_total and int(total["per_gpu_bytes"]) == e.per_gpu_total
    for fmt in ("tree", "table", "markdown"):
        out = render_memory(e, fmt)
        assert f"{e.training_total:,}" in out
        assert "model states only: activations depend on" in out
        assert "Q4_0" in out and "NF4" in out
    with pytest.raises(ValueError):
        render_memory(e, "yaml")
