"""Run the CLI in process with its own streams, and write tiny safetensors files (headers only)."""

from __future__ import annotations

import io
from pathlib import Path

from paramscope.cli import main

from ..sources._st_helpers import write_sparse


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> str:
    """A float32 safetensors file with these tensors (data left sparse); its path as text."""
    write_sparse(path, [(name, "F32", shape) for name, shape in shapes.items()])
    return str(path)
