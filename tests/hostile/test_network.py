"""Hostile networks (issue 11, items 3, 6, 7 and 9): malformed URLs, servers that answer garbage, never
answer, trickle a byte at a time or redirect where no request should go, and a Hub serving a config.json
of gigabytes. Every run is the CLI in a subprocess under the harness's limits (tests/hostile/_limits.py);
every server is on 127.0.0.1, stops itself, and is bounded.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from ._limits import assert_clean, assert_refused, run_cli

sys.path.insert(0, str(Path(__file__).parents[1] / "sources"))
from _fake_hub import FakeHub, write_repo

REPO = "acme/tiny"
SLACK = 8.0
"""Seconds a run may take past its stated budget: the interpreter's start and imports on a shared machine."""


class RawServer:
    """A TCP server on 127.0.0.1 that answers every connection with ``behave(conn, stop)``; it stops when
    told, or by itself after ``lifetime`` seconds, and never holds more than 32 connections."""

    def __init__(self, behave, lifetime: float = 60.0) -> None:
        self.behave = behave
        self.stop_event = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.received: list[bytes] = []
        self._deadline = time.monotonic() + lifetime
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        with self.listener:
            while not self.stop_event.is_set() and time.monotonic() < self._deadline:
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    continue
                self.connections += 1
                if self.connections > 32:
                    conn.close()
                    continue
                threading.Thread(target=self._one, args=(conn,), daemon=True).start()
        self.stop_event.set()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1.0)
            try:
                self.received.append(conn.recv(65536))
                self.behave(conn, self.stop_event)
            except OSError:
                pass

    def stop(self) -> None:
        self.stop_event.set()


def answer(data: bytes):
    def behave(conn, stop):
        conn.sendall(data)
    return behave


def silent(conn, stop):
    stop.wait()


def trickle(prefix: bytes, byte: bytes = b"a", every: float = 0.2):
    def behave(conn, stop):
        conn.sendall(prefix)
        while not stop.wait(every):
            conn.sendall(byte)
    return behave


@pytest.fixture
def servers():
    made: list[RawServer] = []
    yield lambda behave: made.append(RawServer(behave)) or made[-1]
    for server in made:
        server.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


FAST = {"PARAMSCOPE_HTTP_TIMEOUT": "1", "PARAMSCOPE_HTTP_BACKOFF": "0.05"}


# ---- item 3: malformed URLs are one line and exit 1, never 3; no request is made


@pytest.mark.parametrize(("url", "fragment"), [
    ("http://[::1/model.safetensors", "malformed URL"),
    ("http://127.0.0.1:abc/model.safetensors", "malformed URL"),
    ("http://127.0.0.1:99999/model.safetensors", "malformed URL"),
    ("http://127.0.0.1:0/model.safetensors", "port 0"),
    ("http://host name/model.safetensors", "spaces or control characters"),
    ("http://127.0.0.1/a b.safetensors", "spaces or control characters"),
    ("http://127.0.0.1/x\r\nX-Injected: 1\r\n.safetensors", "spaces or control characters"),
    ("http:///model.safetensors", "no host"),
    ("http://:80/model.safetensors", "no host"),
    ("http://user:pw@127.0.0.1/model.safetensors", "passwords"),
    ("https://hôst.example/model.safetensors", "not ASCII"),
])
def test_a_malformed_url_is_one_line(url, fragment):
    result = run_cli(url, "--no-progress")
    assert_refused(result, None, fragment)
    assert result.seconds < 20


