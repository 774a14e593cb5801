"""Red team of the day's new code (scan, the safety verdict, object stores, remote GGUF/zip, the architecture
card, the K/V cache and --fit, ONNX and Keras roles, ties from files): each test is an adversary's input, run
as a user would meet it, under tests/hostile/_limits.py's limits (2 GiB, 60 s)."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import sys
from pathlib import Path

import pytest

from ._limits import assert_clean, assert_refused, run_cli


def safetensors(path: Path, names: tuple[str, ...] = ("a.weight",), metadata: dict | None = None) -> Path:
    header: dict = {name: {"dtype": "F32", "shape": [2, 2], "data_offsets": [16 * i, 16 * (i + 1)]}
                    for i, name in enumerate(names)}
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(16 * len(names)))
    return path


def assert_no_formula_cells(text: str) -> list[list[str]]:
    """Every CSV cell safe to open in a spreadsheet: none starts with = + - @ (a formula), tab or CR."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text, newline="")))
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")) and not (
                cell.startswith("-") and not cell[1:].replace(".", "").isdigit()), (cell, row)
    return rows


def config(path: Path, *, alone: bool = False, **fields) -> Path:
    """A llama config.json with ``fields``; beside a tiny safetensors file (returned: the directory, read from
    headers in a blink) unless ``alone`` (the config itself: built on the meta device through transformers)."""
    base = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
            "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
            "num_hidden_layers": 2, "vocab_size": 100}
    base.update(fields)
    path.write_text(json.dumps(base))
    if alone:
        return path
    safetensors(path.parent / "model.safetensors")
    return path.parent


# ---- the architecture card, the K/V cache and --fit ------------------------------------------------------


def test_a_config_of_10e18_layers_with_huge_context_and_fit_ends_at_once(tmp_path):
    source = config(tmp_path / "config.json", alone=True, num_hidden_layers=10**18)
    result = assert_clean(run_cli("memory", source, "--arch", "--context", str(10**15), "--fit", "1000000TiB",
                                  timeout=40), expect=(0, 1))
    assert result.seconds < 30
    refused = assert_clean(run_cli("memory", source, "--context", "10", "--fit", "1e30GiB", timeout=20), expect=2)
    assert "argument --fit: not a size: '1e30GiB'" in refused.stderr


def test_huge_context_and_fit_on_a_sane_config(tmp_path):
    source = config(tmp_path / "config.json")
    result = assert_clean(run_cli("memory", source, "--arch", "--context", str(10**15), "--batch", str(10**12),
                                  "--fit", "1e30GiB", timeout=30))
    assert result.seconds < 20


@pytest.mark.parametrize("value", ["garbage", "", "q4_0" * 1000, "\x1b[31mred", "float16;rm"])
def test_kv_dtype_garbage_is_bad_usage(tmp_path, value):
    source = config(tmp_path / "config.json")
    result = assert_clean(run_cli("memory", source, "--context", "100", "--kv-dtype", value, timeout=30), expect=2)
    assert "\x1b" not in result.stderr


@pytest.mark.parametrize("option", ["--kv-dtype", "--weights-as"])
def test_a_bad_cast_is_bad_usage_before_the_source_is_read(tmp_path, option):
    # Before: checked after reading the source: a config.json alone is built through transformers (7-30 s)
    source = config(tmp_path / "config.json", alone=True)
    result = assert_clean(run_cli("memory", source, "--context", "10", option, "\x1b[2Jnope", timeout=30), expect=2)
    assert "unknown" in result.stderr and "'\\x1b[2Jnope'" in result.stderr
    assert result.seconds < 5


@pytest.mark.parametrize("value", ["1e999GiB", "nan", "inf", "-5GiB", "0", "9" * 5000, "1e30000000"])
def test_fit_garbage_is_bad_usage(tmp_path, value):
    source = config(tmp_path / "config.json")
    assert_clean(run_cli("memory", source, "--context", "100", "--fit", value, timeout=30), expect=(0, 2))


@pytest.mark.parametrize("value", ["9" * 5000, "-1", "1e30", "0"])
def test_context_garbage(tmp_path, value):
    source = config(tmp_path / "config.json")
    assert_clean(run_cli("memory", source, "--context", value, timeout=30), expect=(0, 2))


def test_a_million_layer_types_are_bounded(tmp_path):
    source = config(tmp_path / "config.json", num_hidden_layers=4,
                    layer_types=["sliding_attention", "full_attention"] * 500_000, sliding_window=16)
    result = assert_clean(run_cli("memory", source, "--arch", "--context", "1000", timeout=30))
    assert result.seconds < 20


def test_a_million_layer_types_matching_the_layer_count_are_bounded(tmp_path):
    source = config(tmp_path / "config.json", num_hidden_layers=1_000_000,
                    layer_types=["sliding_attention", "full_attention"] * 500_000, sliding_window=16)
    result = assert_clean(run_cli("memory", source, "--arch", "--context", "1000", "--fit", "80GiB", timeout=30))
    assert result.seconds < 20


