"""Remote PyTorch checkpoints (issue 15, item 2): ``.bin``/``.pt``/``.pth``/``.ckpt`` URLs and Hub repositories
that ship only ``pytorch_model.bin`` (or its sharded index), read by ranged reads of the zip's end records,
directory and ``data.pkl`` (never a storage), through the same allow-list pickle machine as a local file.
Counts are compared with ``torch.load`` of the same file and with paramscope's local read of it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from paramscope.errors import ParamscopeError
from paramscope.report import Report
from paramscope.sources import open_source, remote, torch_pickle
from paramscope.sources.ranged import CachedFile, FileRangeReader

sys.path.insert(0, str(Path(__file__).parent))
from _fake_hub import write_repo

torch = pytest.importorskip("torch")
pytest.importorskip("huggingface_hub")

CONFIG = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 64, "n_layer": 2, "n_head": 2,
          "vocab_size": 1000, "n_positions": 128}




def state_dict(layers: int = 2, width: int = 256, seed: int = 0) -> dict[str, torch.Tensor]:
    """A model's state dict with an embedding tied to the head (one storage, two names), as GPT-2 saves it."""
    torch.manual_seed(seed)
    embed = torch.randn(1000, width)
    out = {"wte.weight": embed}
    for i in range(layers):
        out[f"h.{i}.attn.weight"] = torch.randn(width, 3 * width)
        out[f"h.{i}.attn.bias"] = torch.zeros(3 * width)
        out[f"h.{i}.ln.weight"] = torch.ones(width, dtype=torch.float16)
    out["lm_head.weight"] = embed
    return out


def torch_numel(path: Path) -> int:
    """Elements by torch.load itself, each storage once (a tied tensor counted once)."""
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    seen = {}
    for tensor in loaded.values():
        seen.setdefault((tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tensor.shape), tensor.numel())
    return sum(seen.values())


def records(inventory) -> list[tuple]:
    return [(t.name, t.shape, t.dtype, t.tie is not None) for t in inventory.tensors]


def test_a_bin_url_matches_torch_and_the_local_read(hub, tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save(state_dict(), path)
    inventory = open_source(f"{hub.url}/plain/pytorch_model.bin")
    assert Report(inventory).total == torch_numel(path) == 1000 * 256 + 2 * (256 * 768 + 768 + 256)
    assert records(inventory) == records(torch_pickle.read(path))
    assert inventory.format == "pytorch" and {t.origin for t in inventory.tensors} == {"pytorch_model.bin"}
    # the first 64 KiB (data.pkl, the small records) and the tail (end records, directory): two requests
    assert hub.gets("pytorch_model.bin") == 2
    assert hub.sent["pytorch_model.bin"] <= 2 * torch_pickle.REMOTE_READ_AHEAD + 65_557
    assert path.stat().st_size > 2_000_000
    assert any(note.startswith("Read 1 PyTorch zip header(s) over HTTP") for note in inventory.notes)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_other_suffixes_and_a_checkpoint_dict(hub, tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    torch.save({"epoch": 3, "state_dict": state_dict(1, 64)}, path)
    inventory = open_source(f"{hub.url}/plain/model{suffix}")
    assert records(inventory) == records(torch_pickle.read(path))
    assert Report(inventory).total == 1000 * 64 + 64 * 192 + 192 + 64


def test_a_legacy_file_url(hub, tmp_path):
    path = tmp_path / "old.pt"
    torch.save(state_dict(1, 64), path, _use_new_zipfile_serialization=False)
    inventory = open_source(f"{hub.url}/plain/old.pt")
    assert records(inventory) == records(torch_pickle.read(path))
    assert Report(inventory).total == torch_numel(path)


def write_bin_repo(repo: Path, files: dict[str, str] | None = None) -> Path:
    """A repository holding only ``pytorch_model.bin`` (and ``files``, e.g. a config.json); the .bin's path."""
    repo.mkdir()
    torch.save(state_dict(), repo / "pytorch_model.bin")
    if files:
        write_repo(repo, files)
    return repo / "pytorch_model.bin"


def test_a_hub_repository_with_only_pytorch_model_bin(hub, tmp_path):
    repo = tmp_path / "repo"
    write_bin_repo(repo, {"config.json": CONFIG})
    hub.add_repo("acme/old", repo)
    inventory = open_source("hf:acme/old")
    assert Report(inventory).total == torch_numel(repo / "pytorch_model.bin")
    assert inventory.format == "pytorch" and inventory.pending["config"] == CONFIG
    assert hub.gets("pytorch_model.bin") == 2 and hub.gets("api") == 1
    assert hub.gets("pytorch_model.bin.index.json") == 0  # the listing said there is none


def test_without_the_listing_api_the_usual_names_are_tried(hub, tmp_path):
    repo = tmp_path / "repo"
    write_bin_repo(repo)
    hub.add_repo("acme/old", repo)
    hub.no_api = True
    inventory = open_source("hf:acme/old")
    assert Report(inventory).total == torch_numel(repo / "pytorch_model.bin")
    assert hub.gets("pytorch_model.bin.index.json") == 1


def write_sharded_bin(repo: Path) -> list[Path]:
    """Two shards, each with a storage keyed "0" (two different storages) and an index."""
    repo.mkdir(parents=True, exist_ok=True)
    shards = [{"a.weight": torch.randn(10, 20), "a.bias": torch.randn(20)},
              {"b.weight": torch.randn(30, 40), "b.bias": torch.randn(40)}]
    paths, weight_map = [], {}
    for k, shard in enumerate(shards):
        name = f"pytorch_model-{k + 1:05d}-of-00002.bin"
        torch.save(shard, repo / name)
        paths.append(repo / name)
        weight_map.update(dict.fromkeys(shard, name))
    (repo / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": 0},
                                                                   "weight_map": weight_map}))
    return paths


