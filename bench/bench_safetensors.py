"""Benchmark: ``paramscope FILE --format json`` against ``python -c pass`` and a safetensors ``safe_open`` script.

Fixtures are sparse files (header written, then truncated to full size), built in a temporary directory:
Llama-2-7B-shaped BF16 (single file and 2 shards, ~13.5 GB apparent), Llama-2-70B-shaped BF16 (15 shards,
~138 GB apparent), and single files with 1k, 10k and 100k small tensors. Each command runs as its own
process; the figure is the median wall time of REPEATS runs, and peak RSS is GNU time's %M
(``bench/_measure.py``). Run: ``.venv/bin/python bench/bench_safetensors.py [--repeats N] [--scale-only]``.

Scale (issue 11): a 1,000,000-tensor file (a ~78 MB header, names ``m.l.<layer>.b.<k>.w``) drawn as the default
tree and written with ``--format json -o``, each against a bare script in its own process (``json.loads`` of
the header and the sum of the element counts), the floor for any reader in Python. Targets: 20 s, 2 GB.

Issue 12 (``--targets``): whole CLI processes against the bare script in its own process, time and peak RSS as
ratios from one run: a 100,000-tensor file (names and shapes of a mixture of experts, a ~10 MB header) drawn as the
default tree (target <= 1.2x the script's time) and as ``--format json -o /dev/null`` (<= 1.5x), both at most 1.5x
the script's peak RSS; a DeepSeek-V3-shaped checkpoint (163 sparse FP8 shards + index, ~91k tensors) against the
script run over every shard (<= 2x); a small file against ``python -c pass`` (<= 3x). Each row gives wall time
and CPU time (user + system of the process, ``getrusage(RUSAGE_CHILDREN)``), the base and paramscope run
alternately so that a machine others load slows both alike; on a busy machine read the CPU ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "sources"))
from _measure import measure, run_once  # noqa: E402 - median wall seconds, peak RSS in MiB
from _st_helpers import (  # noqa: E402 - the shared fixture writers live beside the tests
    LLAMA2_7B,
    LLAMA2_7B_PARAMS,
    LLAMA2_70B,
    LLAMA2_70B_PARAMS,
    llama_tensors,
    small_tensors,
    write_sharded,
    write_sparse,
)

BARE = """
import json, math, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
header.pop("__metadata__", None)
print(len(header), sum(math.prod(t["shape"]) for t in header.values()))
"""

SCALE_TENSORS = 1_000_000

BARE_SHARDS = """
import json, math, struct, sys
from pathlib import Path
index = Path(sys.argv[1])
shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
count = total = 0
for shard in shards:
    with open(index.parent / shard, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    count += len(header)
    total += sum(math.prod(t["shape"]) for t in header.values())
print(count, total)
"""

SAFE_OPEN = """
import json, sys
from pathlib import Path
from safetensors import safe_open
target = Path(sys.argv[1])
if target.name.endswith(".index.json"):
    files = sorted({target.parent / f for f in json.loads(target.read_text())["weight_map"].values()})
else:
    files = [target]
n = 0
for f in files:
    with safe_open(str(f), framework="numpy") as h:
        for k in h.keys():
            shape = h.get_slice(k).get_shape()
            n += 1
print(n)
"""


def build(directory: Path) -> list[tuple[str, Path, int]]:
    llama7 = [(n, "BF16", s) for n, s in llama_tensors(**LLAMA2_7B)]
    llama70 = [(n, "BF16", s) for n, s in llama_tensors(**LLAMA2_70B)]
    files: list[tuple[str, Path, int]] = []
    single = directory / "llama2-7b.safetensors"
    write_sparse(single, llama7, {"format": "pt"})
    files.append(("Llama-2-7B, 1 file", single, LLAMA2_7B_PARAMS))
    files.append(("Llama-2-7B, 2 shards", write_sharded(directory / "l7", llama7, 2), LLAMA2_7B_PARAMS))
    files.append(("Llama-2-70B, 15 shards", write_sharded(directory / "l70", llama70, 15), LLAMA2_70B_PARAMS))
    for count in (1_000, 10_000, 100_000):
        path = directory / f"small-{count}.safetensors"
        write_sparse(path, small_tensors(count))
        files.append((f"{count:,} small tensors", path, count * 16))
    return files


def scale(repeats: int) -> None:
    """The 1,000,000-tensor file: paramscope's tree and JSON against the bare script, time and peak RSS."""
    sys.path.insert(0, str(ROOT))
    from tests.hostile.test_names_and_scale import model_names, write_safetensors

    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="paramscope-bench-") as tmp:
        path = write_safetensors(Path(tmp) / "million.safetensors", model_names(SCALE_TENSORS))
        with open(path, "rb") as handle:
            header = int.from_bytes(handle.read(8), "little")
        bare_t, bare_m = measure([py, "-c", BARE, str(path)], repeats)
        print(f"\n{SCALE_TENSORS:,} tensors, {header / 1e6:.0f} MB header; median of {repeats}; bare script "
              f"(json.loads + sum numel): {bare_t:.2f} s, {bare_m:.0f} MiB")
        for label, extra in (("tree (default)", []), ("--format json -o", ["--format", "json", "-o", f"{tmp}/o.json"])):
            t, m = measure([py, "-m", "paramscope", str(path), *extra], repeats)
            print(f"  {label:<18} {t:6.2f} s {t / bare_t:5.1f}x bare   peak RSS {m:6.0f} MiB {m / bare_m:4.1f}x bare")
        print("targets: 20 s and 2 GB each")