def test_per_layer_kv_heads_of_a_million(tmp_path):
    source = config(tmp_path / "config.json", num_hidden_layers=1_000_000, num_key_value_heads=[2] * 1_000_000)
    assert_clean(run_cli("memory", source, "--arch", "--context", "1000", "--fit", "80GiB", timeout=30))


def test_arch_card_names_with_escapes_and_pipes(tmp_path):
    source = config(tmp_path / "config.json", model_type="\x1b]0;pwned\x07|x|", architectures=["=cmd|' /C calc'!A0"],
                    layer_types=["\x1b[2J|a|"] * 2)
    for fmt in ("tree", "markdown", "csv", "table", "json"):
        result = assert_clean(run_cli("memory", source, "--arch", "--context", "10", "-f", fmt, timeout=30))
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout, fmt
        if fmt == "csv":
            assert_no_formula_cells(result.stdout)


# ---- the safety verdict ------------------------------------------------------------------------------------


def _memo_system_pickle() -> bytes:
    # GLOBAL 'os system', memoised, popped, fetched back from the memo and called: a trick to hide the call
    # from a scanner that only looks at GLOBAL followed by REDUCE.
    return b"\x80\x02" + b"cos\nsystem\n" + b"q\x01" + b"0" + b"h\x01" + b"X\x04\x00\x00\x00true" + b"\x85R."


def test_a_memo_hidden_os_system_is_needs_trust_and_nothing_is_imported(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(_memo_system_pickle())
    marker = tmp_path / "ran"
    code = (
        "import sys, json; from pathlib import Path\n"
        "before = set(sys.modules)\n"
        "from paramscope import safety\n"
        "mid = set(sys.modules)\n"
        f"v = safety.file_verdict(Path({str(path)!r}))\n"
        "after = set(sys.modules) - mid\n"
        "print(json.dumps([v.verdict, list(v.imports), sorted(after)]))\n"
    )
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")})
    verdict, imports, loaded = json.loads(done.stdout)
    assert verdict == "needs-trust"
    assert imports == ["os.system"]
    assert not [m for m in loaded if m in ("os", "posix", "subprocess") or m.startswith("torch")], loaded
    assert not marker.exists()


def test_a_memo_hidden_os_system_in_a_scan_row(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(_memo_system_pickle())
    result = assert_clean(run_cli("scan", tmp_path, "-f", "jsonl", "--fail-on", "unsafe", timeout=30), expect=1)
    row = json.loads(result.stdout)
    assert row["safety"] == "needs-trust"
    assert "os.system" in row["safety_detail"]


# ---- scan targets ----------------------------------------------------------------------------------------


def test_scan_list_that_names_itself(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"@{listing}\n{listing}\n")
    assert_clean(run_cli("scan", f"@{listing}", "-f", "jsonl", timeout=30))


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom"])
def test_scan_list_that_is_an_endless_device(special):
    result = run_cli("scan", f"@{special}", "-f", "jsonl", timeout=30)
    assert_refused(result, special)


def test_scan_list_that_is_a_fifo(tmp_path):
    fifo = tmp_path / "list"
    os.mkfifo(fifo)
    assert_refused(run_cli("scan", f"@{fifo}", timeout=20), fifo)


def test_scan_list_naming_dev_zero(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("/dev/zero\n")
    result = assert_clean(run_cli("scan", f"@{listing}", "-f", "jsonl", timeout=30), expect=1)
    assert json.loads(result.stdout)["error"]


def test_scan_cache_that_is_dev_zero(tmp_path):
    source = safetensors(tmp_path / "model.safetensors")
    assert_clean(run_cli("scan", source, "--cache", "/dev/zero", timeout=30), "/dev/zero")


def test_scan_cache_with_hostile_lines(tmp_path):
    source = safetensors(tmp_path / "model.safetensors")
    cache = tmp_path / "cache.jsonl"
    cache.write_text("[1]\n" + json.dumps({"source": [1]}) + "\n" + json.dumps({"source": str(source), "key": None,
                                                                              "row": [1, 2]}) + "\n"
                     + json.dumps({"source": str(source), "key": "x", "row": {"parameters": "\x1b[31m"}}) + "\n"
                     + "[" * 100_000 + "\n")
    result = assert_clean(run_cli("scan", source, "--cache", cache, "--resume", "-f", "jsonl", timeout=30))
    assert "\x1b" not in result.stdout


def test_scan_directory_of_a_symlink_loop_a_fifo_and_a_dangling_link(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path)
    (tmp_path / "self").symlink_to(tmp_path / "self")
    os.mkfifo(tmp_path / "weights.safetensors")
    (tmp_path / "gone.safetensors").symlink_to(tmp_path / "nowhere")
    safetensors(tmp_path / "ok.safetensors")
    result = assert_clean(run_cli("scan", tmp_path, "-f", "jsonl", timeout=30), expect=0)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["source"]).name for r in rows] == ["ok.safetensors"]
    assert rows[0]["parameters"] == 4


def test_scan_a_fifo_named_directly(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    result = assert_clean(run_cli("scan", fifo, "-f", "jsonl", timeout=20), expect=1)
    assert json.loads(result.stdout)["error"]


def test_scan_a_directory_of_5k_empty_files(tmp_path):
    for i in range(5_000):
        (tmp_path / f"m{i:05d}.safetensors").touch()
    result = assert_clean(run_cli("scan", tmp_path, "-f", "csv", "--no-progress", timeout=60), expect=1)
    assert len(result.stdout.splitlines()) == 5_001
    assert result.stderr.strip() == "paramscope: scan: 5000 of 5000 models failed (error: 5000)"


def test_scan_names_with_escapes_formulas_and_pipes(tmp_path):
    names = ["=cmd|' xC calc'!A0.safetensors", "\x1b]0;t\x07|a|b|.safetensors", "+1,2\n3.safetensors"]
    for name in names:
        safetensors(tmp_path / name, names=("=HYPERLINK(\"x\")", "\x1b[31m|w|"))
    for fmt in ("table", "csv", "jsonl"):
        result = assert_clean(run_cli("scan", tmp_path, "-f", fmt, timeout=30), expect=0)
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout, fmt
        if fmt == "csv":
            assert len(assert_no_formula_cells(result.stdout)) == 4


def test_scan_file_changing_while_read(tmp_path):
    # a header claiming more than the file holds, as a file cut short by a writer mid-scan looks
    path = tmp_path / "model.safetensors"
    safetensors(path, names=tuple(f"w{i}" for i in range(100)))
    os.truncate(path, path.stat().st_size - 800)
    result = assert_clean(run_cli("scan", tmp_path, "-f", "jsonl", timeout=30), expect=1)
    assert "model.safetensors" in json.loads(result.stdout)["error"] or json.loads(result.stdout)["error"]


@pytest.mark.parametrize("value", ["1e999", "9" * 5000, "1e99999999", "nan"])
def test_scan_gates_of_absurd_size(tmp_path, value):
    source = safetensors(tmp_path / "model.safetensors")
    assert_clean(run_cli("scan", source, "--max-params", value, "--max-bytes", value, timeout=30), expect=(0, 2))


# ---- ties from files -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("metadata", [
    {"format": "pt", "a": "b", "b": "a"},
    {"format": "pt", "a.weight": "a.weight"},
    {"format": "pt", "b": "a.weight", "a.weight": "b"},
    {"format": "pt", **{f"alias{i}": "a.weight" for i in range(100_000)}},
])
def test_safetensors_alias_cycles_and_floods(tmp_path, metadata):
    source = safetensors(tmp_path / "model.safetensors", metadata=metadata)
    result = assert_clean(run_cli(source, "-f", "json", timeout=30), expect=0)
    assert json.loads(result.stdout)["total"] == 4


