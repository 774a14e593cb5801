"""Whole-process wall time and peak RSS of a command, shared by the bench scripts."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run of ``argv``.

    RSS comes from GNU time's %M: ``ru_maxrss`` of a child forked straight from this (large) process would
    count the parent's pages it inherited before exec."""
    with tempfile.NamedTemporaryFile("r") as out:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *argv],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{argv} failed: {proc.stderr.decode()}")
        return elapsed, int(out.read().split()[-1]) / 1024


def measure(argv: list[str], repeat: int) -> tuple[float, float]:
    """Median wall seconds and max peak RSS (MiB) of ``argv`` run ``repeat`` times after one warm-up."""
    run_once(argv)
    runs = [run_once(argv) for _ in range(repeat)]
    return statistics.median(t for t, _ in runs), max(m for _, m in runs)


def reader_ours_peer(reader_only: str, peer: str, path: Path, repeat: int) -> list[tuple[float, float]]:
    """(median seconds, peak MiB) of three processes on ``path``: a script running only our reader
    (``reader_only``), the whole CLI (``python -m paramscope FILE --format json``) and the peer's script."""
    py = sys.executable
    commands = ([py, "-c", reader_only, str(path)], [py, "-m", "paramscope", str(path), "--format", "json"],
                [py, "-c", peer, str(path)])
    return [measure(argv, repeat) for argv in commands]
