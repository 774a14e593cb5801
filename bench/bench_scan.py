"""Benchmark: ``paramscope scan`` throughput (models per second) and peak memory as the count of models grows.

* local: a directory of N tiny safetensors models (N = 1,000 and 10,000 by default; each a real 2-tensor
  file of ~200 bytes), scanned by the CLI in its own process (``scan DIR -f jsonl -o /dev/null``): wall time,
  models/s, and peak RSS (``ru_maxrss`` of the child). Rows are streamed, so RSS should stay flat as N grows.
* loopback: N models as objects in a real S3 API server on 127.0.0.1 (moto's server mode, in this process),
  scanned through s3fs (``scan s3://bench/zoo/``): wall time and models/s (skipped without moto/s3fs).

Run: ``.venv/bin/python bench/bench_scan.py [--local 1000 10000] [--remote 200] [--workers 4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _model_bytes(i: int) -> bytes:
    header = {"w": {"dtype": "F32", "shape": [4, 1 + i % 7], "data_offsets": [0, 16 * (1 + i % 7)]},
              "b": {"dtype": "F32", "shape": [4], "data_offsets": [16 * (1 + i % 7), 16 * (1 + i % 7) + 16]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + bytes(16 * (1 + i % 7) + 16)


def make_local(root: Path, n: int) -> None:
    for i in range(n):
        group = root / f"g{i // 1000:03d}"
        group.mkdir(exist_ok=True)
        (group / f"m{i:06d}.safetensors").write_bytes(_model_bytes(i))


def run_cli(args: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in KiB, exit code) of ``python -m paramscope ARGS`` in its own process."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "paramscope", *args], env=environment, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before), done.returncode


def bench_local(counts: list[int], workers: int) -> None:
    print(f"local: tiny safetensors models, --workers {workers}")
    print(f"{'models':>8} {'seconds':>8} {'models/s':>9} {'peak RSS':>10}")
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_local(root, n)
            # each count in a fresh child: ru_maxrss of RUSAGE_CHILDREN is the largest child so far, so run
            # the counts from small to large (a flat RSS then shows as the same figure)
            wall, rss, code = run_cli(["scan", str(root), "-f", "jsonl", "-o", os.devnull, "--workers", str(workers),
                                       "--no-progress"])
            print(f"{n:>8,} {wall:>8.2f} {n / wall:>9.0f} {rss / 1024:>8.1f} MiB  (exit {code})")


def bench_remote(n: int, workers: int) -> None:
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("loopback: skipped (pip install 'moto[server]' s3fs)")
        return
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": "us-east-1"}
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        client.create_bucket(Bucket="bench")
        for i in range(n):
            client.put_object(Bucket="bench", Key=f"zoo/m{i:05d}.safetensors", Body=_model_bytes(i))
        wall, _, code = run_cli(["scan", "s3://bench/zoo/", "-f", "jsonl", "-o", os.devnull, "--workers",
                                 str(workers), "--no-progress"], env)
        print(f"loopback S3 (moto on 127.0.0.1): {n:,} models in {wall:.2f} s = {n / wall:.0f} models/s "
              f"(exit {code}; includes the child's start and s3fs's import)")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local", type=int, nargs="*", default=[1_000, 10_000])
    parser.add_argument("--remote", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    bench_local(sorted(args.local), args.workers)
    if args.remote:
        bench_remote(args.remote, args.workers)


if __name__ == "__main__":
    main()