def moe_tensors(count: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """``count`` tensors named and shaped like a mixture of experts' (``model.layers.N.mlp.experts.M.*``), small
    shapes so that the sparse file stays small: the 100,000-tensor row."""
    out: list[tuple[str, str, tuple[int, ...]]] = []
    layer = 0
    while len(out) < count:
        prefix = f"model.layers.{layer}"
        out += [(f"{prefix}.input_layernorm.weight", "BF16", (64,)),
                (f"{prefix}.self_attn.q_proj.weight", "BF16", (64, 64)),
                (f"{prefix}.self_attn.o_proj.weight", "BF16", (64, 64)),
                (f"{prefix}.mlp.gate.weight", "BF16", (64, 64))]
        for expert in range(64):
            for proj, shape in (("gate_proj", (32, 64)), ("up_proj", (32, 64)), ("down_proj", (64, 32))):
                out.append((f"{prefix}.mlp.experts.{expert}.{proj}.weight", "BF16", shape))
        layer += 1
    return out[:count]


def deepseek_v3_tensors() -> list[tuple[str, str, tuple[int, ...]]]:
    """DeepSeek-V3's tensor list (61 layers, 3 dense then 58 with 256 routed FP8 experts and a shared one, block
    scales ``weight_scale_inv`` beside each FP8 weight, and the multi-token-prediction layer 61): ~91k tensors."""
    hidden, vocab = 7168, 129280

    def fp8(name: str, out_dim: int, in_dim: int) -> list[tuple[str, str, tuple[int, ...]]]:
        return [(f"{name}.weight", "F8_E4M3", (out_dim, in_dim)),
                (f"{name}.weight_scale_inv", "F32", (-(-out_dim // 128), -(-in_dim // 128)))]

    def mlp(prefix: str, inner: int) -> list[tuple[str, str, tuple[int, ...]]]:
        return (fp8(f"{prefix}.gate_proj", inner, hidden) + fp8(f"{prefix}.up_proj", inner, hidden)
                + fp8(f"{prefix}.down_proj", hidden, inner))

    out = [("model.embed_tokens.weight", "BF16", (vocab, hidden))]
    for layer in range(62):
        p = f"model.layers.{layer}"
        out += [(f"{p}.input_layernorm.weight", "BF16", (hidden,)),
                (f"{p}.post_attention_layernorm.weight", "BF16", (hidden,)),
                (f"{p}.self_attn.q_a_layernorm.weight", "BF16", (1536,)),
                (f"{p}.self_attn.kv_a_layernorm.weight", "BF16", (512,))]
        out += fp8(f"{p}.self_attn.q_a_proj", 1536, hidden) + fp8(f"{p}.self_attn.q_b_proj", 24576, 1536)
        out += fp8(f"{p}.self_attn.kv_a_proj_with_mqa", 576, hidden) + fp8(f"{p}.self_attn.kv_b_proj", 32768, 512)
        out += fp8(f"{p}.self_attn.o_proj", hidden, 16384)
        if layer < 3:
            out += mlp(f"{p}.mlp", 18432)
            continue
        out += [(f"{p}.mlp.gate.weight", "BF16", (256, hidden)),
                (f"{p}.mlp.gate.e_score_correction_bias", "F32", (256,))]
        for expert in range(256):
            out += mlp(f"{p}.mlp.experts.{expert}", 2048)
        out += mlp(f"{p}.mlp.shared_experts", 2048)
        if layer == 61:  # multi-token prediction
            out += [(f"{p}.embed_tokens.weight", "BF16", (vocab, hidden)), (f"{p}.enorm.weight", "BF16", (hidden,)),
                    (f"{p}.hnorm.weight", "BF16", (hidden,)), (f"{p}.eh_proj.weight", "BF16", (hidden, 2 * hidden)),
                    (f"{p}.shared_head.norm.weight", "BF16", (hidden,)),
                    (f"{p}.shared_head.head.weight", "BF16", (vocab, hidden))]
    out += [("model.norm.weight", "BF16", (hidden,)), ("lm_head.weight", "BF16", (vocab, hidden))]
    return out


def run_cpu(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system, from the children's rusage: the process and GNU time around it)
    and peak RSS (MiB) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, rss = run_once(argv)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, rss


def measure_pair(base: list[str], ours: list[str], repeat: int) -> tuple[tuple[float, float, float], ...]:
    """(median wall, median CPU, peak RSS) of ``base`` and of ``ours``, run alternately ``repeat`` times each after
    a warm-up of each: a load that comes and goes falls on both."""
    run_once(base)
    run_once(ours)
    runs: tuple[list[tuple[float, float, float]], list[tuple[float, float, float]]] = ([], [])
    for _ in range(repeat):
        runs[0].append(run_cpu(base))
        runs[1].append(run_cpu(ours))
    return tuple((statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs), max(r[2] for r in rs))
                 for rs in runs)


def targets(repeats: int) -> None:
    """Issue 12's rows: each command a whole process, ratios to the bare script measured in the same run."""
    py = sys.executable
    cli = [py, "-m", "paramscope"]
    print(f"python {sys.version.split()[0]}; median of {repeats} runs after a warm-up; peak RSS from GNU time")
    with tempfile.TemporaryDirectory(prefix="paramscope-bench-") as tmp:
        # Bytecode is cached (in the temporary directory) as an installed package's is: with
        # PYTHONDONTWRITEBYTECODE set, every run would compile paramscope again and the small-file row would
        # measure the compiler.
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = f"{tmp}/pycache"
        small = Path(tmp) / "small.safetensors"
        write_sparse(small, [(n, "BF16", s) for n, s in llama_tensors(**LLAMA2_7B)], {"format": "pt"})
        wide = Path(tmp) / "moe-100k.safetensors"
        write_sparse(wide, moe_tensors(100_000))
        deepseek = deepseek_v3_tensors()
        index = write_sharded(Path(tmp) / "dsv3", deepseek, 163)
        with open(wide, "rb") as handle:
            header = int.from_bytes(handle.read(8), "little")
        rows = [
            ("Llama-2-7B file (291 tensors), json", [py, "-c", "pass"],
             [*cli, str(small), "--format", "json", "-o", "/dev/null"], 3.0),
            ("Llama-2-7B file (291 tensors), tree", [py, "-c", "pass"], [*cli, str(small)], 3.0),
            (f"100k tensors ({header / 1e6:.2f} MB header), json", [py, "-c", BARE, str(wide)],
             [*cli, str(wide), "--format", "json", "-o", "/dev/null"], 1.5),
            ("100k tensors, tree", [py, "-c", BARE, str(wide)], [*cli, str(wide)], 1.2),
            (f"DeepSeek-V3 ({len(deepseek):,} tensors, 163 shards), json", [py, "-c", BARE_SHARDS, str(index)],
             [*cli, str(index), "--format", "json", "-o", "/dev/null"], 2.0),
            ("DeepSeek-V3, tree", [py, "-c", BARE_SHARDS, str(index)], [*cli, str(index)], 2.0),
        ]
        head = (f"{'row':<48} {'wall base':>9} {'ours':>7} {'ratio':>6} {'CPU base':>9} {'ours':>7} {'ratio':>6} "
                f"{'target':>6} {'base RSS':>9} {'RSS':>7} {'RSS':>5}")
        print(head)
        print("-" * len(head))
        for label, base, ours, target in rows:
            (base_t, base_c, base_m), (t, c, m) = measure_pair(base, ours, repeats)
            print(f"{label:<48} {base_t * 1000:7.0f}ms {t * 1000:5.0f}ms {t / base_t:5.2f}x {base_c * 1000:7.0f}ms "
                  f"{c * 1000:5.0f}ms {c / base_c:5.2f}x {target:5.1f}x {base_m:7.0f}MB {m:5.0f}MB {m / base_m:4.2f}x")
        print("base: `python -c pass` for the small file, else the bare script (json.loads + sum numel) in its own "
              "process; wall and CPU (user + system) medians, each ratio to the base's; the target applies to both; "
              "RSS target 1.5x for the 100k file")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--scale-only", action="store_true", help="only the 1,000,000-tensor comparison")
    parser.add_argument("--targets", action="store_true", help="only issue 12's rows (100k, DeepSeek-V3, small)")
    parser.add_argument("--build", metavar="DIR", help=argparse.SUPPRESS)  # internal: write fixtures, list them
    args = parser.parse_args()
    py = sys.executable
    if args.build:
        print(json.dumps([(label, str(path), n) for label, path, n in build(Path(args.build))]))
        return
    if args.targets:
        targets(max(1, min(args.repeats, 5)))
        return
    if args.scale_only:
        scale(max(1, min(args.repeats, 3)))
        return
    with tempfile.TemporaryDirectory(prefix="paramscope-bench-") as tmp:
        listing = subprocess.run([py, __file__, "--build", tmp], capture_output=True, text=True, check=True).stdout
        files = [(label, Path(path), n) for label, path, n in json.loads(listing)]
        base_t, base_rss = measure([py, "-c", "pass"], args.repeats)
        print(f"python {sys.version.split()[0]}; median of {args.repeats} runs; `python -c pass`: "
              f"{base_t * 1000:.1f} ms, {base_rss:.1f} MiB peak RSS\n")
        head = (f"{'file':<24} {'apparent':>9} {'paramscope':>11} {'safe_open':>10} {'ps/pass':>8} "
                f"{'open/ps':>8} {'ps RSS':>8} {'open RSS':>9}  total ok")
        print(head)
        print("-" * len(head))
        for label, path, expected in files:
            size = sum(f.stat().st_size for f in (path.parent.iterdir() if path.name.endswith(".json") else [path]))
            out = subprocess.run([py, "-m", "paramscope", str(path), "--format", "json"], capture_output=True,
                                 text=True, check=True, cwd=ROOT).stdout
            total = json.loads(out)["total"]
            ps_t, ps_rss = measure([py, "-m", "paramscope", str(path), "--format", "json"], args.repeats)
            so_t, so_rss = measure([py, "-c", SAFE_OPEN, str(path)], args.repeats)
            print(f"{label:<24} {size / 1e9:>7.1f}GB {ps_t * 1000:>9.1f}ms {so_t * 1000:>8.1f}ms "
                  f"{ps_t / base_t:>7.2f}x {so_t / ps_t:>7.2f}x {ps_rss:>6.1f}MB {so_rss:>7.1f}MB  "
                  f"{total:,} {'==' if total == expected else '!='} {expected:,}")
        print("\ntargets: ps/pass <= 3x, open/ps >= 2x, paramscope peak RSS < 40 MB")
    scale(max(1, min(args.repeats, 3)))


if __name__ == "__main__":
    main()
