"""``paramscope [inspect] [SOURCE] [options]``: count, group and render a model's parameters.

The default command: ``paramscope SOURCE`` is ``paramscope inspect SOURCE``, and no SOURCE reads the
built-in example. ``--memory`` turns it into ``paramscope memory`` (same options, same output).
"""

from __future__ import annotations

import argparse

from paramscope.commands import memory
from paramscope.commands._common import (
    EXIT_OK,
    SOURCES_HELP,
    UsageError,
    add_output_argument,
    add_reading_options,
    add_source_argument,
    epilog,
    isatty,
    load_report,
    non_negative,
    positive,
    wants_color,
    write,
)
from paramscope.renderers import FORMATS, GROUPINGS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

HELP = "count, group and render a model's parameters (the default command)"

RENDER_OPTIONS = {"depth": "--depth", "by": "--by", "top": "--top"}
"""dest -> flag of the options that lay out the parameter report: they have no meaning with --memory."""
RENDER_DEFAULTS = {"depth": None, "by": "module", "top": None}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "inspect", help=HELP, description=description(), epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run, reads=("source",))
    return parser


def description() -> str:
    return ("Count exactly how many parameters a model has, where they sit and what they cost.\n"
            "'paramscope SOURCE [options]' is 'paramscope inspect SOURCE [options]'.\n\n" + SOURCES_HELP)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_argument(parser)
    out = parser.add_argument_group("output")
    out.add_argument("-f", "--format", choices=FORMATS, default="tree", help="output format (default: tree)")
    # --depth, --by and --top parse to None when not given (defaults: RENDER_DEFAULTS), so that --memory
    # can refuse them.
    out.add_argument("--depth", type=non_negative, metavar="N",
                     help="module levels to show (default: 3 for tree/table, all for json/csv/markdown)")
    out.add_argument("--by", choices=GROUPINGS, help="group rows by (default: module)")
    out.add_argument("--top", type=positive, metavar="K", help="also list the K largest tensors")
    add_output_argument(out)
    out.add_argument("--no-color", action="store_true", help="no colour (also: the NO_COLOR variable)")
    add_reading_options(parser)
    alias = parser.add_argument_group("memory (--memory is 'paramscope memory SOURCE'; its options need it)")
    alias.add_argument("--memory", action="store_true", help="estimate memory for inference and training instead")
    memory.add_estimate_options(alias)


def run(args: argparse.Namespace, out: TextIO, err: TextIO | None) -> int:
    check_options(args)
    if args.memory:
        return memory.run(args, out, err)
    if args.format == "html" and not args.output and isatty(out):
        raise UsageError("--format html writes a whole page: give -o FILE.html (or redirect the output)")
    from paramscope.errors import ParamscopeError
    from paramscope.renderers import RenderOptions, render_chunks

    try:
        report = load_report(args, err)
    except ParamscopeError as exc:
        raise _with_verdict(args, exc) from None
    from paramscope.pipeline import LISTING_FORMAT

    if report.format == LISTING_FORMAT:  # a repository of several GGUF models: the table to pick one from
        from paramscope.renderers import listing

        write(listing.render(report, args.format), args, out)
        return EXIT_OK
    color = wants_color(out, args)
    width = None
    if color:
        import shutil

        width = shutil.get_terminal_size().columns
    layout = {dest: RENDER_DEFAULTS[dest] if getattr(args, dest) is None else getattr(args, dest)
              for dest in RENDER_OPTIONS}
    options = RenderOptions(color=color, width=width, **layout)
    import itertools

    write(itertools.chain(render_chunks(report, args.format, options), _safety_line(args, report)), args, out)
    return EXIT_OK


SAFETY_FORMATS = ("tree", "table")
"""Formats for people, which end with the safety verdict of a local pickle or program (paramscope.safety)."""


def _safety_line(args: argparse.Namespace, report: Any) -> list[str]:
    """``safety: <verdict>`` for a pickle or program (local, or read by ranged reads) in a format for people
    (nothing for formats that cannot hold code: :func:`paramscope.safety.worth_saying`)."""
    import os

    if args.format not in SAFETY_FORMATS or args.source is None:
        return []
    from paramscope.sources import READ_IS_SAFE

    if report.format in READ_IS_SAFE and os.path.isfile(args.source):  # safe by construction: not worth saying
        return []
    from paramscope.safety import after_read, after_remote_read, worth_saying

    if os.path.exists(args.source):
        verdict = after_read(args.source, report.format, report.metadata)
    else:  # a Hub file or URL read by ranged reads: a pickle among them passed the allow-list
        remote = after_remote_read(report.format, report.metadata)
        if remote is None:
            return []
        verdict = remote
    return [f"safety: {verdict.line()}\n"] if worth_saying(verdict) else []


def _with_verdict(args: argparse.Namespace, exc: Any) -> Any:
    """A pickle the reader refused (it stops at the first global outside its allow-list), with the safety
    verdict of the file or Hub repository: every global named, and which torch.load(weights_only=True)
    refuses too (:mod:`paramscope.safety`: collected, never imported). Any other error as it was."""
    import os

    if args.source is None or not any(f"refuses {what}" in exc.reason for what in ("global '", "opcode ")):
        return exc
    from pathlib import Path

    from paramscope import safety
    from paramscope.errors import ParamscopeError
    from paramscope.sources.hub import PREFIX, looks_like_repo

    if os.path.exists(args.source):
        verdict = safety.path_verdict(Path(args.source))
    elif args.source.startswith(("http://", "https://")):
        verdict = safety.remote_verdict(args.source)
    elif args.source.startswith(PREFIX) or looks_like_repo(args.source):
        text = args.source if args.source.startswith(PREFIX) else PREFIX + args.source
        verdict = safety.remote_verdict(f"{text}:{args.file}" if getattr(args, "file", None) else text)
    else:
        return exc
    if verdict is None or verdict.verdict != safety.NEEDS_TRUST:
        return exc
    return ParamscopeError(exc.source, f"{exc.reason}; safety: {verdict.line()}")


def check_options(args: argparse.Namespace) -> None:
    """Options that apply only with --memory, or only without it, are bad usage when they would do nothing."""
    if args.memory:
        stray = [flag for dest, flag in RENDER_OPTIONS.items() if getattr(args, dest) is not None]
        if stray:
            raise UsageError(f"{_listed(stray)} {_verb(stray)} no meaning with --memory")
        return
    stray = memory.given(args)
    if stray:
        raise UsageError(f"{_listed(stray)} {_verb(stray, 'applies', 'apply')} only with --memory "
                         "(or use 'paramscope memory SOURCE')")


def _listed(flags: list[str]) -> str:
    return ", ".join(flags)


def _verb(flags: list[str], one: str = "has", many: str = "have") -> str:
    return one if len(flags) == 1 else many