# ---- GGUF key/values that amplify (local and over ranged reads) ----------------------------------------------

GGUF_STRING, GGUF_ARRAY, GGUF_INT32, GGUF_UINT32 = 8, 9, 5, 4


def _gguf_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def _gguf_head(tensors: int, kvs: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, tensors, kvs)


def _gguf_kv(key: bytes, kind: int, payload: bytes) -> bytes:
    return _gguf_string(key) + struct.pack("<I", kind) + payload


def gguf_file(path: Path, kvs: list[bytes], claimed_kvs: int | None = None, tail: int = 0) -> Path:
    body = _gguf_head(0, len(kvs) if claimed_kvs is None else claimed_kvs) + b"".join(kvs)
    path.write_bytes(body)
    if tail:
        os.truncate(path, len(body) + tail)  # sparse: claimed array payloads read as zeros, cost no disk
    return path


def _arch_kv() -> bytes:
    return _gguf_kv(b"general.architecture", GGUF_STRING, _gguf_string(b"llama"))


def test_gguf_kv_section_claiming_2_to_60_entries(tmp_path):
    source = gguf_file(tmp_path / "m.gguf", [_arch_kv()], claimed_kvs=1 << 60)
    assert_refused(run_cli(source, timeout=30), source)


def test_gguf_string_array_of_2_to_60(tmp_path):
    kv = _gguf_kv(b"tokenizer.ggml.tokens", GGUF_ARRAY, struct.pack("<IQ", GGUF_STRING, 1 << 60))
    source = gguf_file(tmp_path / "m.gguf", [_arch_kv(), kv], tail=1 << 20)
    assert_refused(run_cli(source, timeout=30), source)


def test_gguf_string_array_of_empty_strings_claiming_10_to_8(tmp_path):
    # Before: every element an 8-byte zero length, 800 MB of zeros (sparse), walked one by one: 19 s alone,
    # 51 s under load; a sparse 8 GB file would pass any time bound.
    kv = _gguf_kv(b"tokenizer.ggml.tokens", GGUF_ARRAY, struct.pack("<IQ", GGUF_STRING, 10**8))
    source = gguf_file(tmp_path / "m.gguf", [_arch_kv(), kv], tail=8 * 10**8)
    result = assert_refused(run_cli(source, "--memory", "--arch", timeout=60), source,
                            "the value of key 'tokenizer.ggml.tokens' holds 100,000,000 strings (more than 16,777,216)")
    assert result.seconds < 10


