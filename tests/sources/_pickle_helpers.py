"""Shared helpers of the PyTorch checkpoint tests: the torch reference view of a file, and hand-made zips."""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any


def torch_reference(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every tensor of ``path`` as torch.load(weights_only=True) sees it, by dotted path from the root."""
    import torch

    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        # torch's weights_only machine lacks FRAME (protocol 4/5); the file is one this test just wrote.
        obj = torch.load(path, weights_only=False, map_location="cpu")
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        prefix, item = stack.pop()
        if isinstance(item, torch.Tensor):
            out[prefix] = (tuple(item.shape), str(item.dtype).removeprefix("torch."))
        elif isinstance(item, dict):
            stack.extend((f"{prefix}.{k}" if prefix else str(k), v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{prefix}.{i}" if prefix else str(i), v) for i, v in enumerate(item))
    return out


def ours(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    from paramscope.sources import torch_pickle

    inv = torch_pickle.read(path)
    return {r.name: (r.shape, r.dtype) for r in inv.tensors}


def rezip(src: Path, dst: Path, edit: Any = None, compress: dict[str, int] | None = None) -> None:
    """Copy a torch zip member by member, ``edit(name, data) -> (name, data) | None`` changing or dropping."""
    compress = compress or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            name = info.filename
            if edit is not None:
                changed = edit(name, data)
                if changed is None:
                    continue
                name, data = changed
            zout.writestr(name, data, compress_type=compress.get(name.rpartition("/")[2], zipfile.ZIP_STORED))


def pickle_member(path: Path) -> tuple[str, bytes]:
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        return name, z.read(name)


def with_pickle(src: Path, dst: Path, data: bytes) -> Path:
    """A copy of torch zip ``src`` whose data.pkl is ``data``."""
    rezip(src, dst, lambda name, old: (name, data) if name.endswith("/data.pkl") else (name, old))
    return dst


def storage_tuple(key: str = "0", storage: bytes = b"ctorch\nFloatStorage\n", numel: int = 4) -> bytes:
    """Pickle opcodes pushing the persistent id ('storage', FloatStorage, key, 'cpu', numel) and BINPERSID."""
    return (
        b"(X\x07\x00\x00\x00storage"
        + storage
        + b"X" + struct.pack("<I", len(key)) + key.encode()
        + b"X\x03\x00\x00\x00cpu"
        + b"J" + struct.pack("<i", numel)
        + b"tQ"
    )  # fmt: skip


def tensor_v2(key: str = "0", numel: int = 4, offset: int = 0, size: bytes = b"K\x04\x85", stride: bytes = b"K\x01\x85",
              storage: bytes = b"ctorch\nFloatStorage\n") -> bytes:
    """Opcodes of ``_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
    return (
        b"ctorch._utils\n_rebuild_tensor_v2\n("
        + storage_tuple(key, storage, numel)
        + b"J" + struct.pack("<i", offset)
        + size + stride
        + b"\x89ccollections\nOrderedDict\n)Rt"
        + b"R"
    )  # fmt: skip
