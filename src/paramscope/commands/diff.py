"""``paramscope diff A B [options]``: compare two models or checkpoints by tensor name and shape.

Exit codes as diff(1): 0 equivalent, 1 different, 2 trouble (bad input or bad usage; one line on
standard error). An internal error is 3, as for every command. The comparison itself is
:mod:`paramscope.diff`.
"""

from __future__ import annotations

import argparse

from paramscope.commands._common import source

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

HELP = "compare two models or checkpoints: will B load into A?"
EXIT_TROUBLE = 2
"""Bad input, as bad usage, is diff(1)'s "trouble": exit 1 means "different" here."""
FORMATS = ("text", "json", "markdown")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "diff", help=HELP,
        description="Compare two models or checkpoints by tensor name and shape: will B load into A?",
        epilog="exit codes: 0 equivalent (same names and shapes; dtypes may differ unless --strict), "
               "1 different, 2 trouble (3 internal error).",
    )
    parser.add_argument("a", type=source, metavar="A",
                        help="the model (a checkpoint, 'file.py:Name' or 'package.module:Name')")
    parser.add_argument("b", type=source, metavar="B", help="the checkpoint (or another model)")
    parser.add_argument("-f", "--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.add_argument("--no-normalize", action="store_true",
                        help="compare names as stored (no wrapper-prefix stripping, no GGUF name mapping)")
    parser.add_argument("--strict", action="store_true", help="dtype and tie differences also make exit 1")
    parser.set_defaults(func=run, reads=("a", "b"), bad_input_exit=EXIT_TROUBLE)
    return parser


def run(args: argparse.Namespace, out: TextIO, err: TextIO | None) -> int:
    from paramscope.commands._common import write
    from paramscope.diff import compare
    from paramscope.pipeline import inspect, one_model
    from paramscope.renderers.diff_text import render

    reports = [one_model(inspect(source)) for source in (args.a, args.b)]
    result = compare(reports[0], reports[1], normalize=not args.no_normalize)
    write(render(result, args.format, args.strict), args, out)
    return result.exit_code(args.strict)
