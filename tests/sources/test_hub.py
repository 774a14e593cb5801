"""hf:org/name through the real huggingface_hub client, against a fake Hub on 127.0.0.1 (tests/sources/_fake_hub.py).

How the client is pointed at the fake Hub: paramscope reads HF_ENDPOINT, HF_HOME, HF_TOKEN and HF_HUB_OFFLINE
from the environment at call time (and passes endpoint/cache_dir to huggingface_hub explicitly), so
``monkeypatch.setenv`` in-process is reliable; nothing relies on huggingface_hub's import-time constants.
Every count is compared with the safetensors library reading the same files, or with Llama-2-70B's known total.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from paramscope.errors import ParamscopeError
from paramscope.report import Report
from paramscope.sources import open_source

sys.path.insert(0, str(Path(__file__).parent))
from _fake_hub import COMMIT, FakeHub, header_size, hub_environment, write_repo
from _st_helpers import LLAMA2_70B, LLAMA2_70B_PARAMS, llama_tensors, write_sharded, write_sparse

pytest.importorskip("huggingface_hub")

REPO = "acme/tiny"


@pytest.fixture
def hub():
    server = FakeHub().start()
    yield server
    server.stop()


@pytest.fixture
def env(monkeypatch, tmp_path, hub):
    return hub_environment(monkeypatch, tmp_path, hub)


def reference_total(paths: list[Path]) -> int:
    """Element count by the safetensors library itself."""
    total = 0
    for path in paths:
        with safe_open(str(path), "np") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def sharded_repo(directory: Path, shards: int = 3, with_config: bool = True) -> list[Path]:
    """Real (small) tensors in ``shards`` files plus an index and config.json."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    weight_map: dict[str, str] = {}
    paths = []
    total = 0
    for k in range(shards):
        name = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {f"layers.{k}.w{j}": rng.standard_normal((4 + j, 3)).astype(np.float32) for j in range(5)}
        tensors[f"layers.{k}.ids"] = np.arange(7, dtype=np.int64)
        save_file(tensors, str(directory / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
        total += sum(t.nbytes for t in tensors.values())
        paths.append(directory / name)
    files: dict[str, bytes | dict] = {
        "model.safetensors.index.json": {"metadata": {"total_size": total}, "weight_map": weight_map}
    }
    if with_config:
        files["config.json"] = {"model_type": "acme"}
    write_repo(directory, files)
    return paths


def shard_bytes(hub: FakeHub) -> int:
    return sum(n for name, n in hub.sent.items() if name.endswith(".safetensors"))


def test_sharded_repo_exact_count_and_headers_only(tmp_path, hub, env):
    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    inventory = open_source(f"hf:{REPO}")
    report = Report(inventory)
    assert report.total + report.buffers == reference_total(paths)
    assert inventory.source == f"hf:{REPO}"
    assert inventory.metadata["shards"] == 3
    assert inventory.metadata["commit"] == COMMIT
    assert inventory.metadata["fetched_bytes"] == hub.bytes_sent
    assert any("no weights were downloaded" in note for note in inventory.notes)
    for method, name, ranged in hub.requests:  # every shard GET is ranged and stops inside the header
        if method == "GET" and name.endswith(".safetensors"):
            last = int(ranged.split("-")[1])
            assert last < header_size(tmp_path / "repo" / name) * 1.1


def test_html_report_of_a_hub_repo(tmp_path, hub, env):
    """Issue 7 asks for every source kind: the CLI's HTML page of a Hub repository shows its exact total."""
    import re

    from paramscope.cli import main

    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    out = tmp_path / "report.html"
    assert main([f"hf:{REPO}", "--format", "html", "-o", str(out), "--no-progress"]) == 0
    page = out.read_text(encoding="utf-8")
    shown = int(re.search(r'id="total" data-value="(\d+)"', page).group(1))
    buffers = int(re.search(r'id="buffers" data-value="(\d+)"', page).group(1))
    assert shown + buffers == reference_total(paths)
    assert f"hf:{REPO}" in page


def test_llama2_70b_shaped_repo(tmp_path, hub, env):
    """723 tensors in 15 sparse shards (130 GB declared, a few KB on disk): the exact total, one ranged
    GET per shard, and shard bytes fetched within 1.1x the header sizes."""
    tensors = [(name, "BF16", shape) for name, shape in llama_tensors(**LLAMA2_70B)]
    index = write_sharded(tmp_path / "repo", tensors, 15)
    hub.add_repo("meta-llama/Llama-2-70b-hf", tmp_path / "repo")
    inventory = open_source("hf:meta-llama/Llama-2-70b-hf")
    assert len(inventory.tensors) == 723
    assert Report(inventory).total == LLAMA2_70B_PARAMS
    shards = sorted(index.parent.glob("*.safetensors"))
    headers = sum(header_size(p) for p in shards)
    assert shard_bytes(hub) <= 1.1 * headers
    assert all(hub.gets(p.name) == 1 for p in shards)


def test_revision_and_bare_repo_id(tmp_path, hub, env, monkeypatch):
    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    expected = reference_total(paths)
    for spec in (f"hf:{REPO}@{COMMIT}", f"hf:{REPO}@main"):
        report = Report(open_source(spec))
        assert report.total + report.buffers == expected
    monkeypatch.chdir(tmp_path)  # no such local path "acme/tiny" here
    inventory = open_source(REPO)
    assert Report(inventory).total + Report(inventory).buffers == expected
    assert inventory.source == f"hf:{REPO}"
    with pytest.raises(ParamscopeError, match="no such file or directory; as a Hugging Face repository: repository"):
        open_source("acme/no-such-thing")
    with pytest.raises(ParamscopeError, match="revision 'nope' not found"):
        open_source(f"hf:{REPO}@nope")


def test_bare_path_like_name_is_not_sent_to_the_hub(tmp_path, hub, env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamscopeError, match="no such file"):
        open_source("models/missing.safetensors")
    assert hub.requests == []


def test_single_file_repo_with_long_header_takes_a_second_read(tmp_path, hub, env):
    """No index: model.safetensors, whose header (long metadata) is longer than the first read."""
    repo = tmp_path / "repo"
    repo.mkdir()
    tensors = {f"t{i}": np.zeros((i + 1, 2), dtype=np.float16) for i in range(20)}
    save_file(tensors, str(repo / "model.safetensors"), metadata={"blob": "x" * 100_000})
    hub.add_repo(REPO, repo)
    inventory = open_source(f"hf:{REPO}")
    assert Report(inventory).total == reference_total([repo / "model.safetensors"])
    assert hub.gets("model.safetensors") == 2
    assert shard_bytes(hub) == header_size(repo / "model.safetensors")  # the first read ends inside the header
    assert inventory.metadata["__metadata__"]["blob"] == "x" * 100_000


def test_5xx_is_retried(tmp_path, hub, env):
    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    hub.fail[paths[1].name] = 2
    hub.fail["model.safetensors.index.json"] = 1
    report = Report(open_source(f"hf:{REPO}"))
    assert report.total + report.buffers == reference_total(paths)
    assert hub.gets(paths[1].name) == 3


def test_persistent_5xx_is_a_one_line_error(tmp_path, hub, env):
    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    hub.fail[paths[2].name] = 99
    with pytest.raises(ParamscopeError) as info:
        open_source(f"hf:{REPO}")
    message = str(info.value)
    assert "\n" not in message
    assert paths[2].name in message and "HTTP 500" in message and "3 attempts" in message


def test_timeout_is_retried(tmp_path, hub, env, monkeypatch):
    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    monkeypatch.setenv("PARAMSCOPE_HTTP_TIMEOUT", "0.3")
    hub.stall_seconds = 1.0
    hub.stall[paths[0].name] = 1
    report = Report(open_source(f"hf:{REPO}"))
    assert report.total + report.buffers == reference_total(paths)
    assert hub.gets(paths[0].name) == 2


def test_truncated_body_is_retried_then_refused(tmp_path, hub, env):
    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    hub.truncate[paths[0].name] = 1
    report = Report(open_source(f"hf:{REPO}"))
    assert report.total + report.buffers == reference_total(paths)
    hub.truncate[paths[0].name] = 3
    with pytest.raises(ParamscopeError, match="truncated"):
        open_source(f"hf:{REPO}")


def test_server_ignoring_range_never_sends_the_weights(tmp_path, hub, env):
    """A 2 GB (sparse) shard served whole: paramscope reads its header and hangs up."""
    repo = tmp_path / "repo"
    repo.mkdir()
    tensors = [(f"w{i}", "F32", (16384, 8192)) for i in range(4)]
    size = write_sparse(repo / "model.safetensors", tensors)
    hub.add_repo(REPO, repo)
    hub.ignore_range = True
    inventory = open_source(f"hf:{REPO}")
    assert Report(inventory).total == 4 * 16384 * 8192
    assert inventory.metadata["fetched_bytes"] < 200_000
    assert shard_bytes(hub) < 64 * 1024 * 1024 < size  # what the socket buffers took before the hang-up


def test_missing_shard_names_the_file(tmp_path, hub, env):
    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    hub.missing.add(paths[1].name)
    with pytest.raises(ParamscopeError, match=rf"{paths[1].name}: not found \(404\)"):
        open_source(f"hf:{REPO}")


def test_authentication(tmp_path, hub, env, monkeypatch):
    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    hub.token = "s3cret"
    with pytest.raises(ParamscopeError, match=r"authentication required \(set HF_TOKEN\)"):
        open_source(f"hf:{REPO}")
    monkeypatch.setenv("HF_TOKEN", "s3cret")
    report = Report(open_source(f"hf:{REPO}"))
    assert report.total + report.buffers == reference_total(paths)


def test_shard_only_auth_failure(tmp_path, hub, env):
    """config.json and the index download, then a shard answers 401: the ranged read names the shard."""
    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    hub.token, hub.token_scope = "s3cret", ".safetensors"
    with pytest.raises(ParamscopeError) as info:
        open_source(f"hf:{REPO}")
    # shards are read in parallel: whichever answers first names itself
    assert any(f"{p.name}: authentication required (set HF_TOKEN)" in str(info.value) for p in paths)


def test_redirect_to_blobs_is_followed(tmp_path, hub, env):
    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    hub.redirect = True
    report = Report(open_source(f"hf:{REPO}"))
    assert report.total + report.buffers == reference_total(paths)


def test_unknown_repository(hub, env):
    with pytest.raises(ParamscopeError, match="repository not found"):
        open_source("hf:acme/nothing-here")


def test_cache_and_offline(tmp_path, hub, env, monkeypatch):
    """Cached shards are read from disk with no request; offline, a shard not cached is a clear error."""
    from huggingface_hub import hf_hub_download

    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    expected = reference_total(paths)
    open_source(f"hf:{REPO}")  # caches config.json and the index, not the shards
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.reset_counts()
    with pytest.raises(ParamscopeError, match=r"offline \(HF_HUB_OFFLINE\).*not in the local"):
        open_source(f"hf:{REPO}")
    assert hub.requests == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    for path in paths:
        hf_hub_download(REPO, path.name, cache_dir=str(env), endpoint=hub.url)
    hub.reset_counts()
    inventory = open_source(f"hf:{REPO}")
    report = Report(inventory)
    assert report.total + report.buffers == expected
    assert all(hub.gets(p.name) == 0 for p in paths)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.reset_counts()
    inventory = open_source(f"hf:{REPO}")
    assert Report(inventory).total + Report(inventory).buffers == expected
    assert hub.requests == [] and inventory.metadata["fetched_bytes"] == 0


TINY_LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 16,
              "num_hidden_layers": 2, "intermediate_size": 32, "num_attention_heads": 2, "num_key_value_heads": 2,
              "tie_word_embeddings": False}


def test_repo_without_safetensors_falls_back_to_config(tmp_path, hub, env):
    """Only config.json (and TensorFlow weights, which are not read): the architecture built on meta."""
    pytest.importorskip("paramscope.sources.config")
    transformers = pytest.importorskip("transformers")
    import torch

    write_repo(tmp_path / "repo", {"config.json": TINY_LLAMA, "tf_model.h5": b"x" * 1000})
    hub.add_repo(REPO, tmp_path / "repo")
    inventory = open_source(f"hf:{REPO}")
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**TINY_LLAMA))
    assert Report(inventory).total == sum(p.numel() for p in model.parameters())
    assert hub.gets("tf_model.h5") == 0
    assert any("built from config.json" in note for note in inventory.notes)


