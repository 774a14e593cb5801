"""Activation memory of one training micro-batch, from an :class:`paramscope.architecture.Architecture`.

Reference: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models"
(arXiv:2205.05198), section 4, and Megatron-LM ``megatron/training/theoretical_memory_usage.py``:
per layer ``s·b·h·(34 + 5·a·s/h)`` bytes without recomputation, ``34·s·b·h`` with selective
recomputation, ``2·s·b·h`` (the layer input) with full recomputation; with tensor parallelism ``t``
the attention and MLP terms divide by ``t``, and with sequence parallelism the norm/residual terms
too. Their 34 assumes GPT-2's shapes (4h MLP, no GQA), 2-byte activations and 1-byte dropout masks.

Here every term is derived for the card's real shapes, element by element, from what the autograd
graph of a transformers decoder layer keeps for backward (checked against a measured training step:
tests/test_activations.py, bench/bench_training.py). Per token of one layer (``h`` hidden, ``a``
query heads, ``d`` head dim, ``g`` K/V heads, ``f`` MLP width, ``s`` sequence)::

    norm inputs       2·h            the residual stream, saved by each of the two norms
                                     (RMSNorm: upcast to fp32 first, so 4 bytes whatever the width)
    norm outputs      RMSNorm 2·h    x·rsqrt(mean x²) and weight·that (both saved by the next mul)
                      LayerNorm h    the output; + mean and rstd, 1 fp32 each per norm
                      RMSNorm + 1    rsqrt, fp32, per norm
    attention eager   4·a·d + a·s    Q, K, V as the two matmuls take them (K/V repeated to a heads
                                     by repeat_kv when g < a), the output before o_proj, and the
                                     softmax probabilities (the s² term)
    attention flash   2·a·d + 2·g·d  Q, K, V (GQA not repeated) and the output; + a log-sum-exp
                      + a (fp32)     per head (no s² term: scores are recomputed in backward)
    MLP gated         4·f            gate output (SiLU input), SiLU output, up output, their product
    MLP plain         2·f            fc output (GELU input) and GELU output
    MoE               k × the MLP at the expert width, + shared experts, + E router logits

Model-level: the final norm (its input, outputs), rotary ``cos``/``sin`` (``2·s·d`` per sequence),
and the loss buffer: transformers' ``ForCausalLMLoss`` upcasts the logits to fp32 and takes
``log_softmax``; at the start of backward the saved log-probabilities, the gradient of the loss with
respect to them and the gradient with respect to the logits are alive together: ``3·b·s·V`` fp32.

Peak (one micro-batch; dropout is 0 in the models measured, so no masks)::

    none / selective  L·layer + rope + max(final norm + loss buffer, backward working set)
    full              L·h (each layer's input) + rope
                        + max(final norm + loss buffer, one recomputed layer + eager mask + working set)

The backward working set is the larger of: the MLP's gradients (``2·f`` gated, ``f`` plain, per
token); with eager attention, the gradients of the probabilities and the scores (``2·b·a·s²``) less
what that layer's backward has freed by then (its MLP, second norm, V). Tied input/output embeddings
add a held ``V·h`` gradient to it (autograd keeps the output layer's share until the embedding's
backward adds its own). Selective recomputation (Megatron's: recompute the core attention) drops the
``a·s`` term, which flash attention never stores. With checkpointing and eager attention,
transformers keeps its ``b·s²`` causal mask for the recomputation. Llama-family eager attention takes
the softmax in fp32 and casts it back: below fp32 the probabilities are kept at 4 bytes and at the
width, and their gradients are fp32.

Measured on CPU (bench/bench_training.py): within 1.4% in fp32 and 3.6% in bf16 of the peak of a
transformers training step, for Llama- and GPT-2-shaped models, eager and SDPA, checkpointed or not.
Not modelled: dropout masks (the models measured have dropout 0; Megatron counts ``s·b·h`` bytes per
dropout), MLA's latent projections (taken as plain attention with the card's head dims), recurrent
layers' state, pipeline parallelism's in-flight micro-batches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from paramscope.architecture import LIMIT, Architecture, family_of, require

RECOMPUTE = ("none", "selective", "full")
ATTENTION = ("eager", "flash")

FP32 = 4
"""Width of the terms that are fp32 whatever the training precision: norm statistics, RMSNorm's
upcast input, the attention log-sum-exp, the loss buffer."""


@dataclass(frozen=True)
class Term:
    """One activation term: ``elements`` of ``width`` bytes, for one layer or for the whole model."""

    name: str
    formula: str
    elements: int
    width: int
    scope: str  # "layer", "model", "recompute"

    @property
    def bytes(self) -> int:
        return self.elements * self.width


@dataclass(frozen=True)
class ActivationEstimate:
    """Bytes of activations of one micro-batch; built by :func:`estimate`."""

    seq: int
    micro_batch: int
    layers: int
    recompute: str
    attention: str
    width: int
    tp: int
    sp: bool
    terms: list[Term]
    per_layer: int
    stored: int
    """what the forward pass leaves for backward: every layer's terms (or inputs) + model-level."""
    loss_buffer: int
    working_set: int
    peak: int
    formula: str
    shape: dict[str, int] = field(default_factory=dict)
    """the card's figures the terms use: h, a, g, d, f, V (and E, k, f_expert for MoE)."""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["terms"] = [{**asdict(t), "bytes": t.bytes} for t in self.terms]
        return data


