"""Benchmark: a GGUF repository listed over HTTP from its files' headers alone (issue 15).

Eight quantizations of a Llama-2-7B-shaped model (Q2_K ... F16: 291 tensors, a 32,000-token SentencePiece
vocabulary with scores and token types, a chat template; real headers written by gguf-py's GGUFWriter, the
data sections sparse, 2.3-13.5 GB apparent each) are served by the loopback fake Hub of
tests/sources/_fake_hub.py. ``paramscope.sources.open_source("hf:bench/llama-2-7b-gguf")`` lists them, each
from its header by ranged reads.

Printed per file: the bytes the server sent for it / the file's data offset (the bytes before its weights:
what a whole-header download would take) and its requests; then the same with skipping fixed-width arrays
by range turned off (``gguf.SKIP_BY_RANGE = False``: the scores and token types are read through instead),
which is what skipping saves; and the wall time of the listing (median of REPEATS).

Run: ``.venv/bin/python bench/bench_remote_gguf.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "sources"))
sys.path.insert(0, str(ROOT / "src"))
from _fake_hub import FakeHub, write_repo  # noqa: E402 - the fake Hub lives beside the tests
from _gguf_repo import LLAMA_7B_PARAMS, QUANTIZATIONS, write_llama_gguf  # noqa: E402

REPO = "bench/llama-2-7b-gguf"


def listing(hub: FakeHub) -> tuple[list[dict], float]:
    from paramscope.sources import open_source

    hub.reset_counts()
    start = time.perf_counter()
    inventory = open_source(f"hf:{REPO}")
    seconds = time.perf_counter() - start
    rows = inventory.metadata["gguf.files"]
    assert all(row["parameters"] == LLAMA_7B_PARAMS for row in rows), rows
    return rows, seconds


def report(hub: FakeHub, rows: list[dict], title: str) -> None:
    print(title)
    print(f"  {'file':<26} {'sent':>10} {'data offset':>12} {'ratio':>6} {'requests':>8}")
    for row in rows:
        sent, offset = hub.sent[row["file"]], row["data_offset"]
        print(f"  {row['file']:<26} {sent:>10,} {offset:>12,} {sent / offset:>6.3f} {hub.gets(row['file']):>8}")
    total = sum(hub.sent[row["file"]] for row in rows)
    print(f"  all GGUF files: {total:,} bytes in {sum(hub.gets(r['file']) for r in rows)} requests; "
          f"{len(hub.requests)} requests in all (config, index, model.safetensors, listing included)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from paramscope.sources import gguf

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "repo"
        for quant in QUANTIZATIONS:
            write_llama_gguf(directory / f"llama-2-7b.{quant}.gguf", quant)
        write_repo(directory, {"README.md": b"# GGUF"})
        hub = FakeHub().start()
        hub.add_repo(REPO, directory)
        os.environ.update(HF_ENDPOINT=hub.url, HF_HOME=str(Path(tmp) / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1")
        try:
            rows, _ = listing(hub)
            report(hub, rows, "skipping fixed-width arrays by range (the default):")
            with_skip = sum(hub.sent[row["file"]] for row in rows)
            gguf.SKIP_BY_RANGE = False
            rows, _ = listing(hub)
            report(hub, rows, "reading them through (gguf.SKIP_BY_RANGE = False):")
            without = sum(hub.sent[row["file"]] for row in rows)
            gguf.SKIP_BY_RANGE = True
            print(f"skipping saves {without - with_skip:,} bytes ({1 - with_skip / without:.1%}) over 8 files")
            times = [listing(hub)[1] for _ in range(args.repeats)]
            print(f"listing 8 files: median {statistics.median(times) * 1000:.0f} ms over {args.repeats} runs "
                  f"(in-process, loopback, the Hub's small files from the cache after the first run)")
        finally:
            hub.stop()


if __name__ == "__main__":
    main()
