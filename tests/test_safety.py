"""The safety verdict: an allow-list answer, checked against torch.load(weights_only=True) as the reference for
what torch itself would refuse, on files made here (nothing in them is ever run: pickle.dumps only records the
reduce call, and the verdict never loads)."""

from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
import zipfile

import pytest

from paramscope import safety

torch = pytest.importorskip("torch")


class _Evil:
    """Pickles as a call of os.system (pickle.dumps records it; nothing runs)."""

    def __reduce__(self):
        return (os.system, ("echo never run",))


class _Eval:
    def __reduce__(self):
        return (eval, ("1+1",))


def _torch_refuses(path) -> bool:
    try:
        torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        return True
    return False


def test_the_weights_only_table_is_torchs_own():
    from torch._weights_only_unpickler import _get_allowed_globals

    assert set(_get_allowed_globals()) == safety.TORCH_WEIGHTS_ONLY


def test_a_state_dict_is_safe(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2, 3), "b": torch.ones(3)}, path)
    verdict = safety.file_verdict(path)
    assert (verdict.verdict, verdict.imports) == ("safe", ())
    assert verdict.line() == "safe (pickle of tensors and plain containers only (allow-list))"


@pytest.mark.parametrize("legacy", [False, True])
def test_pickled_callables_are_listed_and_compared_with_torch(tmp_path, legacy):
    path = tmp_path / "model.pt"
    obj = {"w": torch.zeros(2), "args": argparse.Namespace(lr=1), "run": _Evil(), "more": _Eval(),
           "count": collections.Counter(a=1)}
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    verdict = safety.file_verdict(path)
    assert verdict.verdict == "needs-trust"
    system = f"{os.system.__module__}.system"  # posix.system: what pickle writes for os.system
    assert set(verdict.imports) == {"argparse.Namespace", system, "builtins.eval", "collections.Counter"}
    # torch admits Counter, refuses the rest (the reference: torch.load(weights_only=True) on one of each)
    assert set(verdict.torch_refuses) == {"argparse.Namespace", system, "builtins.eval"}
    for name, value in (("counter", collections.Counter(a=1)), ("ns", argparse.Namespace(lr=1))):
        one = tmp_path / f"{name}.pt"
        torch.save({"x": value}, one)
        assert _torch_refuses(one) == (name == "ns")
        assert safety.file_verdict(one).torch_refuses == (() if name == "counter" else ("argparse.Namespace",))
    assert verdict.line().startswith("needs-trust: imports ")
    assert "torch.load(weights_only=True) refuses" in verdict.line()


def test_a_plain_pickle_of_a_callable(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(_Evil(), protocol=2))
    verdict = safety.file_verdict(path)
    assert verdict.verdict == "needs-trust"
    assert verdict.imports == (f"{os.system.__module__}.system",)
    assert verdict.line() == (f"needs-trust: imports {os.system.__module__}.system; "
                              "torch.load(weights_only=True) refuses it too")


def test_protocol_0_inst_opcode_is_needs_trust(tmp_path):
    path = tmp_path / "old.pkl"
    path.write_bytes(b"\x80\x02(ios\nsystem\nS'echo'\ntp0\n.")  # INST: import and call in one opcode
    verdict = safety.file_verdict(path)
    assert verdict.verdict == "needs-trust"
    assert verdict.imports == ("INST opcode (imports and calls)",)


def test_torchscript_is_code(tmp_path):
    path = tmp_path / "script.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    verdict = safety.file_verdict(path)
    assert verdict.verdict == "code"
    assert "TorchScript" in verdict.reason


def test_auto_map_is_code_and_combines_over_a_directory(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "model.safetensors")
    assert safety.path_verdict(tmp_path).verdict == "safe"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": {"AutoModel": "m.Model"}}))
    verdict = safety.path_verdict(tmp_path)
    assert verdict.verdict == "code"
    assert "m.Model" in verdict.reason


