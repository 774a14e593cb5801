"""The commands of ``paramscope``, one module each, listed in :data:`COMMANDS`.

A command module has ``add_parser(subparsers)``, which registers its subparser with
``set_defaults(func=run, reads=(...))`` (``reads``: the argument names of the sources it reads, for
error messages) and optionally ``bad_input_exit``, and ``run(args, out, err) -> int``. Exit codes,
``--debug``, broken pipes and the last words on MemoryError/RecursionError are handled once for all,
by :func:`paramscope.cli.main`.

The command is the first word only: ``paramscope SOURCE`` (anything that is not a command name) is
``paramscope inspect SOURCE``, so a local file named like a command is read as ``./diff`` or
``paramscope inspect diff``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib

from paramscope.commands._common import SOURCES_HELP, epilog
from paramscope.text import as_written, as_written_plural

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, NoReturn

COMMANDS = ("inspect", "diff", "memory", "scan")
"""Command names, each a module of this package, in the order --help lists them. A new command (a
future ``scan``) is a module here and a name in this tuple."""
DEFAULT = "inspect"
USAGE_LIMIT = 1000
"""Characters of a usage error's message, at most."""
TOP_LEVEL = ("-h", "--help", "--version")
"""First words the top-level parser answers itself; anything else that is not a command is a SOURCE."""

TOP_DESCRIPTION = """\
Count exactly how many parameters a model has, where they sit and what they cost.

'paramscope SOURCE [options]' runs the default command, inspect; 'paramscope' alone inspects the
built-in example. A command is recognised as the first word only: to read a local file named like
a command, write it as a path ('paramscope ./diff') or name the command ('paramscope inspect diff').
'paramscope COMMAND --help' lists a command's options.

""" + SOURCES_HELP


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line on standard error (the rule of every error here).
    ``commands``: the top-level parser's command parsers, by name."""

    commands: dict[str, Parser]

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse's own asks shutil for the terminal's width at every add_argument, and shutil brings bz2, lzma
        # and zlib along: a measurable part of reading a small file. The same width (shutil's rule), from os.
        return self.formatter_class(prog=self.prog, width=_terminal_columns() - 2)

    def error(self, message: str) -> NoReturn:
        from paramscope.text import one_line

        # A usage line quotes what it refuses: cut, so that a megabyte argument is not a megabyte line.
        self.exit(2, f"paramscope: error: {one_line(message, USAGE_LIMIT)} (see '{self.prog} --help')\n")


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: ``COLUMNS`` if a positive number, else the terminal on standard
    output, else 80."""
    import os
    import sys

    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def build_parser(commands: tuple[str, ...] = COMMANDS) -> Parser:
    """The top-level parser and a subparser per command of ``commands`` (each with ``--debug`` and
    ``--version``), all of them unless told: what the top-level --help lists. :func:`parse` builds a command's
    parser alone where the command line names one."""
    from paramscope.version import __version__

    parser = Parser(
        prog="paramscope",
        usage="paramscope [COMMAND] [SOURCE ...] [options]",
        description=TOP_DESCRIPTION,
        epilog=epilog() + "paramscope diff exits as diff(1): 0 equivalent, 1 different, 2 trouble.\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"paramscope {__version__}")
    parser.commands = {}
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", prog="paramscope")
    for name in commands:
        parser.commands[name] = _command_parser(name, subparsers)
    return parser


def _command_parser(name: str, subparsers: Any) -> Parser:
    """The parser of command ``name``, made by ``subparsers`` (the top-level parser's, or :class:`_Alone`), with
    ``--debug`` and ``--version``."""
    from paramscope.version import __version__

    command = importlib.import_module(f"paramscope.commands.{name}").add_parser(subparsers)
    command.add_argument("--debug", action="store_true", help="show a traceback on errors")
    command.add_argument("--version", action="version", version=f"paramscope {__version__}")
    return command


class _Alone:
    """The top-level parser's subparsers, for a command parser built alone: ``add_parser`` makes the parser that
    argparse's would (this class, prog 'paramscope NAME', the same settings), without the top-level parser."""

    def add_parser(self, name: str, **settings: Any) -> Parser:
        settings.pop("help", None)  # the line of the top-level --help's list of commands
        return Parser(prog=f"paramscope {name}", **settings)


def parse(argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed, the default command put first where it names none (:func:`with_command`).
    argparse exits (SystemExit) on --help, --version and bad usage."""
    argv = with_command(argv)
    with _as_written():
        if argv[0] not in COMMANDS:  # the top-level --help and --version: every command listed
            return build_parser(COMMANDS).parse_args(argv)
        # The command is the first word: only its module is imported and only its parser is built and run (the
        # top-level parser would hand it the rest of the line, with the command's name as args.command; the other
        # commands' options cost a small file's reading time again).
        command = _command_parser(argv[0], _Alone())
        args, extra = command.parse_known_args(argv[1:])
        args.command = argv[0]
        if extra:  # refused by the command's parser, so that its line points at the command's --help
            command.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


@contextlib.contextmanager
def _as_written() -> Iterator[None]:
    """argparse's own words (``usage:``, ``options``, its usage errors) as written, in English as every other line
    paramscope writes, while a command line is parsed. argparse looks each one up with ``gettext.gettext``, whose
    every lookup reads the locale variables, imports :mod:`locale` to normalise them and asks the file system for
    a catalogue Python does not ship (CPython has no translations): 2 ms of reading a small file (issue 12)."""
    saved = vars(argparse).get("_"), vars(argparse).get("ngettext")
    if None in saved:  # an argparse that names its lookups otherwise: left as it is
        yield
        return
    argparse._, argparse.ngettext = as_written, as_written_plural  # type: ignore[attr-defined]
    try:
        yield
    finally:
        argparse._, argparse.ngettext = saved  # type: ignore[attr-defined]


def with_command(argv: list[str]) -> list[str]:
    """``argv`` with the default command put first where it names none."""
    if argv and (argv[0] in COMMANDS or argv[0] in TOP_LEVEL):
        return argv
    return [DEFAULT, *argv]
