"""Benchmark: ``paramscope FILE --format json`` against ``python -c pass`` and a safetensors ``safe_open`` script.

Fixtures are sparse files (header written, then truncated to full size), built in a temporary directory:
Llama-2-7B-shaped BF16 (single file and 2 shards, ~13.5 GB apparent), Llama-2-70B-shaped BF16 (15 shards,
~138 GB apparent), and single files with 1k, 10k and 100k small tensors. Each command runs as its own
process; the figure is the median wall time of REPEATS runs, and peak RSS is GNU time's %M
(``bench/_measure.py``). Run: ``.venv/bin/python bench/bench_safetensors.py [--repeats N] [--scale-only]``.

Scale (issue 11): a 1,000,000-tensor file (a ~78 MB header, names ``m.l.<layer>.b.<k>.w``) drawn as the default
tree and written with ``--format json -o``, each against a bare script in its own process (``json.loads`` of
the header and the sum of the element counts), the floor for any reader in Python. Targets: 20 s, 2 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "sources"))
from _measure import measure  # noqa: E402 - median wall seconds, peak RSS in MiB
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--scale-only", action="store_true", help="only the 1,000,000-tensor comparison")
    parser.add_argument("--build", metavar="DIR", help=argparse.SUPPRESS)  # internal: write fixtures, list them
    args = parser.parse_args()
    py = sys.executable
    if args.build:
        print(json.dumps([(label, str(path), n) for label, path, n in build(Path(args.build))]))
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
