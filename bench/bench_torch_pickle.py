"""Benchmark: ``paramscope FILE --format json`` against ``torch.load(mmap=True, weights_only=True)`` + numel sum.

Files (written once into --dir, default a temporary folder):

* ``llama2-7b.bin``: the Llama-2-7B state_dict (vocab 32000, hidden 4096, 32 layers, intermediate 11008,
  untied lm_head, RMSNorm weights, no biases; float16; 291 tensors, 6,738,415,616 parameters), written by
  ``torch.save`` under ``torch.serialization.skip_data()`` from ``torch.empty`` tensors: a valid zip whose
  ``data/<key>`` members have their true sizes in the directory, but whose data regions were skipped by
  seeking, so the 13.5 GB file is sparse (a few MB on disk). torch.load(mmap=True) reads it like any
  other checkpoint; paramscope never reads storage bytes at all.
* ``t1k.pt``, ``t10k.pt``, ``t100k.pt``: state_dicts of 1,000 / 10,000 / 100,000 small float32 tensors
  (the per-tensor cost of the pickle).

Each command runs as a whole process (interpreter start and imports included), ``--reps`` times; the
table shows the median wall time and the peak RSS of that process (``os.wait4`` rusage of the child).

``--target`` prints issue 12's row alone: ``t100k.bin`` (the 100k-tensor state_dict under a ``.bin`` name), as
whole processes (paramscope's read, ``torch_pickle.read(path)``; the CLI ``-f json -o /dev/null``; torch.load
with mmap=True, weights_only=True) and in process (the read or the load alone, timed inside its own child, after
its imports: wall and CPU time), time and peak RSS, with the ratios torch over paramscope. The rows take turns
rep by rep: on a shared machine, compare the CPU column.

Run: ``.venv/bin/python bench/bench_torch_pickle.py [--reps 5] [--dir DIR] [--target]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READ_ONLY = (
    "import sys; from pathlib import Path; from paramscope.sources.files import read_path; "
    "inv = read_path(Path(sys.argv[1])); print(sum(r.numel for r in inv.tensors))"
)
PICKLE_READ = (
    "import sys, time; from pathlib import Path; from paramscope.sources import torch_pickle; "
    "start, cpu = time.perf_counter(), time.process_time(); inv = torch_pickle.read(Path(sys.argv[1])); "
    "print(time.perf_counter() - start, time.process_time() - cpu, sum(r.numel for r in inv.tensors))"
)
TORCH_TIMED = (
    "import sys, time, torch; start, cpu = time.perf_counter(), time.process_time(); "
    "sd = torch.load(sys.argv[1], mmap=True, weights_only=True, map_location='cpu'); "
    "print(time.perf_counter() - start, time.process_time() - cpu, sum(v.numel() for v in sd.values()))"
)
TORCH_SCRIPT = (
    "import sys, torch; sd = torch.load(sys.argv[1], mmap=True, weights_only=True, map_location='cpu'); "
    "print(sum(v.numel() for v in sd.values()))"
)


def llama2_7b_shapes() -> dict[str, tuple[int, ...]]:
    vocab, hidden, layers, inter = 32000, 4096, 32, 11008
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{p}self_attn.{proj}.weight"] = (hidden, hidden)
        shapes[f"{p}mlp.gate_proj.weight"] = (inter, hidden)
        shapes[f"{p}mlp.up_proj.weight"] = (inter, hidden)
        shapes[f"{p}mlp.down_proj.weight"] = (hidden, inter)
        shapes[f"{p}input_layernorm.weight"] = (hidden,)
        shapes[f"{p}post_attention_layernorm.weight"] = (hidden,)
    shapes["model.norm.weight"] = (hidden,)
    shapes["lm_head.weight"] = (vocab, hidden)
    return shapes


WRITER = """
import sys, torch
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from bench_torch_pickle import llama2_7b_shapes
folder = Path(sys.argv[1])
path = folder / "llama2-7b.bin"
if not path.exists():
    sd = {name: torch.empty(shape, dtype=torch.float16) for name, shape in llama2_7b_shapes().items()}
    with torch.serialization.skip_data():  # seek over the data: correct zip sizes, sparse file
        torch.save(sd, path)
for n in (1_000, 10_000, 100_000):
    path = folder / f"t{n // 1000}k.pt"
    if not path.exists():
        torch.save({f"layers.{i}.weight": torch.zeros(4, 4) for i in range(n)}, path)
bin_path = folder / "t100k.bin"
if not bin_path.exists():
    bin_path.write_bytes((folder / "t100k.pt").read_bytes())  # its zip prefix is still t100k: a copy, renamed
"""


def write_fixtures(folder: Path) -> dict[str, tuple[Path, int]]:
    """Path and expected element count of each fixture (written only if missing), by a child process:
    this process must stay small, since a child's peak RSS starts from its parent's at fork."""
    subprocess.run([sys.executable, "-c", WRITER, str(folder), str(Path(__file__).parent)], check=True)
    total = 0
    for shape in llama2_7b_shapes().values():
        numel = 1
        for n in shape:
            numel *= n
        total += numel
    out = {"llama2-7b (291 tensors, sparse)": (folder / "llama2-7b.bin", total)}
    for n in (1_000, 10_000, 100_000):
        out[f"{n:,} tensors"] = (folder / f"t{n // 1000}k.pt", 16 * n)
    return out


def run_once(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes, this child alone via wait4) and stdout of one whole process."""
    with tempfile.TemporaryFile() as sink, tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        sink.seek(0)
        errors.seek(0)
        if proc.returncode:
            raise SystemExit(f"{cmd} failed: {errors.read().decode()[-2000:]}")
        return wall, usage.ru_maxrss * 1024, sink.read().decode()