def test_repo_with_nothing(tmp_path, hub, env):
    write_repo(tmp_path / "repo", {"README.md": b"hello"})
    hub.add_repo(REPO, tmp_path / "repo")
    with pytest.raises(ParamscopeError, match=r"no safetensors, PyTorch or GGUF weights and no config\.json"):
        open_source(f"hf:{REPO}")


@pytest.mark.parametrize(
    ("weight_map", "message"),
    [
        ({"a": "../evil.safetensors"}, "not a file name inside"),
        ({"a": "/etc/passwd"}, "not a file name inside"),
        ({"a": "https://elsewhere/x.safetensors"}, "not a file name inside"),
    ],
)
def test_hostile_index(tmp_path, hub, env, weight_map, message):
    write_repo(tmp_path / "repo", {"model.safetensors.index.json": {"weight_map": weight_map}})
    hub.add_repo(REPO, tmp_path / "repo")
    with pytest.raises(ParamscopeError, match=message):
        open_source(f"hf:{REPO}")


def test_index_that_disagrees_with_the_headers(tmp_path, hub, env):
    paths = sharded_repo(tmp_path / "repo")
    index_path = tmp_path / "repo" / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["ghost.weight"] = paths[0].name
    index_path.write_text(json.dumps(index))
    hub.add_repo(REPO, tmp_path / "repo")
    with pytest.raises(ParamscopeError, match=r"'ghost\.weight'.*no shard holds it"):
        open_source(f"hf:{REPO}")


