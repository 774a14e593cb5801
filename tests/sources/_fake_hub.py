"""A fake Hugging Face Hub on 127.0.0.1 for the remote-source tests and bench/bench_hub.py.

It serves ``/{org}/{name}/resolve/{revision}/{file}`` the way the Hub does for ``hf_hub_download`` (HEAD
with ``X-Repo-Commit`` and ``ETag``, ``X-Error-Code`` on errors) and honours ``Range`` (206 with
``Content-Range``), reading only the requested bytes of the files it serves (sparse shards cost nothing).
The same server serves plain URLs: ``/plain/<file>``.

Fault knobs (set on the instance; per-file counters are decremented as faults fire):

* ``fail[file] = n``      -> the next n GETs of that file answer 500
* ``stall[file] = n``     -> the next n GETs stall for ``stall_seconds`` before answering
* ``truncate[file] = n``  -> the next n GETs send fewer body bytes than promised, then close
* ``ignore_range = True`` -> answer 200 with the whole file (streamed, until the client hangs up)
* ``missing = {file}``    -> 404 EntryNotFound
* ``forbid = {file}``     -> 403 (as a CDN answers for an expired or foreign signed URL)
* ``token = "secret"``    -> 401 (X-Error-Code GatedRepo) unless ``Authorization: Bearer secret``
                             (for the files whose name ends with ``token_scope``; all by default)
* ``redirect = True``     -> resolve answers 302 to ``/blobs/<file>`` (as the Hub does to its CDN)
* ``redirect_base = url`` -> ... on another origin (``http://localhost:<port>``: another host name)
* ``trickle[file] = n``   -> the next n GETs send their body one byte per ``trickle_seconds``
* ``unsized = True``      -> no Content-Length (the body ends when the connection closes)
* ``commit = "..."``      -> the X-Repo-Commit sent (a hostile value, say)
* ``no_api = True``       -> ``/api/models/<repo>/revision/<rev>`` (the file listing) answers 404
* ``listing = bytes``     -> ... answers this body instead of the repository's files

``/api/models/<org>/<name>/revision/<rev>`` lists a repository's files as the Hub does (``siblings``, each
with ``rfilename``), counted in ``requests`` under the name ``"api"``.

``/api/models?author=ORG&search=TEXT`` lists the registered repositories (for ``paramscope scan hf:ORG/*``).

Every request's Authorization header is kept in ``authorization`` (path, value).

It counts every request and the body bytes it sent, per file (``sent``) and in all (each chunk as it is written).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
_CHUNK = 64 * 1024


class FakeHub:
    """One server; repositories are directories of files registered with :meth:`add_repo`."""

    def __init__(self) -> None:
        self.repos: dict[str, Path] = {}
        self.plain: Path | None = None
        self.fail: dict[str, int] = {}
        self.stall: dict[str, int] = {}
        self.stall_seconds = 2.0
        self.truncate: dict[str, int] = {}
        self.ignore_range = False
        self.missing: set[str] = set()
        self.forbid: set[str] = set()
        self.token: str | None = None
        self.token_scope = ""  # only files whose name ends with this need the token ("" = all)
        self.redirect = False
        self.redirect_base = ""
        self.trickle: dict[str, int] = {}
        self.trickle_seconds = 0.2
        self.unsized = False
        self.commit = COMMIT
        self.no_api = False
        self.listing: bytes | None = None
        self.authorization: list[tuple[str, str | None]] = []
        self.requests: list[tuple[str, str, str | None]] = []
        self.sent: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            owner = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True, name="fake-hub")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(self, repo_id: str, directory: Path) -> None:
        self.repos[repo_id] = directory

    def clear_faults(self, plain: Path | None = None) -> None:
        """Every fault knob back to a well-behaved server, no repositories, counts reset; ``plain`` served
        under /plain/ (each test's fixture calls this: a module-scoped server keeps no test's faults)."""
        self.plain = plain
        self.fail, self.stall, self.truncate, self.trickle = {}, {}, {}, {}
        self.missing, self.forbid = set(), set()
        self.ignore_range, self.token, self.no_api, self.listing = False, None, False, None
        self.repos.clear()
        self.reset_counts()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.sent.clear()
            self.authorization.clear()

    @property
    def bytes_sent(self) -> int:
        with self._lock:
            return sum(self.sent.values())

    def gets(self, filename: str) -> int:
        with self._lock:
            return sum(1 for method, name, _ in self.requests if method == "GET" and name == filename)

    # ---- bookkeeping used by the handler

    def _record(self, method: str, name: str, range_header: str | None, authorization: str | None = None) -> None:
        with self._lock:
            self.requests.append((method, name, range_header))
            self.authorization.append((name, authorization))

    def _add_sent(self, name: str, n: int) -> None:
        with self._lock:
            self.sent[name] = self.sent.get(name, 0) + n

    def _take(self, knob: dict[str, int], name: str) -> bool:
        with self._lock:
            left = knob.get(name, 0)
            if left > 0:
                knob[name] = left - 1
                return True
            return False


class _Handler(BaseHTTPRequestHandler):
    owner: FakeHub
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # As nginx and CDNs do (tcp_nodelay on): without it, a small body written after the headers
        # waits out the client's delayed ACK (40 ms on Linux) and the timings measure that, not the client.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _error(self, status: int, code: str | None = None) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Repo-Commit", self.owner.commit)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _locate(self, answered: Callable[[], None]) -> tuple[str, Path] | None:
        """(file name, path on disk) for /org/name/resolve/rev/file, /blobs/org/name/file, /plain/file; else None,
        ``answered()`` called first (it records the request: before the answer, so that a client's next request,
        a redirect's, can never be recorded before this one)."""
        hub = self.owner
        path = self.path.split("?", 1)[0]
        parts = path.lstrip("/").split("/")
        if parts[0] == "plain" and hub.plain is not None and len(parts) >= 2:
            name = "/".join(parts[1:])
            return name, hub.plain / name
        if parts[0] == "blobs" and len(parts) >= 4:
            repo, name = "/".join(parts[1:3]), "/".join(parts[3:])
            if repo in hub.repos:
                return name, hub.repos[repo] / name
            answered()
            return None
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, name = "/".join(parts[:2]), "/".join(parts[4:])
            if repo not in hub.repos:
                answered()
                self._error(401, "RepoNotFound")
                return None
            if parts[3] not in ("main", COMMIT):
                answered()
                self._error(404, "RevisionNotFound")
                return None
            if hub.redirect and name.endswith(".safetensors"):
                answered()
                self.send_response(302)
                self.send_header("Location", f"{hub.redirect_base}/blobs/{repo}/{name}")
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return name, hub.repos[repo] / name
        answered()
        self._error(404)
        return None

    def _stats(self) -> bool:
        """``/_stats`` (JSON of the counters) and ``/_reset``: for a fake Hub run as its own process."""
        hub = self.owner
        if self.path == "/_reset":
            hub.reset_counts()
        elif self.path != "/_stats":
            return False
        with hub._lock:
            body = json.dumps({"sent": hub.sent, "requests": len(hub.requests)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return True

    def _send_json(self, body: bytes) -> bool:
        """A 200 with a JSON body, as the Hub's API answers; True: the request is served."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return True

    def _list_models(self) -> bool:
        """``/api/models?author=ORG&search=TEXT``: the repositories, as huggingface_hub's list_models reads them
        (one page: no Link header)."""
        from urllib.parse import parse_qs, urlparse

        url = urlparse(self.path)
        if url.path != "/api/models":
            return False
        query = parse_qs(url.query)
        author, search = query.get("author", [""])[0], query.get("search", [""])[0]
        repos = [r for r in sorted(self.owner.repos) if (not author or r.split("/")[0] == author) and search in r]
        body = json.dumps([{"id": r, "modelId": r, "sha": self.owner.commit, "private": False} for r in repos]).encode()
        return self._send_json(body)

    def _api(self) -> bool:
        """``/api/models/<org>/<name>/revision/<rev>``: the repository's files, as the Hub lists them."""
        hub = self.owner
        parts = self.path.split("?", 1)[0].lstrip("/").split("/")
        if parts[:2] != ["api", "models"]:
            return False
        hub._record("GET", "api", None, self.headers.get("Authorization"))
        repo = "/".join(parts[2:4])
        if hub.no_api or len(parts) != 6 or parts[4] != "revision" or repo not in hub.repos:
            self._error(404, "RepoNotFound")
            return True
        if hub.listing is not None:
            body = hub.listing
        else:
            root = hub.repos[repo]
            files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
            body = json.dumps({"id": repo, "sha": hub.commit, "siblings": [{"rfilename": f} for f in files]}).encode()
        return self._send_json(body)

    def _serve(self, head: bool) -> None:
        hub = self.owner
        if self._stats() or self._list_models() or self._api():
            return
        range_header = self.headers.get("Range")
        method, authorization = "HEAD" if head else "GET", self.headers.get("Authorization")
        located = self._locate(lambda: hub._record(method, self.path, range_header, authorization))
        if located is None:
            return
        name, path = located
        hub._record(method, name, range_header, authorization)
        guarded = hub.token is not None and name.endswith(hub.token_scope)
        if guarded and self.headers.get("Authorization") != f"Bearer {hub.token}":
            self._error(401, "GatedRepo")
            return
        if name in hub.forbid:
            self._error(403)
            return
        if name in hub.missing or not path.is_file():
            self._error(404, "EntryNotFound")
            return
        if not head and hub._take(hub.fail, name):
            self._error(500)
            return
        if not head and hub._take(hub.stall, name):
            time.sleep(hub.stall_seconds)
        size = path.stat().st_size
        etag = hashlib.sha256(f"{name}:{size}".encode()).hexdigest()
        start, stop, status = 0, size, 200
        match = _RANGE.match(range_header or "")
        if match and not hub.ignore_range and not head:
            start = int(match[1])
            stop = min(size, int(match[2]) + 1) if match[2] else size
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("X-Repo-Commit", hub.commit)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        if hub.unsized:
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(stop - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        self.end_headers()
        if head:
            return
        truncated = hub._take(hub.truncate, name)
        if truncated:
            stop = start + (stop - start) // 2
        trickle = hub._take(hub.trickle, name)
        try:
            with open(path, "rb") as handle:
                position = start
                while position < stop:
                    if trickle:
                        time.sleep(hub.trickle_seconds)
                    chunk = os.pread(handle.fileno(), 1 if trickle else min(_CHUNK, stop - position), position)
                    if not chunk:
                        break
                    # counted before it is written: a client that has read it must find it counted (a chunk
                    # the client never got still counts, so caps tested against this are upper bounds)
                    hub._add_sent(name, len(chunk))
                    self.wfile.write(chunk)
                    position += len(chunk)
                    if trickle:
                        self.wfile.flush()
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        if truncated:
            self.close_connection = True


def write_repo(directory: Path, files: dict[str, bytes | dict]) -> Path:
    """Write small files (bytes, or a dict written as JSON) into a repository directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = json.dumps(content).encode() if isinstance(content, dict) else content
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return directory


def hub_environment(monkeypatch, tmp_path: Path, hub: FakeHub) -> Path:
    """Point huggingface_hub (as paramscope reads it: the environment at call time) at ``hub``, with a
    private cache under ``tmp_path``, no token, online, and a short backoff. The timeout stays generous: tests
    count requests and bytes, and a loaded CI machine must not turn a slow reply into a retry (tests of
    timeouts set their own). Returns the cache dir."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("PARAMSCOPE_HTTP_TIMEOUT", "30")
    monkeypatch.setenv("PARAMSCOPE_HTTP_BACKOFF", "0.01")
    for name in ("HF_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "hf_home" / "hub"


def header_size(path: Path) -> int:
    """8 + the declared header length of a safetensors file: the bytes a header-only reader needs."""
    with open(path, "rb") as handle:
        return 8 + int.from_bytes(handle.read(8), "little")


if __name__ == "__main__":  # python _fake_hub.py REPO_ID DIRECTORY: serve one repository, print the URL
    import sys

    server = FakeHub().start()
    server.add_repo(sys.argv[1], Path(sys.argv[2]))
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