@pytest.mark.parametrize(("make", "kind"), [
    ("safetensors", "safe"), ("gguf", "safe"), ("npz", "safe"), ("onnx", "safe"),
    ("truncated", "unreadable"), ("empty", "unreadable"), ("text", "unreadable"), ("zip", "unreadable"),
])
def test_formats_without_code(tmp_path, make, kind):
    path = tmp_path / f"f.{make}"
    if make == "safetensors":
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, path)
    elif make == "gguf":
        gguf = pytest.importorskip("gguf")
        import numpy as np

        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_tensor("w", np.zeros(4, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    elif make == "npz":
        import numpy as np

        np.savez(path, w=np.zeros(3))
    elif make == "onnx":
        onnx = pytest.importorskip("onnx")
        from onnx import TensorProto, helper

        w = helper.make_tensor("w", TensorProto.FLOAT, [2], [0.0, 1.0])
        graph = helper.make_graph([], "g", [], [helper.make_tensor_value_info("w", TensorProto.FLOAT, [2])], [w])
        onnx.save(helper.make_model(graph), path)
    elif make == "truncated":
        torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
        path.write_bytes(path.read_bytes()[:40])
    elif make == "empty":
        path.write_bytes(b"")
    elif make == "text":
        path.write_text("hello")
    elif make == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hi")
    verdict = safety.file_verdict(path)
    assert verdict.verdict == kind, verdict


def test_combine_keeps_the_most_serious():
    safe = safety.Verdict("safe", "ok")
    trust = safety.Verdict("needs-trust", "x", ("a.b",), ("a.b",))
    trust2 = safety.Verdict("needs-trust", "x", ("collections.Counter",), ())
    assert safety.combine([safe, trust, trust2]).imports == ("a.b", "collections.Counter")
    assert safety.combine([safe, trust, trust2]).torch_refuses == ("a.b",)
    assert safety.combine([trust, safety.Verdict("code", "ts")]).verdict == "code"
    assert safety.combine([]).verdict == "unreadable"


def test_hostile_names_are_escaped(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(b"\x80\x02c\x1b[31mevil\nna\x07me\n)R.")
    verdict = safety.file_verdict(path)
    assert verdict.verdict == "needs-trust"
    assert "\x1b" not in verdict.line() and "\x07" not in verdict.line()


def test_a_safetensors_header_length_starting_with_0x80_is_no_pickle(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "m.safetensors"
    save_file({"l0.w0": np.zeros((2, 3), dtype=np.float32), "l0.w1": np.zeros((3, 3), dtype=np.float32)}, str(path))
    assert path.read_bytes()[0] == 0x80  # a 128-byte header
    assert safety.file_verdict(path).verdict == "safe"


def test_a_large_legacy_file_is_judged_from_its_first_mebibyte(tmp_path):
    import tracemalloc

    path = tmp_path / "big.bin"
    torch.save({"w": torch.zeros(4), "args": argparse.Namespace()}, path, _use_new_zipfile_serialization=False)
    with open(path, "r+b") as handle:
        handle.truncate(4 << 30)  # 4 GiB of (sparse) tensor data after the pickles
    tracemalloc.start()
    verdict = safety.file_verdict(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert verdict.imports == ("argparse.Namespace",)
    assert peak < 8 << 20


def test_a_cut_pickle_is_unreadable(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"a": list(range(100))}, protocol=4)[:-10])
    verdict = safety.file_verdict(path)
    assert (verdict.verdict, verdict.reason) == ("unreadable", "pickle ends without STOP (truncated?)")


def test_inspect_ends_with_the_verdict_of_a_pickle_or_a_program(tmp_path):
    import io

    from paramscope.cli import main

    def inspect(path):
        out, err = io.StringIO(), io.StringIO()
        code = main([str(path)], stdout=out, stderr=err)
        return code, out.getvalue().splitlines()[-1]

    pt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2, 3)}, pt)
    assert inspect(pt) == (0, "safety: safe (pickle of tensors and plain containers only (allow-list))")
    script = tmp_path / "script.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
    code, last = inspect(script)
    assert code == 0 and last.startswith("safety: code (TorchScript archive")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "m.safetensors")  # safe by construction: nothing added
    assert not inspect(tmp_path / "m.safetensors")[1].startswith("safety:")


