"""Safetensors headers over HTTP: ranged reads of the first bytes of each file, never the weights.

Shared by the Hugging Face Hub source (:mod:`paramscope.sources.hub`) and plain URLs
(``https://host/path/model.safetensors`` or ``.../model.safetensors.index.json``, any server that honours
``Range``). A safetensors file starts with an 8-byte header length and the JSON header, so the header of a
70B checkpoint is a few kilobytes per shard however many gigabytes of weights follow it.

How a header is read, per file:

1. One ranged GET of ``[0, estimate)``. With an index the estimate comes from the tensor names the index
   lists for that shard (a lower bound of what their header entries take, so the bytes fetched stay close
   to the header's size); without one, a fixed :data:`UNKNOWN_FIRST_READ`.
2. The 8-byte prefix says how long the header is. Only when it is longer than what came back, a second
   ranged GET for exactly the missing remainder.
3. The header is validated by the same code as a local file (:func:`safetensors.records_from_header`),
   including that its data offsets add up to the file's size (from ``Content-Range``).

Every response is checked: ``206`` with a ``Content-Range`` that matches what was asked, or ``200`` (the
server ignored ``Range``), in which case only the bytes needed are read and the connection is closed: the
body is never downloaded. A short body is retried. 5xx, 429, timeouts and connection errors are retried
(:data:`ATTEMPTS` tries in all, short backoff); 401/403 and 404 are one-line errors at once.

Plain URLs use only the standard library (``urllib``); the Hub passes huggingface_hub's own HTTP client
(:class:`HttpxTransport`) so that its proxy settings and client factory apply.
"""

from __future__ import annotations

import os
import re
import threading
import time

from paramscope.errors import ParamscopeError
from paramscope.records import Inventory, TensorRecord
from paramscope.sources.safetensors import MAX_INDEX_SIZE  # an index is refused past the local reader's limit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    Progress = Callable[..., Any]

FORMAT = "safetensors"

TIMEOUT_ENV = "PARAMSCOPE_HTTP_TIMEOUT"
"""Seconds for connecting and for each read (default :data:`DEFAULT_TIMEOUT`)."""
DEFAULT_TIMEOUT = 10.0
BACKOFF_ENV = "PARAMSCOPE_HTTP_BACKOFF"
"""Seconds before the first retry (doubled before the next; default :data:`DEFAULT_BACKOFF`)."""
DEFAULT_BACKOFF = 0.5
ATTEMPTS = 3
WORKERS = 8

UNKNOWN_FIRST_READ = 32 * 1024
"""First read when nothing says how long the header is: most single-file headers fit."""
MAX_FIRST_READ = 1024 * 1024
"""Cap on an index-based estimate, so that an index listing a million names cannot pull weights."""

# The JSON around a header entry: '"<name>":{"dtype":"<dt>","shape":[<dims>],"data_offsets":[<b>,<e>]},'.
_ENTRY_FIXED = len('"":{"dtype":"","shape":[],"data_offsets":[,]},')
_METADATA_TYPICAL = len('"__metadata__":{"format":"pt"},')
_ESTIMATE_MARGIN = 1.02
_READ_CHUNK = 64 * 1024

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_STATUS_REASON = {
    401: "authentication required (set HF_TOKEN)",
    403: "access denied (set HF_TOKEN to a token with access)",
    404: "not found (404)",
    410: "gone (410)",
    416: "range not satisfiable (416): the file is shorter than its header",
}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


class _Retry(Exception):
    """A transient failure: worth another attempt."""


class Response:
    """What a transport hands back: status, lower-cased headers, and a body read on demand."""

    def __init__(self, status: int, headers: dict[str, str], read: Callable[[int], bytes], close: Callable[[], None]):
        self.status = status
        self.headers = headers
        self.read = read
        self.close = close


