"""Run the CLI as a user would meet a hostile input: a separate process, no standard input, 2 GiB of
address space and a time bound, then check the one promise every source makes (issue 11):

    exit 0, or exit 1 (2 for usage) with exactly one line on standard error naming the source —
    never exit 3, a signal, a traceback, a MemoryError's trace or a timeout.

Every hostile-input test goes through :func:`run_cli` and :func:`assert_clean`, so the limits are set
once, here.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from paramscope.text import LINE_LIMIT

ADDRESS_SPACE = 2 << 30
"""The address-space limit (RLIMIT_AS) of each run: an input that needs more is a memory bug."""

TIMEOUT = 60.0
"""Seconds a run may take: an input that needs more is a hang (the tool's own budgets are far lower)."""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _limit() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_cli(*args: str | os.PathLike[str], timeout: float = TIMEOUT, env: dict[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None, stdin: bytes | None = None) -> Result:
    """``python -m paramscope ARGS`` under the limits; a timeout fails the calling test. Standard input is
    closed, or holds ``stdin`` (what a user might type at a prompt: paramscope must never read it)."""
    import time

    import pytest

    environment = {**os.environ, "NO_COLOR": "1", "PYTHONUTF8": "0", **(env or {})}
    environment.pop("PYTHONFAULTHANDLER", None)
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "paramscope", *map(os.fsdecode, args)],
            stdin=subprocess.DEVNULL if stdin is None else None, input=stdin, capture_output=True,
            timeout=timeout, env=environment, cwd=cwd,
            preexec_fn=_limit,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"paramscope {' '.join(map(os.fsdecode, args))} ran past {timeout:.0f} s (a hang)")
    return Result(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"),
                  time.monotonic() - start)


def assert_clean(result: Result, source: str | os.PathLike[str] | None = None, *,
                 expect: int | tuple[int, ...] | None = None) -> Result:
    """The promise: exit 0, or 1/2 with one stderr line (naming ``source`` when given); never 3, a
    signal, a traceback or an internal error. ``expect`` narrows the allowed exit codes."""
    allowed = (0, 1, 2) if expect is None else ((expect,) if isinstance(expect, int) else expect)
    detail = f"exit {result.returncode}; stderr: {result.stderr[-2000:]!r}"
    assert result.returncode in allowed, detail
    assert "Traceback" not in result.stderr, detail
    assert "internal error" not in result.stderr, detail
    if result.returncode != 0:
        lines = result.stderr.splitlines()
        assert len(lines) == 1, detail
        assert len(lines[0]) <= LINE_LIMIT + 100, f"a {len(lines[0]):,}-character error line: {detail}"
        if source is not None:
            name = Path(os.fsdecode(source)).name if not str(source).startswith(("http", "hf:", "s3:")) \
                else str(source)
            assert name[:40] in lines[0] or os.fsdecode(source)[:40] in lines[0], detail
    return result


def assert_refused(result: Result, source: str | os.PathLike[str] | None = None, fragment: str = "") -> Result:
    """Exit 1, one line naming ``source`` and containing ``fragment``."""
    assert_clean(result, source, expect=1)
    assert fragment.lower() in result.stderr.lower(), result.stderr
    return result
