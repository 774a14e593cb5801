"""The command line: ``paramscope [COMMAND] [SOURCE ...] [options]``. ``main(argv) -> int`` and nothing else runs.

The commands are :mod:`paramscope.commands` (``inspect``, the default, ``diff`` and ``memory``); here is
what they share: the streams, exit codes, ``--debug``, broken pipes and the last words on running out of
memory or stack.

Exit codes: 0 success; 1 bad input (the source could not be read; 2 for ``diff``, as diff(1)); 2 bad
usage; 3 an internal error; 130 interrupted. A broken pipe (``paramscope ... | head``) is no error:
exit 0, quietly.
"""

from __future__ import annotations

import os
import sys

from paramscope.commands import build_parser
from paramscope.commands._common import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    ProgressBar,
    UsageError,
)

EXIT_INTERRUPTED = 130
"""128 + SIGINT, as a shell reports a command stopped by Ctrl-C."""

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import TextIO

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_OK", "EXIT_USAGE", "ProgressBar", "UsageError",
           "build_parser", "main", "run"]


def _one_line(message: str, limit: int | None = None) -> str:
    """One error line, cut to ``limit`` (default: text.LINE_LIMIT)."""
    from paramscope.text import LINE_LIMIT, one_line  # imported once arguments are parsed, not for --help

    return one_line(message, LINE_LIMIT if limit is None else limit)


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO | None = None) -> int:
    """Run the parsed command; errors propagate to :func:`main`."""
    return args.func(args, stdout, stderr)


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the CLI on ``argv``, writing to ``stdout`` and ``stderr`` only (argparse's help and usage
    lines too); return the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _main(argv, stdout, stderr)
    except BrokenPipeError:
        # The reader went away (``| head``): nothing is wrong, and nothing more can be said to it.
        return EXIT_OK
    except KeyboardInterrupt:  # Ctrl-C, while parsing as while reading: the shell's code, no traceback
        return EXIT_INTERRUPTED


def _main(argv: list[str], stdout: TextIO, stderr: TextIO) -> int:
    import contextlib

    from paramscope.commands import parse

    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = parse(argv)
    except SystemExit as exc:  # argparse: --help, --version (0) or bad usage (2)
        return int(exc.code or 0)
    # The last words, written before any work: once memory has run out, building a message may fail too.
    source = ", ".join(_one_line(name, limit=300) for name in _sources(args))
    last_words = {
        MemoryError: f"paramscope: out of memory reading {source}\n",
        RecursionError: f"paramscope: {source}: nested too deeply to read (recursion limit)\n",
    }
    try:
        return _run_reporting(args, stdout, stderr)
    except (MemoryError, RecursionError) as exc:
        if args.debug:
            raise
        message = last_words[RecursionError if isinstance(exc, RecursionError) else MemoryError]
    # Here, outside the handler, the exception and the frames its traceback held are gone: memory is back.
    _say_last_words(stderr, message)
    return getattr(args, "bad_input_exit", EXIT_BAD_INPUT)


def _sources(args: argparse.Namespace) -> list[str]:
    """What the command reads, as text: the arguments its ``reads`` names (no SOURCE: the example)."""
    values = [getattr(args, name) for name in args.reads]
    return [os.fsdecode(value) if value is not None else "example" for value in values]


def _say_last_words(stderr: TextIO, message: str) -> None:
    """Write a preformatted line; if even that fails, write its bytes straight to file descriptor 2."""
    import gc

    gc.collect()
    try:
        stderr.write(message)
        stderr.flush()
    except Exception:
        try:
            os.write(2, message.encode("utf-8", "backslashreplace"))
        except OSError:
            return  # standard error is gone: nowhere is left to say it


def _run_reporting(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """:func:`run`, with every failure turned into its one line and exit code."""
    from paramscope.errors import ParamscopeError

    bad_input = getattr(args, "bad_input_exit", EXIT_BAD_INPUT)
    try:
        return run(args, stdout, stderr)
    except UsageError as exc:
        print(f"paramscope: error: {_one_line(str(exc))}", file=stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        raise  # main's rule, --debug or not
    except ParamscopeError as exc:
        if args.debug:
            raise
        print(f"paramscope: {_one_line(str(exc))}", file=stderr)
        return bad_input
    except OSError as exc:
        if args.debug:
            raise
        where = exc.filename if exc.filename is not None else (getattr(args, "output", None) or _sources(args)[0])
        shown = os.fsdecode(where) if isinstance(where, bytes) else str(where)  # a bytes path is not UTF-8
        print(f"paramscope: {_one_line(f'{shown}: {exc.strerror or exc}')}", file=stderr)
        return bad_input
    except (MemoryError, RecursionError):
        raise  # main's last words
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"paramscope: internal error: {_one_line(f'{type(exc).__name__}: {exc}')} (--debug shows a traceback)",
            file=stderr,
        )
        return EXIT_INTERNAL
