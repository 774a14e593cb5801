"""What the commands share: exit codes, option types, the options that read a source, the progress
bar, and writing the output. Nothing here is a command; :mod:`paramscope.commands` lists those.

Imported when any command line is parsed, so it stays light: no torch, no typing, no rich until a bar
is drawn.
"""

from __future__ import annotations

import argparse
import errno
import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, TextIO

    from paramscope.report import Report

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

SOURCES_HELP = """\
SOURCE is a checkpoint file or directory (a split GGUF's parts read as one model), a transformers
config.json (the architecture, built on the meta device), 'hf:org/name[@revision]' or a bare
'org/name' (config and weight headers from the Hugging Face Hub, never the weights; a repository of
several GGUF files is listed, one row per file, to pick from), 'hf:org/name[@revision]:FILE' (that
one file of the repository, as --file FILE), an https:// URL or an s3://, gs:// or az:// object (or
prefix) of a .safetensors, .gguf or .bin/.pt file or index (headers by ranged reads),
'path/to/file.py:Name' or 'package.module:Name' (an nn.Module class or factory, built on the meta
device: no memory for weights), or nothing for the built-in example (the model of the article
paramscope grew from).
"""

EPILOG = """\
counting rules:
  Shared tensors (tied embedding and head, a submodule used twice) count once; every name of a
  tie group is listed. Buffers are counted apart from parameters. Trainable/frozen follow
  requires_grad and are unknown for checkpoint files.
  {non_embedding}.

exit codes: 0 ok, 1 bad input, 2 bad usage, 3 internal error.
"""


def epilog() -> str:
    from paramscope.report import NON_EMBEDDING_RULE

    return EPILOG.format(non_embedding=NON_EMBEDDING_RULE[0].upper() + NON_EMBEDDING_RULE[1:])


STDOUT = "standard output"
"""The name an error writing to standard output is reported under."""


class UsageError(Exception):
    """A combination of options that argparse alone cannot check: exit 2, one line."""


# ---- option types: each refusal is argparse's one usage line ----------------------------------------