class UrllibTransport:
    """The standard library's HTTP client: no dependency. Redirects are followed; an Authorization header
    is dropped when a redirect leaves the original host (a signed CDN URL must not receive the token)."""

    def __init__(self) -> None:
        import urllib.request

        class _Redirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, req, fp, code, msg, headers, newurl):
                new = super().redirect_request(req, fp, code, msg, headers, newurl)
                if new is not None and urllib.request.urlparse(newurl).netloc != urllib.request.urlparse(
                    req.full_url
                ).netloc:
                    new.remove_header("Authorization")
                return new

        self._opener = urllib.request.build_opener(_Redirect)

    def open(self, url: str, headers: dict[str, str], timeout: float) -> Response:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url, headers=headers)
        try:
            handle = self._opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            return Response(exc.code, {}, lambda n: b"", lambda: None)
        except OSError as exc:  # URLError, timeouts, refused connections
            reason = getattr(exc, "reason", exc)
            raise _Retry(f"cannot connect: {reason}") from None
        hdrs = {k.lower(): v for k, v in handle.headers.items()}

        def read(n: int) -> bytes:
            try:
                return handle.read(n)
            except OSError as exc:
                raise _Retry(f"truncated response (read failed: {exc})") from None
            except Exception as exc:  # http.client.IncompleteRead and the like
                raise _Retry(f"truncated response (read failed: {type(exc).__name__})") from None

        return Response(handle.status, hdrs, read, handle.close)


class HttpxTransport:
    """An httpx-style client (huggingface_hub's ``get_session()``: httpx2 in huggingface_hub 2.x), streamed
    so that a server ignoring ``Range`` cannot make us download a body. Its exceptions are matched by
    name, so that neither httpx nor httpx2 has to be imported here."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def open(self, url: str, headers: dict[str, str], timeout: float) -> Response:
        try:
            request = self._client.build_request("GET", url, headers=headers, timeout=timeout)
            response = self._client.send(request, stream=True, follow_redirects=True)
        except Exception as exc:
            if _is_http_failure(exc):
                raise _Retry(f"cannot connect: {type(exc).__name__}: {exc}") from None
            raise
        chunks = response.iter_raw(_READ_CHUNK)
        pending = bytearray()

        def read(n: int) -> bytes:
            try:
                while len(pending) < n:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    pending.extend(chunk)
            except Exception as exc:
                if _is_http_failure(exc):
                    raise _Retry(f"truncated response (read failed: {type(exc).__name__})") from None
                raise
            out = bytes(pending[:n])
            del pending[:n]
            return out

        return Response(response.status_code, {k.lower(): v for k, v in response.headers.items()}, read, response.close)


def _is_http_failure(exc: BaseException) -> bool:
    """A transport or timeout error of httpx/httpx2 (or an OSError beneath them)."""
    if isinstance(exc, OSError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"TransportError", "TimeoutException", "StreamError", "HTTPError"})


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 else default


class Fetcher:
    """Ranged GETs through one transport, with retries, and a thread-safe count of requests and bytes."""

    def __init__(self, transport: Any = None, headers: dict[str, str] | None = None) -> None:
        self.transport = transport if transport is not None else UrllibTransport()
        self.headers = dict(headers or {})
        self.timeout = _env_float(TIMEOUT_ENV, DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
        self.backoff = _env_float(BACKOFF_ENV, DEFAULT_BACKOFF)
        self.fetched_bytes = 0
        self.requests = 0
        self.retries = 0
        self._lock = threading.Lock()

    def _count(self, nbytes: int, requests: int = 0) -> None:
        with self._lock:
            self.fetched_bytes += nbytes
            self.requests += requests

    def note_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def range(self, source: str, what: str, url: str, start: int, stop: int) -> tuple[bytes, int | None]:
        """Bytes ``[start, stop)`` of ``url`` (fewer only where the file ends first) and the file's total size
        when the server said it. ``what`` names the file in errors (which are about ``source``)."""
        delay = self.backoff
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._range_once(url, start, stop)
            except _Retry as exc:
                if attempt == ATTEMPTS:
                    raise ParamscopeError(source, f"{what}: {exc} (after {ATTEMPTS} attempts)") from None
                self.note_retry()
                time.sleep(delay)
                delay *= 2
            except _Fatal as exc:
                raise HTTPStatusError(source, f"{what}: {exc}", exc.status) from None
        raise AssertionError("unreachable")

    def _range_once(self, url: str, start: int, stop: int) -> tuple[bytes, int | None]:
        headers = {**self.headers, "Range": f"bytes={start}-{stop - 1}", "Accept-Encoding": "identity"}
        response = self.transport.open(url, headers, self.timeout)
        self._count(0, 1)
        try:
            status = response.status
            if status == 206:
                return self._partial(response, start, stop)
            if status == 200:
                return self._whole(response, start, stop)
            if status in _RETRYABLE_STATUS:
                raise _Retry(f"server answered HTTP {status}")
            raise _Fatal(_STATUS_REASON.get(status, f"server answered HTTP {status}"), status)
        finally:
            response.close()

    def _partial(self, response: Response, start: int, stop: int) -> tuple[bytes, int | None]:
        """206: the Content-Range must be the range asked for (or end where the file ends)."""
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if match is None:
            raise _Fatal(f"206 response without a valid Content-Range ({response.headers.get('content-range')!r})")
        first, last = int(match[1]), int(match[2])
        total = None if match[3] == "*" else int(match[3])
        ends_file = total is not None and last == total - 1
        if first != start or last < first or last > stop - 1 or (last != stop - 1 and not ends_file):
            raise _Fatal(f"server sent bytes {first}-{last} for a request of bytes {start}-{stop - 1}")
        if total is not None and last >= total:
            raise _Fatal(f"Content-Range {first}-{last}/{total} is not inside the file")
        want = last - first + 1
        length = response.headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) != want:
            raise _Fatal(f"Content-Length {length} does not match Content-Range {first}-{last}")
        body = self._read(response, want)
        if len(body) != want:
            raise _Retry(f"truncated response: {len(body)} of {want} bytes")
        return body, total

    def _whole(self, response: Response, start: int, stop: int) -> tuple[bytes, int | None]:
        """200: the server ignored Range. Read only up to ``stop`` and close: never the whole body."""
        length = response.headers.get("content-length", "").strip()
        total = int(length) if length.isdigit() else None
        want = stop if total is None else min(stop, total)
        body = self._read(response, want)
        if len(body) < want:
            raise _Retry(f"truncated response: {len(body)} of {want} bytes")
        if total is None and len(body) < stop:
            total = len(body)  # the body ended: that is the file
        return body[start:], total

    def _read(self, response: Response, want: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < want:
            chunk = response.read(min(_READ_CHUNK, want - got))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
            self._count(len(chunk))
        return b"".join(parts)


class _Fatal(Exception):
    """A failure that another attempt will not fix."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


