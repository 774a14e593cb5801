"""Benchmark: header-only reading of a Hugging Face Hub repository, paramscope vs huggingface_hub.

A Llama-2-70B-shaped BF16 checkpoint (723 tensors, 15 sparse shards, ~138 GB apparent, a few KB on disk)
is served by the loopback fake Hub of tests/sources/_fake_hub.py (Range support, resolve routes), run as its own
process. Compared on
the same server:

* paramscope: ``paramscope.pipeline.read("hf:bench/llama-2-70b")`` (config.json + index by one capped GET each
  into the Hugging Face cache, then one ranged read per shard sized from the index, 8 in parallel);
* peer: ``HfApi().get_safetensors_metadata("bench/llama-2-70b")`` (huggingface_hub's own header reader).

In-process: both in this process (huggingface_hub imported once, the small JSON files cached after the
warm-up, as a user's second call would find them), median of REPEATS calls each, and the bytes the server
sent per call (shard bodies, and everything). Whole-process: each as its own ``python`` process (the CLI for
paramscope), interleaved, median wall time of REPEATS runs, peak RSS from GNU time.

Run: ``.venv/bin/python bench/bench_hub.py [--repeats N]``.
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
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "sources"))
sys.path.insert(0, str(ROOT / "bench"))
from _fake_hub import header_size  # noqa: E402 - the fake Hub lives beside the tests
from _measure import measure  # noqa: E402
from _st_helpers import LLAMA2_70B, LLAMA2_70B_PARAMS, llama_tensors, write_sharded  # noqa: E402

REPO = "bench/llama-2-70b"

PEER = """
import sys
from huggingface_hub import HfApi
meta = HfApi().get_safetensors_metadata(sys.argv[1])
print(sum(len(f.tensors) for f in meta.files_metadata.values()))
"""


class RemoteHub:
    """The fake Hub as its own process (``python _fake_hub.py``), so that its threads do not share this
    process's GIL with the readers being timed; counters come from its ``/_stats`` route."""

    def __init__(self, directory: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "sources" / "_fake_hub.py"), REPO, str(directory)],
            stdout=subprocess.PIPE, text=True,
        )
        self.url = self.proc.stdout.readline().strip()

    def _get(self, route: str) -> dict:
        with urllib.request.urlopen(self.url + route, timeout=10) as response:
            return json.loads(response.read())

    def reset_counts(self) -> None:
        self._get("/_reset")

    def stats(self) -> tuple[int, int, int]:
        """(shard body bytes, all body bytes, requests) since the last reset."""
        data = self._get("/_stats")
        sent = data["sent"]
        return sum(n for k, n in sent.items() if k.endswith(".safetensors")), sum(sent.values()), data["requests"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="paramscope-bench-hub-"))
    tensors = [(name, "BF16", shape) for name, shape in llama_tensors(**LLAMA2_70B)]
    index = write_sharded(tmp / "repo", tensors, 15)
    (tmp / "repo" / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
    shards = sorted(index.parent.glob("*.safetensors"))
    headers = sum(header_size(p) for p in shards)
    apparent = sum(p.stat().st_size for p in shards)

    hub = RemoteHub(tmp / "repo")
    os.environ.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp / "hf_home"),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        os.environ.pop(name, None)

    # imported after the environment is set: huggingface_hub reads HF_ENDPOINT/HF_HOME at import time
    from huggingface_hub import HfApi

    from paramscope.pipeline import read
    from paramscope.report import Report

    inventory = read(f"hf:{REPO}")  # the count is checked once, outside the timings
    assert Report(inventory).total == LLAMA2_70B_PARAMS, Report(inventory).total

    def ours() -> int:
        return len(read(f"hf:{REPO}").tensors)

    def peer() -> int:
        meta = HfApi().get_safetensors_metadata(REPO)
        return sum(len(f.tensors) for f in meta.files_metadata.values())

    print(f"Llama-2-70B-shaped BF16: 723 tensors, {len(shards)} shards, {apparent / 1e9:,.1f} GB apparent, "
          f"headers {headers:,} bytes in all; fake Hub at {hub.url}")
    print(f"in-process, median of {args.repeats} calls (after one warm-up that caches config.json and the index):")
    print(f"{'reader':<40} {'time ms':>9} {'shard bytes':>12} {'x headers':>10} {'all bytes':>10} {'requests':>9}")
    rows = {}
    for label, fn in (("paramscope pipeline.read('hf:...')", ours), ("huggingface_hub get_safetensors_metadata", peer)):
        assert fn() == 723
        times, shard_sent, all_sent, requests = [], [], [], []
        for _ in range(args.repeats):
            hub.reset_counts()
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
            shards_bytes, every_byte, count = hub.stats()
            shard_sent.append(shards_bytes)
            all_sent.append(every_byte)
            requests.append(count - 1)  # not the /_stats request itself
        rows[label] = statistics.median(times)
        sb = statistics.median(shard_sent)
        print(f"{label:<40} {rows[label] * 1e3:>9.1f} {sb:>12,.0f} {sb / headers:>10.3f} "
              f"{statistics.median(all_sent):>10,.0f} {statistics.median(requests):>9.0f}")
    ours_t, peer_t = rows.values()
    print(f"time ratio paramscope / huggingface_hub: {ours_t / peer_t:.2f}")

    print(f"\nwhole process (fresh python each run; cache warm), median of {args.repeats} runs:")
    print(f"{'command':<40} {'wall ms':>9} {'peak RSS MiB':>13}")
    commands = {
        "paramscope hf:... --format json": [sys.executable, "-m", "paramscope", f"hf:{REPO}", "--format", "json"],
        "python -c get_safetensors_metadata": [sys.executable, "-c", PEER, REPO],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    # interleaved (one run of each command per round), so that a load change on the machine hits all alike
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for _ in range(args.repeats):
        for label, argv in commands.items():
            runs[label].append(measure(argv, 1))
    results = {}
    for label, samples in runs.items():
        results[label] = statistics.median(wall for wall, _ in samples)
        print(f"{label:<40} {results[label] * 1e3:>9.1f} {max(rss for _, rss in samples):>13.1f}")
    first, second = list(results.values())[:2]
    print(f"time ratio paramscope CLI / huggingface_hub script: {first / second:.2f}")
    hub.stop()


if __name__ == "__main__":
    main()
