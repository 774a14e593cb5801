"""Benchmark: the HTML report, written and then loaded in headless Chromium, against plotly's own treemap.

Two models, as sparse safetensors checkpoints (header written, then truncated to full size): Llama-2-70B
(723 tensors, BF16, ~138 GB apparent) and a 20,000-module model (2,000 blocks of 9 linears: 36,000
tensors). For each:

* **write**: the whole process ``paramscope FILE --format html -o out.html`` against a peer script that
  reads the same header with ``safetensors.safe_open`` and writes a plotly ``go.Treemap`` of the same
  module tree (tensors as leaves) with ``fig.write_html(include_plotlyjs=True)``: what one would do by
  hand with plotly. Median wall time of REPEATS runs after a warm-up; peak RSS from ``/usr/bin/time``.
* **load**: one headless Chromium (``/usr/bin/chromium``, network blocked), time from navigation to the
  treemap drawn, median of REPEATS loads of each page.

Run: ``.venv/bin/python bench/bench_html.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "sources"))
sys.path.insert(0, str(ROOT / "bench"))
from _measure import measure  # noqa: E402
from _st_helpers import LLAMA2_70B, llama_tensors, write_sparse  # noqa: E402

PEER = """
import sys
from safetensors import safe_open
import plotly.graph_objects as go
ids, parents, values = [""], [None], [0]
index = {"": 0}
def node(path):
    if path in index:
        return index[path]
    up = node(path.rpartition(".")[0])
    index[path] = len(ids)
    ids.append(path); parents.append(ids[up]); values.append(0)
    return index[path]
with safe_open(sys.argv[1], framework="numpy") as f:
    for name in f.keys():
        shape = f.get_slice(name).get_shape()
        n = 1
        for d in shape:
            n *= d
        i = node(name)
        values[i] += n
        p = parents[i]
        while p is not None:
            values[index[p]] += n
            p = parents[index[p]]
ids[0] = "(root)"
parents = [None if p is None else ("(root)" if p == "" else p) for p in parents]
fig = go.Figure(go.Treemap(ids=ids, parents=[p or "" for p in parents], labels=ids, values=values,
                           branchvalues="total", maxdepth=3))
fig.write_html(sys.argv[2], include_plotlyjs=True)
"""


def wide_tensors() -> list[tuple[str, str, tuple[int, ...]]]:
    return [(f"blocks.{i}.{j}.{leaf}", "F32", (64, 64) if leaf == "weight" else (64,))
            for i in range(2_000) for j in range(9) for leaf in ("weight", "bias")]


LOAD_LIMIT_S = 60


def load_times(pages: list[Path], repeats: int) -> list[float]:
    """Median seconds from navigation to a drawn treemap, per page, in one Chromium; inf past LOAD_LIMIT_S."""
    from playwright.sync_api import TimeoutError as PageTimeout
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        for page_path in pages:
            times = []
            for _ in range(repeats + 1):
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
                start = time.perf_counter()
                try:
                    page.goto(page_path.as_uri(), timeout=LOAD_LIMIT_S * 1000)
                    page.wait_for_selector("g.trace.treemap path", timeout=LOAD_LIMIT_S * 1000)
                except PageTimeout:
                    times = [float("inf")] * 2  # one such wait is enough to know
                    page.close()
                    break
                times.append(time.perf_counter() - start)
                page.close()
            results.append(statistics.median(times[1:]))
        browser.close()
    return results


def _seconds(t: float) -> str:
    return f"{t:.2f}" if t < LOAD_LIMIT_S else f"> {LOAD_LIMIT_S}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    python = str(ROOT / ".venv" / "bin" / "python")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cases = {
            "Llama-2-70B (723 tensors)": [(n, "BF16", s) for n, s in llama_tensors(**LLAMA2_70B)],
            "20,000 modules (36,000 tensors)": wide_tensors(),
        }
        rows = []
        for label, tensors in cases.items():
            source = tmp_path / (label.split()[0] + ".safetensors")
            write_sparse(source, tensors)
            ours, peer = source.with_suffix(".paramscope.html"), source.with_suffix(".plotly.html")
            base_t, _ = measure([python, "-c", "pass"], args.repeats)
            our_t, our_rss = measure([python, "-m", "paramscope", str(source), "--format", "html", "-o", str(ours)],
                                     args.repeats)
            peer_t, peer_rss = measure([python, "-c", PEER, str(source), str(peer)], args.repeats)
            our_load, peer_load = load_times([ours, peer], args.repeats)
            rows.append((label, base_t, our_t, peer_t, our_rss, peer_rss, our_load, peer_load,
                         ours.stat().st_size, peer.stat().st_size))
    print(f"median of {args.repeats} runs each; write = whole process; load = navigation to treemap drawn")
    header = ("model", "pass s", "write s", "plotly s", "ratio", "RSS MiB", "plotly MiB", "load s", "plotly load s",
              "MiB out", "plotly MiB out")
    print(" | ".join(header))
    for label, base_t, our_t, peer_t, our_rss, peer_rss, our_load, peer_load, our_size, peer_size in rows:
        print(" | ".join((label, f"{base_t:.3f}", f"{our_t:.3f}", f"{peer_t:.3f}", f"{peer_t / our_t:.1f}x",
                          f"{our_rss:.0f}", f"{peer_rss:.0f}", f"{our_load:.2f}", _seconds(peer_load),
                          f"{our_size / 2**20:.1f}", f"{peer_size / 2**20:.1f}")))


if __name__ == "__main__":
    main()
