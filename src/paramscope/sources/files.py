"""Which reader reads a path: detected by magic bytes, the extension only as a hint.

Each checkpoint reader is a module of this package exposing::

    FORMAT: str                                  # "safetensors", "pytorch", "gguf", ...
    def sniff(head: bytes, path: Path) -> bool   # is this file mine? (head = first 64 bytes)
    def read(path: Path) -> Inventory            # records only; raises ParamscopeError on bad input

Readers never import torch, never execute anything from the file, and open it read-only.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paramscope.errors import ParamscopeError
from paramscope.gcpause import paused_gc
from paramscope.records import Inventory

TYPE_CHECKING = False
if TYPE_CHECKING:
    import zipfile
    from typing import BinaryIO

# Each sniff is exact enough that no two readers claim one file; the order only puts the readers that
# are cheapest to import first (torch_pickle brings the whole pickle machine along).
READERS = ("safetensors", "gguf", "numpy_files", "onnx", "keras", "torch_pickle")

HEAD_BYTES = 64


def _reader(name: str):
    return importlib.import_module(f"paramscope.sources.{name}")


def read_path(path: Path) -> Inventory:
    """The Inventory of a checkpoint file or directory."""
    if path.is_dir():
        return _read_directory(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as exc:
        raise ParamscopeError(path, f"cannot open: {exc.strerror or exc}") from None
    if not head:
        raise ParamscopeError(path, "empty file")
    for name in READERS:
        try:
            module = _reader(name)
        except ModuleNotFoundError as exc:
            if exc.name == f"paramscope.sources.{name}":
                continue  # that reader is not part of this build
            raise
        if module.sniff(head, path):
            return module.read(path)
    raise ParamscopeError(path, "not a checkpoint format paramscope knows (" + ", ".join(READERS) + ")")


def _read_directory(path: Path) -> Inventory:
    """A directory: the first reader that claims it (a safetensors index or shards, ...)."""
    for name in READERS:
        try:
            module = _reader(name)
        except ModuleNotFoundError as exc:
            if exc.name == f"paramscope.sources.{name}":
                continue
            raise
        claim = getattr(module, "sniff_directory", None)
        if claim is not None and claim(path):
            return module.read(path)
    raise ParamscopeError(path, "directory holds no checkpoint paramscope can read")


# ---- zip containers (.npz, .keras): shared by the readers that sniff and open them


def zip_member_names(path: Path) -> list[str] | None:
    """The member names of a zip's central directory, or None when it is not a readable zip."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return None


def open_zip(path: Path, kind: str) -> zipfile.ZipFile:
    """``zipfile.ZipFile(path)``, or a ParamscopeError saying the ``kind`` archive is not valid."""
    import zipfile

    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as exc:
        raise ParamscopeError(path, f"not a valid {kind} (zip) archive: {exc}") from None
    except OSError as exc:
        raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None


@contextmanager
def unbuffered_reader(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened read-only and unbuffered (the reader's own cursor buffers), with the cyclic
    collector paused (header readers build many small objects and no cycles) and OS errors turned
    into one-line ParamscopeErrors."""
    try:
        handle = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise ParamscopeError(path, f"cannot open: {exc.strerror or exc}") from None
    with paused_gc(), handle:
        try:
            yield handle
        except OSError as exc:
            raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None
