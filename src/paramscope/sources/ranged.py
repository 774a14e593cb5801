"""Reading a checkpoint's header from something that serves byte ranges: an HTTP(S) URL, a Hub file, an
object-store key (fsspec).

Readers of remote headers (safetensors, GGUF, PyTorch zip) are written against :class:`RangeReader`, so one
parser serves every transport; each transport (``remote.Fetcher`` for HTTP, ``objectstore`` for fsspec) adapts to it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class RangeReader(Protocol):
        """Bytes of one remote file, by range. ``name`` is how errors name the file."""

        name: str

        def size(self) -> int | None:
            """The file's size in bytes, when known (after the first read at the latest)."""

        def read(self, start: int, stop: int) -> bytes:
            """Bytes ``[start, stop)`` (fewer only where the file ends first); raises ParamscopeError."""