def test_header_that_lies_about_the_file_size(tmp_path, hub, env):
    repo = tmp_path / "repo"
    repo.mkdir()
    save_file({"w": np.zeros((4, 4), dtype=np.float32)}, str(repo / "model.safetensors"))
    with open(repo / "model.safetensors", "r+b") as handle:
        handle.truncate(os.path.getsize(repo / "model.safetensors") - 10)
    hub.add_repo(REPO, repo)
    with pytest.raises(ParamscopeError, match="truncated"):
        open_source(f"hf:{REPO}")


@pytest.mark.parametrize("spec", ["hf:", "hf:a/b/c", "hf:-bad/x", "hf:acme/x@", "hf:acme/x@a b"])
def test_bad_specs(spec):
    with pytest.raises(ParamscopeError):
        open_source(spec)


def test_a_malformed_config_json_is_one_line_naming_the_repository(tmp_path, hub, env):
    """A repository's config.json gets the rules of a local one (size, nesting, UTF-8, JSON)."""
    sharded_repo(tmp_path / "repo")
    write_repo(tmp_path / "repo", {"config.json": b"{broken"})
    hub.add_repo(REPO, tmp_path / "repo")
    with pytest.raises(ParamscopeError) as info:
        open_source(f"hf:{REPO}")
    assert str(info.value).startswith(f"hf:{REPO}: config.json: malformed JSON: ")
    sharded_repo(tmp_path / "deep")
    write_repo(tmp_path / "deep", {"config.json": b"[" * 100 + b"]" * 100})
    hub.add_repo("acme/deep", tmp_path / "deep")
    with pytest.raises(ParamscopeError, match=r"^hf:acme/deep: config\.json: .*nested"):
        open_source("hf:acme/deep")


