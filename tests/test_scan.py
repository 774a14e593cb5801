"""paramscope.scan: a directory of 200 mixed checkpoints (every format, some broken, some with pickled callables)
and a fake Hub organisation of 50 repositories give the right rows and verdicts; the cache, --resume, shards and
the Dask recipe give the same rows. Expected counts are the element counts of the arrays written here."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from paramscope import scan

torch = pytest.importorskip("torch")
from safetensors.numpy import save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "sources"))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo never run",))


def _arrays(i: int, n: int = 2) -> dict[str, np.ndarray]:
    return {f"l{i}.w{j}": np.zeros((2 + j, 3 + i % 5), dtype=np.float32) for j in range(n)}


def _numel(arrays: dict[str, np.ndarray]) -> int:
    return sum(a.size for a in arrays.values())


def make_tree(root: Path, n: int = 200) -> dict[str, tuple[int | None, str]]:
    """``n`` models under ``root``, one kind per ``i % 10``: source -> (parameters, or None when the row must hold
    an error; the safety verdict)."""
    expected: dict[str, tuple[int | None, str]] = {}
    for i in range(n):
        kind = i % 10
        arrays = _arrays(i)
        group = root / f"g{i // 50}"
        group.mkdir(parents=True, exist_ok=True)
        if kind == 0:  # a safetensors file
            path = group / f"m{i}.safetensors"
            save_file(arrays, str(path))
            expected[str(path)] = (_numel(arrays), "safe")
        elif kind == 1:  # a sharded set with an index (and, every other time, remote code in config.json)
            model = group / f"sharded{i}"
            model.mkdir()
            weight_map = {}
            for k, (name, array) in enumerate(arrays.items()):
                shard = f"model-{k + 1:05d}-of-{len(arrays):05d}.safetensors"
                save_file({name: array}, str(model / shard))
                weight_map[name] = shard
            (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
            code = i % 20 == 1
            if code:
                (model / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "modeling.M"}}))
            expected[str(model)] = (_numel(arrays), "code" if code else "safe")
        elif kind == 2:  # GGUF
            gguf = pytest.importorskip("gguf")
            path = group / f"m{i}.gguf"
            writer = gguf.GGUFWriter(str(path), "llama")
            for name, array in arrays.items():
                writer.add_tensor(name, array)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
            expected[str(path)] = (_numel(arrays), "safe")
        elif kind == 3:  # NumPy archive
            path = group / f"m{i}.npz"
            np.savez(path, **arrays)
            expected[str(path)] = (_numel(arrays), "safe")
        elif kind == 4:  # torch.save zip
            path = group / f"m{i}.pt"
            torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
            expected[str(path)] = (_numel(arrays), "safe")
        elif kind == 5:  # legacy torch.save
            path = group / f"m{i}.bin"
            torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path, _use_new_zipfile_serialization=False)
            expected[str(path)] = (_numel(arrays), "safe")
        elif kind == 6:  # a checkpoint that pickles a class beside its tensors
            path = group / f"m{i}.pth"
            torch.save({"state": {k: torch.from_numpy(v) for k, v in arrays.items()}, "args": argparse.Namespace()},
                       path)
            expected[str(path)] = (None, "needs-trust")
        elif kind == 7:  # a pickle that calls os.system
            path = group / f"m{i}.pkl"
            path.write_bytes(pickle.dumps(_Evil(), protocol=4))
            expected[str(path)] = (None, "needs-trust")
        elif kind == 8:  # broken: a cut safetensors file, or garbage named like a checkpoint
            path = group / f"m{i}.safetensors" if i % 20 == 8 else group / f"m{i}.ckpt"
            if i % 20 == 8:
                save_file(arrays, str(path))
                path.write_bytes(path.read_bytes()[:-4])
            else:
                path.write_bytes(b"\x00garbage" * 10)
            expected[str(path)] = (None, "safe" if i % 20 == 8 else "unreadable")
        else:  # TorchScript: a program
            path = group / f"m{i}.ts.pt"
            torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2 + i % 3)), path)
            expected[str(path)] = (3 * (2 + i % 3) + 2 + i % 3, "code")
    (root / "README.md").write_text("not a model")
    return expected


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    return root, make_tree(root)


def test_two_hundred_mixed_checkpoints(tree):
    root, expected = tree
    rows = list(scan.scan([str(root)], workers=4))
    assert len(rows) == len(expected) == 200
    assert sorted(r["source"] for r in rows) == sorted(expected)
    for row in rows:
        params, verdict = expected[row["source"]]
        assert row["safety"] == verdict, row
        if params is None:
            assert row["error"] is not None and row["parameters"] is None, row
        else:
            assert row["error"] is None, row
            assert row["parameters"] == params, row
    errors = sum(1 for r in rows if r["error"] is not None)
    assert errors == sum(1 for p, _ in expected.values() if p is None) == 60
    trust = next(r for r in rows if r["source"].endswith(".pkl"))
    assert trust["safety_detail"] == (f"needs-trust: imports {os.system.__module__}.system; "
                                      "torch.load(weights_only=True) refuses it too")
    sharded = next(r for r in rows if r["source"].endswith("sharded1"))
    assert sharded["files"] == 2  # two shards (the index and config.json hold no weights)
    # the order is the walk's (directories in name order), the same on every run
    assert [r["source"] for r in rows] == [m.source for m in scan.models([str(root)])]


def test_the_cache_reads_only_what_changed(tree, tmp_path, monkeypatch):
    root, _ = tree
    cache = tmp_path / "cache.jsonl"
    first = list(scan.scan([str(root / "g0")], cache=str(cache)))
    reads = []
    real = scan.read_row
    monkeypatch.setattr(scan, "read_row", lambda model, **kw: reads.append(model.source) or real(model, **kw))
    assert list(scan.scan([str(root / "g0")], cache=str(cache))) == first
    failing = sorted(r["source"] for r in first if r["error"] is not None)
    assert sorted(reads) == failing  # failures are tried again; every other row came from the cache
    touched = root / "g0" / "m0.safetensors"
    os.utime(touched, ns=(1, 1))
    reads.clear()
    list(scan.scan([str(root / "g0")], cache=str(cache)))
    assert sorted(reads) == sorted([*failing, str(touched)])
    reads.clear()
    list(scan.scan([str(root / "g0")], cache=str(cache), resume=True))
    assert sorted(reads) == failing  # --resume trusts the cache whatever changed


def test_shards_partition_the_models(tree):
    root, expected = tree
    parts = [[r["source"] for r in scan.scan([str(root)], shard=(i, 3), workers=2)] for i in range(3)]
    assert sorted(s for part in parts for s in part) == sorted(expected)
    assert all(parts)
    assert scan.shard_of("s3://bucket/x/", 7) == scan.shard_of("s3://bucket/x/", 7)


def test_a_list_file_and_a_missing_target(tree, tmp_path):
    _, expected = tree
    listing = tmp_path / "list.txt"
    some = sorted(expected)[:3]
    listing.write_text("# models\n" + "\n".join(some) + f"\n\n{tmp_path / 'missing.safetensors'}\n")
    rows = list(scan.scan([f"@{listing}"]))
    assert [r["source"] for r in rows] == [*some, str(tmp_path / "missing.safetensors")]
    assert rows[-1]["error"] is not None


def test_names_are_escaped(tmp_path):
    path = tmp_path / "evil\x1b[31m.safetensors"
    save_file({"w\x07": np.zeros(3, dtype=np.float32)}, str(path))
    (row,) = scan.scan([str(tmp_path)])
    assert "\x1b" not in row["source"] and row["parameters"] == 3


def test_gates():
    row = {"error": None, "safety": "needs-trust", "parameters": 10, "stored_bytes": 40}
    assert scan.failures(row, ("error",)) == []
    assert scan.failures(row, ("unsafe", "unknown"), max_params=9, max_bytes=40) == ["unsafe", "max-params"]
    assert scan.failures({**row, "error": "x", "safety": "unreadable"}, ("error", "unknown")) == ["error", "unknown"]


def test_rows_stream_in_a_bounded_window(tmp_path, monkeypatch):
    """At most 2 * workers models are in flight: the listing is consumed as rows go out, not first."""
    listed = []

    def endless(target, *, depth=0):
        for k in range(10_000):
            listed.append(k)
            yield scan.Model(f"missing-{k}.safetensors")

    monkeypatch.setattr(scan, "expand", endless)
    rows = scan.scan(["x"], workers=2)
    for _ in range(3):
        next(rows)
    rows.close()
    assert len(listed) <= 3 + 2 * 2 + 1


# ---- a fake Hub organisation ---------------------------------------------------------------------------


@pytest.fixture
def hub_org(monkeypatch, tmp_path):
    pytest.importorskip("huggingface_hub")
    from _fake_hub import FakeHub, hub_environment

    hub = FakeHub().start()
    hub_environment(monkeypatch, tmp_path, hub)
    expected = {}
    for i in range(50):
        repo = tmp_path / "repos" / f"m{i}"
        repo.mkdir(parents=True)
        arrays = _arrays(i)
        if i % 10 != 7:  # every tenth repository (from 7) has no weights: its row holds the error
            save_file(arrays, str(repo / "model.safetensors"))
        if i == 3:  # remote code: transformers would run the repository's modeling.py
            (repo / "config.json").write_text(json.dumps({"architectures": ["M"], "model_type": "custom-m",
                                                          "auto_map": {"AutoModel": "modeling.M"}}))
        hub.add_repo(f"acme/m{i}", repo)
        expected[f"hf:acme/m{i}"] = _numel(arrays) if i % 10 != 7 else None
    other = tmp_path / "repos" / "other"
    other.mkdir()
    save_file(_arrays(1), str(other / "model.safetensors"))
    hub.add_repo("rival/m1", other)
    yield expected
    hub.stop()


def test_a_hub_organisation_of_fifty(hub_org):
    rows = list(scan.scan(["hf:acme/*"], workers=8))
    assert sorted(r["source"] for r in rows) == sorted(hub_org)  # rival/m1 is another organisation's
    for row in rows:
        if hub_org[row["source"]] is None:
            assert row["error"] is not None
        else:
            verdict = "code" if row["source"] == "hf:acme/m3" else "safe"
            assert (row["parameters"], row["safety"], row["error"]) == (hub_org[row["source"]], verdict, None), row
    assert [r["source"] for r in scan.scan(["hf:acme/m1*"])] == sorted(
        (s for s in hub_org if s.startswith("hf:acme/m1")), key=lambda s: s)
    # a search across organisations: rival/m1 too
    assert [r["source"] for r in scan.scan(["hf:*/m1"])] == ["hf:acme/m1", "hf:rival/m1"]
    (row,) = scan.scan(["hf:*/*"])  # no text to search by: the whole Hub is not listed
    assert row["error"].startswith("give 'hf:ORG/*'")


@pytest.mark.parametrize("processes", [False, True])
def test_the_dask_recipe_gives_the_cli_rows(tree, processes):
    pytest.importorskip("dask.distributed")
    from dask.distributed import Client, LocalCluster

    from paramscope.cli import main

    root, _ = tree
    target = str(root / "g1")
    with LocalCluster(n_workers=2, processes=processes, threads_per_worker=2, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        rows = scan.dask_rows([target], client)
    assert rows == list(scan.scan([target]))
    assert len(rows) == 50
    import io

    out = io.StringIO()
    main(["scan", target, "-f", "jsonl", "--fail-on", "none"], stdout=out, stderr=io.StringIO())
    assert [json.loads(line) for line in out.getvalue().splitlines()] == rows
