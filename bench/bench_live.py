"""Live-module path against its peers, in one process: a bare sum, torchinfo, fvcore, paramscope.

Models: Llama-2-70B built on the meta device (723 tensors) and a synthetic model of 20,000+ modules.
"paramscope report" is inspect() plus every aggregate a renderer draws (totals, ties, tree, by-type,
by-dtype). A live model's tree is counted whole when asked for, its nodes made when first read: "paramscope report,
every node" also reads every node of the whole tree (what a JSON document or a full-depth table draws);
"paramscope tree" renders the default tree view (three levels) to text.

    .venv/bin/python bench/bench_live.py [--repeat 5] [--wall] [--only report]

Times are CPU time of this process (``time.process_time``) by default, which a shared machine disturbs less than
the wall clock (``--wall``); each is the median of ``--repeat`` runs after one warm-up. To compare two trees of
the source, run this once with each on PYTHONPATH, alternating, and compare the "x bare" column.
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
    fn(model)  # warm-up (imports, caches)
    times, result = [], 0
    for _ in range(repeat):
        start = clock()
        result = fn(model)
        times.append(clock() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per method; the median is shown (default 5)")
    parser.add_argument("--wall", action="store_true", help="wall-clock time instead of this process's CPU time")
    parser.add_argument("--only", choices=("report", "nodes", "tree"),
                        help="time only the bare sum and one paramscope path (report; report, every node; tree text)")
    args = parser.parse_args()
    clock = time.perf_counter if args.wall else time.process_time
    warnings.filterwarnings("ignore")
    peers = [
        ("bare sum(p.numel())", bare_sum),
        ("paramscope report", paramscope_report),
        ("paramscope every node", paramscope_every_node),
        ("paramscope tree text", paramscope_tree),
        ("torchinfo.summary", torchinfo_summary),
        ("fvcore count table", fvcore_table),
    ]
    if args.only:
        peers = [peers[0], peers[{"report": 1, "nodes": 2, "tree": 3}[args.only]]]
    for label, build in (("Llama-2-70B (meta, 723 tensors)", llama2_70b), ("20,001 modules", many_modules)):
        model = build()
        print(f"\n{label}")
        print(f"{'method':24} {'median ms (' + ('wall' if args.wall else 'CPU') + ')':>16} {'x bare':>8} {'count':>16}")
        base = None
        for name, fn in peers:
            seconds, count = timed(fn, model, args.repeat, clock)
            base = base or seconds
            print(f"{name:24} {seconds * 1000:16.1f} {seconds / base:8.2f} {count:16,}")


if __name__ == "__main__":
    main()