def test_gguf_array_of_10_to_8_empty_arrays(tmp_path):
    # Before: 10^8 nested empty arrays (12 zero bytes each, sparse) walked one by one: 112 s
    kv = _gguf_kv(b"x", GGUF_ARRAY, struct.pack("<IQ", GGUF_ARRAY, 10**8))
    source = gguf_file(tmp_path / "m.gguf", [_arch_kv(), kv], tail=12 * 10**8)
    result = assert_refused(run_cli(source, timeout=60), source,
                            "the value of key 'x' nests more than 1,048,576 arrays")
    assert result.seconds < 10


def test_gguf_per_layer_kv_heads_array_of_10_to_9(tmp_path):
    kvs = [_arch_kv(), _gguf_kv(b"llama.block_count", GGUF_UINT32, struct.pack("<I", 2)),
           _gguf_kv(b"llama.attention.head_count", GGUF_UINT32, struct.pack("<I", 4)),
           _gguf_kv(b"llama.embedding_length", GGUF_UINT32, struct.pack("<I", 64)),
           _gguf_kv(b"llama.attention.head_count_kv", GGUF_ARRAY, struct.pack("<IQ", GGUF_INT32, 10**9))]
    source = gguf_file(tmp_path / "m.gguf", kvs, tail=4 * 10**9)
    result = assert_clean(run_cli("memory", source, "--arch", "--context", "1000", "--fit", "1GiB", timeout=60))
    assert result.seconds < 45


# ---- remote: a server that lies --------------------------------------------------------------------------------


class _Liar:
    """A loopback HTTP server whose every answer is set by the test: ``handler(request) -> (status, headers,
    body)``."""

    def __init__(self, answer):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        liar = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._do(head=True)

            def do_GET(self):
                self._do(head=False)

            def _do(self, head):
                liar.seen.append((self.command, self.path, self.headers.get("Range"),
                                  self.headers.get("Authorization")))
                status, headers, body = answer(self)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if not head and body:
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        self.wfile.write(body)

        self.seen: list = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def liar_factory():
    made = []

    def make(answer):
        made.append(_Liar(answer))
        return made[-1]

    yield make
    for liar in made:
        liar.close()


def _small_gguf(tmp_path: Path) -> bytes:
    sys.path.insert(0, str(Path(__file__).parents[1] / "sources"))
    from _gguf_helpers import write_gguf

    write_gguf(tmp_path / "small.gguf", "llama", {"token_embd.weight": (8, 4)})
    return (tmp_path / "small.gguf").read_bytes()


def test_remote_gguf_whose_server_claims_2_to_60_bytes(tmp_path, liar_factory):
    data = _small_gguf(tmp_path)

    def answer(request):
        return 206, {"Content-Range": f"bytes 0-{(1 << 60) - 1}/{1 << 60}", "Content-Length": str(len(data)),
                     "Accept-Ranges": "bytes"}, data

    liar = liar_factory(answer)
    url = f"{liar.url}/m.gguf"
    assert_clean(run_cli(url, timeout=40), url)


def test_remote_gguf_whose_server_sends_more_than_the_range(tmp_path, liar_factory):
    data = _small_gguf(tmp_path) + bytes(4 << 20)

    def answer(request):  # ignores Range, says 206 with the whole (padded) file, size unknown
        return 206, {"Content-Range": f"bytes 0-{len(data) - 1}/*", "Content-Length": str(len(data))}, data

    liar = liar_factory(answer)
    url = f"{liar.url}/m.gguf"
    assert_clean(run_cli(url, timeout=40), url)


def test_remote_gguf_whose_server_says_less_than_it_sends(tmp_path, liar_factory):
    data = _small_gguf(tmp_path)

    def answer(request):
        return 206, {"Content-Range": f"bytes 0-9/{len(data)}", "Content-Length": "10"}, data

    liar = liar_factory(answer)
    url = f"{liar.url}/m.gguf"
    assert_clean(run_cli(url, timeout=40), url)


@pytest.mark.parametrize("target", ["file:///etc/passwd", "file:///dev/zero", "ftp://127.0.0.1/x.gguf",
                                    "gopher://127.0.0.1/x"])
def test_remote_redirect_to_another_scheme_is_refused(liar_factory, target):
    liar = liar_factory(lambda request: (302, {"Location": target, "Content-Length": "0"}, b""))
    for name in ("m.gguf", "m.safetensors", "m.bin"):
        url = f"{liar.url}/{name}"
        result = assert_refused(run_cli(url, timeout=40), url)
        assert "root:" not in result.stdout + result.stderr


def test_remote_redirect_loop_ends(liar_factory):
    liar = liar_factory(lambda request: (302, {"Location": request.path + "x", "Content-Length": "0"}, b""))
    url = f"{liar.url}/m.gguf"
    assert_refused(run_cli(url, timeout=40), url)


# ---- credentials in URLs ------------------------------------------------------------------------------------------


