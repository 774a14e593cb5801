"""``paramscope memory SOURCE [options]``: weights, gradients and optimizer state, for inference and
training, with the K/V cache (``--context``), activations, FLOPs and time (``--seq``).
``paramscope SOURCE --memory [options]`` is the same command.

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
        description=f"Estimate {HELP}; with --seq, activations, FLOPs and training time.\n\n"
                    "'paramscope SOURCE --memory [options]' is the same command.",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_argument(parser)
    output = parser.add_argument_group("output")
    output.add_argument("-f", "--format", choices=FORMATS, default="tree", help="output format (default: tree)")
    add_output_argument(output)
    add_reading_options(parser)
    add_estimate_options(parser.add_argument_group("memory: weights, gradients and optimizer state (model states)"))
    add_training_cost_options(parser.add_argument_group(
        "training cost: activations of one micro-batch, peak per GPU, FLOPs and time (needs --seq)"))
    parser.set_defaults(func=run, reads=("source",))
    return parser


# ---- training cost (activations, FLOPs, time): paramscope.training.training_cost ----------------

RECOMPUTE = ("none", "selective", "full")
ATTENTION = ("eager", "flash")
TRAINING_OPTIONS = {"micro_batch": "--micro-batch", "recompute": "--recompute", "attention": "--attention",
                    "tp": "--tp", "sp": "--sp", "tokens": "--tokens", "gpu_flops": "--gpu-flops", "gpu": "--gpu",
                    "mfu": "--mfu"}
"""dest -> flag of the options that only mean something with --seq."""


def _amount(text: str) -> float:
    """A positive number, plain or scientific (``2e12``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _tokens(text: str) -> int:
    value = _amount(text)
    if value != int(value) or value > 1e18:
        raise argparse.ArgumentTypeError(f"must be a whole number of tokens up to 1e18, got {text}")
    return int(value)


def _fraction(text: str) -> float:
    value = _amount(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def add_training_cost_options(group: Any) -> None:
    """The options of the training cost (:data:`TRAINING_OPTIONS` and ``--seq``)."""
    group.add_argument("--seq", type=positive, metavar="S", help="sequence length of a training micro-batch")
    group.add_argument("--micro-batch", type=positive, metavar="B", help="sequences per micro-batch (default: 1)")
    group.add_argument("--recompute", choices=RECOMPUTE, help="activation recomputation (default: none)")
    group.add_argument("--attention", choices=ATTENTION,
                       help="eager stores the s² attention probabilities, flash does not (default: flash)")
    group.add_argument("--tp", type=positive, metavar="N",
                       help="tensor-parallel ranks; --gpus counts data-parallel ranks, so --gpus × --tp GPUs in all "
                            "(default: 1)")
    group.add_argument("--sp", action="store_true", default=None, help="sequence parallelism (with --tp)")
    group.add_argument("--tokens", type=_tokens, metavar="T", help="training tokens, for the time (e.g. 2e12)")
    peak = group.add_mutually_exclusive_group()
    peak.add_argument("--gpu-flops", type=_amount, metavar="F", help="peak FLOP/s of one GPU (e.g. 989e12)")
    peak.add_argument("--gpu", metavar="NAME", help="peak dense bf16 of A100, H100, H200, L40S, RTX4090, MI300X")
    group.add_argument("--mfu", type=_fraction, metavar="U", help="model FLOPs utilisation (default: 0.4)")


def _training_cost(args: argparse.Namespace, report: Any, settings: dict[str, Any], shard: str) -> Any:
    """The :class:`paramscope.training.TrainingCost` the options ask for, or None without --seq."""
    if getattr(args, "seq", None) is None:
        extra = [flag for dest, flag in TRAINING_OPTIONS.items() if getattr(args, dest, None) is not None]
        if extra:
            raise UsageError(f"{', '.join(extra)} need --seq")
        return None
    from paramscope.errors import ParamscopeError
    from paramscope.flops import gpu
    from paramscope.training import training_cost

    card = getattr(report, "architecture", None)
    if card is None or card.unknown:
        missing = ", ".join(card.unknown) if card is not None else "the architecture"
        raise ParamscopeError(report.source, f"the training cost needs {missing}, which this source does not state")
    gpu_flops, gpu_source = args.gpu_flops, "--gpu-flops" if args.gpu_flops else None
    if args.gpu is not None:
        try:
            chosen = gpu(args.gpu)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        gpu_flops, gpu_source = chosen.flops, chosen.source
    try:
        return training_cost(
            report, card, seq=args.seq, micro_batch=args.micro_batch or 1, recompute=args.recompute or "none",
            attention=args.attention or "flash", tp=args.tp or 1, sp=bool(args.sp),
            optimizer=settings["optimizer"], precision=settings["precision"], shard=shard, gpus=settings["gpus"],
            frozen_as=settings["frozen_as"], tokens=args.tokens, gpu_flops=gpu_flops, gpu_source=gpu_source,
            mfu=args.mfu)
    except ValueError as exc:  # a time that overflows: the options' doing
        raise UsageError(str(exc)) from None


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
    from paramscope.pipeline import one_model

    report = one_model(load_report(args, err))  # a listing of a repository's GGUF models: name one
    shard = f"zero{settings['zero']}" if settings["zero"] else ("fsdp" if settings["fsdp"] else "none")
    try:
        result = estimate(report, optimizer=settings["optimizer"], precision=settings["precision"], shard=shard,
                          gpus=settings["gpus"], frozen_as=settings["frozen_as"])
    except ValueError as exc:  # an unknown --frozen-as format: bad usage
        raise UsageError(str(exc)) from None
    inference = _inference(report, settings)
    cost = _training_cost(args, report, settings, shard)
    if cost is not None:  # the states' "activations not included" note is answered by the cost table below
        from dataclasses import replace

        from paramscope.memory import ACTIVATIONS_NOTE

        result = replace(result, notes=[n for n in result.notes if n != ACTIVATIONS_NOTE])
    text = render_memory(result, args.format, inference=inference)
    if cost is not None:
        import json

        from paramscope.renderers.cost_text import cost_json
        from paramscope.renderers.cost_text import render as render_cost

        if args.format == "json":  # one document: the training peak under memory.training, FLOPs under compute
            doc, extra = json.loads(text), cost_json(cost)
            doc["memory"]["training"] = extra["memory"]
            doc["compute"] = extra["compute"]
            text = json.dumps(doc, indent=2, ensure_ascii=True) + "\n"
        else:
            text += "\n" + render_cost(cost, args.format)
    write(text, args, out)
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
