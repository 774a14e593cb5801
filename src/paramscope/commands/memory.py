"""``paramscope memory SOURCE [options]``: weights, gradients and optimizer state, for inference and
training (activations are out of scope). ``paramscope SOURCE --memory [options]`` is the same command.

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

HELP = "memory for inference and training: weights, gradients, optimizer state"

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


def given(args: argparse.Namespace) -> list[str]:
    """The flags of :data:`ESTIMATE_OPTIONS` that were given."""
    return [flag for dest, flag in ESTIMATE_OPTIONS.items() if getattr(args, dest) is not None]


def run(args: argparse.Namespace, out: TextIO, err: TextIO | None) -> int:
    from paramscope.memory import estimate
    from paramscope.renderers.memory_text import render as render_memory

    if args.format == "html":  # reachable through the alias only: this command's --format has no html
        raise UsageError("--memory has no html layout; use --format tree, table, markdown, json or csv")
    settings = {dest: DEFAULTS[dest] if getattr(args, dest) is None else getattr(args, dest)
                for dest in ESTIMATE_OPTIONS}
    report = load_report(args, err)
    shard = f"zero{settings['zero']}" if settings["zero"] else ("fsdp" if settings["fsdp"] else "none")
    try:
        result = estimate(report, optimizer=settings["optimizer"], precision=settings["precision"], shard=shard,
                          gpus=settings["gpus"], frozen_as=settings["frozen_as"])
    except ValueError as exc:  # an unknown --frozen-as format: bad usage
        raise UsageError(str(exc)) from None
    cost = _training_cost(args, report, settings, shard)
    text = render_memory(result, args.format)
    if cost is not None:
        import json

        from paramscope.renderers.cost_text import cost_json
        from paramscope.renderers.cost_text import render as render_cost

        if args.format == "json":
            text = json.dumps({"states": json.loads(text), **cost_json(cost)}, indent=2, ensure_ascii=True) + "\n"
        else:
            text += "\n" + render_cost(cost, args.format)
    write(text, args, out)
    return EXIT_OK