def test_small_files_land_in_the_cache_layout_huggingface_hub_reads(tmp_path, hub, env):
    """config.json and the index are fetched by paramscope (capped), stored as huggingface_hub stores them."""
    from huggingface_hub import try_to_load_from_cache

    sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    open_source(f"hf:{REPO}")
    assert hub.gets("config.json") == 1 and hub.gets("model.safetensors.index.json") == 1
    for name in ("config.json", "model.safetensors.index.json"):
        cached = try_to_load_from_cache(REPO, name, cache_dir=str(env))
        assert Path(cached).read_bytes() == (tmp_path / "repo" / name).read_bytes()
        assert Path(cached).is_symlink() and Path(cached).resolve().parent.name == "blobs"
    storage = env / "models--acme--tiny"
    assert (storage / "refs" / "main").read_text() == COMMIT
    hub.reset_counts()
    open_source(f"hf:{REPO}@{COMMIT}")  # a commit never changes: its cached small files make no request
    assert hub.gets("config.json") == 0 and hub.gets("model.safetensors.index.json") == 0


def test_a_missing_index_is_remembered_for_offline_runs(tmp_path, hub, env, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    save_file({"w": np.zeros((3, 4), dtype=np.float32)}, str(repo / "model.safetensors"))
    hub.add_repo(REPO, repo)
    assert Report(open_source(f"hf:{REPO}")).total == 12
    assert (env / "models--acme--tiny" / ".no_exist" / COMMIT / "model.safetensors.index.json").is_file()


def test_hub_redirect_off_host_drops_the_token(tmp_path, hub, env, monkeypatch):
    paths = sharded_repo(tmp_path / "repo")
    hub.add_repo(REPO, tmp_path / "repo")
    hub.token, hub.token_scope = "s3cret", ".json"  # the CDN's blobs need no token, as on the Hub
    hub.redirect, hub.redirect_base = True, hub.url.replace("127.0.0.1", "localhost")
    monkeypatch.setenv("HF_TOKEN", "s3cret")
    report = Report(open_source(f"hf:{REPO}"))
    assert report.total + report.buffers == reference_total(paths)
    seen = dict(hub.authorization)
    assert seen["config.json"] == "Bearer s3cret"
    assert all(seen[p.name] is None for p in paths)  # the blobs on the other host got no token
    assert all(seen[f"/{REPO}/resolve/{COMMIT}/{p.name}"] == "Bearer s3cret" for p in paths)


def test_an_unreachable_hub_is_one_line_within_the_budget(monkeypatch, tmp_path):
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hub_environment(monkeypatch, tmp_path, type("H", (), {"url": f"http://127.0.0.1:{port}"})())
    start = time.monotonic()
    with pytest.raises(ParamscopeError, match=r"cannot connect.*after 3 attempts") as info:
        open_source(f"hf:{REPO}")
    assert "\n" not in str(info.value)
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize(("revision", "kept"), [
    ("main", True), ("refs/pr/1", True), ("v1.0", True), ("a..b", True),
    ("..", False), ("../../outside", False), ("a/../b", False), ("a/..", False), (".", False), ("a/./b", False),
])
def test_only_ref_names_below_refs_are_written(revision, kept):
    from paramscope.sources.hub import _REF

    assert bool(_REF.fullmatch(revision)) is kept
