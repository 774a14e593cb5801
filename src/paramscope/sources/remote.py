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
body is never downloaded. A short body is retried. 5xx, 429, timeouts, connection errors and replies that
are not HTTP are retried (:data:`ATTEMPTS` tries in all, short backoff); 401/403 and 404 are one-line
errors at once. A small whole file (an index, the Hub's config.json) is fetched by :func:`fetch_file`:
refused from the size its response declares before any of its body is read, and never read past its cap.

Time is bounded twice, however slowly a server trickles bytes (each read's timeout alone would not end a
server sending a byte a second): every request -- connecting, its headers and the body read together --
ends within :data:`TIMEOUT_ENV` seconds, and all the requests of one source, retries and their waits
included, within :data:`BUDGET_ENV` seconds. A request past its deadline is cut off by shutting its socket
down from outside (:class:`_Watch`).

Redirects are followed here, not by the HTTP client, by one rule for both clients: at most
:data:`MAX_REDIRECTS`, only to ``http``/``https`` URLs, never from ``https`` down to ``http``, and an
``Authorization`` header is dropped for good once a redirect leaves the original host (a signed CDN URL
must not receive the token). The standard library's client is built with only the HTTP(S) handlers: no
FTP, ``file:`` or ``data:`` handler exists to be reached.

Plain URLs use only the standard library (``urllib``); the Hub passes huggingface_hub's own HTTP client
(:class:`HttpxTransport`) so that its proxy settings and client factory apply.

GGUF files (``.gguf``, every part of a split one) and torch.save files (``.bin``, ``.pt``, ``.pth``, ``.ckpt``,
and ``.bin.index.json`` indexes) are read by their own parsers through :class:`HttpRangeReader`, a
:class:`~paramscope.sources.ranged.RangeReader` over the same :class:`Fetcher`: the GGUF key/values are walked
through a bounded window, skipping fixed-width arrays by range; a zip is read from its first bytes (data.pkl)
and its tail (end records, directory). A server that ignores ``Range`` is read from byte 0 only for ranges
that start in the first :data:`MAX_IGNORED_RANGE_SKIP` bytes (a zip's tail never is).
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
"""Seconds one request may take in all: connecting, its headers and its body (default :data:`DEFAULT_TIMEOUT`)."""
DEFAULT_TIMEOUT = 10.0
BUDGET_ENV = "PARAMSCOPE_HTTP_BUDGET"
"""Seconds all the requests of one source may take, retries and their waits included (default
:data:`DEFAULT_BUDGET`): with the defaults, three tries of one request (3 x 10 s and 1.5 s of backoff) fit,
and a source never holds the tool longer than a minute."""
DEFAULT_BUDGET = 60.0
BACKOFF_ENV = "PARAMSCOPE_HTTP_BACKOFF"
"""Seconds before the first retry (doubled before the next; default :data:`DEFAULT_BACKOFF`)."""
DEFAULT_BACKOFF = 0.5
ATTEMPTS = 3
WORKERS = 8
MAX_REDIRECTS = 5
"""Redirects followed per request (the Hub needs one, to its CDN)."""

UNKNOWN_FIRST_READ = 32 * 1024
"""First read when nothing says how long the header is: most single-file headers fit."""
MAX_FIRST_READ = 1024 * 1024
"""Cap on an index-based estimate, so that an index listing a million names cannot pull weights."""

# The JSON around a header entry: '"<name>":{"dtype":"<dt>","shape":[<dims>],"data_offsets":[<b>,<e>]},'.
_ENTRY_FIXED = len('"":{"dtype":"","shape":[],"data_offsets":[,]},')
_METADATA_TYPICAL = len('"__metadata__":{"format":"pt"},')
_ESTIMATE_MARGIN = 1.02
_READ_CHUNK = 64 * 1024
MAX_IGNORED_RANGE_SKIP = 32 << 20
"""A server that ignores ``Range`` is read from its first byte: only for ranges starting before this."""

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_STATUS_REASON = {
    401: "authentication required (set HF_TOKEN)",
    403: "access denied (set HF_TOKEN to a token with access)",
    404: "not found (404)",
    410: "gone (410)",
    416: "range not satisfiable (416): the file is shorter than its header",
}
# ASCII digits only, at most 19 (int64): a header of a million digits, or of Unicode digits, is no size.
_CONTENT_RANGE = re.compile(r"bytes[ \t]+([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)[ \t]*$")
_DIGITS = re.compile(r"[0-9]{1,19}")
_SCHEMES = ("http", "https")
_URL_PRINTABLE = "".join(chr(c) for c in range(33, 127))  # what check_url leaves as it is: all but non-ASCII


class _Retry(Exception):
    """A transient failure: worth another attempt."""


class _Fatal(Exception):
    """A failure that another attempt will not fix."""

    def __init__(self, reason: str, status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = headers or {}


class HTTPStatusError(ParamscopeError):
    """A server's refusal (404, 401, ...): ``status`` and the response's lower-cased ``headers`` let the Hub
    source tell a missing file from a missing repository."""

    def __init__(self, source: object, reason: str, status: int | None, headers: dict[str, str] | None = None):
        super().__init__(source, reason)
        self.status = status
        self.headers = headers or {}


def _said(value: object, limit: int = 120) -> str:
    """Text a server (or its client library) produced, as one bounded, printable line."""
    from paramscope.text import one_line

    return one_line(str(value), limit)


def check_url(url: str) -> str:
    """``url`` as it will be requested, or ValueError saying what is wrong with it: http(s) only, a host,
    a numeric port, no spaces or control characters, no credentials; non-ASCII in the path or query is
    percent-encoded (the request line is ASCII)."""
    from urllib.parse import quote, urlsplit, urlunsplit

    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise ValueError("the URL holds spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "[::1", port "abc", port 99999
        raise ValueError(f"malformed URL ({_said(exc, 80)})") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise ValueError("only http:// and https:// URLs are read")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if not parts.netloc.isascii():
        raise ValueError("the host name is not ASCII (give its xn-- form)")
    if "@" in parts.netloc:
        raise ValueError("user names and passwords in URLs are not supported")
    if port == 0:
        raise ValueError("port 0 is not a port")
    path, query = (quote(p, safe=_URL_PRINTABLE) for p in (parts.path, parts.query))
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, query, ""))


def _redirected(url: str, status: int, location: str | None, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Where a redirect of ``url`` leads and the headers to send there, or _Fatal where it may not lead."""
    from urllib.parse import urljoin, urlsplit

    if not location:
        raise _Fatal(f"redirect (HTTP {status}) without a Location")
    try:
        try:
            joined = urljoin(url, location.strip())
        except ValueError as exc:
            raise ValueError(f"malformed URL ({_said(exc, 80)})") from None
        target = check_url(joined)
    except ValueError as exc:
        raise _Fatal(f"redirected to {_said(location, 80)!r}: {exc}") from None
    before, after = urlsplit(url), urlsplit(target)
    if before.scheme == "https" and after.scheme == "http":
        raise _Fatal(f"redirected from https to http ({_said(target, 80)}): refused")
    if (before.hostname, before.port) != (after.hostname, after.port):
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    return target, headers


class Response:
    """What a transport hands back: status, lower-cased headers, and a body read on demand."""

    def __init__(self, status: int, headers: dict[str, str], read: Callable[[int], bytes], close: Callable[[], None]):
        self.status = status
        self.headers = headers
        self.read = read
        self.close = close


class _Watch:
    """The sockets one request opened, so that it can be cut off from outside once past its deadline:
    shutting a socket down wakes the thread blocked reading it, however the server trickles."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[Any] = []
        self.abandoned = False

    def add(self, sock: Any) -> None:
        with self._lock:
            if not self.abandoned:
                self._sockets.append(sock)
                return
        _shut(sock)

    def abandon(self) -> None:
        with self._lock:
            self.abandoned = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)


def _shut(sock: Any) -> None:
    import contextlib
    import socket

    # the plain socket's shutdown even on an SSLSocket: its TLS state belongs to the reading thread
    with contextlib.suppress(OSError, TypeError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class UrllibTransport:
    """The standard library's HTTP client: no dependency. Its opener holds the HTTP and HTTPS handlers and
    the proxy settings only: no redirect handler (:class:`Fetcher` follows redirects by its own rules), no
    error processor (every status comes back as a response), no FTP, ``file:`` or ``data:`` handler."""

    def __init__(self) -> None:
        import functools
        import http.client
        import urllib.request

        def watched(base: type) -> type:
            class Connection(base):  # type: ignore[misc, valid-type]
                """Registers each socket it opens with the request's watch."""

                def __init__(self, *args: Any, watch: _Watch | None = None, **kwargs: Any) -> None:
                    super().__init__(*args, **kwargs)
                    if watch is not None:
                        create = self._create_connection

                        def connect(*a: Any, **k: Any) -> Any:
                            sock = create(*a, **k)
                            watch.add(sock)
                            return sock

                        self._create_connection = connect

            return Connection

        plain, secure = watched(http.client.HTTPConnection), watched(http.client.HTTPSConnection)

        class HTTPHandler(urllib.request.HTTPHandler):
            def http_open(self, req: Any) -> Any:
                return self.do_open(functools.partial(plain, watch=getattr(req, "watch", None)), req)

        class HTTPSHandler(urllib.request.HTTPSHandler):
            def https_open(self, req: Any) -> Any:
                connection = functools.partial(secure, watch=getattr(req, "watch", None))
                return self.do_open(connection, req, context=self._context)

        self._opener = urllib.request.OpenerDirector()
        for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), HTTPHandler(), HTTPSHandler()):
            self._opener.add_handler(handler)

    def open(self, url: str, headers: dict[str, str], timeout: float, watch: _Watch | None = None) -> Response:
        import http.client
        import urllib.request

        request = urllib.request.Request(url, headers=headers)
        request.watch = watch  # type: ignore[attr-defined]
        try:
            handle = self._opener.open(request, timeout=timeout)
        except OSError as exc:  # URLError, timeouts, refused connections, a server hanging up (RemoteDisconnected)
            raise _Retry(f"cannot connect: {_said(getattr(exc, 'reason', exc))}") from None
        except http.client.HTTPException as exc:  # a status line that is not HTTP, 100+ headers, a 64 KB line
            raise _Retry(f"invalid HTTP response ({type(exc).__name__}: {_said(exc, 80)})") from None
        except ValueError as exc:  # a header value the client refuses to send
            raise _Fatal(f"cannot send the request ({_said(exc)})") from None
        hdrs = {k.lower(): v for k, v in handle.headers.items()}

        def read(n: int) -> bytes:
            try:
                return handle.read(n)
            except OSError as exc:
                raise _Retry(f"truncated response (read failed: {_said(exc)})") from None
            except Exception as exc:  # http.client.IncompleteRead, a bad chunk size line and the like
                raise _Retry(f"truncated response (read failed: {type(exc).__name__})") from None

        return Response(handle.status, hdrs, read, handle.close)


class HttpxTransport:
    """An httpx-style client (huggingface_hub's ``get_session()``: httpx2 in huggingface_hub 2.x), streamed
    so that a server ignoring ``Range`` cannot make us download a body, with redirects left to
    :class:`Fetcher`. Its exceptions are matched by name, so that neither httpx nor httpx2 has to be
    imported here; the sockets it opens are reported to the request's watch through httpcore's ``trace``
    extension."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def open(self, url: str, headers: dict[str, str], timeout: float, watch: _Watch | None = None) -> Response:
        extensions: dict[str, Any] = {}
        if watch is not None:

            def trace(event: str, info: dict[str, Any]) -> None:
                if event.endswith((".connect_tcp.complete", ".start_tls.complete")):
                    _watch_stream(watch, info.get("return_value"))

            extensions["trace"] = trace
        try:
            request = self._client.build_request("GET", url, headers=headers, timeout=timeout, extensions=extensions)
            response = self._client.send(request, stream=True, follow_redirects=False)
        except Exception as exc:
            raise _httpx_failure(exc, "cannot connect", "invalid HTTP response") from None
        if watch is not None:  # a pooled connection reports no connect event: its socket, now
            _watch_stream(watch, response.extensions.get("network_stream"))
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
                raise _httpx_failure(exc, "truncated response (read failed)", "truncated response") from None
            out = bytes(pending[:n])
            del pending[:n]
            return out

        return Response(response.status_code, {k.lower(): v for k, v in response.headers.items()}, read, response.close)


def _watch_stream(watch: _Watch, stream: Any) -> None:
    try:
        sock = stream.get_extra_info("socket") if stream is not None else None
    except Exception:  # a stream of another kind: nothing to watch, the deadline still holds
        sock = None
    if sock is not None:
        watch.add(sock)


def _httpx_failure(exc: BaseException, doing: str, garbled: str) -> BaseException:
    """The _Retry or _Fatal an httpx/httpx2 exception means (``doing``: what failed; ``garbled``: what a
    protocol error means at this point); anything else is returned as it is (a bug)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    detail = f"{type(exc).__name__}: {_said(exc, 80)}"
    if names & {"LocalProtocolError", "UnsupportedProtocol", "InvalidURL"}:
        return _Fatal(f"cannot send the request ({detail})")
    if "RemoteProtocolError" in names:
        return _Retry(f"{garbled} ({detail})")
    if isinstance(exc, OSError) or names & {"TransportError", "TimeoutException", "StreamError", "HTTPError"}:
        return _Retry(f"{doing}: {detail}")
    return exc


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 and value != float("inf") else default


class Fetched:
    """One ranged read: the bytes, the file's size where the server said it, the final response's headers
    and the first response's (before any redirect: where the Hub puts ``X-Repo-Commit``)."""

    __slots__ = ("body", "first_headers", "headers", "total")

    def __init__(self, body: bytes, total: int | None, headers: dict[str, str], first_headers: dict[str, str]):
        self.body = body
        self.total = total
        self.headers = headers
        self.first_headers = first_headers


class Fetcher:
    """Ranged GETs through one transport, with retries, deadlines, redirects, and a thread-safe count of
    requests and bytes. One per source: its budget (:data:`BUDGET_ENV`) starts when it is made."""

    def __init__(self, transport: Any = None, headers: dict[str, str] | None = None) -> None:
        self.transport = transport if transport is not None else UrllibTransport()
        self.headers = dict(headers or {})
        self.timeout = _env_float(TIMEOUT_ENV, DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
        self.backoff = _env_float(BACKOFF_ENV, DEFAULT_BACKOFF)
        self.budget = _env_float(BUDGET_ENV, DEFAULT_BUDGET) or DEFAULT_BUDGET
        self.deadline = time.monotonic() + self.budget
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
        got = self.get(source, what, url, start, stop)
        return got.body, got.total

    def get(self, source: str, what: str, url: str, start: int, stop: int, limit: int | None = None) -> Fetched:
        """:meth:`range` with the response's headers; a file whose declared size is over ``limit`` is refused
        before any of its body is read."""
        delay = self.backoff
        for attempt in range(1, ATTEMPTS + 1):
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise ParamscopeError(source, f"{what}: {self._spent()}")
            try:
                return self._attempt(url, start, stop, limit, min(self.timeout, left))
            except _Retry as exc:
                if attempt == ATTEMPTS:
                    raise ParamscopeError(source, f"{what}: {exc} (after {ATTEMPTS} attempts)") from None
                if time.monotonic() + delay >= self.deadline:
                    raise ParamscopeError(source, f"{what}: {exc}; {self._spent()}") from None
                self.note_retry()
                time.sleep(delay)
                delay *= 2
            except _Fatal as exc:
                raise HTTPStatusError(source, f"{what}: {exc}", exc.status, exc.headers) from None
        raise AssertionError("unreachable")

    def _spent(self) -> str:
        return f"gave up: the {self.budget:g} s that {BUDGET_ENV} allows one source are spent"

    def _attempt(self, url: str, start: int, stop: int, limit: int | None, seconds: float) -> Fetched:
        """One request (and its redirects) on a thread of its own, waited for ``seconds`` at most: past that
        it is cut off, however its server trickles. A daemon thread: it never holds the process open."""
        watch = _Watch()
        done = threading.Event()
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(self._exchange(url, start, stop, limit, seconds, watch))
            except BaseException as exc:  # handed to the waiting thread, which raises it
                outcome.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, daemon=True, name="paramscope-http").start()
        if not done.wait(seconds):
            watch.abandon()
            raise _Retry(f"timed out: no complete response within {seconds:.3g} s")
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _exchange(self, url: str, start: int, stop: int, limit: int | None, seconds: float, watch: _Watch) -> Fetched:
        headers = {**self.headers, "Range": f"bytes={start}-{stop - 1}", "Accept-Encoding": "identity"}
        first: dict[str, str] | None = None
        for _ in range(MAX_REDIRECTS + 1):
            response = self.transport.open(url, headers, seconds, watch)
            self._count(0, 1)
            first = response.headers if first is None else first
            if response.status not in _REDIRECT_STATUS:
                break
            response.close()
            url, headers = _redirected(url, response.status, response.headers.get("location"), headers)
        else:
            raise _Fatal(f"more than {MAX_REDIRECTS} redirects")
        try:
            status = response.status
            if status == 206:
                body, total = self._partial(response, start, stop, limit)
            elif status == 200:
                body, total = self._whole(response, start, stop, limit)
            elif status in _RETRYABLE_STATUS:
                raise _Retry(f"server answered HTTP {status}")
            else:
                reason = _STATUS_REASON.get(status, f"server answered HTTP {status}")
                raise _Fatal(reason, status, {**response.headers, **_hub_fields(first)})
        finally:
            response.close()
        return Fetched(body, total, response.headers, first)

    def _partial(self, response: Response, start: int, stop: int, limit: int | None) -> tuple[bytes, int | None]:
        """206: the Content-Range must be the range asked for (or end where the file ends)."""
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if match is None:
            said = _said(response.headers.get("content-range"), 60)
            raise _Fatal(f"206 response without a valid Content-Range ({said!r})")
        first, last = int(match[1]), int(match[2])
        total = None if match[3] == "*" else int(match[3])
        _check_limit(total, limit)
        ends_file = total is not None and last == total - 1
        if first != start or last < first or last > stop - 1 or (last != stop - 1 and not ends_file):
            raise _Fatal(f"server sent bytes {first}-{last} for a request of bytes {start}-{stop - 1}")
        if total is not None and last >= total:
            raise _Fatal(f"Content-Range {first}-{last}/{total} is not inside the file")
        want = last - first + 1
        length = _length(response)
        if length is not None and length != want:
            raise _Fatal(f"Content-Length {length} does not match Content-Range {first}-{last}")
        body = self._read(response, want)
        if len(body) != want:
            raise _Retry(f"truncated response: {len(body)} of {want} bytes")
        return body, total

    def _whole(self, response: Response, start: int, stop: int, limit: int | None) -> tuple[bytes, int | None]:
        """200: the server ignored Range. Read only up to ``stop`` and close: never the whole body; and not
        at all for bytes far into the file (a zip's directory at its end), which would mean reading the
        weights before them."""
        total = _length(response)
        _check_limit(total, limit)
        if start > MAX_IGNORED_RANGE_SKIP:
            raise _Fatal(f"the server ignores Range: reading bytes from {start:,} on would download every byte "
                         "before them (refused)")
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
            chunk = chunk[: want - got]  # a transport handing back more than asked is not trusted with memory
            parts.append(chunk)
            got += len(chunk)
            self._count(len(chunk))
        return b"".join(parts)


def _length(response: Response) -> int | None:
    value = response.headers.get("content-length", "").strip()
    return int(value) if _DIGITS.fullmatch(value) else None


def _check_limit(total: int | None, limit: int | None) -> None:
    if limit is not None and total is not None and total > limit:
        raise _Fatal(f"the file is {total:,} bytes, more than the {limit:,} allowed (none of it was downloaded)")


def _hub_fields(headers: dict[str, str] | None) -> dict[str, str]:
    """The Hub's own headers of the first response of a redirect chain (error code, commit)."""
    return {k: v for k, v in (headers or {}).items() if k.startswith("x-")}


class HttpRangeReader:
    """A :class:`~paramscope.sources.ranged.RangeReader` over one URL through a :class:`Fetcher` (its retries,
    deadlines and byte counts): how the GGUF and PyTorch zip parsers read a remote file. ``name`` (the file's
    name) prefixes error reasons; errors are about ``source``. The size comes from the first response's
    ``Content-Range`` (or, for a server that ignores ``Range``, its ``Content-Length``)."""

    def __init__(self, fetcher: Fetcher, source: str, name: str, url: str) -> None:
        self.fetcher = fetcher
        self.source = source
        self.name = name
        self.url = url
        self._size: int | None = None

    def size(self) -> int | None:
        return self._size

    def read(self, start: int, stop: int) -> bytes:
        if self._size is not None:
            stop = min(stop, self._size)
        if stop <= start:
            return b""
        body, total = self.fetcher.range(self.source, self.name, self.url, start, stop)
        if total is not None:
            if self._size is not None and total != self._size:
                raise ParamscopeError(self.source, f"{self.name}: the file changed size while it was read "
                                                   f"({self._size:,} then {total:,} bytes)")
            self._size = total
        elif len(body) < stop - start and self._size is None:
            self._size = start + len(body)  # the body ended where the file does
        return body


def fetch_file(fetcher: Fetcher, source: str, what: str, url: str, limit: int) -> Fetched:
    """A whole small file (an index, a config.json) of at most ``limit`` bytes, in one request: refused from
    the size its response declares before its body is read, and never read past ``limit + 1`` bytes when
    the response declares none."""
    got = fetcher.get(source, what, url, 0, limit + 1, limit=limit)
    if len(got.body) > limit:
        raise ParamscopeError(source, f"{what}: more than the {limit:,} bytes allowed")
    return got


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

    return safetensors.read_ranged(HttpRangeReader(fetcher, source, what, url), source, what, first_read)


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
            if ranged_kind(job.name) is not None:
                return _shard_records(job.name, _read_local_file(path, job.name)), {}, path.stat().st_size
            records, meta = safetensors.read_file(path, origin=job.name)
            return records, meta, path.stat().st_size
        assert job.url is not None
        if ranged_kind(job.name) is not None:
            reader = HttpRangeReader(fetcher, source, job.name, job.url)
            inventory = read_ranged_file(reader, source)
            return _shard_records(job.name, inventory), {}, reader.size()
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


# File name endings read by ranged reads through a header parser other than safetensors': which parser.
RANGED_SUFFIXES = {".gguf": "gguf", ".bin": "pytorch", ".pt": "pytorch", ".pth": "pytorch", ".ckpt": "pytorch"}


def ranged_kind(name: str) -> str | None:
    """``"gguf"`` or ``"pytorch"`` for a file name read by :func:`read_ranged_file`, else None."""
    for suffix, kind in RANGED_SUFFIXES.items():
        if name.lower().endswith(suffix):
            return kind
    return None


def read_ranged_file(reader: Any, source: str) -> Inventory:
    """A GGUF or torch.save file by ranged reads (``reader``: a RangeReader named by the file's name), headers
    only. Errors name ``source`` and the file; the inventory's source is ``source``."""
    from paramscope.sources import gguf, torch_pickle

    name = reader.name
    label = source if source.endswith(name) else f"{source}: {name}"
    if ranged_kind(name) == "gguf":
        return gguf.read_ranged(reader, label).replace(source=source)
    return torch_pickle.read_ranged(reader, source)


def _read_local_file(path: Any, name: str) -> Inventory:
    """A cached GGUF or torch.save shard, by the local readers."""
    from paramscope.sources import gguf, torch_pickle

    return gguf.read_file(path) if ranged_kind(name) == "gguf" else torch_pickle.read(path)


def _shard_records(name: str, inventory: Inventory) -> list[TensorRecord]:
    """A shard's records, each with the shard as origin, and ties kept inside their shard (two shards' storages
    named "0" are two storages)."""
    records = []
    for record in inventory.tensors:
        changes: dict[str, Any] = {}
        if record.origin != name:
            changes["origin"] = name
        if record.tie is not None:
            changes["tie"] = (name, record.tie)
        records.append(record.replace(**changes) if changes else record)
    return records


def fetched_note(fetcher: Fetcher, header_files: int, kind: str = "safetensors") -> str:
    """The sentence telling the user what the network cost."""
    retries = f", {fetcher.retries} retried" if fetcher.retries else ""
    return (
        f"Read {header_files} {kind} header(s) over HTTP: {fetcher.fetched_bytes:,} bytes fetched in "
        f"{fetcher.requests} request(s){retries}; no weights were downloaded."
    )


# --------------------------------------------------------------------------------------------- plain URLs


def read_url(url: str, progress: Progress | None = None) -> Inventory:
    """A safetensors file or index at a plain URL (any server honouring ``Range``), headers only."""
    from urllib.parse import quote, urljoin, urlparse

    from paramscope.errors import without_credentials
    from paramscope.sources import safetensors

    source = without_credentials(url)  # what the report shows: a presigned URL's signature is a credential
    try:
        url = check_url(url)
    except ValueError as exc:
        raise ParamscopeError(source, str(exc)) from None
    fetcher = Fetcher()
    path = urlparse(url).path
    name = path.rsplit("/", 1)[-1] or url
    if ranged_kind(name) is not None or path.endswith(TORCH_INDEX_SUFFIX):
        return _read_url_ranged(fetcher, source, url, name, progress)
    if path.endswith(safetensors.INDEX_SUFFIX):
        raw = fetch_file(fetcher, source, name, url, MAX_INDEX_SIZE).body
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
    # no config.json is fetched for a plain URL: the rules stage recognises packed quantization from the names
    return Inventory(source=source, format=FORMAT, tensors=records, metadata=metadata, notes=notes)


TORCH_INDEX_SUFFIX = ".bin.index.json"
"""A sharded PyTorch checkpoint's index (``pytorch_model.bin.index.json``): the safetensors index's layout."""


def url_pickles(url: str) -> list[HttpRangeReader]:
    """The torch.save files (pickles) reading ``url`` reads, for their safety verdict
    (:func:`paramscope.safety.remote_verdict`): the file itself, or the shards of a PyTorch index; [] for any
    other URL (safetensors, GGUF: no code by construction)."""
    from urllib.parse import quote, urljoin, urlparse

    source = url
    try:
        url = check_url(url)
    except ValueError as exc:
        raise ParamscopeError(source, str(exc)) from None
    fetcher = Fetcher()
    name = urlparse(url).path.rsplit("/", 1)[-1] or url
    if name.endswith(TORCH_INDEX_SUFFIX):
        weight_map, _ = parse_index(source, fetch_file(fetcher, source, name, url, MAX_INDEX_SIZE).body)
        shards = [shard for shard in dict.fromkeys(weight_map.values()) if ranged_kind(shard) == "pytorch"]
        return [HttpRangeReader(fetcher, source, shard, urljoin(url, quote(shard))) for shard in shards]
    return [HttpRangeReader(fetcher, source, name, url)] if ranged_kind(name) == "pytorch" else []


def _read_url_ranged(fetcher: Fetcher, source: str, url: str, name: str, progress: Progress | None) -> Inventory:
    """A GGUF file (every part of a split one), a torch.save file, or a sharded PyTorch index, at a URL."""
    from urllib.parse import quote, urljoin

    from paramscope.sources import gguf

    notes: list[str] = []
    metadata: dict[str, Any] = {}
    if name.endswith(TORCH_INDEX_SUFFIX):
        raw = fetch_file(fetcher, source, name, url, MAX_INDEX_SIZE).body
        weight_map, _declared = parse_index(source, raw)
        jobs = [ShardJob(shard, url=urljoin(url, quote(shard))) for shard in dict.fromkeys(weight_map.values())]
        for job in jobs:
            if ranged_kind(job.name) != "pytorch":
                raise ParamscopeError(source, f"shard {job.name!r} of a PyTorch index is not a .bin/.pt file")
        records, metadata, notes = read_index_shards(fetcher, source, weight_map, jobs, None, progress)
        inventory = Inventory(source=source, format="pytorch", tensors=records, metadata=metadata, notes=notes)
        kind, files = "PyTorch zip", len(jobs)
    else:
        parts = gguf.split_names(name) if ranged_kind(name) == "gguf" else None
        if parts:
            jobs = [ShardJob(part, url=urljoin(url, quote(part))) for part in parts]
            inventory = read_ranged_parts(fetcher, source, jobs, progress)
            kind, files = "GGUF", len(jobs)
        else:
            inventory = read_ranged_file(HttpRangeReader(fetcher, source, name, url), source)
            kind, files = ("GGUF" if ranged_kind(name) == "gguf" else "PyTorch zip"), 1
            if progress is not None:
                progress(1, 1, fetcher.fetched_bytes)
    return inventory.replace(
        metadata={**inventory.metadata, "fetched_bytes": fetcher.fetched_bytes, "requests": fetcher.requests},
        notes=[*inventory.notes, fetched_note(fetcher, files, kind)],
    )


def read_ranged_parts(
    fetcher: Fetcher,
    source: str,
    jobs: list[ShardJob],
    progress: Progress | None = None,
    pool: Any = None,
    sizes: list[int] | None = None,
) -> Inventory:
    """The parts of a split GGUF (``jobs`` in part order; one job for a whole file), read in parallel and
    combined. ``sizes``, when given, receives each part's size in bytes."""
    from concurrent.futures import ThreadPoolExecutor

    from paramscope.sources import gguf

    def one(k: int, job: ShardJob) -> Inventory:
        if job.local is not None:
            from pathlib import Path

            path = Path(job.local)
            if sizes is not None:
                sizes[k] = path.stat().st_size
            return gguf.read_file(path).replace(source=source)  # this part only: the job list names the others
        assert job.url is not None
        reader = HttpRangeReader(fetcher, source, job.name, job.url)
        inventory = read_ranged_file(reader, source)
        if sizes is not None:
            sizes[k] = reader.size() or 0
        return inventory

    own = pool is None
    if own:
        pool = ThreadPoolExecutor(max_workers=min(WORKERS, len(jobs)), thread_name_prefix="paramscope-fetch")
    futures: list[Any] = []
    try:
        futures = [pool.submit(one, k, job) for k, job in enumerate(jobs)]
        parts = []
        for done, future in enumerate(futures, 1):
            parts.append(future.result())
            if progress is not None:
                progress(done, len(jobs), fetcher.fetched_bytes)
    finally:
        for future in futures:
            future.cancel()
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
    parts = [part.replace(tensors=[t.replace(origin=job.name) for t in part.tensors])
             for part, job in zip(parts, jobs, strict=True)]
    names: dict[str, str] = {}
    for part, job in zip(parts, jobs, strict=True):
        for record in part.tensors:
            previous = names.setdefault(record.name, job.name)
            if previous != job.name:
                raise ParamscopeError(source, f"{job.name}: tensor {record.name!r} is also in part {previous!r}")
    return gguf.combine(parts, source)
