"""``paramscope memory SOURCE [options]``: weights, gradients and optimizer state, for inference and
training (activations are out of scope). ``paramscope SOURCE --memory [options]`` is the same command.

Inference (issue 14): ``--arch`` shows the architecture card (:mod:`paramscope.architecture`);
``--context L [--batch B] [--kv-dtype D] [--runtime R]`` adds the K/V cache and recurrent state of every
layer (:mod:`paramscope.kv_cache`, each line with its formula); ``--fit 24GiB`` answers the longest
context and the largest batch that fit after the weights (``--weights-as`` casts them first).

The estimate's options are defined here once (:func:`add_estimate_options`), for this command and for
the ``--memory`` alias of ``inspect``. They parse to ``None`` when not given, so that the alias can
tell "given" from "default" and refuse them without ``--memory``; :func:`run` fills in
:data:`DEFAULTS`.
"""

from __future__ import annotations

import argparse

from paramscope.commands._common import (
    EXIT_OK,
    UsageError,
    add_output_argument,
    add_reading_options,
    add_source_argument,
    epilog,
    load_report,
    positive,
    write,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

HELP = "memory for inference and training: weights, KV cache, gradients, optimizer state"

# The choices are listed here, not read from paramscope.memory, so that start-up need not import it;
# tests/commands/test_memory.py checks that they match the estimator and its renderer.
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw", "adam-8bit", "adafactor")
PRECISIONS = ("fp32", "mixed-bf16", "mixed-fp16")
FORMATS = ("tree", "table", "markdown", "json", "csv")

ESTIMATE_OPTIONS = {
    "optimizer": "--optimizer",
    "precision": "--precision",
    "zero": "--zero",
    "fsdp": "--fsdp",
    "gpus": "--gpus",
    "frozen_as": "--frozen-as",
}
"""dest -> flag of every option that only the estimate reads (the alias refuses them without --memory)."""
DEFAULTS = {"optimizer": "adamw", "precision": "mixed-bf16", "zero": None, "fsdp": False, "gpus": 1,
            "frozen_as": "precision"}

# ---- inference: the architecture card, the K/V cache and --fit (issue 14) ------------------------------
RUNTIMES = ("vllm", "llama.cpp", "transformers", "transformers-4")
INFERENCE_OPTIONS = {
    "arch": "--arch",
    "context": "--context",
    "batch": "--batch",
    "kv_dtype": "--kv-dtype",
    "runtime": "--runtime",
    "fit": "--fit",
    "weights_as": "--weights-as",
}
"""dest -> flag of the inference options (kept apart from the training ones: a separate block)."""
INFERENCE_DEFAULTS = {"arch": False, "context": None, "batch": 1, "kv_dtype": "float16", "runtime": "vllm",
                      "fit": None, "weights_as": None}
ESTIMATE_OPTIONS.update(INFERENCE_OPTIONS)
DEFAULTS.update(INFERENCE_DEFAULTS)


def _size(text: str) -> int:
    from paramscope.kv_cache import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _kv_dtype(text: str) -> str:
    """A --kv-dtype name, checked when the command line is read: a wrong one is bad usage before any source is
    read (reading a config can take seconds)."""
    from paramscope.kv_cache import KV_DTYPES

    if text not in KV_DTYPES:
        from paramscope.text import safe

        raise argparse.ArgumentTypeError(f"unknown KV cache dtype '{safe(text[:40])}'; choose from "
                                         f"{', '.join(KV_DTYPES)}")
    return text


def _weight_format(text: str) -> str:
    """A --weights-as format, checked when the command line is read (as --kv-dtype: before any source is read)."""
    from paramscope.memory import ALIASES, WEIGHT_FORMATS

    if text not in WEIGHT_FORMATS and text not in ALIASES:
        from paramscope.text import safe

        raise argparse.ArgumentTypeError(f"unknown weight format '{safe(text[:40])}'; choose from "
                                         f"{', '.join([*WEIGHT_FORMATS, *ALIASES])}")
    return text


def add_inference_options(group: Any) -> None:
    """The options of :data:`INFERENCE_OPTIONS`."""
    group.add_argument("--arch", action="store_true", default=None,
                       help="show the architecture card (layers, heads, K/V heads per layer, windows, MLA, experts)")
    group.add_argument("--context", type=positive, metavar="L", help="tokens cached per sequence: adds the KV cache")
    group.add_argument("--batch", type=positive, metavar="B", help="sequences cached at once (default: 1)")
    group.add_argument("--kv-dtype", type=_kv_dtype, metavar="DTYPE",
                       help="K/V cache element type: float16 (default), bfloat16, float32, float8_e4m3fn, "
                            "float8_e5m2, fp16, bf16, fp8, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl")
    group.add_argument("--runtime", choices=RUNTIMES,
                       help="whose cache layout: vllm (default), llama.cpp, transformers (5), transformers-4 "
                            "(MLA as full per-head K/V)")
    group.add_argument("--fit", type=_size, metavar="SIZE",
                       help="memory to fit in (24GiB, 24GB, 80G): the longest context and largest batch that fit "
                            "after the weights")
    group.add_argument("--weights-as", type=_weight_format, metavar="FORMAT",
                       help="count the weights cast to FORMAT (bf16, fp8, int8, int4, nf4...) instead of as stored")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "memory", help=HELP,
        description=f"Estimate {HELP} (not activations).\n\n"
                    "'paramscope SOURCE --memory [options]' is the same command.",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_argument(parser)
    output = parser.add_argument_group("output")
    output.add_argument("-f", "--format", choices=FORMATS, default="tree", help="output format (default: tree)")
    add_output_argument(output)
    add_reading_options(parser)
    add_estimate_options(parser.add_argument_group("memory: weights, gradients and optimizer state; not activations"))
    parser.set_defaults(func=run, reads=("source",))
    return parser


def add_estimate_options(group: Any) -> None:
    """The options of :data:`ESTIMATE_OPTIONS`."""
    group.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer whose state is counted (default: adamw)")
    group.add_argument("--precision", choices=PRECISIONS,
                       help="training precision; mixed keeps an fp32 master copy (default: mixed-bf16)")
    sharding = group.add_mutually_exclusive_group()
    sharding.add_argument("--zero", type=int, choices=(1, 2, 3), help="DeepSpeed ZeRO stage, over --gpus GPUs")
    sharding.add_argument("--fsdp", action="store_true", default=None, help="FSDP full sharding, over --gpus GPUs")
    group.add_argument("--gpus", type=positive, metavar="N", help="GPUs to shard over (default: 1)")
    group.add_argument("--frozen-as", metavar="FORMAT",
                       help="width of frozen weights: precision (default), stored, or a format such as nf4, "
                            "q4_0, int8, bf16")
    add_inference_options(group)


def given(args: argparse.Namespace) -> list[str]:
    """The flags of :data:`ESTIMATE_OPTIONS` that were given."""
    return [flag for dest, flag in ESTIMATE_OPTIONS.items() if getattr(args, dest, None) is not None]


def run(args: argparse.Namespace, out: TextIO, err: TextIO | None) -> int:
    from paramscope.memory import estimate
    from paramscope.renderers.memory_text import render as render_memory

    if args.format == "html":  # reachable through the alias only: this command's --format has no html
        raise UsageError("--memory has no html layout; use --format tree, table, markdown, json or csv")
    _check_cache_options(args)
    settings = {dest: DEFAULTS[dest] if getattr(args, dest) is None else getattr(args, dest)
                for dest in ESTIMATE_OPTIONS}
    report = load_report(args, err)
    shard = f"zero{settings['zero']}" if settings["zero"] else ("fsdp" if settings["fsdp"] else "none")
    try:
        result = estimate(report, optimizer=settings["optimizer"], precision=settings["precision"], shard=shard,
                          gpus=settings["gpus"], frozen_as=settings["frozen_as"])
    except ValueError as exc:  # an unknown --frozen-as format: bad usage
        raise UsageError(str(exc)) from None
    inference = _inference(report, settings)
    write(render_memory(result, args.format, inference=inference), args, out)
    return EXIT_OK


CACHE_ONLY = ("batch", "kv_dtype", "runtime")
"""Options that shape the cache: without --context or --fit there is no cache for them to shape."""


def _check_cache_options(args: argparse.Namespace) -> None:
    if args.context is not None or args.fit is not None:
        return
    stray = [INFERENCE_OPTIONS[dest] for dest in CACHE_ONLY if getattr(args, dest) is not None]
    if stray:
        verb = "applies" if len(stray) == 1 else "apply"
        raise UsageError(f"{', '.join(stray)} {verb} only with --context or --fit")


def _inference(report: Any, settings: dict[str, Any]) -> Any:
    """The card, K/V cache and fit the inference options ask for (None when none is given)."""
    wanted = settings["arch"] or settings["context"] is not None or settings["fit"] is not None
    if not wanted and settings["weights_as"] is None:
        return None
    from paramscope import kv_cache
    from paramscope.errors import ParamscopeError
    from paramscope.memory import weights_as

    try:
        kv_cache.kv_dtype(settings["kv_dtype"])
        cast = settings["weights_as"]
        weights = report.parameter_bytes if cast is None else weights_as(report, cast)
    except ValueError as exc:  # an unknown --kv-dtype or --weights-as: bad usage
        raise UsageError(str(exc)) from None
    if weights is not None and report.buffer_bytes is not None:
        weights += report.buffer_bytes
    card = report.architecture
    needs_card = settings["context"] is not None or settings["fit"] is not None or settings["arch"]
    if needs_card and card is None:
        raise ParamscopeError(report.source, "the source states no architecture (no config.json, GGUF key/values "
                                             "or model config): the KV cache cannot be estimated")
    context = settings["context"]
    if context is None and settings["fit"] is not None and card is not None:
        context = card.max_context
    kv = fit = None
    try:
        if context is not None:
            kv = kv_cache.estimate(card, context=context, batch=settings["batch"], kv_dtype_name=settings["kv_dtype"],
                                   runtime=settings["runtime"], weights_bytes=weights)
        if settings["fit"] is not None:
            if weights is None:
                raise ParamscopeError(report.source, "some tensors have a dtype paramscope does not know: the "
                                                     "weights' size, and so --fit, is unknown")
            fit = kv_cache.solve(card, budget=settings["fit"], weights_bytes=weights, context=context or 1,
                                 batch=settings["batch"], kv_dtype_name=settings["kv_dtype"],
                                 runtime=settings["runtime"])
    except ValueError as exc:  # the card lacks what the cache needs: the source's shortcoming
        raise ParamscopeError(report.source, str(exc)) from None
    return kv_cache.Inference(card=card, kv=kv, fit=fit, weights_bytes=weights, weights_as=settings["weights_as"],
                              show_card=bool(settings["arch"]))
