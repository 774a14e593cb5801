"""Plain URLs (https://host/path/model.safetensors or .../model.safetensors.index.json), headers only, through
the standard library's HTTP client, against the loopback server of tests/sources/_fake_hub.py; and the
ranged-read checks of paramscope.sources.remote on hand-made responses (Content-Range that lies, short bodies).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

from paramscope.errors import ParamscopeError
from paramscope.report import Report
from paramscope.sources import open_source, remote

sys.path.insert(0, str(Path(__file__).parent))
from _fake_hub import FakeHub, header_size
from _fuzz import mutated
from _st_helpers import LLAMA2_7B, LLAMA2_7B_PARAMS, llama_tensors, write_sharded


@pytest.fixture
def plain(server, tmp_path, monkeypatch):
    """The server with a fresh directory served under /plain/, faults cleared, a short backoff and a generous
    timeout (byte and request counts must not depend on how loaded the machine is)."""
    server.plain = tmp_path
    server.fail, server.stall, server.truncate, server.missing = {}, {}, {}, set()
    server.ignore_range, server.token = False, None
    server.reset_counts()
    monkeypatch.setenv("PARAMSCOPE_HTTP_TIMEOUT", "30")
    monkeypatch.setenv("PARAMSCOPE_HTTP_BACKOFF", "0.01")
    return server


def url(server: FakeHub, name: str) -> str:
    return f"{server.url}/plain/{name}"


def reference_total(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with safe_open(str(path), "np") as handle:
            for key in handle.keys():  # noqa: SIM118
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def small_file(path: Path, **metadata: str) -> Path:
    rng = np.random.default_rng(1)
    tensors = {f"block.{i}.weight": rng.standard_normal((3, i + 1)).astype(np.float32) for i in range(6)}
    tensors["pos_ids"] = np.arange(5, dtype=np.int64)
    save_file(tensors, str(path), metadata=metadata or None)
    return path


def test_single_file_url(plain, tmp_path):
    path = small_file(tmp_path / "model.safetensors", format="pt")
    inventory = open_source(url(plain, "model.safetensors"))
    report = Report(inventory)
    assert report.total + report.buffers == reference_total([path])
    assert report.buffers == 5  # the int64 pos_ids
    assert inventory.source == url(plain, "model.safetensors")
    assert inventory.metadata["fetched_bytes"] == plain.bytes_sent
    assert inventory.metadata["requests"] == 1
    assert inventory.metadata["__metadata__"] == {"format": "pt"}
    assert {r.origin for r in inventory.tensors} == {"model.safetensors"}
    assert all(r.trainable is None for r in inventory.tensors)


def test_index_url_resolves_shards_relative_to_it(plain, tmp_path):
    tensors = [(name, "BF16", shape) for name, shape in llama_tensors(**LLAMA2_7B)]
    index = write_sharded(tmp_path / "sub", tensors, 2)
    inventory = open_source(url(plain, "sub/" + index.name))
    assert Report(inventory).total == LLAMA2_7B_PARAMS
    shards = sorted(index.parent.glob("*.safetensors"))
    headers = sum(header_size(p) for p in shards)
    served = sum(n for name, n in plain.sent.items() if name.endswith(".safetensors"))
    assert served <= 1.1 * headers
    assert inventory.metadata["shards"] == 2


def test_long_header_second_read_is_only_the_remainder(plain, tmp_path):
    path = small_file(tmp_path / "model.safetensors", blob="y" * 50_000)
    inventory = open_source(url(plain, "model.safetensors"))
    assert Report(inventory).total + Report(inventory).buffers == reference_total([path])
    assert plain.gets("model.safetensors") == 2
    assert plain.bytes_sent == header_size(path)


@pytest.mark.parametrize(
    ("knob", "count", "ok"),
    [("fail", 2, True), ("fail", 3, False), ("truncate", 1, True), ("truncate", 3, False), ("stall", 1, True)],
)
def test_faults(plain, tmp_path, monkeypatch, knob, count, ok):
    path = small_file(tmp_path / "model.safetensors")
    monkeypatch.setenv("PARAMSCOPE_HTTP_TIMEOUT", "0.3")
    plain.stall_seconds = 1.0
    getattr(plain, knob)["model.safetensors"] = count
    if ok:
        inventory = open_source(url(plain, "model.safetensors"))
        assert Report(inventory).total + Report(inventory).buffers == reference_total([path])
        assert any("1 retried" in note or "retried" in note for note in inventory.notes)
    else:
        with pytest.raises(ParamscopeError, match=r"model.safetensors: .*(HTTP 500|truncated).*after 3 attempts"):
            open_source(url(plain, "model.safetensors"))


def test_server_ignoring_range(plain, tmp_path):
    """200 with the whole file: the header is read and the connection closed (the 2 GB case is in test_hub)."""
    path = small_file(tmp_path / "model.safetensors")
    plain.ignore_range = True
    inventory = open_source(url(plain, "model.safetensors"))
    assert Report(inventory).total + Report(inventory).buffers == reference_total([path])
    assert inventory.metadata["fetched_bytes"] <= path.stat().st_size


def test_missing_and_auth(plain, tmp_path):
    small_file(tmp_path / "model.safetensors")
    with pytest.raises(ParamscopeError, match=r"nothing.safetensors: not found \(404\)"):
        open_source(url(plain, "nothing.safetensors"))
    plain.token = "t"
    with pytest.raises(ParamscopeError, match=r"authentication required"):
        open_source(url(plain, "model.safetensors"))


def test_connection_refused_is_one_line(monkeypatch):
    monkeypatch.setenv("PARAMSCOPE_HTTP_BACKOFF", "0")
    with pytest.raises(ParamscopeError, match="cannot connect") as info:
        open_source("http://127.0.0.1:9/model.safetensors")
    assert "\n" not in str(info.value)


# ---- the checks on each response, with a stub transport


class Stub:
    """A transport answering every request with one canned response."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body
        self.asked: list[str] = []

    def open(self, url: str, headers: dict[str, str], timeout: float, watch=None) -> remote.Response:
        self.asked.append(headers["Range"])
        data = bytearray(self.body)

        def read(n: int) -> bytes:
            out = bytes(data[:n])
            del data[:n]
            return out

        return remote.Response(self.status, self.headers, read, lambda: None)