def test_a_sharded_bin_repository_and_index_url(hub, tmp_path):
    paths = write_sharded_bin(tmp_path / "repo")
    hub.add_repo("acme/sharded", tmp_path / "repo")
    hub.plain = tmp_path / "repo"
    expected = sum(torch_numel(p) for p in paths)
    for source in ("hf:acme/sharded", f"{hub.url}/plain/pytorch_model.bin.index.json",
                   "hf:acme/sharded:pytorch_model.bin.index.json"):
        inventory = open_source(source)
        assert Report(inventory).total == expected == 10 * 20 + 20 + 30 * 40 + 40, source
        assert [t.origin for t in inventory.tensors] == [p.name for p in paths for _ in range(2)]
        assert all(t.tie is None for t in inventory.tensors)  # storage "0" of two shards is two storages
        assert inventory.metadata["shards"] == 2


def test_an_index_naming_a_tensor_its_shard_lacks_is_one_line(hub, tmp_path):
    write_sharded_bin(tmp_path / "repo")
    index = json.loads((tmp_path / "repo" / "pytorch_model.bin.index.json").read_text())
    index["weight_map"]["ghost.weight"] = "pytorch_model-00001-of-00002.bin"
    (tmp_path / "repo" / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    hub.plain = tmp_path / "repo"
    with pytest.raises(ParamscopeError, match=r"weight_map puts 'ghost\.weight' in "
                                              r"'pytorch_model-00001-of-00002\.bin', but no shard holds it"):
        open_source(f"{hub.url}/plain/pytorch_model.bin.index.json")


@pytest.mark.parametrize(("knob", "count", "ok"), [("fail", 2, True), ("fail", 3, False), ("truncate", 1, True),
                                                     ("stall", 1, True)])
def test_faults(hub, tmp_path, knob, count, ok):
    path = tmp_path / "m.bin"
    torch.save(state_dict(1, 64), path)
    getattr(hub, knob)["m.bin"] = count
    if ok:
        assert records(open_source(f"{hub.url}/plain/m.bin")) == records(torch_pickle.read(path))
    else:
        with pytest.raises(ParamscopeError, match=r"m\.bin: server answered HTTP 500 \(after 3 attempts\)"):
            open_source(f"{hub.url}/plain/m.bin")


def test_a_server_ignoring_range_is_refused_before_the_weights(hub, tmp_path, monkeypatch):
    """The zip's directory is at its end: reading it from a server that ignores Range would mean downloading
    the whole checkpoint; refused (here past 1 KiB instead of 32 MiB, to keep the file small)."""
    monkeypatch.setattr(remote, "MAX_IGNORED_RANGE_SKIP", 1024)
    torch.save(state_dict(), tmp_path / "m.bin")
    hub.ignore_range = True
    with pytest.raises(ParamscopeError, match=r"m\.bin: the server ignores Range: reading bytes from [0-9,]+ on "
                                              r"would download every byte before them \(refused\)"):
        open_source(f"{hub.url}/plain/m.bin")


def test_access_denied_is_one_line(hub, tmp_path):
    torch.save(state_dict(1, 64), tmp_path / "m.bin")
    hub.token = "secret"
    with pytest.raises(ParamscopeError, match=r"m\.bin: authentication required"):
        open_source(f"{hub.url}/plain/m.bin")


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_a_truncated_zip_is_one_line(hub, tmp_path, cut):
    path = tmp_path / "m.bin"
    torch.save(state_dict(1, 64), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ParamscopeError, match=r"zip end-of-directory record not found"):
        open_source(f"{hub.url}/plain/m.bin")


def test_not_a_torch_file_is_one_line(hub, tmp_path):
    (tmp_path / "m.bin").write_bytes(b"\x00" * 5000)
    with pytest.raises(ParamscopeError, match=r"not a torch\.save file"):
        open_source(f"{hub.url}/plain/m.bin")


def test_the_cached_file_serves_reads_from_what_it_fetched(tmp_path):
    path = tmp_path / "m.bin"
    torch.save(state_dict(), path)
    data = path.read_bytes()
    with open(path, "rb") as handle:
        reader = FileRangeReader(handle, "m.bin")
        cached = CachedFile(reader, read_ahead=1000)
        cached.seek(10)
        assert cached.read(5) == data[10:15] and reader.requests == 1
        assert cached.read(100) == data[15:115] and reader.requests == 1
        cached.seek(-30, 2)
        assert cached.read() == data[-30:] and reader.requests == 2
        cached.seek(len(data) - 10)
        assert cached.read(100) == data[-10:]
        inventory = torch_pickle.read_ranged(reader, "x")
    assert records(inventory) == records(torch_pickle.read(path))


def test_offline_a_bin_repository_falls_back_to_its_cached_config(hub, tmp_path, monkeypatch):
    """Ranged reads are not cached: offline, the .bin cannot be read, and the config.json that is cached is
    what is left (as for a safetensors repository whose headers are not cached)."""
    pytest.importorskip("transformers")
    repo = tmp_path / "repo"
    write_bin_repo(repo, {"config.json": CONFIG})
    hub.add_repo("acme/old", repo)
    online = open_source("hf:acme/old")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.reset_counts()
    offline = open_source("hf:acme/old")
    assert hub.requests == []
    assert offline.format != "pytorch" and any("built from config.json" in n for n in offline.notes)
    assert Report(online).total == torch_numel(repo / "pytorch_model.bin")


def test_offline_a_sharded_bin_repository_names_the_missing_shard(hub, tmp_path, monkeypatch):
    write_sharded_bin(tmp_path / "repo")
    hub.add_repo("acme/sharded", tmp_path / "repo")
    open_source("hf:acme/sharded")  # caches the index
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ParamscopeError, match=r"offline \(HF_HUB_OFFLINE\) and pytorch_model-00001-of-00002\.bin "
                                              r"is not in the local Hugging Face cache"):
        open_source("hf:acme/sharded:pytorch_model.bin.index.json")


