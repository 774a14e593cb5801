"""The command line: ``paramscope [SOURCE] [options]``. ``main(argv) -> int`` and nothing else runs.

Exit codes: 0 success; 1 bad input (the source could not be read); 2 bad usage; 3 an internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from paramscope.renderers import FORMATS, GROUPINGS, RenderOptions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

DESCRIPTION = """\
Count exactly how many parameters a model has, where they sit and what they cost.

SOURCE is a checkpoint file or directory, a transformers config.json (the architecture, built on
the meta device), 'hf:org/name[@revision]' or a bare 'org/name' (config and safetensors headers
from the Hugging Face Hub, never the weights), an https:// URL of a .safetensors file or index
(headers by ranged reads), 'path/to/file.py:Name' or 'package.module:Name' (an nn.Module class or
factory, built on the meta device: no memory for weights), or nothing for the built-in example
(the model of the article paramscope grew from).
"""

EPILOG = """\
counting rules:
  Shared tensors (tied embedding and head, a submodule used twice) count once; every name of a
  tie group is listed. Buffers are counted apart from parameters. Trainable/frozen follow
  requires_grad and are unknown for checkpoint files.
  {non_embedding}.

exit codes: 0 ok, 1 bad input, 2 bad usage, 3 internal error.

compare two models or checkpoints:
  paramscope diff A B [--format text|json|markdown] [--strict] [--no-normalize]
  (exit codes as diff(1): 0 equivalent, 1 different, 2 trouble)