def measure(cmd: list[str], reps: int) -> tuple[float, int, str]:
    runs = [run_once(cmd) for _ in range(reps)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs), runs[-1][2]


def target(folder: Path, reps: int) -> None:
    """Issue 12: the 100k-tensor .bin against torch.load(mmap=True, weights_only=True), whole process and in process."""
    py = sys.executable
    path = str(folder / "t100k.bin")
    rows = {
        "paramscope read (torch_pickle.read)": [py, "-c", PICKLE_READ, path],
        "paramscope CLI -f json -o /dev/null": [py, "-m", "paramscope", path, "-f", "json", "-o", "/dev/null"],
        "torch.load(mmap=True, weights_only=True)": [py, "-c", TORCH_TIMED, path],
    }
    runs_of: dict[str, list[tuple[float, int, str]]] = {label: [] for label in rows}
    for _ in range(reps):  # the rows alternate, so that a busy spell on a shared machine falls on each of them
        for label, cmd in rows.items():
            runs_of[label].append(run_once(cmd))
    measured = {}
    for label, runs in runs_of.items():
        inner = [float(out.split()[0]) for _, _, out in runs if out.strip()]
        cpu = [float(out.split()[1]) for _, _, out in runs if out.strip()]
        counts = {out.split()[2] for _, _, out in runs if out.strip()}
        if label.startswith("paramscope CLI"):
            counts = {str(1_600_000)}  # writes to /dev/null: the count is checked by the read row
        if counts != {str(1_600_000)}:
            raise SystemExit(f"{label}: counted {counts}, expected 1600000")
        measured[label] = (statistics.median(r[0] for r in runs), max(r[1] for r in runs),
                           statistics.median(inner) if inner else None, statistics.median(cpu) if cpu else None)
    torch_wall, torch_rss, torch_inner, torch_cpu = measured["torch.load(mmap=True, weights_only=True)"]
    print(f"t100k.bin: 100,000 tensors, {os.path.getsize(path):,} bytes (reps={reps}, median wall, max RSS)")
    print(f"{'':42} {'process':>9} {'in process':>10} {'its CPU':>9} {'peak RSS':>9} {'x process':>9} "
          f"{'x in proc':>9} {'x CPU':>6} {'x RSS':>6}")
    for label, (wall, rss, inner, cpu_time) in measured.items():
        inner_text = f"{inner * 1000:8.0f}ms" if inner is not None else f"{'-':>10}"
        cpu_text = f"{cpu_time * 1000:7.0f}ms" if cpu_time is not None else f"{'-':>9}"
        ratio_inner = f"{torch_inner / inner:8.1f}x" if inner is not None else f"{'-':>9}"
        ratio_cpu = f"{torch_cpu / cpu_time:5.1f}x" if cpu_time is not None else f"{'-':>6}"
        print(f"{label:42} {wall * 1000:7.0f}ms {inner_text} {cpu_text} {rss / 2**20:7.1f}Mi {torch_wall / wall:8.1f}x "
              f"{ratio_inner} {ratio_cpu} {torch_rss / rss:5.1f}x")
    print("x: torch.load over the row (process: whole process, interpreter and imports included; in process: "
          "the read or load call alone, wall and CPU time; the rows run in turn, rep by rep)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="where to write (and reuse) the fixtures")
    parser.add_argument("--target", action="store_true", help="issue 12's 100k-tensor .bin row only")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench_torch_pickle_"))
    folder.mkdir(parents=True, exist_ok=True)
    fixtures = write_fixtures(folder)
    if args.target:
        target(folder, args.reps)
        return
    py = sys.executable
    base_wall, base_rss, _ = measure([py, "-c", "pass"], args.reps)
    print(f"python -c pass: {base_wall * 1000:.0f} ms, {base_rss / 2**20:.1f} MiB  (reps={args.reps}, median)")
    header = (
        f"{'file':32} {'paramscope':>10} {'read only':>10} {'torch.load':>10} {'speedup':>8} "
        f"{'ps RSS':>8} {'read RSS':>9} {'torch RSS':>9} {'RSS ratio':>9}"
    )
    print(header)
    print("-" * len(header))
    for label, (path, expected) in fixtures.items():
        ours_wall, ours_rss, ours_out = measure([py, "-m", "paramscope", str(path), "--format", "json"], args.reps)
        read_wall, read_rss, read_out = measure([py, "-c", READ_ONLY, str(path)], args.reps)
        ref_wall, ref_rss, ref_out = measure([py, "-c", TORCH_SCRIPT, str(path)], args.reps)
        doc = json.loads(ours_out)
        counted = doc["total"] + doc["buffers"]
        if not counted == int(read_out) == int(ref_out) == expected:
            raise SystemExit(f"{label}: paramscope {counted}/{read_out.strip()}, torch {ref_out.strip()}, {expected}")
        print(
            f"{label:32} {ours_wall * 1000:8.0f}ms {read_wall * 1000:8.0f}ms {ref_wall * 1000:8.0f}ms "
            f"{ref_wall / ours_wall:7.1f}x {ours_rss / 2**20:6.1f}Mi {read_rss / 2**20:7.1f}Mi "
            f"{ref_rss / 2**20:7.1f}Mi {ref_rss / ours_rss:8.1f}x"
        )
    print("speedup and RSS ratio: torch.load over the paramscope CLI (json); 'read only' is the reader alone")
    big = next(iter(fixtures.values()))[0]
    print(f"7B file: {os.path.getsize(big):,} bytes long, {os.stat(big).st_blocks * 512:,} bytes allocated on disk")


if __name__ == "__main__":
    main()