def test_a_non_ascii_path_is_percent_encoded_not_a_crash(servers):
    server = servers(answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
    result = run_cli(f"{server.url}/m\u00f6del.safetensors", "--no-progress")
    assert_refused(result, None, "not found (404)")
    assert b"GET /m%C3%B6del.safetensors " in server.received[0]


@pytest.mark.parametrize("endpoint", ["http://[::1", "http://127.0.0.1:abc", "ftp://127.0.0.1", "http://a b"])
def test_a_malformed_hub_endpoint_is_one_line(endpoint, tmp_path):
    result = run_cli(f"hf:{REPO}", "--no-progress", env={"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path)})
    assert_refused(result, f"hf:{REPO}", "HF_ENDPOINT")


# ---- item 3: servers that do not speak HTTP


GARBAGE = {
    "not HTTP": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "150 headers": b"HTTP/1.1 206 Partial Content\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150))
                   + b"Content-Length: 0\r\n\r\n",
    "100 KB header line": b"HTTP/1.1 206 Partial Content\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n",
    "million-digit range": b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/" + b"9" * 5000
                          + b"\r\nContent-Length: 10\r\n\r\n0123456789",
    "superscript length": "HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"),
    "empty": b"",
}


@pytest.mark.parametrize("kind", GARBAGE)
def test_a_server_answering_garbage_is_one_line(kind, servers):
    server = servers(answer(GARBAGE[kind]))
    url = f"{server.url}/model.safetensors"
    result = assert_clean(run_cli(url, "--no-progress", env=FAST), url, expect=1)
    assert result.seconds < 20


@pytest.mark.parametrize("kind", ["not HTTP", "150 headers", "100 KB header line", "million-digit range", "empty"])
def test_a_hub_answering_garbage_is_one_line(kind, servers, tmp_path):
    server = servers(answer(GARBAGE[kind]))
    result = run_cli(f"hf:{REPO}", "--no-progress", env={**FAST, "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path)})
    assert_clean(result, f"hf:{REPO}", expect=1)


# ---- item 6: every request and every source ends in bounded time, however the server trickles


HEADERS_206 = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-32767/40000\r\nContent-Length: 32768\r\n\r\n"


@pytest.mark.parametrize(("kind", "behave"), [
    ("never answers", silent),
    ("trickles its headers", trickle(b"HTTP/1.1 206 Partial Content\r\nX-Slow: ")),
    ("trickles its body", trickle(HEADERS_206)),
])
def test_a_slow_server_ends_within_the_budget(kind, behave, servers):
    """Per-read timeouts alone never end a trickle; the 1 s request deadline does, 3 tries: ~3.2 s."""
    server = servers(behave)
    url = f"{server.url}/model.safetensors"
    result = assert_refused(run_cli(url, "--no-progress", env=FAST), url, "timed out")
    assert "after 3 attempts" in result.stderr
    assert 3.0 <= result.seconds < 3 * 1 + 0.15 + SLACK


def test_the_source_budget_cuts_retries_short(servers):
    server = servers(trickle(HEADERS_206))
    url = f"{server.url}/model.safetensors"
    env = {"PARAMSCOPE_HTTP_TIMEOUT": "3", "PARAMSCOPE_HTTP_BUDGET": "2", "PARAMSCOPE_HTTP_BACKOFF": "0.05"}
    result = assert_refused(run_cli(url, "--no-progress", env=env), url, "PARAMSCOPE_HTTP_BUDGET")
    assert 2.0 <= result.seconds < 2 + SLACK


def test_a_refusing_port_is_quick(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/model.safetensors"
    result = assert_refused(run_cli(url, "--no-progress"), url, "cannot connect")
    assert result.seconds < 1.5 + SLACK  # the default backoff (0.5 + 1 s), no timeout to wait out


@pytest.mark.parametrize("kind", ["refusing port", "never answers", "trickles"])
def test_an_unreachable_hub_ends_within_the_budget_with_one_line(kind, servers, tmp_path):
    """Was 72 s and 67 lines of huggingface_hub's "Retrying in 8s" for a Hub that is down."""
    if kind == "refusing port":
        endpoint, env = f"http://127.0.0.1:{closed_port()}", {}
    else:
        endpoint = servers(silent if kind == "never answers" else trickle(b"HTTP/1.1 200 OK\r\nX-Slow: ")).url
        env = {"PARAMSCOPE_HTTP_TIMEOUT": "1", "PARAMSCOPE_HTTP_BUDGET": "2.5"}
    result = run_cli(f"hf:{REPO}", "--no-progress", env={**env, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path)})
    assert_clean(result, f"hf:{REPO}", expect=1)
    assert result.seconds < (1.5 if kind == "refusing port" else 2.5) + SLACK


# ---- item 7: a Hub's small files are never downloaded past their cap


@pytest.fixture
def hub():
    server = FakeHub().start()
    yield server
    server.stop()


def hub_env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    return {**FAST, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1"}


CAP = 16 << 20  # paramscope.sources.config.MAX_CONFIG_BYTES


@pytest.mark.parametrize("serving", ["ranged", "whole", "unsized"])
def test_a_2_gb_config_json_is_never_downloaded(serving, hub, tmp_path):
    repo = write_repo(tmp_path / "repo", {"README.md": b"hi"})
    with open(repo / "config.json", "wb") as handle:
        handle.truncate(2 << 30)  # sparse: served lazily by the fake Hub, never allocated
    hub.add_repo(REPO, repo)
    hub.ignore_range = serving != "ranged"
    hub.unsized = serving == "unsized"
    result = run_cli(f"hf:{REPO}", "--no-progress", env=hub_env(hub, tmp_path))
    if serving == "unsized":  # nothing says its size: read to the cap, no further
        assert_refused(result, f"hf:{REPO}", "config.json: more than the 16,777,216 bytes allowed")
        assert hub.sent["config.json"] < CAP + (8 << 20)  # what the socket buffers took past the cap
    else:  # refused from the declared size before the body is read
        assert_refused(result, f"hf:{REPO}", "config.json: the file is 2,147,483,648 bytes, more than the 16,777,216")
        assert hub.sent.get("config.json", 0) < CAP
    assert not list((tmp_path / "hf_home").rglob("blobs/*"))  # nothing of it in the cache


def test_an_oversized_index_is_never_downloaded(hub, tmp_path):
    repo = write_repo(tmp_path / "repo", {"config.json": {"model_type": "acme"}})
    with open(repo / "model.safetensors.index.json", "wb") as handle:
        handle.truncate(100 << 20)
    hub.add_repo(REPO, repo)
    result = run_cli(f"hf:{REPO}", "--no-progress", env=hub_env(hub, tmp_path))
    assert_refused(result, f"hf:{REPO}", "the file is 104,857,600 bytes, more than the 67,108,864")
    assert hub.sent.get("model.safetensors.index.json", 0) < 64 << 20


def test_an_oversized_index_url_is_never_downloaded(hub, tmp_path):
    hub.plain = tmp_path
    with open(tmp_path / "model.safetensors.index.json", "wb") as handle:
        handle.truncate(100 << 20)
    url = f"{hub.url}/plain/model.safetensors.index.json"
    assert_refused(run_cli(url, "--no-progress", env=FAST), url, "more than the 67,108,864")
    assert hub.sent.get("model.safetensors.index.json", 0) < 64 << 20


def test_a_hostile_commit_header_cannot_write_outside_the_cache(hub, tmp_path):
    write_repo(tmp_path / "repo", {"config.json": {"model_type": "acme"}})
    hub.add_repo(REPO, tmp_path / "repo")
    hub.commit = "../../../../escaped"
    result = run_cli(f"hf:{REPO}", "--no-progress", env=hub_env(hub, tmp_path))
    assert_refused(result, f"hf:{REPO}", "no X-Repo-Commit")
    assert not list(tmp_path.rglob("escaped*"))


# ---- item 9: redirects only to http(s), never down to http, a bounded number of them


def redirect_to(location: str):
    return answer(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())


@pytest.mark.parametrize(("location", "fragment"), [
    ("ftp://127.0.0.1/model.safetensors", "only http:// and https://"),
    ("file:///etc/passwd", "only http:// and https://"),
    ("data:application/octet-stream;base64,AAAA", "only http:// and https://"),
    ("gopher://127.0.0.1:70/x", "only http:// and https://"),
    ("http://[::1/x", "malformed URL"),
    ("", "without a Location"),
])
def test_a_redirect_off_http_is_refused(location, fragment, servers):
    server = servers(redirect_to(location))
    url = f"{server.url}/model.safetensors"
    assert_refused(run_cli(url, "--no-progress", env=FAST), url, fragment)
    assert server.connections == 1  # refused at once: not retried, not followed


def test_a_redirect_loop_is_bounded(servers):
    server = servers(redirect_to("/model.safetensors"))
    url = f"{server.url}/model.safetensors"
    assert_refused(run_cli(url, "--no-progress", env=FAST), url, "more than 5 redirects")
    assert server.connections == 6


def test_a_hub_redirect_to_a_file_url_is_refused(servers, tmp_path):
    server = servers(redirect_to("file:///etc/passwd"))
    result = run_cli(f"hf:{REPO}", "--no-progress", env={**FAST, "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path)})
    assert_refused(result, f"hf:{REPO}", "only http:// and https://")


# ---- issue 15: remote GGUF and PyTorch zip headers by ranged reads


@pytest.fixture
def plain_hub(hub, tmp_path, monkeypatch):
    """The fake Hub serving tmp_path/plain under /plain/, the fast timeouts in this process's environment
    (the mutation worker inherits it)."""
    hub.plain = tmp_path / "plain"
    hub.plain.mkdir()
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    return hub


def small_gguf(path: Path) -> Path:
    from _gguf_helpers import write_gguf

    def configure(writer):
        writer.add_token_list([f"tok{i}" for i in range(300)])
        writer.add_token_scores([0.25] * 300)
        writer.add_chat_template("{{ x }}" * 10)
    write_gguf(path, "llama", {"token_embd.weight": (30, 8), "blk.0.attn_q.weight": (8, 8)}, configure)
    return path


def small_bin(path: Path) -> Path:
    torch = pytest.importorskip("torch")
    embed = torch.randn(30, 8)
    torch.save({"wte.weight": embed, "h.0.w": torch.randn(8, 8), "lm_head.weight": embed}, path)
    return path


@pytest.mark.parametrize("make", [small_gguf, small_bin])
def test_mutated_remote_headers_are_clean(make, plain_hub, tmp_path):
    """Mutated GGUF and torch.save files, read over HTTP: exit 0, or one line naming the URL; never exit 3,
    a hang or a traceback."""
    from ._mutate import assert_all_clean, write_mutations

    suffix = ".gguf" if make is small_gguf else ".bin"
    base = make(tmp_path / f"base{suffix}")
    paths = write_mutations(base, plain_hub.plain, 40, seed=15)
    seen = assert_all_clean([f"{plain_hub.url}/plain/{p.name}" for p in paths])  # type: ignore[misc]
    assert seen.get(1, 0) > 0 and seen.get(0, 0) > 0  # the mutations reached both outcomes


def test_a_gguf_url_answered_with_garbage_is_one_line(servers):
    server = servers(answer(b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/10\r\nContent-Length: 10\r\n"
                            b"\r\nGGUF\x03\x00\x00\x00\xff\xff"))
    url = f"{server.url}/model.gguf"
    assert_refused(run_cli(url, "--no-progress", env=FAST), url, "truncated")


def test_a_trickling_gguf_server_ends_within_the_budget(servers):
    server = servers(trickle(b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-65535/9999999\r\n"
                             b"Content-Length: 65536\r\n\r\nGGUF"))
    url = f"{server.url}/model.gguf"
    result = run_cli(url, "--no-progress", env={**FAST, "PARAMSCOPE_HTTP_BUDGET": "3"})
    assert_refused(result, url, "")
    assert result.seconds < 3 + SLACK


@pytest.mark.parametrize(("listing", "fragment"), [
    (b"[" * 100_000, "the file listing"),
    (b'{"siblings": 5}', "the file listing is not a list"),
    (b"\xff\xfe garbage", "the file listing"),
])
def test_a_hostile_file_listing_is_one_line(listing, fragment, hub, tmp_path):
    write_repo(tmp_path / "repo", {"README.md": b"hi"})
    hub.add_repo(REPO, tmp_path / "repo")
    hub.listing = listing
    assert_refused(run_cli(f"hf:{REPO}", "--no-progress", env=hub_env(hub, tmp_path)), f"hf:{REPO}", fragment)


def test_a_listing_of_hostile_gguf_names_is_never_requested(hub, tmp_path):
    """Names in the listing become URLs only once they pass the shard-name rule; a split whose parts are
    not all there is not a model."""
    write_repo(tmp_path / "repo", {"README.md": b"hi"})
    hub.add_repo(REPO, tmp_path / "repo")
    names = ["../../etc/x.gguf", "a/../../b.gguf", "x-00001-of-00002.gguf", "q\x00.gguf"]
    hub.listing = json.dumps({"siblings": [{"rfilename": n} for n in names]}).encode()
    result = run_cli(f"hf:{REPO}", "--no-progress", env=hub_env(hub, tmp_path))
    assert_refused(result, f"hf:{REPO}", "not a file name inside the repository")
    assert not any(name.endswith(".gguf") for _, name, _ in hub.requests)