def test_403_is_one_line_at_once(hub, tmp_path):
    torch.save(state_dict(1, 64), tmp_path / "m.bin")
    hub.forbid = {"m.bin"}
    with pytest.raises(ParamscopeError, match=r"m\.bin: access denied \(set HF_TOKEN to a token with access\)"):
        open_source(f"{hub.url}/plain/m.bin")
    assert hub.gets("m.bin") == 1


def test_a_legacy_file_fetches_its_pickles_and_each_storage_count_only(hub, tmp_path):
    """Legacy (pre-1.6) files: the first 64 KiB (the size), the pickles by the local reader's first read
    (1 MiB), then each storage's 8-byte element count not already fetched (checked against the pickle):
    the rest of the storages' data is never fetched."""
    path = tmp_path / "old.pt"
    sd = {f"w{i}": torch.randn(400, 400) for i in range(3)}  # 640,000 bytes per storage
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    inventory = open_source(f"{hub.url}/plain/old.pt")
    assert Report(inventory).total == torch_numel(path) == 480_000
    assert path.stat().st_size > 1_920_000
    assert hub.gets("old.pt") == 3  # the third storage's count lies past the first MiB
    assert hub.sent["old.pt"] == torch_pickle.REMOTE_READ_AHEAD + torch_pickle.LEGACY_FIRST_READ + 8
