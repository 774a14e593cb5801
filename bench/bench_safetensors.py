"""Benchmark: ``paramscope FILE --format json`` against ``python -c pass`` and a safetensors ``safe_open`` script.

Fixtures are sparse files (header written, then truncated to full size), built in a temporary directory:
Llama-2-7B-shaped BF16 (single file and 2 shards, ~13.5 GB apparent), Llama-2-70B-shaped BF16 (15 shards,
~138 GB apparent), and single files with 1k, 10k and 100k small tensors. Each command runs as its own
process; the figure is the median wall time of REPEATS runs, and peak RSS is GNU time's %M
(``bench/_measure.py``). Run: ``.venv/bin/python bench/bench_safetensors.py [--repeats N]``.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--build", metavar="DIR", help=argparse.SUPPRESS)  # internal: write fixtures, list them
    args = parser.parse_args()
    py = sys.executable
    if args.build:
        print(json.dumps([(label, str(path), n) for label, path, n in build(Path(args.build))]))
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


if __name__ == "__main__":
    main()
