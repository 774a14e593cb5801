"""Benchmark: what applying a config (packed quantization, MoE, ties) costs in ``paramscope DIR --format json``.

Fixtures (sparse safetensors: header written, then truncated) in a temporary directory:

* ``plain-100k``: 100,000 small float tensors, no config.json (the fast path: one suffix test per name);
* ``gptq-100k``: 25,000 GPTQ linears (qweight, qzeros, scales, g_idx = 100,000 tensors) with a config.json;
* ``llama70b-gptq``: Llama-2-70B in GPTQ 4-bit layout, 15 shards, with a config.json; the logical total
  must equal the unquantized 68,976,648,192.

Peers, measured in the same run: ``python -c pass`` and a safetensors ``safe_open`` script that lists every
tensor's shape (it does not unpack anything, so it reports stored elements only).
Run: ``.venv/bin/python bench/bench_quant.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "sources"))
sys.path.insert(0, str(ROOT / "bench"))
from _measure import measure  # noqa: E402
from _st_helpers import LLAMA2_70B, LLAMA2_70B_PARAMS, llama_tensors, write_sharded, write_sparse  # noqa: E402

SAFE_OPEN = """
import sys
from pathlib import Path
from safetensors import safe_open
n = 0
for f in sorted(Path(sys.argv[1]).glob("*.safetensors")):
    with safe_open(f, "np") as h:
        for k in h.keys():
            shape = h.get_slice(k).get_shape()
            p = 1
            for d in shape:
                p *= d
            n += p
print(n)
"""

GPTQ_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "tie_word_embeddings": False,
               "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128}}
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def gptq_layout(tensors: list[tuple[str, tuple[int, ...]]]) -> list[tuple[str, str, tuple[int, ...]]]:
    """AutoGPTQ QuantLinear tensors for every Llama linear (4-bit, group 128); the rest fp16."""
    out = []
    for name, shape in tensors:
        module = name.removesuffix(".weight")
        if module.rpartition(".")[2] in LINEAR:
            o, i = shape
            out += [(module + ".qweight", "I32", (i // 8, o)), (module + ".qzeros", "I32", (i // 128, o // 8)),
                    (module + ".scales", "F16", (i // 128, o)), (module + ".g_idx", "I32", (i,))]
        else:
            out.append((name, "F16", shape))
    return out


def build(tmp: Path) -> dict[str, tuple[Path, int]]:
    plain = tmp / "plain-100k"
    plain.mkdir()
    write_sparse(plain / "model.safetensors",
                 [(f"model.layers.{i // 10}.block.{i % 10}.weight", "F32", (4, 4)) for i in range(100_000)])
    gptq = tmp / "gptq-100k"
    gptq.mkdir()
    small = [(f"model.layers.{i // 7}.mlp.{LINEAR[i % 7]}", (256, 256)) for i in range(25_000)]
    write_sparse(gptq / "model.safetensors", gptq_layout([(n + ".weight", s) for n, s in small]))
    (gptq / "config.json").write_text(json.dumps(GPTQ_CONFIG))
    big = tmp / "llama70b-gptq"
    write_sharded(big, gptq_layout(llama_tensors(**LLAMA2_70B)), 15)
    (big / "config.json").write_text(json.dumps(GPTQ_CONFIG))
    return {"plain-100k": (plain, 100_000 * 16), "gptq-100k": (gptq, 25_000 * 256 * 256),
            "llama70b-gptq": (big, LLAMA2_70B_PARAMS)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    paramscope = str(Path(py).with_name("paramscope"))
    base, base_rss = measure([py, "-c", "pass"], args.repeats)
    print(f"python -c pass: {base * 1000:.0f} ms, {base_rss:.0f} MiB  (repeats={args.repeats}, median)")
    print(f"{'fixture':<15} {'paramscope ms':>13} {'RSS MiB':>8} {'safe_open ms':>12} {'RSS MiB':>8} "
          f"{'ratio':>6} {'vs pass':>7}  total (checked)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (path, expected) in build(Path(tmp)).items():
            out = subprocess.run([paramscope, str(path), "--format", "json"], capture_output=True, check=True)
            total = json.loads(out.stdout)["total"]
            assert total == expected, (name, total, expected)
            ours, ours_rss = measure([paramscope, str(path), "--format", "json"], args.repeats)
            peer, peer_rss = measure([py, "-c", SAFE_OPEN, str(path)], args.repeats)
            print(f"{name:<15} {ours * 1000:>13.0f} {ours_rss:>8.0f} {peer * 1000:>12.0f} {peer_rss:>8.0f} "
                  f"{ours / peer:>6.2f} {ours / base:>7.1f}  {math.floor(total):,}")


if __name__ == "__main__":
    main()
