"""Compute: FLOPs per token and per sequence, forward and training, and training time, from an
:class:`paramscope.architecture.Architecture`.

Formulas, with their sources:

* A matrix product of ``[m, k] × [k, n]`` costs ``2·m·k·n`` FLOPs (one multiply, one add), the
  convention of ``torch.utils.flop_counter`` and of every formula below.
* Forward, per token (Kaplan et al. 2020 table 1; nanoGPT ``estimate_mfu``; PaLM appendix B)::

      2·N_matmul + 4·L·a·d·s

  ``N_matmul`` the weights a token multiplies by: per layer ``h·a·d`` (Q) + ``2·h·g·d`` (K, V) +
  ``a·d·h`` (O) + the MLP (``3·h·f`` gated, ``2·h·f`` plain; MoE: the router ``h·E`` + top-k and
  shared experts at ``3·h·f_expert``), plus the output layer ``h·V``. The input embedding is a
  lookup (0 FLOPs). ``4·L·a·d·s``: ``Q·Kᵀ`` and ``P·V`` over the whole sequence ``s`` (what
  ``FlopCounterMode`` counts; a causal kernel skips half, which the MFU convention does not credit);
  a sliding-window layer attends over ``min(s, window)`` under flash attention (:func:`_contexts`).
  Three times this is, per token, Megatron-LM's ``num_floating_point_operations``
  (megatron/training/training.py, GQA and SwiGLU included; tests/test_flops.py checks it) and
  torchtitan's ``6·(N − N_emb) + 6·L·heads·(d_qk + d_v)·seq`` with ``d_qk = d_v = d``; nanoGPT's
  ``6·N + 12·L·H·Q·T`` counts the embedding in ``N``.
* Training (forward + backward), per token: ``3 ×`` forward: the backward pass computes two products
  (the input's gradient and the weight's) for every one of the forward (Narayanan et al. 2021 §5.1).
  Recomputation adds hardware FLOPs, not model FLOPs: ``full`` one more forward of every checkpointed
  layer short of its MLP down projection (torch's checkpoint stops once the tensors backward needs are
  back; the output layer is not checkpointed);
  ``selective`` with eager attention the core attention again (``+ 4·L·a·d·s``); flash attention's
  backward recomputes ``Q·Kᵀ`` (``+ 2·L·a·d·s``; Dao et al. 2022, algorithm 4; torch's
  ``FlopCounterMode`` counts the flash backward as 2.5 forward attention products).
  MFU (PaLM appendix B) is defined on model FLOPs, so time uses ``3 ×``.
* Time for ``T`` tokens on ``n`` GPUs of peak ``P`` FLOP/s at utilisation ``u``:
  ``3·F_fwd·T / (n·P·u)``.
* ``2·N_active``: the published per-token forward figure (e.g. Mixtral-8x7B, 12,879,925,248 active
  parameters: 25,759,850,496 FLOPs) counts every active parameter, embedding included, and no
  attention-score term; :func:`active_parameters` reproduces ``N_active`` from the card.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from paramscope.architecture import LIMIT, Architecture, family_of, require


@dataclass(frozen=True)
class Gpu:
    name: str
    flops: float
    source: str


GPUS: dict[str, Gpu] = {g.name.lower(): g for g in (
    Gpu("A100", 312e12, "NVIDIA A100 datasheet: BF16 Tensor Core 312 TFLOPS dense (624 with sparsity)"),
    Gpu("H100", 989e12, "NVIDIA H100 SXM datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity, 989 dense"),
    Gpu("H200", 989e12, "NVIDIA H200 SXM datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity, 989 dense"),
    Gpu("L40S", 362.05e12, "NVIDIA L40S datasheet: BF16 Tensor Core 362.05 TFLOPS dense (733 with sparsity)"),
    Gpu("RTX4090", 165.2e12, "NVIDIA Ada Lovelace whitepaper, RTX 4090: BF16 Tensor TFLOPS with FP32 "
                             "accumulate 165.2 dense (330.4 with sparsity)"),
    Gpu("MI300X", 1307.4e12, "AMD Instinct MI300X datasheet: BF16 1,307.4 TFLOPS dense (2,614.9 with sparsity)"),
)}
"""Peak dense BF16 FLOP/s of common accelerators (no sparsity), each with its source."""

DEFAULT_MFU = 0.4
"""Model FLOPs utilisation assumed when none is given: well-tuned dense LLM training reaches 0.35–0.55
(PaLM 46.2%, Megatron-LM 52% on A100 in Narayanan et al. 2021 / Korthikanti et al. 2022)."""


def gpu(name: str) -> Gpu:
    """A :data:`GPUS` entry by name (case and ``-``/space ignored)."""
    key = name.lower().replace("-", "").replace(" ", "")
    try:
        return GPUS[key]
    except KeyError:
        raise ValueError(f"unknown GPU {name!r}; choose from {', '.join(g.name for g in GPUS.values())} "
                         "or give --gpu-flops") from None


@dataclass(frozen=True)
class Line:
    """One figure: its name, formula, inputs and value."""

    name: str
    formula: str
    value: float


@dataclass(frozen=True)
class ComputeEstimate:
    seq: int
    matmul_parameters: int
    active_parameters: int
    forward_per_token: int
    training_per_token: int
    hardware_per_token: int
    forward_per_sequence: int
    training_per_sequence: int
    two_n_active: int
    tokens: int | None
    gpus: int
    gpu_flops: float | None
    gpu_source: str | None
    mfu: float
    seconds: float | None
    lines: list[Line]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _shape(card: Architecture) -> tuple[int, int, int, int, int, int]:
    require(card, "FLOPs", "layers", "hidden_size", "heads", "vocab_size")
    h, a = card.hidden_size, card.heads
    d = card.head_dim or h // a
    g = max(card.kv_heads) if card.kv_heads else a
    f = card.ffn_size if card.ffn_size is not None else 4 * h
    return card.layers, h, a, d, g, f


def _mlp_matrices(card: Architecture) -> int:
    return 2 if family_of(card)[0].mlp == "plain" else 3


def matmul_parameters(card: Architecture) -> int:
    """Weights one token is multiplied by in a forward pass (module docstring): attention, MLP or active
    experts and router, output layer; not the input embedding, norms or biases."""
    L, h, a, d, g, f = _shape(card)
    per_layer = h * a * d + 2 * h * g * d + a * d * h
    m = _mlp_matrices(card)
    if card.experts:
        require(card, "FLOPs", "experts_per_token")
        fe = card.moe_ffn_size or f
        per_layer += h * card.experts + (card.experts_per_token + (card.shared_experts or 0)) * m * h * fe
    else:
        per_layer += m * h * f
    return L * per_layer + h * card.vocab_size


def active_parameters(card: Architecture) -> int:
    """Parameters a token uses: :func:`matmul_parameters` + the input embedding (``V·h`` unless tied) +
    the norms (2 per layer and a final one; ``h`` each for RMSNorm, ``2·h`` for LayerNorm). Biases are
    not stated by the card and not counted."""
    L, h, *_ = _shape(card)
    norm = 2 * h if family_of(card)[0].norm == "layer" else h
    embedding = 0 if card.tie_word_embeddings else card.vocab_size * h
    return matmul_parameters(card) + embedding + (2 * L + 1) * norm


def _contexts(card: Architecture, seq: int, attention: str, notes: list[str]) -> list[int]:
    """Positions each layer's query attends over: ``s``; ``min(s, window)`` for a sliding-window layer
    under a flash kernel that skips the blocks outside the window (eager attention computes the whole
    ``s×s`` product and masks it); 0 for a layer with no attention (recurrent, none)."""
    kinds = card.layer_kinds or ("full",) * card.layers
    window = card.sliding_window
    out = []
    for kind in kinds:
        if kind in ("recurrent", "none"):
            out.append(0)
        elif kind == "sliding" and window and attention == "flash":
            out.append(min(seq, window))
        else:
            out.append(seq)
    if any(k in ("recurrent", "none") for k in kinds):
        notes.append("layers without attention (recurrent, none): their mixers' FLOPs are not modelled; their "
                     "attention weights are counted as if present")
    return out


def estimate(card: Architecture, *, seq: int, recompute: str = "none", attention: str = "flash",
             tokens: int | None = None, gpus: int = 1, gpu_flops: float | None = None,
             gpu_source: str | None = None, mfu: float = DEFAULT_MFU) -> ComputeEstimate:
    """FLOPs per token and per sequence of ``seq`` tokens, and the time for ``tokens`` (module docstring)."""
    for name, value in (("seq", seq), ("gpus", gpus)):
        if not isinstance(value, int) or not 1 <= value <= LIMIT:
            raise ValueError(f"{name} must be a whole number from 1 to 2^32, got {value!r}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu!r}")
    L, _, a, d, _, _ = _shape(card)
    n = matmul_parameters(card)
    notes: list[str] = []
    contexts = _contexts(card, seq, attention, notes)
    scores = 4 * a * d * sum(contexts)
    forward = 2 * n + scores
    training = 3 * forward
    extra = []
    if attention == "flash":  # the flash backward recomputes Q·Kᵀ (Dao et al. 2022, algorithm 4)
        extra.append(("flash backward recomputes Q·Kᵀ", "+ 2·L·a·d·s", scores // 2))
    if recompute == "full":
        # torch's (non-reentrant) checkpoint recomputes a layer only up to the last tensor its backward
        # needs: the MLP's down projection, whose output nothing saves, is not run again; the output
        # layer is outside the checkpointed layers. Measured: tests/test_flops.py.
        _, h, _, _, _, f = _shape(card)
        down = (card.experts_per_token + (card.shared_experts or 0)) * h * (card.moe_ffn_size or f) \
            if card.experts else h * f
        extra.append(("full recompute", "+ forward − 2·h·V − 2·L·(MLP down projection)",
                      forward - 2 * h * card.vocab_size - 2 * L * down))
    elif recompute == "selective" and attention == "eager":
        extra.append(("selective recompute", "+ 4·L·a·d·s (the core attention again)", scores))
    hardware = training + sum(x[2] for x in extra)
    n_active = active_parameters(card)
    lines = [
        Line("matmul parameters", "L·(h·a·d + 2·h·g·d + a·d·h + MLP) + h·V", n),
        Line("forward / token", f"2·N_matmul + 4·a·d·Σ context, s={seq}"
             + (f", sliding window {card.sliding_window}" if sum(contexts) != L * seq else ""), forward),
        Line("training / token", "3 × forward (backward = 2 × forward)", training),
    ]
    if extra:
        lines.append(Line("hardware / token (" + ", ".join(x[0] for x in extra) + ")",
                          "training " + " ".join(x[1] for x in extra), hardware))
    lines += [
        Line("forward / sequence", f"forward / token × s, s={seq}", forward * seq),
        Line("training / sequence", f"training / token × s, s={seq}", training * seq),
        Line("2·N_active / token", f"2 × active parameters ({n_active:,d}), the published convention",
             2 * n_active),
    ]
    seconds = None
    if tokens is not None and gpu_flops is not None:
        rate = gpus * gpu_flops * mfu
        seconds = training * tokens / rate if rate > 0 else math.inf
        if not math.isfinite(seconds):  # a peak of 1e-300 FLOP/s: no finite answer to print or serialise
            raise ValueError(f"the training time overflows for a peak of {gpu_flops:g} FLOP/s")
        lines.append(Line("training time (s)", f"training / token × T / (gpus·peak·MFU), T={tokens:,d}, "
                          f"gpus={gpus}, peak={gpu_flops:.4g} FLOP/s, MFU={mfu}", seconds))
    elif tokens is not None:
        notes.append("no time: give --gpu-flops or --gpu")
    if attention == "flash":
        notes.append("attention FLOPs are counted over the full s×s scores, as FlopCounterMode and MFU do; "
                     "causal kernels execute about half")
    return ComputeEstimate(
        seq=seq, matmul_parameters=n, active_parameters=n_active, forward_per_token=forward,
        training_per_token=training, hardware_per_token=hardware, forward_per_sequence=forward * seq,
        training_per_sequence=training * seq, two_n_active=2 * n_active, tokens=tokens, gpus=gpus,
        gpu_flops=gpu_flops, gpu_source=gpu_source, mfu=mfu, seconds=seconds, lines=lines, notes=notes)