@pytest.mark.parametrize("legacy", [False, True])
def test_mutated_pickles_always_get_a_verdict(tmp_path, legacy):
    """Hostile input: 150 mutated copies of a checkpoint with pickled callables; every one gets a verdict in bounded
    time in-process, and ``paramscope scan`` over them ends cleanly with a row each."""
    import time

    from tests.hostile._limits import assert_clean, run_cli
    from tests.hostile._mutate import write_mutations

    base = tmp_path / ("base.bin" if legacy else "base.pt")
    torch.save({"w": torch.zeros(3), "args": argparse.Namespace(x=1), "run": _Evil()}, base,
               _use_new_zipfile_serialization=not legacy)
    paths = write_mutations(base, tmp_path / "mutated", 150, seed=15)
    start = time.perf_counter()
    kinds = {safety.file_verdict(path).verdict for path in paths}
    assert time.perf_counter() - start < 30
    assert kinds <= {"safe", "needs-trust", "unreadable", "code"} and "needs-trust" in kinds
    result = assert_clean(run_cli("scan", tmp_path / "mutated", "-f", "jsonl", "--fail-on", "none"), expect=0)
    assert len(result.stdout.splitlines()) == 150


# ---- remote pickles (a Hub repository's .bin files): data.pkl by ranged reads, never run ----------------


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    pytest.importorskip("huggingface_hub")
    sys.path.insert(0, str(Path(__file__).parent / "sources"))
    from _fake_hub import FakeHub, hub_environment

    hub = FakeHub().start()
    hub_environment(monkeypatch, tmp_path, hub)
    yield hub
    hub.stop()


def _repo(tmp_path, name, files):
    repo = tmp_path / "repos" / name
    repo.mkdir(parents=True)
    for filename, obj in files.items():
        if isinstance(obj, bytes):
            (repo / filename).write_bytes(obj)
        else:
            torch.save(obj, repo / filename)
    return repo


def test_a_hub_pickle_gets_the_local_verdict_by_ranged_reads(fake_hub, tmp_path):
    """The verdict of a Hub .bin is the local file's (itself checked against torch above), from its zip's
    directory and data.pkl: the 4 MiB storage is never fetched, and nothing is imported."""
    import sys

    safe = _repo(tmp_path, "safe", {"pytorch_model.bin": {"w": torch.zeros(1 << 20)}})
    evil = _repo(tmp_path, "evil", {"pytorch_model.bin": {"w": torch.zeros(1 << 20), "run": _Evil()}})
    fake_hub.add_repo("acme/safe", safe)
    fake_hub.add_repo("acme/evil", evil)
    assert safety.remote_verdict("hf:acme/safe") == safety.Verdict("safe", safety.PICKLE_SAFE)
    before = set(sys.modules)
    fake_hub.reset_counts()
    verdict = safety.remote_verdict("hf:acme/evil")
    assert set(sys.modules) - before == set()
    system = f"{os.system.__module__}.system"
    assert verdict == safety.file_verdict(evil / "pytorch_model.bin")
    assert (verdict.verdict, verdict.imports, verdict.torch_refuses) == ("needs-trust", (system,), (system,))
    assert fake_hub.sent["pytorch_model.bin"] < 256 * 1024 < (evil / "pytorch_model.bin").stat().st_size


