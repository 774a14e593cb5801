"""PyTorch checkpoint reader: every figure compared with torch.load(weights_only=True) on the same file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from paramscope import Report  # noqa: E402
from paramscope.errors import ParamscopeError  # noqa: E402
from paramscope.records import Role  # noqa: E402
from paramscope.sources import files, torch_pickle  # noqa: E402

from . import _pickle_helpers as _helpers  # noqa: E402
from ._pickle_helpers import ours, torch_reference  # noqa: E402

LEGACY = {"_use_new_zipfile_serialization": False}


class Small(torch.nn.Module):
    """Linear + BatchNorm + Embedding + a tied head: parameters, buffers and a tie."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(11, 4)
        self.fc = torch.nn.Linear(4, 6)
        self.bn = torch.nn.BatchNorm1d(6)
        self.head = torch.nn.Linear(4, 11, bias=False)
        self.head.weight = self.emb.weight


def _save(obj, path: Path, **kwargs) -> Path:
    torch.save(obj, path, **kwargs)
    return path


@pytest.fixture(params=["zip", "legacy"])
def container(request):
    return request.param


def _kwargs(container: str) -> dict:
    return LEGACY if container == "legacy" else {}


def test_state_dict_matches_torch(tmp_path, container):
    model = Small()
    path = _save(model.state_dict(), tmp_path / "small.pt", **_kwargs(container))
    assert ours(path) == torch_reference(path)
    report = Report(torch_pickle.read(path))
    # Independent: the module's own (tie-aware) parameter count; a file cannot tell the float buffers
    # (BatchNorm running stats) from weights, so they count as parameters, and num_batches_tracked as a buffer.
    float_buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    assert report.total == sum(p.numel() for p in model.parameters()) + float_buffers == 11 * 4 + (4 * 6 + 6) + 6 * 4
    assert report.buffers == 1
    assert report.canonical_name == {"emb.weight": "emb.weight", "head.weight": "emb.weight"}
    inv = torch_pickle.read(path)
    assert inv.format == "pytorch" == torch_pickle.FORMAT
    assert inv.metadata["container"] == container
    assert all(r.trainable is None and r.origin == "small.pt" for r in inv.tensors)
    roles = {r.name: r.role for r in inv.tensors}
    assert roles["bn.num_batches_tracked"] is Role.BUFFER and roles["fc.weight"] is Role.PARAMETER


DTYPES = ["float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool", "complex64",
          "complex128", "float8_e4m3fn", "float8_e5m2", "uint16"]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes(tmp_path, container, dtype):
    tensors = {"a": torch.zeros(3, 5, dtype=getattr(torch, dtype)), "b": torch.zeros(7, dtype=getattr(torch, dtype))}
    try:
        path = _save(tensors, tmp_path / "d.pt", **_kwargs(container))
    except Exception as exc:  # the legacy format cannot hold every new dtype
        pytest.skip(f"torch.save cannot write {dtype} as {container}: {exc}")
    expected = {"a": ((3, 5), dtype), "b": ((7,), dtype)}
    assert ours(path) == expected
    try:
        reference = torch_reference(path)
    except AttributeError:  # torch 2.13 cannot load back the new dtypes it wrote in the legacy format
        assert container == "legacy"
    else:
        assert reference == expected


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickle_protocols(tmp_path, container, protocol):
    sd = Small().state_dict()
    path = _save(sd, tmp_path / "p.pt", pickle_protocol=protocol, **_kwargs(container))
    assert ours(path) == torch_reference(path)
    assert torch_pickle.read(path).metadata["pickle_protocol"] == protocol


def test_gpt2_tie_from_skip_data(tmp_path):
    """GPT-2 small: 149 keys, 163,037,184 elements stored, 124,439,808 parameters (lm_head tied to wte)."""
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    model = model.to_empty(device="cpu")
    model.tie_weights()
    sd = model.state_dict()
    path = tmp_path / "pytorch_model.bin"
    with torch.serialization.skip_data():
        torch.save(sd, path)
    assert os.stat(path).st_blocks * 512 < 10_000_000  # sparse: the weights were never written
    inv = torch_pickle.read(path)
    report = Report(inv)
    assert len(inv.tensors) == len(sd) == 149
    assert sum(r.numel for r in inv.tensors) == sum(v.numel() for v in sd.values()) == 163_037_184
    assert report.total == sum(p.numel() for p in model.parameters()) == 124_439_808
    assert report.canonical_name == {"transformer.wte.weight": "transformer.wte.weight",
                                     "lm_head.weight": "transformer.wte.weight"}  # fmt: skip
    ref = torch.load(path, weights_only=True, mmap=True)
    assert {r.name: (r.shape, r.dtype) for r in inv.tensors} == {
        k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in ref.items()
    }