"""


class UsageError(Exception):
    """A combination of options that argparse alone cannot check."""


def build_parser() -> argparse.ArgumentParser:
    from paramscope import __version__
    from paramscope.report import NON_EMBEDDING_RULE

    parser = argparse.ArgumentParser(
        prog="paramscope",
        description=DESCRIPTION,
        epilog=EPILOG.format(non_embedding=NON_EMBEDDING_RULE[0].upper() + NON_EMBEDDING_RULE[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", nargs="?", metavar="SOURCE", help="what to inspect (default: built-in example)")
    out = parser.add_argument_group("output")
    out.add_argument("-f", "--format", choices=FORMATS, default="tree", help="output format (default: tree)")
    out.add_argument("--depth", type=_non_negative, metavar="N",
                     help="module levels to show (default: 3 for tree/table, all for json/csv/markdown)")
    out.add_argument("--by", choices=GROUPINGS, default="module", help="group rows by (default: module)")
    out.add_argument("--top", type=_positive, metavar="K", help="also list the K largest tensors")
    out.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    out.add_argument("--no-color", action="store_true", help="no colour (also: the NO_COLOR variable)")
    select = parser.add_argument_group("what to count")
    select.add_argument("--filter", metavar="GLOB", help="only tensors whose name matches GLOB ('*attn*')")
    select.add_argument("--trainable-only", action="store_true", help="only parameters with requires_grad")
    select.add_argument("--no-buffers", action="store_true", help="leave buffers out")
    select.add_argument("--exclude-embeddings", action="store_true",
                        help="leave embedding weights (and heads tied to them) out; see 'counting rules'")
    build = parser.add_argument_group("building a model from Python (file.py:Name, package.module:Name)")
    build.add_argument("--device", default="meta", help="device to build on (default: meta, no memory)")
    build.add_argument("--args", type=_json_list, metavar="JSON", help="positional constructor arguments, a JSON list")
    build.add_argument("--kwargs", type=_json_object, metavar="JSON",
                       help="keyword constructor arguments, a JSON object")
    build.add_argument("--input-shape", type=_shape, metavar="SHAPE",
                       help="materialise lazy modules by a meta-device dry run on an input of SHAPE (1,3,32,32)")
    memory = parser.add_argument_group("memory (--memory): weights, gradients and optimizer state; not activations")
    memory.add_argument("--memory", action="store_true", help="estimate memory for inference and training")
    memory.add_argument("--optimizer", default="adamw",
                        choices=("sgd", "sgd-momentum", "adam", "adamw", "adam-8bit", "adafactor"),
                        help="optimizer whose state is counted (default: adamw)")
    memory.add_argument("--precision", default="mixed-bf16", choices=("fp32", "mixed-bf16", "mixed-fp16"),
                        help="training precision; mixed keeps an fp32 master copy (default: mixed-bf16)")
    sharding = memory.add_mutually_exclusive_group()
    sharding.add_argument("--zero", type=int, choices=(1, 2, 3), help="DeepSpeed ZeRO stage, over --gpus GPUs")
    sharding.add_argument("--fsdp", action="store_true", help="FSDP full sharding, over --gpus GPUs")
    memory.add_argument("--gpus", type=_positive, default=1, metavar="N", help="GPUs to shard over (default: 1)")
    memory.add_argument("--frozen-as", default="precision", metavar="FORMAT",
                        help="width of frozen weights: precision (default), stored, or a format such as nf4, "
                             "q4_0, int8, bf16")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar while reading remote headers (shown on a terminal only)")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    parser.add_argument("--version", action="version", version=f"paramscope {__version__}")
    return parser


def _non_negative(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _json_list(text: str) -> list[Any]:
    value = _json(text)
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError("must be a JSON list, like '[768, 12]'")
    return value


def _json_object(text: str) -> dict[str, Any]:
    value = _json(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, like '{\"hidden\": 768}'")
    return value


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def _shape(text: str) -> tuple[int, ...]:
    from paramscope.sources.live import parse_shape

    try:
        return parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _wants_color(stream: TextIO, args: argparse.Namespace) -> bool:
    if args.no_color or args.output or os.environ.get("NO_COLOR"):
        return False
    return _isatty(stream)


def _one_line(message: str, limit: int | None = None) -> str:
    from paramscope.text import one_line  # imported once arguments are parsed, not for --help

    return one_line(message, limit)


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


def _progress_for(args: argparse.Namespace, stderr: TextIO | None) -> ProgressBar | None:
    """A bar only on a terminal, and not with --no-progress."""
    if stderr is None or getattr(args, "no_progress", False):
        return None
    return ProgressBar(stderr) if _isatty(stderr) else None


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO | None = None) -> int:
    """Inspect, render and write; errors propagate to :func:`main`."""
    from paramscope import inspect
    from paramscope.renderers import render
    from paramscope.sources import EXAMPLE

    if args.memory and args.format == "html":
        raise UsageError("--memory has no html layout; use --format tree, table, markdown, json or csv")
    if args.format == "html" and not args.output and _isatty(stdout):
        raise UsageError("--format html writes a whole page: give -o FILE.html (or redirect the output)")
    progress = _progress_for(args, stderr)
    try:
        report = inspect(
            args.source if args.source is not None else EXAMPLE,
            input_shape=args.input_shape,
            device=args.device,
            args=args.args,
            kwargs=args.kwargs,
            filter=args.filter,
            trainable_only=args.trainable_only,
            include_buffers=not args.no_buffers,
            exclude_embeddings=args.exclude_embeddings,
            progress=progress,
        )
    finally:
        if progress is not None:
            progress.close()
    if args.memory:
        from paramscope.memory import estimate, render_memory

        shard = f"zero{args.zero}" if args.zero else ("fsdp" if args.fsdp else "none")
        try:
            result = estimate(report, optimizer=args.optimizer, precision=args.precision, shard=shard,
                              gpus=args.gpus, frozen_as=args.frozen_as)
        except ValueError as exc:  # an unknown --frozen-as format: bad usage
            raise UsageError(str(exc)) from None
        _write(render_memory(result, "tree" if args.format == "tree" else args.format), args, stdout)
        return EXIT_OK
    color = _wants_color(stdout, args)
    width = None
    if color:
        import shutil

        width = shutil.get_terminal_size().columns
    options = RenderOptions(depth=args.depth, by=args.by, top=args.top, color=color, width=width)
    _write(render(report, args.format, options), args, stdout)
    return EXIT_OK


def _write(output: str, args: argparse.Namespace, stdout: TextIO) -> None:
    # Names reach the output through text.safe; a character that slipped past it (a lone surrogate, or
    # "·" on a terminal whose encoding lacks it) is shown as a backslash escape instead of failing the run.
    if args.output:
        with open(args.output, "w", encoding="utf-8", errors="backslashreplace", newline="") as handle:
            handle.write(output)
        return
    try:
        stdout.write(output)
    except UnicodeEncodeError:
        encoding = getattr(stdout, "encoding", None) or "utf-8"
        stdout.write(output.encode(encoding, "backslashreplace").decode(encoding, "replace"))
    stdout.flush()


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the CLI on ``argv``; return the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["diff"]:
        from paramscope import diff

        return diff.main(argv[1:], stdout, stderr)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version (0) or bad usage (2)
        return int(exc.code or 0)
    # The last words, written before any work: once memory has run out, building a message may fail too.
    source = _one_line(os.fsdecode(args.source) if args.source is not None else "example", limit=300)
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
    return EXIT_BAD_INPUT


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

    try:
        return run(args, stdout, stderr)
    except UsageError as exc:
        print(f"paramscope: error: {_one_line(str(exc))}", file=stderr)
        return EXIT_USAGE
    except ParamscopeError as exc:
        if args.debug:
            raise
        print(f"paramscope: {_one_line(str(exc))}", file=stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        if args.debug:
            raise
        if isinstance(exc, BrokenPipeError):
            return EXIT_OK
        where = exc.filename if exc.filename is not None else (args.output or args.source)
        shown = os.fsdecode(where) if isinstance(where, bytes) else str(where)  # a bytes path is not UTF-8
        print(f"paramscope: {_one_line(f'{shown}: {exc.strerror or exc}')}", file=stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
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
