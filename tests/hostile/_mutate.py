"""Property tests over mutated files, run under the same limits as every hostile input (``_limits``).

One subprocess (2 GiB of address space, no standard input) runs the CLI in-process over every mutated
file, each under its own alarm, and prints one JSON line per file; the test then checks each line
against the promise. One process for many files keeps a few hundred cases within seconds, where a
process per case would spend them importing Python.

Mutations are drawn from a seeded ``random.Random``, so a failure names a file that can be made again.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from ._limits import ADDRESS_SPACE

PER_FILE_SECONDS = 10
"""The alarm for one file: a reader that needs more on a file of a few KB is a hang."""

_WORKER = r"""
import io, json, resource, signal, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from paramscope.cli import main

class Hang(Exception):
    pass

def alarm(signum, frame):
    raise Hang()

signal.signal(signal.SIGALRM, alarm)
for path in sys.argv[1:]:
    for extra in ([], ["--format", "json"]):
        out, err = io.StringIO(), io.StringIO()
        signal.alarm({seconds})
        try:
            code = main([path, *extra], stdout=out, stderr=err)
        except Hang:
            code = "hang"
        except BaseException as exc:
            code = "raised " + type(exc).__name__
        finally:
            signal.alarm(0)
        print(json.dumps({{"path": path, "args": extra, "code": code, "stderr": err.getvalue()}}), flush=True)
"""


def mutate(base: bytes, rng: random.Random) -> bytes:
    """``base`` with 1 to 8 bytes overwritten, a run of bytes cloned, or cut short — the three ways a file
    goes wrong in transit or by hand; the first 64 bytes are favoured, since headers live there."""
    raw = bytearray(base)
    kind = rng.random()
    if kind < 0.6:
        for _ in range(rng.randint(1, 8)):
            end = len(raw) if rng.random() < 0.5 else min(len(raw), 64)
            raw[rng.randrange(end)] = rng.randrange(256)
    elif kind < 0.8:
        start = rng.randrange(len(raw))
        piece = raw[start:start + rng.randint(1, 32)]
        at = rng.randrange(len(raw))
        raw[at:at] = piece * rng.randint(1, 4)
    if rng.random() < 0.3:
        del raw[rng.randrange(len(raw)):]
    return bytes(raw)


def write_mutations(base: Path, folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` mutated copies of ``base`` in ``folder``, named ``<seed>-<i><suffix>``."""
    rng = random.Random(seed)
    data = base.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{seed}-{i}{base.suffix}"
        path.write_bytes(mutate(data, rng))
        paths.append(path)
    return paths


def run_all(paths: list[Path], timeout: float = 300) -> list[dict]:
    """The worker's verdict on each path (two runs a path: the tree and JSON)."""
    script = _WORKER.format(limit=ADDRESS_SPACE, seconds=PER_FILE_SECONDS)
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-c", script, *map(str, paths)], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, env=env, check=False)
    rows = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
    assert done.returncode == 0, f"the worker died (exit {done.returncode}): {done.stderr.decode()[-2000:]}"
    assert len(rows) == 2 * len(paths), f"{len(rows)} verdicts for {len(paths)} files"
    return rows


def is_clean(row: dict) -> bool:
    """One verdict keeps the promise: exit 0 and a silent stderr, or exit 1 and one line naming the file."""
    code, lines = row["code"], row["stderr"].splitlines()
    if code == 0:
        return not lines
    return code == 1 and len(lines) == 1 and Path(row["path"]).name in lines[0]


def assert_all_clean(paths: list[Path], timeout: float = 300) -> dict[int, int]:
    """Every mutated file ends in exit 0 or 1 with one stderr line naming it; returns the exit codes seen
    (so a test can also check that the mutations did reach the readers' refusals)."""
    seen: dict[int, int] = {}
    bad = []
    for row in run_all(paths, timeout):
        if not is_clean(row):
            bad.append(f"{row['path']} {row['args']}: {row['code']} {row['stderr'][:300]!r}")
        code = row["code"]
        if isinstance(code, int):
            seen[code] = seen.get(code, 0) + 1
    assert not bad, f"{len(bad)} mutated files broke the promise:\n" + "\n".join(bad[:10])
    return seen