def test_views_share_storage_without_tie(tmp_path, container):
    base = torch.zeros(10)
    obj = {"first": base[:4], "second": base[4:], "again": base[:4], "whole": base}
    path = _save(obj, tmp_path / "v.pt", **_kwargs(container))
    assert ours(path) == torch_reference(path)
    inv = torch_pickle.read(path)
    ties = {r.name: r.tie for r in inv.tensors}
    assert ties["first"] is not None and ties["first"] == ties["again"]
    assert ties["second"] is None and ties["whole"] is None
    # Independent: torch sees three distinct (offset, shape) views plus the alias.
    assert Report(inv).total == 4 + 6 + 10


def test_one_tensor_rebuilt_by_many_objects_is_counted_under_one_identity(tmp_path, container):
    """Twenty separate rebuild calls of one view (distinct objects, same storage, offset, shape, stride), the
    first seen before any other tensor of that storage: all are one tensor, so MAX_ALIASES of them are listed
    under one tie and the rest counted; a different view of the storage stays its own tensor."""
    base = torch.zeros(10)
    views = [base[:4] for _ in range(20)]
    assert len({id(v) for v in views}) == 20
    obj = [views[0], base[4:], *views[1:], base[4:6]]
    path = _save(obj, tmp_path / "many.pt", **_kwargs(container))
    inv = torch_pickle.read(path)
    limit = torch_pickle.MAX_ALIASES
    named = [r.name for r in inv.tensors]
    assert named == ["0", "1", *[str(i) for i in range(2, limit + 1)], "21"]
    ties = [r.tie for r in inv.tensors]
    assert ties[0] is not None and ties[2:limit + 1] == [ties[0]] * (limit - 1)
    assert ties[1] is None and ties[-1] is None
    assert inv.notes == [f"{20 - limit:,} more references to tensors already listed under {limit} names each "
                         "are not listed"]
    assert Report(inv).total == 4 + 6 + 2


def test_lightning_checkpoint(tmp_path, container):
    model = Small()
    opt = torch.optim.Adam(model.parameters())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    ckpt = {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0", "state_dict": model.state_dict(),
            "optimizer_states": [opt.state_dict()], "lr_schedulers": []}  # fmt: skip
    path = _save(ckpt, tmp_path / "last.ckpt", **_kwargs(container))
    inv = torch_pickle.read(path)
    ref = torch_reference(path)
    expected = {k.removeprefix("state_dict."): v for k, v in ref.items()}
    assert {r.name: (r.shape, r.dtype) for r in inv.tensors} == expected
    roles = {r.name: r.role for r in inv.tensors}
    opt_names = [n for n in roles if n.startswith("optimizer_states.")]
    assert "optimizer_states.0.state.0.exp_avg" in roles
    assert all(roles[n] is Role.OPTIMIZER_STATE for n in opt_names)
    assert len(opt_names) == 3 * len(opt.state)  # step, exp_avg, exp_avg_sq per parameter
    assert inv.metadata["model_key"] == "state_dict"
    assert inv.metadata["epoch"] == 3 and inv.metadata["global_step"] == 120
    assert inv.metadata["top_level_keys"] == list(ckpt)
    assert Report(inv).total == sum(p.numel() for p in model.parameters()) + 12  # + BatchNorm running stats


@pytest.mark.parametrize("key", ["model", "model_state_dict", "module"])
def test_model_key_layouts(tmp_path, key):
    model = Small()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    path = _save({key: model.state_dict(), "optimizer": opt.state_dict(), "ema": {"w": torch.zeros(2)}},
                 tmp_path / "c.pt")  # fmt: skip
    inv = torch_pickle.read(path)
    names = {r.name: r.role for r in inv.tensors}
    assert set(model.state_dict()) <= set(names)
    assert names["optimizer.state.0.momentum_buffer"] is Role.OPTIMIZER_STATE
    assert names["ema.w"] is Role.PARAMETER
    assert len(names) == len(torch_reference(path))
    assert Report(inv).total == sum(p.numel() for p in model.parameters()) + 12 + 2


def test_plain_list_and_parameter(tmp_path, container):
    obj = [torch.nn.Parameter(torch.zeros(3, 2)), (torch.zeros(4, dtype=torch.int64), {"x": torch.zeros(())})]
    path = _save(obj, tmp_path / "l.pt", **_kwargs(container))
    assert ours(path) == torch_reference(path) == {"0": ((3, 2), "float32"), "1.0": ((4,), "int64"),
                                                   "1.1.x": ((), "float32")}  # fmt: skip
    assert Report(torch_pickle.read(path)).total == 7


