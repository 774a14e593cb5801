"""GGUF header reading, whole process: ``python -m paramscope FILE --format json`` against a script that lists
the tensors with gguf-py's ``GGUFReader`` (the reference reader), and ``python -c pass`` as the floor.

Files (written once into a temp dir; tensor data left sparse, so nothing but the header is on disk):
a Llama-2-7B-shaped Q4_K_M file with a realistic key/value section (32,000-token vocabulary, scores and
token types), and synthetic files of 1k / 10k / 100k small tensors.

Scale (issue 11): 200,000 tensors (``blk.<n>.t<k>.weight``) drawn as the default tree, against a bare script in
its own process that walks the tensor infos with ``struct`` and sums the element counts. Target: seconds.

    .venv/bin/python bench/bench_gguf.py [--repeat 5] [--scale-only]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import gguf
import numpy as np
from _measure import measure, reader_ours_peer  # bench/ is sys.path[0] when a script here runs
from gguf import GGMLQuantizationType as Q

from paramscope.sources import gguf as reader

READER_ONLY = """
import sys
from pathlib import Path
from paramscope.sources import gguf
print(len(gguf.read(Path(sys.argv[1])).tensors))
"""

BARE = """
import math, struct, sys
with open(sys.argv[1], "rb") as f:
    data = f.read(1 << 26)
count, kv = struct.unpack_from("<QQ", data, 8)
assert kv == 0
pos, total = 24, 0
for _ in range(count):
    n = struct.unpack_from("<Q", data, pos)[0]
    pos += 8 + n
    dims = struct.unpack_from("<I", data, pos)[0]
    total += math.prod(struct.unpack_from(f"<{dims}Q", data, pos + 4))
    pos += 4 + 8 * dims + 12
