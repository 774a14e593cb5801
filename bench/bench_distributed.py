"""PEFT's count against paramscope's on Llama-2-7B + LoRA (r=8, q_proj/v_proj) built on the meta device.

Three whole processes, each building the same model: building only (the baseline), then PEFT's
``get_nb_trainable_parameters()``, then ``paramscope.training.trainable_counts()``. The table gives the
median wall time and peak RSS of each process, and the median in-process time of the counting call
itself (5 calls per process), with ratios against PEFT, all measured in this run.

    .venv/bin/python bench/bench_distributed.py [repeat]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure

CALLS = 5


def build():
    import warnings

    warnings.simplefilter("ignore")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=32, tie_word_embeddings=False)
    with torch.device("meta"):
        base = LlamaForCausalLM(config)
    return get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))


def child(mode: str) -> None:
    model = build()
    if mode == "build":
        print(json.dumps({"seconds": 0.0, "counts": None}))
        return
    if mode == "peft":
        call = model.get_nb_trainable_parameters
    else:
        from paramscope.training import trainable_counts

        def call():
            return trainable_counts(model)
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        counts = call()
        times.append(time.perf_counter() - start)
    print(json.dumps({"seconds": statistics.median(times), "counts": list(counts)}))


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    me = str(Path(__file__).resolve())
    rows = []
    for mode in ("build", "peft", "paramscope"):
        argv = [sys.executable, me, "--child", mode]
        wall, rss = measure(argv, repeat)
        out = json.loads(subprocess.run(argv, capture_output=True, check=True, text=True).stdout.splitlines()[-1])
        rows.append((mode, wall, rss, out["seconds"], out["counts"]))
    assert rows[1][4] == rows[2][4], f"counts differ: peft {rows[1][4]}, paramscope {rows[2][4]}"
    peft_call = rows[1][3]
    print(f"Llama-2-7B + LoRA r=8 on meta; counts (trainable, all) = {rows[2][4]}; repeat={repeat}, median")
    print(f"{'process':<12} {'wall s':>8} {'peak MiB':>9} {'count call ms':>14} {'call vs peft':>13}")
    for mode, wall, rss, seconds, _ in rows:
        ratio = f"{seconds / peft_call:.2f}x" if mode != "build" else "-"
        call = f"{seconds * 1000:.1f}" if mode != "build" else "-"
        print(f"{mode:<12} {wall:>8.2f} {rss:>9.0f} {call:>14} {ratio:>13}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