def estimate(card: Architecture, *, seq: int, micro_batch: int, recompute: str = "none",
             attention: str = "flash", width: int = 2, tp: int = 1, sp: bool = False) -> ActivationEstimate:
    """Activation memory of one micro-batch of ``micro_batch`` sequences of ``seq`` tokens (module docstring).

    ``width``: bytes per activation element (2 for bf16/fp16 training, 4 for fp32). ``tp``: tensor
    parallel ranks (per-GPU figures); ``sp``: sequence parallelism (needs ``tp``).
    """
    if recompute not in RECOMPUTE:
        raise ValueError(f"unknown recompute {recompute!r}; choose from {', '.join(RECOMPUTE)}")
    if attention not in ATTENTION:
        raise ValueError(f"unknown attention {attention!r}; choose from {', '.join(ATTENTION)}")
    for name, value in (("seq", seq), ("micro_batch", micro_batch), ("width", width), ("tp", tp)):
        if not isinstance(value, int) or not 1 <= value <= LIMIT:
            raise ValueError(f"{name} must be a whole number from 1 to 2^32, got {value!r}")
    require(card, "activations", "layers", "hidden_size", "heads", "vocab_size")
    family, notes = family_of(card)
    h, a, L, V = card.hidden_size, card.heads, card.layers, card.vocab_size
    d = card.head_dim or h // a
    g = max(card.kv_heads) if card.kv_heads else a
    moe = bool(card.experts)
    f = card.ffn_size if card.ffn_size is not None else 4 * h
    if card.ffn_size is None:
        notes.append(f"the source states no MLP width: taken as 4·h = {f}")
    s, b, t = seq, micro_batch, tp
    sb = s * b
    w = width
    resid_t = t if sp else 1  # the norm/residual terms are split only under sequence parallelism

    def split(n: int, by: int) -> int:
        return -(-n // by)

    layer: list[Term] = []
    norm_in_w = FP32 if family.norm == "rms" else w
    layer.append(Term("norm inputs (residual stream)", "2 norms × s·b·h" + (" fp32 (RMSNorm upcasts)"
                      if family.norm == "rms" else ""), split(2 * sb * h, resid_t), norm_in_w, "layer"))
    if family.norm == "rms":
        layer.append(Term("RMSNorm outputs", "2 norms × 2·s·b·h", split(4 * sb * h, resid_t), w, "layer"))
        layer.append(Term("RMSNorm rsqrt", "2 norms × s·b, fp32", split(2 * sb, resid_t), FP32, "layer"))
    else:
        layer.append(Term("LayerNorm outputs", "2 norms × s·b·h", split(2 * sb * h, resid_t), w, "layer"))
        layer.append(Term("LayerNorm mean, rstd", "2 norms × 2·s·b, fp32", split(4 * sb, resid_t), FP32, "layer"))
    if attention == "eager":
        layer.append(Term("Q, K, V, attention output", "4·s·b·a·d (K/V repeated to a heads)",
                          split(4 * sb * a * d, t), w, "layer"))
        if recompute != "selective":
            if family.softmax_fp32 and w < FP32:
                layer.append(Term("attention probabilities", "b·a·s², fp32 (softmax in fp32)",
                                  split(b * a * s * s, t), FP32, "layer"))
                layer.append(Term("attention probabilities, cast back", "b·a·s²", split(b * a * s * s, t), w,
                                  "layer"))
            else:
                layer.append(Term("attention probabilities", "b·a·s²", split(b * a * s * s, t), w, "layer"))
    else:
        layer.append(Term("Q, K, V, attention output", "s·b·(2·a·d + 2·g·d)", split(sb * (2 * a * d + 2 * g * d), t),
                          w, "layer"))
        layer.append(Term("attention log-sum-exp", "s·b·a, fp32", split(sb * a, t), FP32, "layer"))
    per_mlp = 4 if family.mlp == "gated" else 2
    if moe:
        require(card, "activations", "experts_per_token")
        fe = card.moe_ffn_size or f
        k = card.experts_per_token + (card.shared_experts or 0)
        layer.append(Term("MoE expert MLPs", f"{per_mlp}·s·b·f_expert × (top-k + shared = {k})",
                          split(per_mlp * sb * fe * k, t), w, "layer"))
        layer.append(Term("router logits, probabilities", "2·s·b·E", 2 * sb * card.experts, w, "layer"))
        notes.append("MoE: tokens are taken as spread evenly over experts; dispatch/combine copies are not counted")
        fw = fe * k
    else:
        layer.append(Term("MLP", f"{per_mlp}·s·b·f ({family.mlp})", split(per_mlp * sb * f, t), w, "layer"))
        fw = f
    per_layer = sum(x.bytes for x in layer)
    shape = {"h": h, "a": a, "g": g, "d": d, "f": f, "V": V}
    if moe:
        shape.update({"E": card.experts, "k": card.experts_per_token, "f_expert": card.moe_ffn_size or f})

    model: list[Term] = []
    if family.rope:
        model.append(Term("rotary cos, sin", "2·s·d (one sequence, broadcast over the batch)", 2 * s * d, w, "model"))
    final = [Term("final norm input", "s·b·h", split(sb * h, resid_t), norm_in_w, "model")]
    if family.norm == "rms":
        final += [Term("final norm outputs", "2·s·b·h", split(2 * sb * h, resid_t), w, "model"),
                  Term("final norm rsqrt", "s·b, fp32", split(sb, resid_t), FP32, "model")]
    else:
        final += [Term("final norm output", "s·b·h", split(sb * h, resid_t), w, "model"),
                  Term("final norm mean, rstd", "2·s·b, fp32", split(2 * sb, resid_t), FP32, "model")]
    loss = Term("loss buffer", "3·b·s·V fp32 (log-probs, their gradient, the logits' gradient)",
                split(3 * sb * V, t), FP32, "model")
    mlp_term = layer[-2] if moe else layer[-1]
    mlp_grads = (2 if family.mlp == "gated" else 1) * sb * fw
    working = Term("backward working set, MLP", f"{2 if family.mlp == 'gated' else 1}·s·b·f (gradients of the "
                   "MLP's f-wide tensors)", split(mlp_grads, t), w, "model")
    model += [*final, loss, working]
    worst = working.bytes
    if attention == "eager" and recompute != "selective":
        # The attention backward of a layer holds the gradients of the probabilities and of the scores
        # (2·b·a·s²) after that layer's MLP, second norm and V have been freed.
        # With the softmax in fp32 (Family.softmax_fp32) both gradients are fp32, and the probabilities'
        # cast-back copy is freed by then too.
        fp32_softmax = family.softmax_fp32 and w < FP32
        freed = (mlp_term.bytes + layer[0].bytes // 2 + layer[1].bytes // 2
                 + split(sb * a * d, t) * w + (split(b * a * s * s, t) * w if fp32_softmax else 0))
        scores = Term("backward working set, attention", "2·b·a·s² (gradients of probabilities and scores)"
                      + (", fp32" if fp32_softmax else ""), split(2 * b * a * s * s, t),
                      FP32 if fp32_softmax else w, "model")
        model.append(scores)
        worst = max(worst, scores.bytes - freed)
    if card.tie_word_embeddings:
        # Tied input/output embeddings: autograd holds the output layer's V×h gradient until the
        # embedding's backward adds its own, then stores the sum as .grad: a second V×h for the
        # rest of the backward pass.
        tied = Term("tied embedding gradient, held", "V·h (at the gradient's width)", V * h // t, w, "model")
        model.append(tied)
        worst += tied.bytes
    fixed = sum(x.bytes for x in model if x.name == "rotary cos, sin")
    tail = sum(x.bytes for x in final) + loss.bytes

    if recompute == "full":
        inputs = Term("layer inputs (checkpoints)", "L·s·b·h", L * split(sb * h, resid_t), w, "recompute")
        again = [inputs]
        mask = 0
        if attention == "eager":
            mask_term = Term("causal mask kept for recomputation", "b·s²", b * s * s, w, "recompute")
            again.append(mask_term)
            mask = mask_term.bytes
        model += again
        stored = inputs.bytes + fixed + tail
        peak = inputs.bytes + fixed + max(tail, per_layer + mask + worst)
        formula = "L·s·b·h + rope + max(final norm + loss buffer, one layer + mask + working set)"
    else:
        stored = L * per_layer + fixed + tail
        peak = L * per_layer + fixed + max(tail, worst)
        formula = "L·layer + rope + max(final norm + loss buffer, working set)"
    if recompute == "selective" and attention == "flash":
        notes.append("selective recomputation saves nothing over flash attention: no s² term is stored")
    if sp and t == 1:
        notes.append("sequence parallelism without tensor parallelism splits nothing")
    return ActivationEstimate(
        seq=s, micro_batch=b, layers=L, recompute=recompute, attention=attention, width=w, tp=t, sp=sp,
        terms=layer + model, per_layer=per_layer, stored=stored, loss_buffer=loss.bytes,
        working_set=worst, peak=peak, formula=formula, shape=shape, notes=notes)


def megatron(card: Architecture, *, seq: int, micro_batch: int, recompute: str = "none", tp: int = 1,
             sp: bool = False) -> int:
    """Korthikanti et al.'s per-layer bytes × layers, as Megatron-LM's theoretical_memory_usage states them
    (GPT-2 shapes, 2-byte activations, dropout masks), for comparison with :func:`estimate`."""
    require(card, "activations", "layers", "hidden_size", "heads")
    s, b, h, a, t = seq, micro_batch, card.hidden_size, card.heads, tp
    if recompute == "full":
        per = 2 * s * b * h
    elif recompute == "selective":
        per = s * b * h * 34 / t if sp else s * b * h * (10 + 24 / t)
    else:
        per = s * b * h * (34 + 5 * a * s / h) / t if sp else s * b * h * (10 + 24 / t + 5 * a * s / (h * t))
    return card.layers * round(per)