def test_every_shard_of_a_hub_pytorch_index_is_judged(fake_hub, tmp_path):
    """A shard whose data.pkl names a module that is not installed: listed, and still not imported."""
    import json
    import sys

    from tests.sources._pickle_helpers import with_pickle

    repo = _repo(tmp_path, "sharded", {"pytorch_model-00001-of-00002.bin": {"a": torch.zeros(4)},
                                       "pytorch_model-00002-of-00002.bin": {"b": torch.zeros(4)}})
    second = repo / "pytorch_model-00002-of-00002.bin"
    crafted = b"\x80\x02cparamscope_never_imported\nboom\nX\x03\x00\x00\x00abc\x85R."
    with_pickle(second, tmp_path / "crafted.bin", crafted).replace(second)
    (repo / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": 32}, "weight_map": {
        "a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}))
    fake_hub.add_repo("acme/sharded", repo)
    verdict = safety.remote_verdict("hf:acme/sharded")
    assert (verdict.verdict, verdict.imports) == ("needs-trust", ("paramscope_never_imported.boom",))
    assert "paramscope_never_imported" not in sys.modules
    assert verdict.line() == ("needs-trust: imports paramscope_never_imported.boom; "
                              "torch.load(weights_only=True) refuses it too")


def test_scan_and_inspect_say_a_hub_pickles_verdict(fake_hub, tmp_path):
    import io

    from paramscope import scan
    from paramscope.cli import main

    fake_hub.add_repo("acme/safe", _repo(tmp_path, "safe", {"pytorch_model.bin": {"w": torch.zeros(3)}}))
    fake_hub.add_repo("acme/evil", _repo(tmp_path, "evil", {"pytorch_model.bin": {"w": torch.zeros(3),
                                                                                    "run": _Evil()}}))
    fake_hub.add_repo("acme/st", _repo(tmp_path, "st", {}))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "repos" / "st" / "model.safetensors")
    rows = {row["source"]: row for row in scan.scan(["hf:acme/*"])}
    system = f"{os.system.__module__}.system"
    assert (rows["hf:acme/evil"]["safety"], rows["hf:acme/evil"]["safety_detail"]) == (
        "needs-trust", f"needs-trust: imports {system}; torch.load(weights_only=True) refuses it too")
    assert rows["hf:acme/evil"]["error"] == f"data.pkl: refuses global '{system}'"  # the read refuses it, unrun
    assert (rows["hf:acme/safe"]["safety"], rows["hf:acme/safe"]["parameters"]) == ("safe", 3)
    assert rows["hf:acme/st"]["safety"] == "safe"
    out, err = io.StringIO(), io.StringIO()
    assert main(["hf:acme/safe", "--no-progress"], stdout=out, stderr=err) == 0
    assert out.getvalue().splitlines()[-1] == "safety: safe (pickle of tensors and plain containers only (allow-list))"
    # the reader refuses the pickle at its first global; the refusal says the verdict: every global, and torch's
    for argv in (["hf:acme/evil"], ["acme/evil", "--file", "pytorch_model.bin"]):
        out, err = io.StringIO(), io.StringIO()
        assert main([*argv, "--no-progress"], stdout=out, stderr=err) == 1
        assert err.getvalue().endswith(f"data.pkl: refuses global '{system}'; safety: needs-trust: imports {system}; "
                                       "torch.load(weights_only=True) refuses it too\n"), argv
        assert out.getvalue() == "" and err.getvalue().count("\n") == 1


def test_a_pickle_at_a_url_gets_the_same_verdict(fake_hub, tmp_path):
    import io

    from paramscope.cli import main

    plain = _repo(tmp_path, "plain", {"evil.bin": {"w": torch.zeros(3), "run": _Evil()}, "ok.pt": {"w": torch.ones(2)}})
    fake_hub.plain = plain
    system = f"{os.system.__module__}.system"
    assert safety.remote_verdict(f"{fake_hub.url}/plain/evil.bin") == safety.file_verdict(plain / "evil.bin")
    assert safety.remote_verdict(f"{fake_hub.url}/plain/ok.pt") == safety.Verdict("safe", safety.PICKLE_SAFE)
    assert safety.remote_verdict(f"{fake_hub.url}/plain/x.safetensors") is None
    out, err = io.StringIO(), io.StringIO()
    assert main([f"{fake_hub.url}/plain/evil.bin", "--no-progress"], stdout=out, stderr=err) == 1
    assert err.getvalue().endswith(f"; safety: needs-trust: imports {system}; torch.load(weights_only=True) "
                                   "refuses it too\n")
    out = io.StringIO()
    assert main([f"{fake_hub.url}/plain/ok.pt", "--no-progress"], stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue().splitlines()[-1] == "safety: safe (pickle of tensors and plain containers only (allow-list))"
