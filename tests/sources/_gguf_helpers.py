"""Small GGUF fixtures written with gguf-py's own GGUFWriter, shared by the tests that need one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np


def write_gguf(
    path: Path,
    arch: str,
    tensors: dict[str, tuple[int, ...]],
    configure: Callable[[gguf.GGUFWriter], None] | None = None,
) -> int:
    """Zero float32 tensors of the given (numpy-order) shapes, key/values from ``configure``; returns the
    element count gguf's own GGUFReader finds in the file (the independent reference)."""
    writer = gguf.GGUFWriter(path, arch)
    if configure is not None:
        configure(writer)
    for name, shape in tensors.items():
        writer.add_tensor(name, np.zeros(shape, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sum(int(t.n_elements) for t in gguf.GGUFReader(path).tensors)
