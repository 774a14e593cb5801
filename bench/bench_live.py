"""Live-module path against its peers, in one process: a bare sum, torchinfo, fvcore, paramscope.

Models: Llama-2-70B built on the meta device (723 tensors) and a synthetic model of 20,000+ modules.
"paramscope report" is inspect() plus every aggregate a renderer draws (totals, ties, tree, by-type,
by-dtype). A live model's tree is counted whole when asked for, its nodes made when first read: "paramscope report,
every node" also reads every node of the whole tree (what a JSON document or a full-depth table draws);
"paramscope tree" renders the default tree view (three levels) to text.

    .venv/bin/python bench/bench_live.py [--repeat 31] [--peer-repeat 3] [--wall] [--only report]

Times are CPU time of this process (``time.process_time``) by default, which a shared machine disturbs less than
the wall clock (``--wall``). The bare sum and paramscope's rows take turns call by call, ``--repeat`` rounds after
one warm-up each: "median ms" is each row's median, "x bare" the ratio of the medians, and "paired" the median
over the rounds of each call's time over the bare sum's in the same round (what a machine whose speed drifts
during the run moves least: issue 12's figure). The peers, slow, run ``--peer-repeat`` times each after them. To
compare two trees of the source, run this once with each on PYTHONPATH, alternating, and compare "paired".
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
import warnings

import torch
from torch import nn

import paramscope
from paramscope.renderers import RenderOptions, render


def llama2_70b() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32000, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
        num_attention_heads=64, num_key_value_heads=8, tie_word_embeddings=False,
    )
    with torch.device("meta"):
        return LlamaForCausalLM(config)


def many_modules(blocks: int = 5000) -> nn.Module:
    """5,000 blocks of Linear + LayerNorm + GELU: 20,001 modules, 20,000 parameter tensors."""
    with torch.device("meta"):
        return nn.Sequential(*(nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.GELU()) for _ in range(blocks)))


def bare_sum(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def paramscope_report(model: nn.Module) -> int:
    report = paramscope.inspect(model)
    report.tree(), report.by_type, report.by_dtype, report.ties, report.bytes, report.non_embedding
    return report.total


def paramscope_every_node(model: nn.Module) -> int:
    report = paramscope.inspect(model)
    for _ in report.tree().walk():
        pass
    _ = report.by_type, report.by_dtype, report.ties, report.bytes, report.non_embedding
    return report.total


def paramscope_tree(model: nn.Module) -> int:
    report = paramscope.inspect(model)
    render(report, "tree", RenderOptions())
    return report.total


def torchinfo_summary(model: nn.Module) -> int:
    import torchinfo

    with contextlib.redirect_stdout(io.StringIO()):
        return torchinfo.summary(model, verbose=0).total_params


def fvcore_table(model: nn.Module) -> int:
    from fvcore.nn import parameter_count_table

    parameter_count_table(model)
    from fvcore.nn import parameter_count

    return parameter_count(model)[""]


def timed(fn, model, repeat: int, clock=time.process_time) -> tuple[float, int]:
    """The median of ``repeat`` calls after a warm-up, and the count returned."""
    fn(model)  # warm-up (imports, caches)
    times, result = [], 0
    for _ in range(repeat):
        start = clock()
        result = fn(model)
        times.append(clock() - start)
    return statistics.median(times), result


def in_turn(fns, model, repeat: int, clock=time.process_time) -> tuple[list[list[float]], list[int]]:
    """Each function's times over ``repeat`` rounds in which every function is called once, in turn (after a
    warm-up each), and the counts returned."""
    for fn in fns:
        fn(model)  # warm-up (imports, caches)
    times: list[list[float]] = [[] for _ in fns]
    counts = [0] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = clock()
            counts[i] = fn(model)
            times[i].append(clock() - start)
    return times, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=31,
                        help="rounds of the bare sum and paramscope's rows, called in turn (default 31)")
    parser.add_argument("--peer-repeat", type=int, default=3, help="runs of each peer, after them (default 3)")
    parser.add_argument("--wall", action="store_true", help="wall-clock time instead of this process's CPU time")
    parser.add_argument("--only", choices=("report", "nodes", "tree"),
                        help="time only the bare sum and one paramscope path (report; report, every node; tree text)")
    args = parser.parse_args()
    clock = time.perf_counter if args.wall else time.process_time
    warnings.filterwarnings("ignore")
    ours = [
        ("bare sum(p.numel())", bare_sum),
        ("paramscope report", paramscope_report),
        ("paramscope every node", paramscope_every_node),
        ("paramscope tree text", paramscope_tree),
    ]
    peers = [
        ("torchinfo.summary", torchinfo_summary),
        ("fvcore count table", fvcore_table),
    ]
    if args.only:
        ours, peers = [ours[0], ours[{"report": 1, "nodes": 2, "tree": 3}[args.only]]], []
    for label, build in (("Llama-2-70B (meta, 723 tensors)", llama2_70b), ("20,001 modules", many_modules)):
        model = build()
        print(f"\n{label}")
        print(f"{'method':24} {'median ms (' + ('wall' if args.wall else 'CPU') + ')':>16} {'x bare':>8} {'paired':>8} "
              f"{'count':>16}")
        times, counts = in_turn([fn for _, fn in ours], model, args.repeat, clock)
        base = statistics.median(times[0])
        for (name, _), row, count in zip(ours, times, counts, strict=True):
            paired = statistics.median(t / b for t, b in zip(row, times[0], strict=True))
            print(f"{name:24} {statistics.median(row) * 1000:16.1f} {statistics.median(row) / base:8.2f} "
                  f"{paired:8.2f} {count:16,}")
        for name, fn in peers:
            seconds, count = timed(fn, model, args.peer_repeat, clock)
            print(f"{name:24} {seconds * 1000:16.1f} {seconds / base:8.2f} {'':>8} {count:16,}")


if __name__ == "__main__":
    main()
