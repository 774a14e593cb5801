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
    write(render_memory(result, args.format), args, out)
    return EXIT_OK