class HTTPStatusError(ParamscopeError):
    """A server's refusal (404, 401, ...): ``status`` lets the Hub source tell a missing file apart."""

    def __init__(self, source: object, reason: str, status: int | None) -> None:
        super().__init__(source, reason)
        self.status = status


# --------------------------------------------------------------------------------------------- headers


def estimate_header(names: Iterable[str], data_size: int | None = None) -> int:
    """How many bytes to ask for first, for a shard holding ``names`` (from the index) and about
    ``data_size`` bytes of weights (the index's total_size over its shards).

    The names are known exactly; the rest of each entry is modelled from the data size: tensors of
    16-bit elements, 2-D and square-ish (digits of the side, twice), offsets with the digits of the
    shard's data size. Slightly over on purpose (2%): a header of typical tensors then comes in one
    request; an underestimate costs a second request for exactly the remainder, an overestimate a few
    bytes of weights. Without a data size, only what an entry must take at least.
    """
    import math

    names = list(names)
    count = len(names)
    name_bytes = sum(len(name.encode("utf-8", "surrogatepass")) for name in names)
    if data_size and count:
        side = math.isqrt(max(1, data_size // count // 2))
        shape = 2 * len(str(side)) + 1
        offsets = 2 * len(str(data_size))
        dtype = 4
    else:
        shape, offsets, dtype = 1, 2, 2
    per_entry = _ENTRY_FIXED + dtype + shape + offsets
    total = 8 + 2 + _METADATA_TYPICAL + name_bytes + count * per_entry
    return min(max(int(total * _ESTIMATE_MARGIN), 64), MAX_FIRST_READ)


def read_header(
    fetcher: Fetcher, source: str, what: str, url: str, first_read: int
) -> tuple[list[TensorRecord], dict[str, str], int | None]:
    """Records, ``__metadata__`` and file size of the safetensors file at ``url``; ``what`` (its file
    name) is the records' origin. At most two ranged GETs."""
    from paramscope.sources import safetensors

    first_read = max(16, first_read)
    head, total = fetcher.range(source, what, url, 0, first_read)
    if total is None and len(head) < first_read:
        total = len(head)
    try:
        n = safetensors.header_length(what, head[:8], total)
    except ParamscopeError as exc:
        raise ParamscopeError(source, f"{exc.source}: {exc.reason}") from None
    if 8 + n > len(head):
        rest, total2 = fetcher.range(source, what, url, len(head), 8 + n)
        if len(rest) != 8 + n - len(head):
            raise ParamscopeError(source, f"{what}: truncated: the header needs {8 + n:,} bytes")
        total = total if total is not None else total2
        header = head[8:] + rest
    else:
        header = head[8 : 8 + n]
    try:
        records, metadata = safetensors.records_from_header(what, header, total, what)
    except ParamscopeError as exc:
        raise ParamscopeError(source, f"{exc.source}: {exc.reason}") from None
    return records, metadata, total


def check_shard_name(source: str, name: Any) -> str:
    """A shard name from an index: a relative path below the index, nothing a URL could escape with."""
    if not isinstance(name, str) or not name or len(name) > 1024:
        raise ParamscopeError(source, f"shard name {str(name)[:80]!r} is not a file name")
    bad = ("\x00", "\\", "?", "#", "%", "://")
    if name.startswith("/") or any(b in name for b in bad) or any(p in ("", ".", "..") for p in name.split("/")):
        raise ParamscopeError(source, f"shard {name!r} is not a file name inside the repository")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ParamscopeError(source, f"shard {name!r} holds control characters")
    return name


def parse_index(source: str, raw: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    """The weight map (tensor -> shard) and declared metadata of an index's JSON."""
    from paramscope.sources import safetensors

    weight_map, declared = safetensors.parse_index(source, raw)
    for shard in dict.fromkeys(weight_map.values()):  # names that will become URLs: stricter than on disk
        check_shard_name(source, shard)
    return weight_map, declared


def plan_index(source: str, raw: bytes) -> tuple[dict[str, str], dict[str, int], int | None]:
    """An index's weight map, each shard's first-read estimate (from the names it lists and its share of
    ``total_size``), and the declared ``total_size``."""
    weight_map, declared = parse_index(source, raw)
    by_shard: dict[str, list[str]] = {}
    for tensor, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(tensor)
    data_size = declared.get("total_size") if type(declared.get("total_size")) is int else None
    per_shard = data_size // max(1, len(by_shard)) if data_size else None
    estimates = {shard: estimate_header(names, per_shard) for shard, names in by_shard.items()}
    return weight_map, estimates, data_size


def read_index_shards(
    fetcher: Fetcher,
    source: str,
    weight_map: dict[str, str],
    jobs: list[ShardJob],
    data_size: int | None,
    progress: Progress | None = None,
    pool: Any = None,
) -> tuple[list[TensorRecord], dict[str, Any], list[str]]:
    """The shards of an index read (see :func:`read_shards`) and checked against its weight map:
    records, metadata, notes."""
    from paramscope.sources.safetensors import check_weight_map

    records, owner, extra, _ = read_shards(fetcher, source, jobs, progress, pool)
    notes = check_weight_map(source, weight_map, owner)
    metadata: dict[str, Any] = {"shards": len(jobs)}
    if data_size is not None:
        metadata["index total_size"] = data_size
    metadata.update(extra)
    return records, metadata, notes


class ShardJob:
    """One file to read: its name (origin), and either a URL to range-read or a local path to read."""

    __slots__ = ("estimate", "local", "name", "url")

    def __init__(self, name: str, url: str | None = None, local: str | None = None, estimate: int = 0) -> None:
        self.name = name
        self.url = url
        self.local = local
        self.estimate = estimate or UNKNOWN_FIRST_READ


def read_shards(
    fetcher: Fetcher, source: str, jobs: list[ShardJob], progress: Progress | None = None, pool: Any = None
) -> tuple[list[TensorRecord], dict[str, str], dict[str, Any], int]:
    """Read every shard's header, in parallel; records in shard order, a tensor in two shards refused.

    Returns (records, owner: tensor -> shard, the first shard's ``__metadata__`` as extra metadata,
    total file bytes where known). ``progress(done, total, fetched_bytes)`` is called once per shard.
    ``pool``: an executor to run on (the caller's, still running other downloads), else one of our own.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    def one(job: ShardJob) -> tuple[list[TensorRecord], dict[str, str], int | None]:
        if job.local is not None:
            from pathlib import Path

            from paramscope.sources import safetensors

            path = Path(job.local)
            records, meta = safetensors.read_file(path, origin=job.name)
            return records, meta, path.stat().st_size
        assert job.url is not None
        return read_header(fetcher, source, job.name, job.url, job.estimate)

    results: dict[int, tuple[list[TensorRecord], dict[str, str], int | None]] = {}
    total_jobs = len(jobs)
    if progress is not None:
        progress(0, total_jobs, fetcher.fetched_bytes)
    if total_jobs == 1:
        results[0] = one(jobs[0])
        if progress is not None:
            progress(1, 1, fetcher.fetched_bytes)
    else:
        own = pool is None
        if own:
            pool = ThreadPoolExecutor(max_workers=min(WORKERS, total_jobs), thread_name_prefix="paramscope-fetch")
        futures = {pool.submit(one, job): k for k, job in enumerate(jobs)}
        try:
            for done, future in enumerate(as_completed(futures), 1):
                results[futures[future]] = future.result()
                if progress is not None:
                    progress(done, total_jobs, fetcher.fetched_bytes)
        finally:
            for future in futures:
                future.cancel()
            if own:
                pool.shutdown(wait=True, cancel_futures=True)
    records: list[TensorRecord] = []
    owner: dict[str, str] = {}
    first_meta: dict[str, str] | None = None
    size_sum = 0
    for k, job in enumerate(jobs):
        shard_records, meta, size = results[k]
        for record in shard_records:
            previous = owner.setdefault(record.name, job.name)
            if previous != job.name:
                raise ParamscopeError(source, f"{job.name}: tensor {record.name!r} is also in shard {previous!r}")
        records.extend(shard_records)
        if first_meta is None and meta:
            first_meta = meta
        size_sum += size or 0
    extra: dict[str, Any] = {"__metadata__": first_meta} if first_meta else {}
    return records, owner, extra, size_sum


def fetched_note(fetcher: Fetcher, header_files: int) -> str:
    """The sentence telling the user what the network cost."""
    retries = f", {fetcher.retries} retried" if fetcher.retries else ""
    return (
        f"Read {header_files} safetensors header(s) over HTTP: {fetcher.fetched_bytes:,} bytes fetched in "
        f"{fetcher.requests} request(s){retries}; no weights were downloaded."
    )


# --------------------------------------------------------------------------------------------- plain URLs


def read_url(url: str, progress: Progress | None = None) -> Inventory:
    """A safetensors file or index at a plain URL (any server honouring ``Range``), headers only."""
    from urllib.parse import quote, urljoin, urlparse

    from paramscope.sources import safetensors

    source = url
    fetcher = Fetcher()
    path = urlparse(url).path
    name = path.rsplit("/", 1)[-1] or url
    if path.endswith(safetensors.INDEX_SUFFIX):
        raw, total = fetcher.range(source, name, url, 0, MAX_INDEX_SIZE + 1)
        if total is not None:
            safetensors.check_index_size(source, total)
        weight_map, estimates, data_size = plan_index(source, raw)
        jobs = [ShardJob(shard, url=urljoin(url, quote(shard)), estimate=first) for shard, first in estimates.items()]
        records, metadata, notes = read_index_shards(fetcher, source, weight_map, jobs, data_size, progress)
    else:
        jobs = [ShardJob(name, url=url, estimate=UNKNOWN_FIRST_READ)]
        records, _, extra, _ = read_shards(fetcher, source, jobs, progress)
        notes = []
        metadata = dict(extra)
    metadata["fetched_bytes"] = fetcher.fetched_bytes
    metadata["requests"] = fetcher.requests
    notes.append(fetched_note(fetcher, len(jobs)))
    from paramscope.hf_config import apply_config

    # no config.json is fetched for a plain URL: packed quantization is recognised from the names alone
    return apply_config(Inventory(source=source, format=FORMAT, tensors=records, metadata=metadata, notes=notes), None)
