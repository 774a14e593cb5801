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


class FileRangeReader:
    """A :class:`RangeReader` over an open local file (``os.pread``): how the local GGUF and zip readers use
    the same parsers as the remote ones. The size is the file's at opening."""

    def __init__(self, handle: object, name: str) -> None:
        import os

        self.name = name
        self._fd = handle.fileno()  # type: ignore[attr-defined]
        self._size = os.fstat(self._fd).st_size
        self.requests = 0
        self.fetched_bytes = 0

    def size(self) -> int | None:
        return self._size

    def read(self, start: int, stop: int) -> bytes:
        import os

        stop = min(stop, self._size)
        if stop <= start:
            return b""
        self.requests += 1
        parts = []
        while start < stop:  # pread may return fewer bytes than asked on some file systems
            chunk = os.pread(self._fd, stop - start, start)
            if not chunk:
                break
            parts.append(chunk)
            start += len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.fetched_bytes += len(data)
        return data


class CachedFile:
    """A read-only file object (``seek``/``tell``/``read``) over a :class:`RangeReader`, for parsers written
    against an open file (the zip directory reader). Each miss reads at least ``read_ahead`` bytes, and the
    ranges already read are kept (at most ``max_cached`` bytes in all), so that a zip's small members, which
    sit next to each other, come in one request."""

    def __init__(self, reader: RangeReader, read_ahead: int = 64 * 1024, max_cached: int = 256 << 20) -> None:
        self.reader = reader
        self.read_ahead = read_ahead
        self.max_cached = max_cached
        self._segments: list[tuple[int, bytes]] = []  # (start, bytes), in the order they were read
        self._cached = 0
        self._pos = 0

    def size(self) -> int:
        size = self.reader.size()
        if size is None:
            self._fetch(0, self.read_ahead)
            size = self.reader.size()
        if size is None:
            from paramscope.errors import ParamscopeError

            raise ParamscopeError(self.reader.name, "the server does not say how large the file is")
        return size

    def prefetch(self, start: int, stop: int) -> None:
        """Read ``[start, stop)`` in one request now (a zip's tail: end records and, often, the directory)."""
        if self._find(start, stop) is None:
            self._fetch(start, stop)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset if whence == 0 else self._pos + offset if whence == 1 else self.size() + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        start = self._pos
        stop = self.size() if n < 0 else start + n
        data = self._find(start, stop)
        if data is None:
            data = self._fetch(start, max(stop, start + self.read_ahead))[: stop - start]
        self._pos = start + len(data)
        return data

    def close(self) -> None:
        self._segments.clear()

    def __enter__(self) -> CachedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _find(self, start: int, stop: int) -> bytes | None:
        for base, data in self._segments:
            end = base + len(data)
            if base <= start and (stop <= end or end == self._size_or(-1)):
                return data[start - base : stop - base]
        return None

    def _size_or(self, default: int) -> int:
        size = self.reader.size()
        return default if size is None else size

    def _fetch(self, start: int, stop: int) -> bytes:
        size = self.reader.size()
        if size is not None:
            stop = min(stop, size)
        data = self.reader.read(start, stop) if stop > start else b""
        if self._cached + len(data) > self.max_cached:  # keep memory bounded: forget what was read first
            self._segments.clear()
            self._cached = 0
        self._segments.append((start, data))
        self._cached += len(data)
        return data