def test_credentials_in_urls_are_never_printed(liar_factory):
    liar = liar_factory(lambda request: (404, {"Content-Length": "0"}, b""))
    port = liar.server.server_address[1]
    secret = "hunter2SECRETpassw0rd"
    targets = [f"http://user:{secret}@127.0.0.1:{port}/m.gguf", f"http://user:{secret}@127.0.0.1:{port}/m.safetensors",
               f"s3://AKIAKEY:{secret}@bucket/m.safetensors", f"http://127.0.0.1:{port}/m.gguf?token={secret}"]
    for target in targets:
        result = run_cli(target, timeout=40, env={"AWS_ENDPOINT_URL": liar.url, "AWS_ACCESS_KEY_ID": "x",
                                                  "AWS_SECRET_ACCESS_KEY": "y"})
        assert_clean(result, expect=1)
        assert secret not in result.stderr + result.stdout, (target, result.stderr)
    for fmt in ("table", "jsonl", "csv"):
        result = run_cli("scan", *targets, "-f", fmt, timeout=40,
                         env={"AWS_ENDPOINT_URL": liar.url, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})
        assert_clean(result, expect=1)
        assert secret not in result.stderr + result.stdout, result.stdout


# ---- object stores ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_server():
    pytest.importorskip("moto.server")
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    yield f"http://127.0.0.1:{port}"
    moto.stop()


@pytest.fixture
def bucket(moto_server):
    boto3 = pytest.importorskip("boto3")
    env = {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0000",
           "AWS_SECRET_ACCESS_KEY": "s3cr3tKEYthatMustNeverBePrinted0123456789", "AWS_DEFAULT_REGION": "us-east-1"}
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket="red")
    return client, env


def test_an_s3_directory_marker_object(bucket, tmp_path):
    client, env = bucket
    client.put_object(Bucket="red", Key="dir/", Body=b"")
    client.put_object(Bucket="red", Key="dir/model.safetensors/", Body=b"")  # a 'directory' named like a file
    client.put_object(Bucket="red", Key="dir/sub/x.gguf/", Body=b"GGUF")
    for target in ("s3://red/dir/model.safetensors", "s3://red/dir/model.safetensors/"):
        assert_clean(run_cli(target, env=env, timeout=40), expect=(1, 2))
    result = assert_clean(run_cli("scan", "s3://red/dir/", "-f", "jsonl", env=env, timeout=40), expect=(0, 1))
    for line in result.stdout.splitlines():
        assert json.loads(line)["error"] or json.loads(line)["parameters"] == 0


def test_an_s3_object_whose_key_has_escapes_and_formulas(bucket, tmp_path):
    client, env = bucket
    data = safetensors(tmp_path / "m.safetensors").read_bytes()
    client.put_object(Bucket="red", Key="esc/=cmd|x\x1b[2J/m.safetensors", Body=data)
    for fmt in ("table", "csv"):
        result = assert_clean(run_cli("scan", "s3://red/esc/", "-f", fmt, env=env, timeout=40), expect=0)
        assert "\x1b" not in result.stdout
        if fmt == "csv":
            assert_no_formula_cells(result.stdout)


# ---- a Hub listing that never ends ---------------------------------------------------------------------------------