def test_noncontiguous_and_empty(tmp_path):
    t = torch.zeros(4, 6)
    obj = {"t": t.t(), "step": t[:, ::2], "empty": torch.zeros(0, 5), "scalar": torch.tensor(1.0)}
    path = _save(obj, tmp_path / "n.pt")
    assert ours(path) == torch_reference(path)
    assert Report(torch_pickle.read(path)).total == 24 + 12 + 0 + 1


def test_meta_tensors(tmp_path):
    path = _save({"w": torch.empty(3, 4, device="meta")}, tmp_path / "m.pt")
    inv = torch_pickle.read(path)
    assert {r.name: (r.shape, r.dtype) for r in inv.tensors} == {"w": ((3, 4), "float32")}
    assert any("meta" in n for n in inv.notes)


def test_torchscript_archive(tmp_path):
    model = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)))
    path = tmp_path / "scripted.pt"
    model.save(str(path))
    inv = torch_pickle.read(path)
    expected = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
    assert {r.name: (r.shape, r.dtype) for r in inv.tensors} == expected
    assert any("TorchScript" in n and "not run" in n for n in inv.notes)


def test_pt2_archive_is_explained(tmp_path):
    ep = torch.export.export(torch.nn.Linear(2, 3), (torch.zeros(1, 2),))
    path = tmp_path / "m.pt2"
    torch.export.save(ep, path)
    with pytest.raises(ParamscopeError, match=r"torch\.export"):
        files.read_path(path)


def test_probe_and_dispatch(tmp_path, container):
    path = _save({"w": torch.zeros(2)}, tmp_path / "weights.unknown_ext", **_kwargs(container))
    with open(path, "rb") as handle:
        probed = torch_pickle.probe(handle.read(64), path)
    assert probed is not None and [(r.name, r.shape) for r in probed.read().tensors] == [("w", (2,))]
    assert files.read_path(path).format == "pytorch"
    npz = tmp_path / "a.npz"
    import numpy as np

    np.savez(npz, a=np.zeros(3))
    assert torch_pickle.probe(npz.read_bytes()[:64], npz) is None


def test_a_fifo_swapped_in_after_the_head_is_not_opened(tmp_path):
    # read_path read the head of a regular file; a FIFO put in its place meanwhile must not block the probe
    import os
    import signal

    fifo = tmp_path / "w.pt"
    os.mkfifo(fifo)
    class Blocked(Exception):  # not an OSError: nothing under test may take it for a failed open
        pass

    def blocked(*_):
        raise Blocked("blocked on the FIFO")

    signal.signal(signal.SIGALRM, blocked)
    signal.alarm(10)
    try:
        assert torch_pickle.probe(b"PK\x03\x04" + bytes(60), fifo) is None
        with pytest.raises(ParamscopeError, match="a named pipe"):  # a legacy head: the Reader refuses it
            torch_pickle.probe(torch_pickle._MAGIC_LE + bytes(54), fifo).read()
    finally:
        signal.alarm(0)


def test_the_zip_directory_is_parsed_once_and_kept_nowhere(tmp_path, monkeypatch):
    path = _save({"w": torch.zeros(2)}, tmp_path / "w.pt")
    parsed = []
    real = torch_pickle._zip_directory
    monkeypatch.setattr(torch_pickle, "_zip_directory", lambda *a: (parsed.append(a[1]), real(*a))[1])
    assert files.read_path(path).format == "pytorch"
    assert parsed == [path]  # by the probe; its Reader reads with that directory, no cache between them


def test_big_state_dict_counts(tmp_path):
    sd = {f"layers.{i}.w": torch.zeros(i % 7 + 1, 3) for i in range(2000)}
    path = _save(sd, tmp_path / "big.pt")
    assert ours(path) == torch_reference(path)
    assert Report(torch_pickle.read(path)).total == sum(v.numel() for v in sd.values())


CHILD = """
import sys
from paramscope.sources import torch_pickle
from pathlib import Path
inv = torch_pickle.read(Path(sys.argv[1]))
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
print(len(inv.tensors))
"""


def test_never_imports_torch(tmp_path, container):
    path = _save(Small().state_dict(), tmp_path / "s.pt", **_kwargs(container))
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(len(torch_reference(path)))