print(count, total)
"""

SCALE_TENSORS = 200_000

PEER = """
import sys, gguf
r = gguf.GGUFReader(sys.argv[1])
rows = [(t.name, [int(d) for d in t.shape], t.tensor_type.name, int(t.n_elements), int(t.n_bytes)) for t in r.tensors]
print(len(rows), sum(r[3] for r in rows))
"""


def _finish(w: gguf.GGUFWriter, path: Path, data: int) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    start = -(-path.stat().st_size // 32) * 32
    with open(path, "r+b") as handle:
        handle.truncate(start + data)


def _add(w: gguf.GGUFWriter, name: str, shape: tuple[int, ...], qtype: Q) -> int:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    nbytes = math.prod(shape) // block * size
    w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
    return -(-nbytes // 32) * 32


def llama2_7b(path: Path) -> None:
    dim, ffn, layers, vocab = 4096, 11008, 32, 32000
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("LLaMA v2")
    w.add_context_length(4096)
    w.add_embedding_length(dim)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(32)
    w.add_head_count_kv(32)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(15)
    w.add_quantization_version(2)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<tok{i}>" for i in range(vocab)])
    w.add_token_scores([float(-i) for i in range(vocab)])
    w.add_token_types([1] * vocab)
    data = _add(w, "token_embd.weight", (vocab, dim), Q.Q4_K)
    for i in range(layers):
        odd = Q.Q6_K if i % 2 == 0 else Q.Q4_K
        data += _add(w, f"blk.{i}.attn_norm.weight", (dim,), Q.F32)
        data += _add(w, f"blk.{i}.attn_q.weight", (dim, dim), Q.Q4_K)
        data += _add(w, f"blk.{i}.attn_k.weight", (dim, dim), Q.Q4_K)
        data += _add(w, f"blk.{i}.attn_v.weight", (dim, dim), odd)
        data += _add(w, f"blk.{i}.attn_output.weight", (dim, dim), Q.Q4_K)
        data += _add(w, f"blk.{i}.ffn_norm.weight", (dim,), Q.F32)
        data += _add(w, f"blk.{i}.ffn_gate.weight", (ffn, dim), Q.Q4_K)
        data += _add(w, f"blk.{i}.ffn_up.weight", (ffn, dim), Q.Q4_K)
        data += _add(w, f"blk.{i}.ffn_down.weight", (dim, ffn), odd)
    data += _add(w, "output_norm.weight", (dim,), Q.F32)
    data += _add(w, "output.weight", (vocab, dim), Q.Q6_K)
    _finish(w, path, data)


def many_tensors(path: Path, n: int) -> None:
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(f"{n} tensors")
    data = 0
    for i in range(n):
        data += _add(w, f"blk.{i // 10}.t{i % 10}.weight", (4, 256), Q.Q4_K if i % 2 else Q.F16)
    _finish(w, path, data)


def scale(repeat: int) -> None:
    """200,000 tensors: paramscope's default tree against the bare script, time and peak RSS."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.hostile.test_names_and_scale import write_gguf

    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        names = [f"blk.{i // 10}.t{i % 10}.weight" for i in range(SCALE_TENSORS)]
        path = write_gguf(Path(tmp) / "many.gguf", names)
        bare_t, bare_m = measure([py, "-c", BARE, str(path)], repeat)
        t, m = measure([py, "-m", "paramscope", str(path)], repeat)
        print(f"\n{SCALE_TENSORS:,} tensors, median of {repeat}: bare script {bare_t:.2f} s {bare_m:.0f} MiB; "
              f"paramscope tree {t:.2f} s ({t / bare_t:.1f}x) {m:.0f} MiB ({m / bare_m:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scale-only", action="store_true", help="only the 200,000-tensor comparison")
    args = parser.parse_args()
    py = sys.executable
    if args.scale_only:
        scale(args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        files: list[tuple[str, Path]] = []
        path = Path(tmp) / "llama-2-7b.Q4_K_M.gguf"
        llama2_7b(path)
        files.append(("Llama-2-7B Q4_K_M (291 tensors, 32k vocab)", path))
        for n in (1_000, 10_000, 100_000):
            p = Path(tmp) / f"t{n}.gguf"
            many_tensors(p, n)
            files.append((f"{n:,} tensors", p))
        floor_t, floor_m = measure([py, "-c", "pass"], args.repeat)
        print(f"python {sys.version.split()[0]}, gguf {version('gguf')}, repeat {args.repeat} "
              f"(median wall, max peak RSS); 'python -c pass': {floor_t * 1000:.0f} ms, {floor_m:.1f} MiB\n")
        header = (f"{'file':44} {'size':>9} {'header':>9} | {'reader':>8} {'paramscope':>10} {'GGUFReader':>10}"
                  f" {'ratio':>6} | {'RSS reader':>10} {'RSS ours':>9} {'RSS peer':>9} {'ratio':>6}")
        print(header)
        print("-" * len(header))
        for label, p in files:
            (read_t, read_m), (ours_t, ours_m), (peer_t, peer_m) = reader_ours_peer(READER_ONLY, PEER, p, args.repeat)
            size = p.stat().st_size
            start = reader.read(p).metadata["gguf.data_offset"]  # the header's size
            print(
                f"{label:44} {size / 2**30:7.2f}Gi {start / 2**20:7.2f}Mi | {read_t * 1000:6.0f}ms "
                f"{ours_t * 1000:8.0f}ms {peer_t * 1000:8.0f}ms {peer_t / ours_t:5.2f}x | {read_m:8.1f}Mi "
                f"{ours_m:7.1f}Mi {peer_m:7.1f}Mi {peer_m / ours_m:5.2f}x"
            )
    print("\nreader = a process that only runs paramscope.sources.gguf.read (no report, no rendering);"
          " paramscope = 'python -m paramscope FILE --format json';\nratio = GGUFReader / paramscope"
          " (above 1: paramscope faster or smaller).")
    scale(args.repeat)


if __name__ == "__main__":
    main()