def non_negative(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def json_list(text: str) -> list[Any]:
    value = _json(text)
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError("must be a JSON list, like '[768, 12]'")
    return value


def json_object(text: str) -> dict[str, Any]:
    value = _json(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, like '{\"hidden\": 768}'")
    return value


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:  # '[' * 100_000 nests past the stack
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def shape(text: str) -> tuple[int, ...]:
    from paramscope.sources.live import parse_shape

    try:
        return parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


MAX_GLOB = 1_000
"""Characters of a --filter pattern: fnmatch translates an unclosed '[' by scanning to the end of the
pattern, so its cost grows with the square of the length ('[' * 20,000 takes 17 s, the 128 KiB an argument
may have would take hours). A name's glob is tens of characters."""


def glob(text: str) -> str:
    if len(text) > MAX_GLOB:
        raise argparse.ArgumentTypeError(f"a pattern of {len(text):,} characters; at most {MAX_GLOB:,}")
    return text


# ---- the options of every command that reads one SOURCE (inspect, memory) ---------------------------


def source(text: str) -> str:
    """A SOURCE as given; an empty one (an unset variable in 'paramscope "$MODEL"') would be the current
    directory, so it is bad usage instead."""
    if not text:
        raise argparse.ArgumentTypeError("empty; give a path, a spec or a repository")
    return text


def add_source_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", type=source, metavar="SOURCE",
                        help="what to read (default: built-in example)")


def add_reading_options(parser: argparse.ArgumentParser) -> None:
    """What to count, how to build a Python model, and the progress bar: how SOURCE becomes a report."""
    select = parser.add_argument_group("what to count")
    select.add_argument("--filter", type=glob, metavar="GLOB", help="only tensors whose name matches GLOB ('*attn*')")
    select.add_argument("--trainable-only", action="store_true", help="only parameters with requires_grad")
    select.add_argument("--no-buffers", action="store_true", help="leave buffers out")
    select.add_argument("--exclude-embeddings", action="store_true",
                        help="leave embedding weights (and heads tied to them) out; see 'counting rules'")
    # These apply to Python sources only; with a checkpoint they are accepted and have nothing to do
    # (which kind a SOURCE is is only known once it is opened, and a harmless option is not worth a refusal).
    build = parser.add_argument_group("building a model from Python (file.py:Name, package.module:Name)")
    build.add_argument("--device", default="meta", help="device to build on (default: meta, no memory)")
    build.add_argument("--args", type=json_list, metavar="JSON", help="positional constructor arguments, a JSON list")
    build.add_argument("--kwargs", type=json_object, metavar="JSON",
                       help="keyword constructor arguments, a JSON object")
    build.add_argument("--input-shape", type=shape, metavar="SHAPE",
                       help="materialise lazy modules by a meta-device dry run on an input of SHAPE (1,3,32,32)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar while reading remote headers (shown on a terminal only)")
    parser.add_argument("--file", metavar="FILE", help="one file of a Hugging Face repository SOURCE (a GGUF "
                        "quantization, a .bin, an index): the same as hf:org/name:FILE")


def add_output_argument(group: argparse._ArgumentGroup) -> None:
    group.add_argument("-o", "--output", metavar="FILE", type=_output_file,
                       help="write to FILE instead of standard output ('-': standard output)")


def load_report(args: argparse.Namespace, err: TextIO | None) -> Report:
    """The report of ``args.source`` under the options of :func:`add_reading_options`."""
    from paramscope.pipeline import inspect
    from paramscope.sources import EXAMPLE

    text = args.source if args.source is not None else EXAMPLE
    if getattr(args, "file", None):
        from paramscope.errors import ParamscopeError
        from paramscope.sources.hub import PREFIX, looks_like_repo

        if not (text.startswith(PREFIX) or looks_like_repo(text)):
            raise ParamscopeError(text, "--file names a file of a Hugging Face repository, and SOURCE is not one")
        text = f"{text if text.startswith(PREFIX) else PREFIX + text}:{args.file}"
    progress = progress_for(args, err)
    try:
        report = inspect(
            text,
            input_shape=args.input_shape,
            device=args.device,
            args=args.args,
            kwargs=args.kwargs,
            filter=args.filter,
            include_buffers=not args.no_buffers,
            exclude_embeddings=args.exclude_embeddings,
            progress=progress,
        )
    finally:
        if progress is not None:
            progress.close()
    if args.trainable_only:
        # requires_grad lives on a module, not in a file: keeping "the trainable ones" of a checkpoint would
        # keep nothing and print zeros, as if the model were frozen
        if report.trainable is None:
            raise UsageError(f"--trainable-only needs a source that knows requires_grad (a module or a "
                             f"file.py:Name spec); {report.format} files do not record it")
        report = report.filter(trainable_only=True)
    return report


# ---- terminal, progress and output ------------------------------------------------------------------


def isatty(stream: TextIO) -> bool:
    check = getattr(stream, "isatty", None)
    return bool(check and check())


class ProgressBar:
    """``progress(done, total, fetched_bytes)`` for :func:`paramscope.sources.open_source`: a rich bar on
    ``stream``, started at the first call (so local sources, which never call it, cost no rich import)
    and removed when closed. Cosmetic: without rich there is simply no bar."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int, fetched_bytes: int = 0) -> None:
        from paramscope.text import human_bytes

        try:
            if self._progress is None:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                self._progress = Progress(
                    TextColumn("reading headers"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[fetched]}"),
                    TimeElapsedColumn(),
                    console=Console(file=self.stream),
                    transient=True,
                )
                self._progress.start()
                self._task = self._progress.add_task("headers", total=total, fetched="")
            fetched = f"{human_bytes(fetched_bytes)} fetched"
            self._progress.update(self._task, completed=done, total=total, fetched=fetched)
        except ImportError:
            self._progress = False  # no rich: no bar

    def close(self) -> None:
        if self._progress:
            self._progress.stop()


def progress_for(args: argparse.Namespace, err: TextIO | None) -> ProgressBar | None:
    """A bar only on a terminal, and not with --no-progress."""
    if err is None or getattr(args, "no_progress", False):
        return None
    return ProgressBar(err) if isatty(err) else None


def _output_file(text: str) -> str | None:
    """``-o FILE``; ``-o -`` is standard output, as everywhere on the command line (None: no file)."""
    return None if text == "-" else text


def write(output: str | Iterable[str], args: argparse.Namespace, out: TextIO) -> None:
    """``output`` to ``-o FILE`` where the command has that option and it was given, else to ``out``.

    ``output`` is the text, or its pieces in order (:func:`paramscope.renderers.render_chunks`), each written
    as it is made: the whole text of a large report (hundreds of megabytes of JSON) is never held at once.
    """
    pieces = iter((output,) if isinstance(output, str) else output)
    try:
        # The first piece is made before FILE is opened (and emptied): a renderer that fails, fails at its
        # start, where the report's figures are laid out, and FILE is then left as it was.
        first = next(pieces, "")
        target = getattr(args, "output", None)
        if target:
            # Names reach the output through text.safe; a character that slipped past it (a lone surrogate)
            # is written as a backslash escape instead of failing the run.
            with open(_open_output(target), "w", encoding="utf-8", errors="backslashreplace",
                      newline="") as handle:
                handle.write(first)
                for piece in pieces:
                    handle.write(piece)
            return
        _put(out, first)
        for piece in pieces:
            _put(out, piece)
        _put(out, None)
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:  # a generator left by an error ends now, its finally blocks run (gc resumed)
            close()


def _put(out: TextIO, text: str | None) -> None:
    """``text`` to standard output (None: flush it). A character its encoding lacks ("·" on an ASCII
    terminal, a lone surrogate) is shown as a backslash escape; an error writing names standard output."""
    try:
        if text is None:
            out.flush()
            return
        try:
            out.write(text)  # encodes all of text before writing any of it: an error leaves nothing half-written
        except UnicodeEncodeError:
            encoding = getattr(out, "encoding", None) or "utf-8"
            out.write(text.encode(encoding, "backslashreplace").decode(encoding, "replace"))
    except BrokenPipeError:
        raise  # not an error: the CLI exits 0
    except OSError as exc:  # a full disk, a closed descriptor: say where, not which source was read
        raise OSError(exc.errno, exc.strerror, STDOUT) from exc


def _open_output(target: str) -> int:
    """A descriptor for writing ``-o FILE``, opened without blocking: a FIFO that nobody reads fails at once
    (ENXIO) instead of waiting for a reader forever; one with a reader (``-o >(gzip > out.gz)``) is written."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # what open(2) says of a FIFO with no reader, and of a socket
            raise OSError(exc.errno, "nothing reads it (a FIFO without a reader, or a socket)", target) from None
        raise
    os.set_blocking(fd, True)
    return fd


def wants_color(out: TextIO, args: argparse.Namespace) -> bool:
    if args.no_color or getattr(args, "output", None) or os.environ.get("NO_COLOR"):
        return False
    return isatty(out)