@pytest.mark.parametrize(
    ("status", "headers", "body", "message"),
    [
        (206, {}, b"x" * 10, "without a valid Content-Range"),
        (206, {"content-range": "bytes 5-14/100"}, b"x" * 10, "sent bytes 5-14 for a request of bytes 0-9"),
        (206, {"content-range": "bytes 0-19/100"}, b"x" * 20, "sent bytes 0-19"),
        (206, {"content-range": "bytes 0-4/100"}, b"x" * 5, "sent bytes 0-4"),
        (206, {"content-range": "bytes 0-9/100", "content-length": "7"}, b"x" * 10, "Content-Length 7"),
        (206, {"content-range": "bytes 0-9/100"}, b"x" * 4, "truncated response"),
        (416, {}, b"", "range not satisfiable"),
        (403, {}, b"", "access denied"),
        (302, {}, b"", "HTTP 302"),
    ],
)
def test_response_checks(monkeypatch, status, headers, body, message):
    monkeypatch.setenv("PARAMSCOPE_HTTP_BACKOFF", "0")
    fetcher = remote.Fetcher(Stub(status, headers, body))
    with pytest.raises(ParamscopeError, match=message):
        fetcher.range("src", "f.safetensors", "http://x/f", 0, 10)


def test_partial_ending_at_file_end_and_whole_body():
    fetcher = remote.Fetcher(Stub(206, {"content-range": "bytes 0-5/6"}, b"abcdef"))
    assert fetcher.range("s", "f", "u", 0, 10) == (b"abcdef", 6)
    fetcher = remote.Fetcher(Stub(200, {"content-length": "1000"}, b"z" * 1000))
    assert fetcher.range("s", "f", "u", 4, 10) == (b"zzzzzz", 1000)
    assert fetcher.fetched_bytes == 10  # the 200 body is read only as far as needed


def test_estimate_is_close_below_or_at_header():
    """The index-based first read of a real Llama-7B layout: within 5% of each shard's header."""
    import json
    import tempfile

    tensors = [(name, "BF16", shape) for name, shape in llama_tensors(**LLAMA2_7B)]
    with tempfile.TemporaryDirectory() as tmp:
        index = write_sharded(Path(tmp), tensors, 2)
        data = json.loads(index.read_text())
        by_shard: dict[str, list[str]] = {}
        for name, shard in data["weight_map"].items():
            by_shard.setdefault(shard, []).append(name)
        per_shard = data["metadata"]["total_size"] // 2
        for shard, names in by_shard.items():
            real = header_size(Path(tmp) / shard)
            assert 0.8 * real <= remote.estimate_header(names, per_shard) <= 1.05 * real


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_only_paramscope_errors(plain, tmp_path, data):
    base = tmp_path / "base.safetensors"
    if not base.exists():
        small_file(base, format="pt")
    raw = mutated(data, base.read_bytes())
    (tmp_path / "fuzz.safetensors").write_bytes(raw)
    try:
        open_source(url(plain, "fuzz.safetensors"))
    except ParamscopeError as exc:
        assert "\n" not in str(exc)


# ---- redirects (issue 11, item 9): one rule for both clients


def test_the_opener_has_only_http_handlers():
    import urllib.request

    handlers = remote.UrllibTransport()._opener.handlers
    kinds = (urllib.request.FTPHandler, urllib.request.FileHandler, urllib.request.DataHandler,
             urllib.request.HTTPRedirectHandler, urllib.request.HTTPErrorProcessor)
    assert handlers and not [h for h in handlers if isinstance(h, kinds)]
    names = {type(h).__name__ for h in handlers}  # a ProxyHandler only where the environment names a proxy
    assert {"UnknownHandler", "HTTPHandler", "HTTPSHandler"} <= names <= {"ProxyHandler", "UnknownHandler",
                                                                         "HTTPHandler", "HTTPSHandler"}


