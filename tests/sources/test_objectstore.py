"""s3:// through fsspec/s3fs against a real S3 API server on 127.0.0.1 (moto's server mode), headers only.

Counts are compared with the safetensors library reading the same bytes; faults: access denied (moto with
authentication switched on: 403), a missing key, a truncated object, a prefix with no objects, a missing extra.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

from safetensors import safe_open  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from paramscope.errors import ParamscopeError  # noqa: E402
from paramscope.report import Report  # noqa: E402
from paramscope.sources import open_source  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent))
from hostile._limits import assert_clean, assert_refused, run_cli  # noqa: E402

SECRET = "s3cr3tKEYthatMustNeverBePrinted0123456789"
BUCKET = "models"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    yield f"http://127.0.0.1:{port}"
    moto.stop()


@pytest.fixture
def s3(server, monkeypatch):
    """The environment a user has (endpoint, keys, region), a fresh bucket, and fsspec's cached client dropped."""
    import s3fs

    env = {"AWS_ENDPOINT_URL": server, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0000", "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    client = boto3.client("s3", endpoint_url=server, region_name="us-east-1")
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    yield client, env
    s3fs.S3FileSystem.clear_instance_cache()


def _put(client, key: str, data: bytes) -> None:
    client.put_object(Bucket=BUCKET, Key=key, Body=data)


def _tensors(seed: int, n: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer{seed}.w{j}": rng.standard_normal((3 + j, 2)).astype(np.float32) for j in range(n)}


def _file(tmp_path: Path, tensors: dict[str, np.ndarray], name: str = "m.safetensors") -> bytes:
    path = tmp_path / name
    save_file(tensors, str(path))
    return path.read_bytes()


def _reference(data: bytes, tmp_path: Path) -> int:
    path = tmp_path / "ref.safetensors"
    path.write_bytes(data)
    with safe_open(str(path), "np") as handle:
        return sum(math.prod(handle.get_slice(k).get_shape()) for k in handle.keys())  # noqa: SIM118


def test_a_single_file(s3, tmp_path):
    client, _ = s3
    data = _file(tmp_path, _tensors(1))
    _put(client, "one/model.safetensors", data)
    inventory = open_source(f"s3://{BUCKET}/one/model.safetensors")
    assert Report(inventory).total == _reference(data, tmp_path) == 2 * (3 + 4 + 5)
    assert inventory.metadata["fetched_bytes"] == len(data)  # a small file: one read of its whole length


def test_a_sharded_prefix_with_index_and_config(s3, tmp_path):
    client, _ = s3
    weight_map, total = {}, 0
    for k in range(3):
        name = f"model-{k + 1:05d}-of-00003.safetensors"
        tensors = _tensors(10 + k)
        data = _file(tmp_path, tensors, name)
        _put(client, f"sharded/{name}", data)
        weight_map.update(dict.fromkeys(tensors, name))
        total += _reference(data, tmp_path)
    _put(client, "sharded/model.safetensors.index.json", json.dumps({"weight_map": weight_map}).encode())
    _put(client, "sharded/config.json", json.dumps({"model_type": "llama"}).encode())
    for url in (f"s3://{BUCKET}/sharded/", f"s3://{BUCKET}/sharded", f"s3://{BUCKET}/sharded/model.safetensors.index.json"):
        inventory = open_source(url)
        assert Report(inventory).total == total
        assert inventory.metadata["shards"] == 3
        assert inventory.pending.get("config") == {"model_type": "llama"}


def test_a_missing_key_and_an_empty_prefix(s3):
    with pytest.raises(ParamscopeError, match="no such object"):
        open_source(f"s3://{BUCKET}/nothing/here.safetensors")
    with pytest.raises(ParamscopeError, match="no objects under it"):
        open_source(f"s3://{BUCKET}/empty-prefix/")


def test_a_truncated_object_is_refused(s3, tmp_path):
    client, _ = s3
    data = _file(tmp_path, _tensors(2))
    _put(client, "cut/model.safetensors", data[: len(data) - 8])  # the header promises 8 bytes more
    with pytest.raises(ParamscopeError) as caught:
        open_source(f"s3://{BUCKET}/cut/model.safetensors")
    assert "model.safetensors" in str(caught.value)
    _put(client, "cut2/model.safetensors", data[:20])  # not even the header
    with pytest.raises(ParamscopeError, match="runs past the end of the file"):
        open_source(f"s3://{BUCKET}/cut2/model.safetensors")


def test_access_denied_is_one_line_without_the_secret(s3, server, tmp_path):
    import urllib.request

    client, env = s3
    _put(client, "private/model.safetensors", _file(tmp_path, _tensors(3)))
    # moto checks credentials once its no-auth allowance is 0: our key is unknown to it, so S3 answers 403
    def reset_auth(count: str) -> dict:
        request = urllib.request.Request(f"{server}/moto-api/reset-auth", data=count.encode(), method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    previous = reset_auth("0")["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
    try:
        result = run_cli(f"s3://{BUCKET}/private/model.safetensors", env=env)
    finally:
        reset_auth(str(previous))
    assert_refused(result, f"s3://{BUCKET}/private/model.safetensors", "access denied")
    assert SECRET not in result.stderr and SECRET not in result.stdout
    assert env["AWS_ACCESS_KEY_ID"] not in result.stderr


def test_the_cli_reads_an_s3_url(s3, tmp_path):
    client, env = s3
    data = _file(tmp_path, _tensors(4))
    _put(client, "cli/model.safetensors", data)
    result = run_cli(f"s3://{BUCKET}/cli/model.safetensors", "-f", "json", env=env)
    assert_clean(result, expect=0)
    assert json.loads(result.stdout)["total"] == _reference(data, tmp_path)


def test_a_missing_extra_names_it(monkeypatch):
    import builtins

    real = builtins.__import__

    def without_gcsfs(name, *args, **kwargs):
        if name == "gcsfs" or name.startswith("gcsfs."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_gcsfs)
    monkeypatch.delitem(sys.modules, "gcsfs", raising=False)
    with pytest.raises(ParamscopeError, match=r"pip install 'paramscope\[gcs\]'"):
        open_source("gs://bucket/model.safetensors")


def test_redact_cuts_secrets_and_query_strings(monkeypatch):
    from paramscope.sources.objectstore import redact

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    said = redact(f"failed with {SECRET} at https://x/y?X-Amz-Signature=abc&X-Amz-Credential=AKIA")
    assert SECRET not in said and "abc" not in said and "AKIA" not in said


def test_list_models_groups_a_prefix(s3, tmp_path):
    from paramscope.sources.objectstore import list_models

    client, _ = s3
    _put(client, "zoo/a/model.safetensors", _file(tmp_path, _tensors(5)))
    _put(client, "zoo/a/config.json", b"{}")
    _put(client, "zoo/b/x.gguf", b"GGUF")
    _put(client, "zoo/readme.md", b"hi")
    found = list(list_models(f"s3://{BUCKET}/zoo/"))
    assert [(source, files) for source, files, _ in found] == [
        (f"s3://{BUCKET}/zoo/a/", (f"s3://{BUCKET}/zoo/a/config.json", f"s3://{BUCKET}/zoo/a/model.safetensors")),
        (f"s3://{BUCKET}/zoo/b/x.gguf", (f"s3://{BUCKET}/zoo/b/x.gguf",)),
    ]
    assert all(key for _, _, key in found)
    with pytest.raises(ParamscopeError, match="no checkpoint objects"):
        list(list_models(f"s3://{BUCKET}/void/"))


def test_scan_over_a_bucket_prefix(s3, tmp_path):
    from paramscope import scan

    client, _ = s3
    first = _file(tmp_path, _tensors(20))
    _put(client, "scan/code/model.safetensors", first)
    _put(client, "scan/code/config.json", json.dumps({"auto_map": {"AutoModel": "modeling.M"}}).encode())
    second = _file(tmp_path, _tensors(21))
    _put(client, "scan/loose/a.safetensors", second)
    _put(client, "scan/loose/b.safetensors", b"\x08" + b"\x00" * 7 + b"{}      ")  # a valid file without tensors
    _put(client, "scan/loose/c.bin", b"not a pickle")
    cache = tmp_path / "cache.jsonl"
    rows = list(scan.scan([f"s3://{BUCKET}/scan/"], cache=str(cache)))
    by_source = {r["source"]: r for r in rows}
    assert list(by_source) == [f"s3://{BUCKET}/scan/code/", f"s3://{BUCKET}/scan/loose/a.safetensors",
                               f"s3://{BUCKET}/scan/loose/b.safetensors", f"s3://{BUCKET}/scan/loose/c.bin"]
    code = by_source[f"s3://{BUCKET}/scan/code/"]
    assert (code["parameters"], code["safety"]) == (_reference(first, tmp_path), "code")
    assert by_source[f"s3://{BUCKET}/scan/loose/a.safetensors"]["parameters"] == _reference(second, tmp_path)
    assert by_source[f"s3://{BUCKET}/scan/loose/c.bin"]["error"]
    # a rerun with the cache reads nothing whose ETag is unchanged
    assert list(scan.scan([f"s3://{BUCKET}/scan/"], cache=str(cache))) == rows
    entries = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(entries) == 3  # c.bin failed: not cached, tried again


def test_gguf_and_torch_zips_go_to_their_ranged_readers_when_present(s3, monkeypatch):
    from paramscope.records import Inventory
    from paramscope.sources import gguf

    client, _ = s3
    _put(client, "g/model.gguf", b"GGUF" + bytes(60))
    seen = []

    def read_ranged(reader, source):
        seen.append((reader.read(0, 4), reader.size(), reader.name, source))
        return Inventory(source=source, format="gguf", tensors=[], metadata={}, notes=[])

    monkeypatch.setattr(gguf, "read_ranged", read_ranged, raising=False)
    open_source(f"s3://{BUCKET}/g/model.gguf")
    assert seen == [(b"GGUF", 64, "model.gguf", f"s3://{BUCKET}/g/model.gguf")]