def test_cli_json(tmp_path):
    model = Small()
    path = _save(model.state_dict(), tmp_path / "s.pth")
    out = subprocess.run([sys.executable, "-m", "paramscope", str(path), "--format", "json"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["format"] == "pytorch"
    assert doc["total"] == sum(p.numel() for p in model.parameters()) + 12  # + BatchNorm running stats


def test_legacy_read_without_mmap(tmp_path, monkeypatch):
    """Legacy pickles are read with plain reads (a file cut while mapped is a SIGBUS), from a short first
    read grown until they fit; the result matches torch, and every cut is a one-line error."""
    import mmap

    sd = {f"layer{i}.weight": torch.zeros(i % 5 + 1, 2) for i in range(3_000)}
    path = _save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    monkeypatch.setattr(mmap, "mmap", None)
    monkeypatch.setattr(torch_pickle, "LEGACY_FIRST_READ", 4_096)  # several retries
    assert ours(path) == torch_reference(path)
    whole = path.read_bytes()
    for cut in (10, 100, 5_000, 50_000, len(whole) // 2, len(whole) - 1):
        path.write_bytes(whole[:cut])
        with pytest.raises(ParamscopeError) as info:
            torch_pickle.read(path)
        assert "\n" not in str(info.value)


def test_legacy_pickles_over_the_cap(tmp_path, monkeypatch):
    path = _save({"w": torch.zeros(4), "pad": "x" * 20_000}, tmp_path / "l.pt", _use_new_zipfile_serialization=False)
    monkeypatch.setattr(torch_pickle, "LEGACY_FIRST_READ", 1_024)
    monkeypatch.setattr(torch_pickle, "MAX_PICKLE_BYTES", 8_192)
    with pytest.raises(ParamscopeError, match="legacy pickles run past the first 8,192 bytes"):
        torch_pickle.read(path)


def test_storage_member_must_match_exactly(tmp_path):
    """torch refuses a storage record whose size is not numel x element size; so do we (padded here)."""
    from ._pickle_helpers import rezip

    path = _save({"w": torch.zeros(4)}, tmp_path / "w.pt")
    rezip(path, tmp_path / "pad.pt", lambda name, data: (name, data + b"\0" * 4 if "/data/" in name else data))
    with pytest.raises(ParamscopeError, match="storage '0' declares 16 bytes but its zip member holds 20"):
        torch_pickle.read(tmp_path / "pad.pt")


# ---- a plain state_dict read as columns (the 100k-tensor path), checked against the general walk


def _walked(path: Path, monkeypatch) -> list:
    """The records the general walk makes of ``path`` (the plain-state_dict path turned off)."""
    with monkeypatch.context() as patch:
        patch.setattr(torch_pickle, "_flat_state_dict", lambda value, source: None)
        return torch_pickle.read(path).tensors


def test_plain_state_dict_is_read_as_columns_like_the_walk(tmp_path, monkeypatch, container):
    base = torch.arange(24, dtype=torch.float32)
    sd = {
        "emb.weight": torch.zeros(11, 4, dtype=torch.bfloat16),
        "fc.weight": torch.zeros(6, 4).t(),  # non-contiguous: reaches its storage through strides
        "fc.bias": torch.zeros(6, dtype=torch.float16),
        "view": base[4:16].view(3, 4).clone(),
        "scalar": torch.tensor(3.0, dtype=torch.float64),
        "empty": torch.zeros(0, 5),
        "bn.num_batches_tracked": torch.tensor(7),
        "mask": torch.ones(3, dtype=torch.bool),
    }
    path = _save(sd, tmp_path / "plain.pt", **_kwargs(container))
    taken = []
    real = torch_pickle._flat_state_dict
    monkeypatch.setattr(torch_pickle, "_flat_state_dict", lambda value, source: taken.append(1) or real(value, source))
    inventory = torch_pickle.read(path)
    assert taken == [1] and inventory.columnar  # the plain-state_dict path made it, as a table
    assert ours(path) == torch_reference(path)
    assert inventory.tensors == _walked(path, monkeypatch)
    rows = {r.name: r for r in inventory.tensors}
    for name, tensor in sd.items():  # sizes as torch states them
        assert (rows[name].numel, rows[name].nbytes) == (tensor.numel(), tensor.numel() * tensor.element_size())
    assert {name for name, r in rows.items() if r.role is Role.BUFFER} == {"bn.num_batches_tracked", "mask"}
    assert all(r.tie is None and r.origin == "plain.pt" for r in inventory.tensors)


@pytest.mark.parametrize("layout", ["tied", "shared_storage", "optimizer_key", "meta", "nested"])
def test_what_is_not_a_plain_state_dict_goes_through_the_walk(tmp_path, monkeypatch, layout):
    weight = torch.zeros(4, 3)
    if layout == "tied":  # one tensor object under two keys: a tie group of two names
        sd = {"emb.weight": weight, "head.weight": weight}
    elif layout == "shared_storage":  # two tensor objects on one storage: a view, no tie
        sd = {"a": weight, "b": weight[1:]}
    elif layout == "optimizer_key":  # a top-level optimizer key names optimizer state even holding a tensor
        sd = {"w": weight, "optim": torch.zeros(2)}
    elif layout == "meta":
        sd = {"w": torch.zeros(4, 3, device="meta")}
    else:
        sd = {"w": weight, "sub": {"x": torch.zeros(2)}}
    path = _save(sd, tmp_path / "x.pt")
    monkeypatch.setattr(torch_pickle, "_walk", _counted_walk := _CountedWalk(torch_pickle._walk))
    inventory = torch_pickle.read(path)
    assert _counted_walk.calls == 1
    if layout != "meta":
        assert ours(path) == torch_reference(path)
    rows = {r.name: r for r in inventory.tensors}
    if layout == "tied":
        assert rows["emb.weight"].tie == rows["head.weight"].tie is not None
        assert Report(inventory).total == 12
    elif layout == "shared_storage":
        assert rows["a"].tie is None and rows["b"].tie is None
    elif layout == "optimizer_key":
        assert (rows["w"].role, rows["optim"].role) == (Role.PARAMETER, Role.OPTIMIZER_STATE)
    elif layout == "meta":
        assert rows["w"].extra == {"device": "meta"} and rows["w"].shape == (4, 3)


class _CountedWalk:
    def __init__(self, real) -> None:
        self.real, self.calls = real, 0

    def __call__(self, *args):
        self.calls += 1
        return self.real(*args)


def test_plain_state_dict_past_the_names_budget_is_refused_as_the_walk_refuses(tmp_path, monkeypatch):
    path = _save({"a" * 40: torch.zeros(1), "b" * 40: torch.zeros(1)}, tmp_path / "n.pt")
    for module in (files, torch_pickle):  # the walk's NameBudget reads files', the plain path its own import
        monkeypatch.setattr(module, "NAME_ALLOWANCE", 60 - os.path.getsize(path))  # room for one name
    with pytest.raises(ParamscopeError, match=r"tensor names \(paths included\) total more characters"):
        torch_pickle.read(path)


def test_plain_state_dict_tensor_past_its_storage(tmp_path):
    path = _save({"w": torch.zeros(4, 4)}, tmp_path / "w.pt")
    name, data = _helpers.pickle_member(path)
    # the size tuple (4, 4) -> (4, 5), strides still (4, 1): its last element is 1 + 3*4 + 4*1 = 17 elements
    # (68 bytes) into a 16-element (64-byte) storage
    edited = data.replace(b"K\x04K\x04\x86", b"K\x04K\x05\x86", 1)
    assert edited != data
    bad = tmp_path / "bad.pt"
    _helpers.rezip(path, bad, lambda n, d: (n, edited) if n == name else (n, d))
    with pytest.raises(ParamscopeError, match=r"tensor 'w' of shape \[4, 5\] at offset 0 needs 68 bytes of storage "
                                              r"'0', which holds 64"):
        torch_pickle.read(bad)


def test_member_layout_check_agrees_with_check_zip_entries(tmp_path):
    path = _save({f"w{i}": torch.zeros(3) for i in range(5)}, tmp_path / "m.pt")
    with open(path, "rb") as handle:
        members = torch_pickle._zip_directory(handle, path)
    data_end = members[torch_pickle._DATA_END].offset
    plain = {k: m for k, m in members.items() if k != torch_pickle._DATA_END}
    assert torch_pickle._entries_hold(plain, data_end)
    first, second = sorted(plain.values(), key=lambda m: m.offset)[:2]
    lies = {
        # (torch pads members to 64 bytes: data running up to the next member's header overlaps it)
        "overlaps the next member": {first.name: first._replace(compressed=second.offset - first.offset,
                                                                size=second.offset - first.offset)},
        "past the end of the member data": {second.name: second._replace(offset=data_end - 10)},
        "is stored but claims": {first.name: first._replace(size=first.size + 1)},
        "more than deflate can": {first.name: first._replace(method=8, size=first.compressed * 2000)},
    }
    for fragment, change in lies.items():
        edited = {**plain, **change}
        assert not torch_pickle._entries_hold(edited, data_end)
        with pytest.raises(ParamscopeError, match=fragment):
            torch_pickle._check({**edited, torch_pickle._DATA_END: members[torch_pickle._DATA_END]}, path)
