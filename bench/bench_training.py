"""Training activations and FLOPs: paramscope's estimate against a measured training step.

    PYTHONPATH=src python bench/bench_training.py [--quick]

For tiny random Llama-shaped (GQA, SwiGLU, RMSNorm) and GPT-2-shaped (4h MLP, exact GELU, LayerNorm,
tied embeddings) transformers models on CPU in fp32 (and bf16 at fewer shapes), eager and SDPA
attention, with and without gradient checkpointing, at several sequence lengths S and micro-batches b:

* activation peak: measured = largest sum of live tensor storages during one forward + backward,
  gradients excluded (tests/_step_memory.py states the definition); estimate =
  ``paramscope.activations.estimate(width=4 or 2)``; and Megatron's ``s·b·h·(34 + 5·a·s/h)`` (for 2-byte
  activations: ×2 in fp32; + the fp32 loss buffer) for comparison;
* FLOPs of the same step: ``torch.utils.flop_counter.FlopCounterMode`` (forward + backward) against
  ``paramscope.flops.estimate(...).hardware_per_token × S × b`` (recomputed forward included).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests import _step_memory as step  # noqa: E402
from tests.test_activations import card_of  # noqa: E402

from paramscope.activations import estimate, megatron  # noqa: E402
from paramscope.flops import estimate as flops  # noqa: E402

SHAPES = ((1, 64), (4, 64), (2, 256), (1, 512))
QUICK = ((1, 64), (2, 256))


def main() -> None:
    warnings.filterwarnings("ignore")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    shapes = QUICK if "--quick" in sys.argv else SHAPES
    print("| model | dtype | attention | recompute | b | S | measured peak | estimate | error | Megatron-style | error "
          "| FlopCounter fwd+bwd | estimate | error |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    start = time.perf_counter()
    runs = [(f, a, c, dtype) for dtype in ("float32", "bfloat16") for f in ("llama", "gpt2")
            for a in ("eager", "sdpa") for c in (False, True)]
    for family, attention, checkpoint, dtype in runs:
        model = getattr(step, family)(attention, layers=4, hidden=128, heads=8,
                                      **({"kv_heads": 2, "ffn": 352} if family == "llama" else {}),
                                      vocab=256, checkpoint=checkpoint).to(getattr(torch, dtype))
        width = 4 if dtype == "float32" else 2
        card = card_of(model.config)
        recompute = "full" if checkpoint else "none"
        kind = "eager" if attention == "eager" else "flash"
        for b, s in shapes if dtype == "float32" else QUICK:
            ids = step.ids(b, s, vocab=256)
            measured = step.step_peak(model, ids)
            ours = estimate(card, seq=s, micro_batch=b, width=width, recompute=recompute, attention=kind)
            mega = width // 2 * megatron(card, seq=s, micro_batch=b, recompute=recompute) + ours.loss_buffer
            _, both = step.step_flops(model, ids)
            est = flops(card, seq=s, attention=kind, recompute=recompute).hardware_per_token * s * b
            err = ours.peak / measured - 1
            worst = max(worst, abs(err))
            print(f"| {family} | {dtype} | {attention} | {recompute} | {b} | {s} | {measured:,d} | {ours.peak:,d} "
                  f"| {100 * err:+.2f}% | {mega:,d} | {100 * (mega / measured - 1):+.1f}% "
                  f"| {both:,d} | {est:,d} | {100 * (est / both - 1):+.2f}% |")
    print(f"\nworst activation error {100 * worst:.2f}%; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
