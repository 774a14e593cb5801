"""Whole-process wall time and peak RSS of a command, shared by bench_gguf.py and bench_onnx.py."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time


def measure(argv: list[str], repeat: int) -> tuple[float, float]:
    """Median wall seconds and max peak RSS (MiB) of ``argv`` run ``repeat`` times after one warm-up.

    RSS comes from GNU time's %M: ``ru_maxrss`` of a child forked straight from this (large) process would
    count the parent's pages it inherited before exec."""
    times, peaks = [], []
    with tempfile.NamedTemporaryFile("r") as out:
        for i in range(repeat + 1):
            start = time.perf_counter()
            proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *argv],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(f"{argv} failed: {proc.stderr.decode()}")
            out.seek(0)
            if i:
                times.append(elapsed)
                peaks.append(int(out.read().split()[-1]) / 1024)
    return statistics.median(times), max(peaks)