def _hub_env(liar, tmp_path: Path) -> dict[str, str]:
    """The fake Hub's endpoint, with huggingface_hub's own caches under tmp_path (never the user's)."""
    return {"HF_ENDPOINT": liar.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_a_hub_listing_of_200k_repositories(liar_factory, tmp_path):
    page, pages = 20_000, 10  # 200,000 repositories: the listing is streamed, page by page (10^6 took 14 s)

    def answer(request):
        from urllib.parse import parse_qs, urlparse

        url = urlparse(request.path)
        if url.path != "/api/models":
            return 404, {"Content-Length": "0"}, b""
        number = int(parse_qs(url.query).get("cursor", ["0"])[0])
        body = json.dumps([{"id": f"org/r{number}-{i}", "sha": "0" * 40} for i in range(page)]).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        if number + 1 < pages:
            headers["Link"] = f'<{liar.url}/api/models?author=org&cursor={number + 1}>; rel="next"'
        return 200, headers, body

    liar = liar_factory(answer)
    result = run_cli("scan", "hf:org/zzz*", "-f", "jsonl", timeout=60, env=_hub_env(liar, tmp_path))
    assert_clean(result, expect=0)
    assert result.stdout == ""
    assert len([s for s in liar.seen if s[1].startswith("/api/models")]) == pages


# ---- ONNX roles by use, Keras roles -----------------------------------------------------------------------------


def test_an_onnx_graph_where_every_node_consumes_every_initializer(tmp_path):
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import helper, numpy_helper

    n = 1_000  # 10^6 uses
    inits = [numpy_helper.from_array(np.zeros((2,), np.float32), f"w{i}") for i in range(n)]
    names = [f"w{i}" for i in range(n)]
    nodes = [helper.make_node("Concat", ["x", *names], [f"y{j}"], axis=0) for j in range(n)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info(f"y{n - 1}", onnx.TensorProto.FLOAT, None)], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    result = assert_clean(run_cli(path, "-f", "json", "--by", "type", timeout=60), expect=0)
    assert json.loads(result.stdout)["total"] == 2 * n
    assert result.seconds < 30


def test_an_onnx_chain_of_pass_through_ops(tmp_path):
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import helper, numpy_helper

    n = 50_000  # Identity after Identity: a follower of pass-through ops must not recurse once per op
    nodes = [helper.make_node("Identity", [f"t{i}" if i else "w"], [f"t{i + 1}"]) for i in range(n)]
    nodes.append(helper.make_node("MatMul", ["x", f"t{n}"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.zeros((2, 2), np.float32), "w")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    result = assert_clean(run_cli(path, "-f", "json", "--by", "type", timeout=60), expect=0)
    assert json.loads(result.stdout)["total"] == 4


def _keras_with_config(path: Path, config_text: str, layout: dict) -> Path:
    import io
    import zipfile

    h5py = pytest.importorskip("h5py")
    weights = io.BytesIO()
    with h5py.File(weights, "w") as h5:
        for name, shape in layout.items():
            h5.create_dataset(name, shape=shape, dtype="f4")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        archive.writestr("config.json", config_text)
        archive.writestr("model.weights.h5", weights.getvalue())
    return path


def test_keras_config_nested_100k_deep(tmp_path):
    inner: str = json.dumps({"class_name": "Dense", "config": {"name": "d"}})
    head = '{"class_name": "Sequential", "config": {"layers": ['
    text = head * 100_000 + inner + "]}}" * 100_000
    path = _keras_with_config(tmp_path / "m.keras", text, {"layers/dense/vars/0": (3, 2)})
    result = assert_clean(run_cli(path, "-f", "json", timeout=60))
    if result.returncode == 0:
        assert json.loads(result.stdout)["total"] == 6


def test_keras_config_of_30k_layers_with_long_names(tmp_path):
    layers = [{"class_name": "Dense" * 20, "config": {"name": f"\x1b[2J=cmd|{i}" * 20, "trainable": i % 2 == 0}}
              for i in range(30_000)]
    text = json.dumps({"class_name": "Sequential", "config": {"name": "m", "layers": layers}})
    path = _keras_with_config(tmp_path / "m.keras", text, {"layers/dense/vars/0": (3, 2)})
    result = assert_clean(run_cli(path, "-f", "csv", timeout=60))
    assert "\x1b" not in result.stdout
    assert result.seconds < 30


# ---- more of scan and the verdict ---------------------------------------------------------------------------------


def test_scan_with_absurd_workers_does_not_start_a_thread_per_model(tmp_path):
    for i in range(300):
        safetensors(tmp_path / f"m{i:03d}.safetensors")
    result = assert_clean(run_cli("scan", tmp_path, "--workers", "1000000", "-f", "csv", timeout=60), expect=(0, 2))
    if result.returncode == 0:
        assert len(result.stdout.splitlines()) == 301


def _pickle_naming(module: bytes, name: bytes) -> bytes:
    return b"\x80\x02c" + module + b"\n" + name + b"\n" + b")R."


def test_verdict_names_with_escapes_formulas_and_pipes(tmp_path):
    (tmp_path / "a.bin").write_bytes(_pickle_naming(b"=cmd|' /C calc'!A0", b"\x1b]0;x\x07|y|"))
    for fmt in ("table", "csv", "jsonl"):
        result = assert_clean(run_cli("scan", tmp_path, "-f", fmt, timeout=30), expect=1)
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        if fmt == "csv":
            assert_no_formula_cells(result.stdout)
    result = assert_clean(run_cli(tmp_path / "a.bin", timeout=30))
    assert "\x1b" not in result.stdout + result.stderr


def test_verdict_of_a_pickle_naming_a_million_globals(tmp_path):
    body = b"".join(b"c" + b"m%d\nf\n" % i + b"0" for i in range(200_000))
    (tmp_path / "a.bin").write_bytes(b"\x80\x02" + body + b"N.")
    result = assert_clean(run_cli("scan", tmp_path, "-f", "jsonl", timeout=60), expect=1)
    row = json.loads(result.stdout)
    assert row["safety"] == "needs-trust"
    assert row["safety_detail"].count(", ") == 49


def test_verdict_of_a_billion_laughs_pickle(tmp_path):
    # each list holds the previous one ten times, by memo reference: 10^30 elements if expanded
    parts = [b"\x80\x02]q\x00"]  # memo 0: []
    for i in range(1, 31):  # memo i: MARK, ten BINGETs of memo i-1, LIST
        parts.append(b"(" + (b"h" + bytes([i - 1])) * 10 + b"lq" + bytes([i]))
    data = b"".join(parts) + b"c" + b"os\nsystem\n" + b"h\x1e\x85R."
    (tmp_path / "a.bin").write_bytes(data)
    result = assert_clean(run_cli("scan", tmp_path, "-f", "jsonl", timeout=60), expect=1)
    assert json.loads(result.stdout)["safety"] == "needs-trust"


@pytest.mark.parametrize("args", [("--batch", "9" * 30), ("--gpus", "9" * 30), ("--batch", "0")])
def test_memory_absurd_batch_and_gpus(tmp_path, args):
    source = config(tmp_path / "config.json", num_hidden_layers=10**6)
    assert_clean(run_cli("memory", source, "--context", "1000000", *args, "--fit", "80GiB", timeout=30))


def test_a_remote_split_gguf_claiming_the_most_parts_a_server_serves_each(tmp_path, liar_factory):
    from paramscope.sources.gguf import MAX_SPLITS

    data = _small_gguf(tmp_path)

    def answer(request):  # every part is the same small file: the split keys are absent, each part parses
        return 200, {"Content-Length": str(len(data)), "Accept-Ranges": "bytes"}, data

    liar = liar_factory(answer)
    url = f"{liar.url}/m-00001-of-{MAX_SPLITS:05d}.gguf"
    result = assert_clean(run_cli(url, timeout=60), url)
    assert result.seconds < 45
    assert len({s[1] for s in liar.seen}) <= MAX_SPLITS


def test_a_hub_repository_listing_100k_gguf_files(tmp_path, liar_factory):
    data = _small_gguf(tmp_path)
    files = [{"rfilename": f"m{i}.Q4_0.gguf"} for i in range(100_000)]
    listing = json.dumps({"id": "org/m", "sha": "0" * 40, "siblings": files}).encode()

    def answer(request):
        if request.path.startswith("/api/models/"):
            return 200, {"Content-Type": "application/json", "Content-Length": str(len(listing))}, listing
        return 200, {"Content-Length": str(len(data)), "Accept-Ranges": "bytes"}, data

    liar = liar_factory(answer)
    result = assert_clean(run_cli("hf:org/m", timeout=60, env=_hub_env(liar, tmp_path)))
    assert result.seconds < 45
    assert len([s for s in liar.seen if s[0] == "GET" and "/resolve/" in s[1]]) <= 2 * 64


def _ranged(data: bytes):
    """An honest server's answer for ``data``: Range honoured."""

    def answer(request):
        rng = request.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            start = int(first) if first else max(0, len(data) - int(last))
            stop = min(len(data), int(last) + 1) if first and last else len(data)
            body = data[start:stop]
            return 206, {"Content-Range": f"bytes {start}-{stop - 1}/{len(data)}",
                         "Content-Length": str(len(body))}, body
        return 200, {"Content-Length": str(len(data)), "Accept-Ranges": "bytes"}, data

    return answer


@pytest.mark.parametrize("command", [(), ("-f", "json"), ("-f", "csv"), ("-f", "markdown"), ("memory",)])
def test_a_presigned_url_that_is_read_never_shows_its_signature(tmp_path, liar_factory, command):
    # Before: the report's source line (and JSON "source") showed X-Amz-Signature and token values
    liar = liar_factory(_ranged(safetensors(tmp_path / "m.safetensors").read_bytes()))
    url = f"{liar.url}/m.safetensors?X-Amz-Signature=SECRETSIG&X-Amz-Credential=AKIASECRET&token=SECRETTOK&v=1"
    args = ("memory", url) if command == ("memory",) else (url, *command)
    result = assert_clean(run_cli(*args, timeout=30), expect=0)
    assert "SECRET" not in result.stdout + result.stderr
    if command != ("-f", "csv"):  # CSV rows name modules, not the source
        assert "X-Amz-Signature=***" in result.stdout and "v=1" in result.stdout


def test_a_remote_torch_zip_whose_directory_claims_2_to_32_entries(liar_factory):
    # an end-of-central-directory record (zip64 too) claiming more entries than the archive could hold
    eocd64 = (b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, 1 << 62, 1 << 62, 1 << 40, 0))
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, 64, 1)
    eocd = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    data = b"PK\x03\x04" + bytes(60) + eocd64 + locator + eocd

    liar = liar_factory(_ranged(data))
    for name in ("model.pt", "pytorch_model.bin"):
        url = f"{liar.url}/{name}"
        assert_refused(run_cli(url, timeout=40), url)


def _verdict_in_a_fresh_process(path: Path) -> tuple[str, list[str], list[str]]:
    """(verdict, imports, modules newly loaded by the verdict) from a separate interpreter."""
    import subprocess

    code = (
        "import sys, json; from pathlib import Path\n"
        "from paramscope import safety\n"
        "mid = set(sys.modules)\n"
        f"v = safety.file_verdict(Path({str(path)!r}))\n"
        "print(json.dumps([v.verdict, list(v.imports), sorted(set(sys.modules) - mid)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")})
    return tuple(json.loads(done.stdout))  # type: ignore[return-value]


