"""``paramscope scan TARGET...``: many models, one row each, as a table, CSV, JSON Lines or Parquet.

Exit status: 0 when every row passes the gates; 1 when any row fails one (by default: a model that could
not be read; see --fail-on, --max-params, --max-bytes), with one line on standard error saying how many and
why; 2 bad usage; 3 internal error. Every row is written either way.
"""

from __future__ import annotations

import argparse

from paramscope.commands._common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    UsageError,
    add_output_argument,
    positive,
    progress_for,
    write,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

HELP = "many models (a directory tree, hf:org/*, an object-store prefix, @list.txt) -> one row each"

DESCRIPTION = """\
Read every model a TARGET names and write one row per model: source, format, parameters (logical),
active parameters (MoE), stored bytes, dtypes, quantization, tie groups, file count and the safety
verdict (safe, needs-trust, code, unreadable: an allow-list check; see 'paramscope FILE').

TARGET is a directory tree (every checkpoint in it, grouped into models: a sharded set or a repository
directory is one row), 'hf:ORG/*' or 'hf:ORG/PREFIX*' (the organisation's Hub repositories; 'hf:*/GLOB'
searches the whole Hub), an object-store prefix (s3://bucket/dir/, gs://..., az://...), '@FILE' (a file
of targets, one a line), or any SOURCE 'paramscope SOURCE' reads. A model that cannot be read still has
its row, with the error.
"""

EPILOG = """\
exit codes: 0 every row passes, 1 some rows fail a gate (--fail-on, default 'error': a model that could
not be read; --max-params; --max-bytes), 2 bad usage, 3 internal error. All rows are written either way.
"""


def shard(text: str) -> tuple[int, int]:
    index, slash, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give I/N (like 0/4), got {text!r}") from None
    if not slash or n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"give I/N with 0 <= I < N, got {text!r}")
    return i, n


_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12, "kb": 10**3, "mb": 10**6,
             "gb": 10**9, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def amount(text: str) -> int:
    """A count or a size: 7000000000, 7e9, 7B, 500M, 10GB, 16GiB."""
    import re

    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _SUFFIXES:
        raise argparse.ArgumentTypeError(f"not a number like 7e9, 7B, 10GB or 16GiB: {text[:40]!r}")
    from decimal import Decimal, InvalidOperation

    try:  # exact decimal arithmetic: a float of 1e999 is infinity, and int() of it raises OverflowError
        value = Decimal(match.group(1)) * _SUFFIXES[match.group(2).lower()]
        if value.adjusted() > 30:  # past 10^30 (bytes or parameters) is no gate anyone means
            raise InvalidOperation
        return int(value)
    except (ArithmeticError, ValueError):  # decimal's InvalidOperation and Overflow are ArithmeticErrors
        raise argparse.ArgumentTypeError(f"at most 10^30: {text[:40]!r}") from None


def fail_on(text: str) -> tuple[str, ...]:
    from paramscope.scan import FAIL_ON

    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in FAIL_ON]
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(FAIL_ON)} (comma-separated), got {text[:60]!r}")
    return parts


class _Targets(argparse.Action):
    """The targets, and as one text (``targets_text``: what the CLI names in its last words on MemoryError)."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        from paramscope.errors import without_credentials

        setattr(namespace, self.dest, values)
        namespace.targets_text = without_credentials(" ".join(values)[:300])  # named in an error line


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from paramscope.renderers.scan_rows import SCAN_FORMATS

    parser = subparsers.add_parser("scan", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", metavar="TARGET", action=_Targets, help="what to scan")
    out = parser.add_argument_group("output")
    out.add_argument("-f", "--format", choices=SCAN_FORMATS, default="table", help="output format (default: table)")
    add_output_argument(out)
    out.add_argument("--sort", choices=("size", "params", "source"),
                     help="sort rows (largest first; holds every row until the end)")
    out.add_argument("--memory", action="store_true", help="add inference and training memory columns")
    run_group = parser.add_argument_group("running")
    run_group.add_argument("--workers", type=positive, default=4, metavar="N",
                           help="models read at once (threads; default 4)")
    run_group.add_argument("--cache", metavar="FILE",
                           help="JSON Lines cache of rows, reused while a model's ETag or size+mtime is unchanged")
    run_group.add_argument("--resume", action="store_true",
                           help="take every row the cache has, changed or not (finish an interrupted scan)")
    run_group.add_argument("--shard", type=shard, metavar="I/N",
                           help="only the models whose stable hash is I modulo N")
    run_group.add_argument("--no-progress", action="store_true", help="no progress bar (shown on a terminal only)")
    gates = parser.add_argument_group("CI gates (exit 1 when a row fails one)")
    gates.add_argument("--fail-on", type=fail_on, default=("error",), metavar="WHAT",
                       help="error (unreadable model; the default), unsafe (needs-trust or code), unknown "
                            "(unreadable verdict), none; comma-separated")
    gates.add_argument("--max-params", type=amount, metavar="N", help="fail a model with more parameters (7B, 7e9)")
    gates.add_argument("--max-bytes", type=amount, metavar="SIZE", help="fail a model storing more (10GB, 16GiB)")
    parser.set_defaults(func=run, reads=("targets_text",))
    return parser


def run(args: argparse.Namespace, out: TextIO, err: TextIO | None) -> int:
    from paramscope import scan
    from paramscope.renderers import scan_rows

    if args.resume and not args.cache:
        raise UsageError("--resume needs --cache FILE (the rows to resume from)")
    if args.format == "parquet" and not args.output:
        raise UsageError("--format parquet writes a file: give -o FILE.parquet")
    columns = scan.COLUMNS + (scan.MEMORY_COLUMNS if args.memory else ())
    progress = progress_for(args, err)
    if progress is not None:
        # drawn (rich imported) before the reading threads start: an import racing theirs can fail halfway
        progress(0, None)
    failed: dict[str, int] = {}
    count = [0, 0]  # rows, rows that fail a gate

    def on_row(done: int) -> None:
        if progress is not None:
            progress(done, None)

    def gated(rows: Any) -> Any:
        for row in rows:
            count[0] += 1
            reasons = scan.failures(row, args.fail_on, args.max_params, args.max_bytes)
            for why in reasons:
                failed[why] = failed.get(why, 0) + 1
            count[1] += bool(reasons)
            yield row

    rows: Any = scan.scan(args.targets, workers=args.workers, memory=args.memory, cache=args.cache,
                          resume=args.resume, shard=args.shard, debug=getattr(args, "debug", False), on_row=on_row)
    rows = gated(rows)
    if args.sort:
        key = {"size": lambda r: -(r.get("stored_bytes") or 0), "params": lambda r: -(r.get("parameters") or 0),
               "source": lambda r: r.get("source") or ""}[args.sort]
        rows = iter(sorted(rows, key=key))
    try:
        if args.format == "parquet":
            scan_rows.write_parquet(rows, columns, args.output, scan.INT_COLUMNS)
        else:
            render = {"table": scan_rows.table_lines, "csv": scan_rows.csv_lines, "jsonl": scan_rows.jsonl_lines}
            write(render[args.format](rows, columns), args, out)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
        if progress is not None:
            progress.close()
    if failed and err is not None:
        reasons = ", ".join(f"{why}: {n}" for why, n in sorted(failed.items()))
        err.write(f"paramscope: scan: {count[1]} of {count[0]} models failed ({reasons})\n")
    return EXIT_BAD_INPUT if failed else EXIT_OK
