"""ONNX weight listing, whole process: ``python -m paramscope FILE --format json`` against a script that
``onnx.load``s the model and lists its initializers (the reference), and ``python -c pass`` as the floor.

Files (written once into a temp dir): a ~500 MB model whose initializers hold real raw_data (24 float32
matrices of 4096 x 1280, plus biases), models of 1k / 10k / 100k small initializers, and a graph of 100k nodes
(20k MatMul weights behind Cast nodes, 60k scalar Constants feeding Mul): the cost of the roles by use.

    .venv/bin/python bench/bench_onnx.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
from _measure import measure, reader_ours_peer  # bench/ is sys.path[0] when a script here runs
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

READER_ONLY = """
import sys
from pathlib import Path
from paramscope.sources import onnx
print(len(onnx.read(Path(sys.argv[1])).tensors))
"""

PEER = """
import sys, onnx
m = onnx.load(sys.argv[1])
rows = [(t.name, list(t.dims), t.data_type) for t in m.graph.initializer]
print(len(rows))
"""


def _save(path: Path, inits: list[onnx.TensorProto]) -> None:
    node = h.make_node("Identity", ["x"], ["y"])
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", TP.FLOAT, [1])],
                         [h.make_tensor_value_info("y", TP.FLOAT, [1])], initializer=inits)
    onnx.save_model(h.make_model(graph, producer_name="bench"), str(path))


def big_model(path: Path) -> None:
    rng = np.random.default_rng(0)
    inits = []
    for i in range(24):
        inits.append(nh.from_array(rng.standard_normal((4096, 1280), dtype=np.float32), f"layers.{i}.weight"))
        inits.append(nh.from_array(rng.standard_normal(4096, dtype=np.float32), f"layers.{i}.bias"))
    _save(path, inits)


def many_initializers(path: Path, n: int) -> None:
    data = np.ones(16, np.float32)
    _save(path, [nh.from_array(data, f"blocks.{i // 10}.w{i % 10}") for i in range(n)])


def many_nodes(path: Path, blocks: int) -> None:
    """``blocks`` x (a weight Cast then MatMul'd, and three scalar Constants Mul'd in): 5 nodes a block."""
    weight = np.ones((4, 4), np.float16)
    inits, nodes, x = [], [], "x"
    for i in range(blocks):
        inits.append(nh.from_array(weight, f"blocks.{i}.w"))
        nodes += [h.make_node("Cast", [f"blocks.{i}.w"], [f"w{i}"], to=TP.FLOAT),
                  h.make_node("MatMul", [x, f"w{i}"], [f"m{i}"])]
        x = f"m{i}"
        for k in range(3):
            nodes.append(h.make_node("Constant", [], [f"c{i}_{k}"], value_float=0.5))
        nodes.append(h.make_node("Mul", [x, f"c{i}_0"], [f"s{i}"]))
        x = f"s{i}"
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TP.FLOAT, [1, 4])],
                         [h.make_tensor_value_info(x, TP.FLOAT, [1, 4])], initializer=inits)
    onnx.save_model(h.make_model(graph, producer_name="bench"), str(path))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        files: list[tuple[str, Path]] = []
        path = Path(tmp) / "big.onnx"
        big_model(path)
        files.append(("48 initializers, real raw_data", path))
        for n in (1_000, 10_000, 100_000):
            p = Path(tmp) / f"i{n}.onnx"
            many_initializers(p, n)
            files.append((f"{n:,} initializers", p))
        p = Path(tmp) / "nodes.onnx"
        many_nodes(p, 20_000)
        files.append(("100,000 nodes (roles by use)", p))
        floor_t, floor_m = measure([py, "-c", "pass"], args.repeat)
        print(f"python {sys.version.split()[0]}, onnx {version('onnx')}, repeat {args.repeat} "
              f"(median wall, max peak RSS); 'python -c pass': {floor_t * 1000:.0f} ms, {floor_m:.1f} MiB\n")
        header = (f"{'file':32} {'size':>9} | {'reader':>8} {'paramscope':>10} {'onnx.load':>10} {'ratio':>6} |"
                  f" {'RSS reader':>10} {'RSS ours':>9} {'RSS peer':>9} {'ratio':>6}")
        print(header)
        print("-" * len(header))
        for label, p in files:
            (read_t, read_m), (ours_t, ours_m), (peer_t, peer_m) = reader_ours_peer(READER_ONLY, PEER, p, args.repeat)
            print(
                f"{label:32} {p.stat().st_size / 2**20:7.1f}Mi | {read_t * 1000:6.0f}ms {ours_t * 1000:8.0f}ms "
                f"{peer_t * 1000:8.0f}ms {peer_t / ours_t:5.2f}x | {read_m:8.1f}Mi {ours_m:7.1f}Mi "
                f"{peer_m:7.1f}Mi {peer_m / ours_m:5.2f}x"
            )
    print("\nreader = a process that only runs paramscope.sources.onnx.read (no report, no rendering);"
          " paramscope = 'python -m paramscope FILE --format json';\nratio = onnx.load / paramscope"
          " (above 1: paramscope faster or smaller). Targets on the 500 MB file: time ratio >= 5, RSS ratio >= 10.")


if __name__ == "__main__":
    main()
