"""config.json -> parameter count: ``paramscope CONFIG --format json`` vs transformers' own
``AutoModel*.from_config`` on the meta device + ``num_parameters()``.

Both sides are whole processes (python start-up, torch and transformers imports, the build), measured
in the same run and interleaved (ours, peer, ours, peer, ...) so that load from other processes on a
shared machine hits both alike: median wall time of several runs after a warm-up of each, and peak RSS
(GNU time). A second table times the build alone in this process (imports done), for every config.

Run: ``.venv/bin/python bench/bench_config.py [--repeat 5]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _measure import run_once  # bench/ is sys.path[0] when a script here runs

WHOLE_PROCESS = ("gpt2", "llama-2-70b")
"""Configs timed as whole processes (each run is seconds of imports; the build itself is in table 2)."""

CONFIGS = {
    "gpt2": ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "AutoModelForCausalLM"),
    "bert-base": ({"model_type": "bert", "architectures": ["BertModel"]}, "AutoModel"),
    "llama-2-7b": ({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000,
                    "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                    "num_attention_heads": 32, "num_key_value_heads": 32, "torch_dtype": "float16"},
                   "AutoModelForCausalLM"),
    "llama-2-70b": ({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000,
                     "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
                     "num_attention_heads": 64, "num_key_value_heads": 8, "torch_dtype": "float16"},
                    "AutoModelForCausalLM"),
}

PEER = """
import json, sys, torch, transformers
cfg = json.load(open(sys.argv[1]))
config = transformers.AutoConfig.for_model(**cfg)
with torch.device("meta"):
    model = getattr(transformers, sys.argv[2]).from_config(config)
print(model.num_parameters())
"""


def _interleaved(ours: list[str], peer: list[str], repeat: int) -> tuple[float, float, float, float]:
    """Median seconds and max peak RSS of each command, run alternately ``repeat`` times after a warm-up."""
    run_once(ours), run_once(peer)
    pairs = [(run_once(ours), run_once(peer)) for _ in range(repeat)]
    return (statistics.median(a[0] for a, _ in pairs), statistics.median(b[0] for _, b in pairs),
            max(a[1] for a, _ in pairs), max(b[1] for _, b in pairs))


def in_process(path: Path, auto: str, repeat: int) -> tuple[float, float, int, int]:
    """Median seconds of paramscope's build+records+Report total, and of from_config+num_parameters."""
    import torch
    import transformers

    from paramscope.report import Report
    from paramscope.sources.config import read_config_path

    cfg = json.loads(path.read_text())
    ours, theirs = [], []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        total = Report(read_config_path(path)).total
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        config = transformers.AutoConfig.for_model(**cfg)
        with torch.device("meta"):
            model = getattr(transformers, auto).from_config(config)
        peer = model.num_parameters()
        theirs.append(time.perf_counter() - start)
    return statistics.median(ours[1:]), statistics.median(theirs[1:]), total, peer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    exe = sys.executable
    paramscope_cli = str(Path(exe).parent / "paramscope")
    rows, inproc = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (cfg, auto) in CONFIGS.items():
            path = Path(tmp) / name / "config.json"
            path.parent.mkdir()
            path.write_text(json.dumps(cfg))
            if name in WHOLE_PROCESS:
                ours_argv = [paramscope_cli, str(path), "--format", "json"]
                peer_argv = [exe, "-c", PEER, str(path), auto]
                rows.append((name, *_interleaved(ours_argv, peer_argv, args.repeat)))
            inproc.append((name, *in_process(path, auto, args.repeat)))

    print(f"whole process, median of {args.repeat} interleaved runs (after 1 warm-up each); RSS = peak")
    print(f"{'config':<12} {'paramscope s':>12} {'from_config s':>13} {'ratio':>6} {'ps MiB':>8} {'peer MiB':>9}")
    for name, ours_t, peer_t, ours_rss, peer_rss in rows:
        print(f"{name:<12} {ours_t:>12.3f} {peer_t:>13.3f} {ours_t / peer_t:>6.2f} {ours_rss:>8.0f} {peer_rss:>9.0f}")
    print()
    print(f"build only, in process, median of {args.repeat}")
    print(f"{'config':<12} {'paramscope ms':>13} {'from_config ms':>14} {'ratio':>6} {'total':>15} {'peer':>15}")
    for name, ours_s, peer_s, total, peer in inproc:
        ratio = ours_s / peer_s
        print(f"{name:<12} {ours_s * 1e3:>13.1f} {peer_s * 1e3:>14.1f} {ratio:>6.2f} {total:>15,} {peer:>15,}")


if __name__ == "__main__":
    main()