@pytest.mark.parametrize(("location", "message"), [
    ("http://a.example/y", "from https to http"),
    ("ftp://a.example/y", "only http:// and https://"),
    ("file:///etc/passwd", "only http:// and https://"),
    ("data:,x", "only http:// and https://"),
    ("http://[::1/y", "malformed URL"),
    ("https://a b/y", "spaces or control characters"),
])
def test_redirect_targets_refused(location, message):
    with pytest.raises(remote._Fatal, match=message):
        remote._redirected("https://a.example/x", 302, location, {})


def test_redirect_keeps_the_token_on_its_host_only():
    token = {"Authorization": "Bearer t", "Range": "bytes=0-9"}
    assert remote._redirected("https://a/x", 302, "/y", token) == ("https://a/y", token)
    assert remote._redirected("http://a/x", 302, "https://a/y", token)[1] == token  # an upgrade keeps it
    for elsewhere in ("https://b/y", "https://a:8443/y"):
        url, headers = remote._redirected("https://a/x", 302, elsewhere, token)
        assert url == elsewhere and headers == {"Range": "bytes=0-9"}


def _transports():
    httpx2 = pytest.importorskip("httpx2")
    return [remote.UrllibTransport(), remote.HttpxTransport(httpx2.Client())]


@pytest.mark.parametrize("kind", ["urllib", "httpx"])
def test_cross_host_redirect_drops_the_token_through_both_clients(plain, tmp_path, kind):
    """127.0.0.1 -> localhost (another host name): the file arrives, the token stays behind."""
    small_file(tmp_path / "model.safetensors")
    plain.redirect_base = plain.url.replace("127.0.0.1", "localhost")
    plain.add_repo("acme/x", tmp_path)
    plain.redirect = True
    transport = _transports()[kind == "httpx"]
    try:
        for base, sent in ((plain.redirect_base, None), ("", "Bearer t")):
            plain.redirect_base = base
            plain.reset_counts()
            fetcher = remote.Fetcher(transport, {"Authorization": "Bearer t"})
            url = f"{plain.url}/acme/x/resolve/main/model.safetensors"
            records, _, _ = remote.read_header(fetcher, "s", "model.safetensors", url, 4096)
            assert len(records) == 7
            assert plain.authorization[0] == ("/acme/x/resolve/main/model.safetensors", "Bearer t")  # the 302
            assert plain.authorization[-1] == ("model.safetensors", sent)  # the blob, after the redirect
    finally:
        plain.redirect, plain.redirect_base = False, ""
        plain.repos.pop("acme/x")


def test_check_url_normalises_and_refuses():
    assert remote.check_url("HTTP://h:8080/m\u00f6del.safetensors?x=\u00e9#frag") == \
        "http://h:8080/m%C3%B6del.safetensors?x=%C3%A9"
    for bad in ("http://[::1/", "http://h:abc/", "http://h:99999/", "http:///x", "http://h/a b", "http://h/\r\n",
                "ftp://h/x", "http://u:p@h/x", "http://h\u00f4/x", "http://h:0/x"):
        with pytest.raises(ValueError):
            remote.check_url(bad)


@pytest.mark.parametrize(("headers", "message"), [
    ({"content-range": "bytes 0-9/" + "9" * 5000}, "without a valid Content-Range"),
    ({"content-range": "bytes \u0660-9/100"}, "without a valid Content-Range"),  # an Arabic-Indic zero
    ({"content-range": "bytes 0-9/100", "content-length": "\u00b2"}, None),  # not a length: ignored
])
def test_numbers_in_headers_are_ascii_and_bounded(headers, message):
    fetcher = remote.Fetcher(Stub(206, headers, b"x" * 10))
    if message is None:
        assert fetcher.range("s", "f", "u", 0, 10) == (b"x" * 10, 100)
    else:
        with pytest.raises(ParamscopeError, match=message):
            fetcher.range("s", "f", "u", 0, 10)


def test_a_declared_size_over_the_limit_is_refused_before_the_body(monkeypatch):
    stub = Stub(206, {"content-range": "bytes 0-16/2147483648"}, b"x" * 17)
    fetcher = remote.Fetcher(stub)
    with pytest.raises(ParamscopeError, match="the file is 2,147,483,648 bytes, more than the 16 allowed"):
        remote.fetch_file(fetcher, "s", "config.json", "u", 16)
    assert fetcher.fetched_bytes == 0 and stub.asked == ["bytes=0-16"]


def test_a_trickling_body_is_cut_at_the_deadline(plain, tmp_path, monkeypatch):
    """A byte every 0.2 s never trips a per-read timeout of 1 s; the request's 1 s deadline ends it."""
    import time

    small_file(tmp_path / "model.safetensors")
    plain.trickle["model.safetensors"] = 3
    monkeypatch.setenv("PARAMSCOPE_HTTP_TIMEOUT", "1")
    start = time.monotonic()
    with pytest.raises(ParamscopeError, match=r"timed out: no complete response within 1 s \(after 3 attempts\)"):
        open_source(url(plain, "model.safetensors"))
    assert 3.0 <= time.monotonic() - start < 5.0