DANGEROUS_MODULES = ("os", "posix", "subprocess", "builtins.eval", "torch", "nt", "shutil", "socket")


@pytest.mark.parametrize("data", [
    # STACK_GLOBAL whose module and name are fetched back from the memo, then called
    b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93\x94h\x02\x8c\x04true\x85R.",
    # the call hidden inside the arguments of an allow-listed rebuild function
    b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(cos\nsystem\nX\x04\x00\x00\x00true\x85RtR.",
    # builtins.getattr on an allow-listed class, fetching something to call
    b"\x80\x02cbuiltins\ngetattr\ncollections\nOrderedDict\nX\x08\x00\x00\x00__init__\x86R.",
    # INST: import and call in one opcode (protocol 0: no PROTO opcode). Before: "unreadable", which
    # --fail-on unsafe lets through, though pickle.load runs it
    b"(S'true'\nios\nsystem\n.",
    # protocol 1 (no PROTO either): GLOBAL, MARK, TUPLE, REDUCE: pickle.dumps(protocol=1) of os.system's reduce
    b"cposix\nsystem\nq\x00(X\x04\x00\x00\x00trueq\x01tq\x02Rq\x03.",
])
def test_hidden_calls_are_needs_trust_and_never_imported(tmp_path, data):
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    verdict, imports, loaded = _verdict_in_a_fresh_process(path)
    assert verdict == "needs-trust", (verdict, imports)
    assert imports
    assert not [m for m in loaded if m.split(".")[0] in DANGEROUS_MODULES], loaded


def test_a_torch_zip_whose_data_pkl_calls_os_system(tmp_path):
    import zipfile

    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/data.pkl", _memo_system_pickle())
        archive.writestr("model/version", "3\n")
        archive.writestr("model/.data/serialization_id", "1")
    verdict, imports, loaded = _verdict_in_a_fresh_process(path)
    assert (verdict, imports) == ("needs-trust", ["os.system"])
    assert not [m for m in loaded if m.split(".")[0] in DANGEROUS_MODULES], loaded
    result = assert_clean(run_cli("scan", path, "-f", "jsonl", "--fail-on", "unsafe", timeout=30), expect=1)
    assert json.loads(result.stdout)["safety"] == "needs-trust"


def test_a_torch_zip_whose_data_pkl_is_a_deflate_bomb(tmp_path):
    import zipfile

    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/data.pkl", b"\x80\x02" + b"N0" * (80 << 20) + b"N.")  # 160 MB of POP (past 128 MiB)
        archive.writestr("model/version", "3\n")
    assert path.stat().st_size < 4 << 20
    verdict, _imports, _loaded = _verdict_in_a_fresh_process(path)
    assert verdict == "unreadable"
    result = assert_clean(run_cli("scan", path, "-f", "jsonl", timeout=30), expect=1)
    assert json.loads(result.stdout)["safety"] == "unreadable"


@pytest.mark.parametrize("text", [b"<array of ", b"<array of x", b"<array of " + b"9" * 4000 + b" string>"])
def test_gguf_string_value_mimicking_an_array_summary(tmp_path, text):
    # Before: tokenizer.ggml.tokens as a STRING "<array of " made the card's vocab an IndexError (exit 3)
    kvs = [_arch_kv(), _gguf_kv(b"llama.block_count", GGUF_UINT32, struct.pack("<I", 2)),
           _gguf_kv(b"tokenizer.ggml.tokens", GGUF_STRING, _gguf_string(text))]
    source = gguf_file(tmp_path / "m.gguf", kvs)
    card = run_cli("memory", source, "--arch", timeout=30)
    assert_clean(card, expect=0)
    assert "vocab: unknown" in card.stdout


# ---- components by name ----------------------------------------------------------------------------------------


def _safetensors_header_only(path: Path, names: list[str]) -> Path:
    header = {name: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * (i + 1)]}
              for i, name in enumerate(names)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    os.truncate(path, path.stat().st_size + 4 * len(names))
    return path


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_components_of_30k_deep_hostile_names(tmp_path, fmt):
    deep = ".".join(["layers"] * 990)  # 990 dotted parts (1,000 is the cap), each tried against the rules
    names = [f"{deep}.{i}.self_attn.\x1b[2J=cmd|x|.weight" for i in range(3)]
    names += [f"model.layers.{i}.mlp.experts.{i}.w{i % 3}.weight" for i in range(30_000)]
    source = _safetensors_header_only(tmp_path / "m.safetensors", names)
    result = assert_clean(run_cli(source, "--by", "type", "-f", fmt, timeout=60), expect=0)
    assert "\x1b" not in result.stdout
    assert result.seconds < 30
    if fmt == "csv":
        assert_no_formula_cells(result.stdout)
    if fmt == "json":
        assert json.loads(result.stdout)["total"] == 30_003


def test_a_hub_glob_of_100k_brackets(liar_factory, tmp_path):
    body = json.dumps([{"id": "org/a", "sha": "0" * 40}]).encode()

    def answer(request):
        if request.path.split("?")[0] != "/api/models":
            return 404, {"Content-Length": "0"}, b""
        return 200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body

    liar = liar_factory(answer)
    target = "hf:org/*" + "[" * 100_000
    result = run_cli("scan", target, "-f", "jsonl", timeout=60, env=_hub_env(liar, tmp_path))
    # Before: fnmatch translated the pattern for each repository listed, quadratic in its '[': past 60 s
    assert_clean(result, expect=1)
    assert result.seconds < 20
    assert json.loads(result.stdout)["error"] == ("a Hub pattern of 100,005 characters; at most 256 (a repository "
                                                  "id is at most 96)")
    assert liar.seen == []
