"""What reading each kind of source imports: the CLI, run in a fresh process on a small fixture, must
count it (exit 0, the total by hand) without loading the frameworks the format belongs to. Reading a
checkpoint never imports torch; ``import paramscope`` loads neither torch nor typing.

One case per source kind; each case writes its fixture (with the format's own library, here in the
test process) and names the modules that must not be in ``sys.modules`` once the child is done.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sources._fake_hub import FakeHub, hub_environment
from tests.sources._st_helpers import write_sharded, write_sparse

CHILD = """\
import io, json, sys
import paramscope, paramscope.cli, paramscope.distributed, paramscope.training
imported = sorted(sys.modules)
argv = json.loads(sys.argv[1])
code, output, errors = 0, "", ""
if argv is None:  # the import promise, and print_once (which must not reach for torch.distributed)
    output = str(paramscope.distributed.print_once("x", file=io.StringIO()))
else:
    out, err = io.StringIO(), io.StringIO()
    code = paramscope.cli.main(argv, stdout=out, stderr=err)
    output, errors = out.getvalue(), err.getvalue()
print(json.dumps({"imported": imported, "modules": sorted(sys.modules), "code": code, "output": output,
                  "errors": errors}))
"""

PLATFORM = {"torch"}
"""Never imported by reading any checkpoint."""
SMALL_FILE = frozenset({"typing", "rich", "paramscope.sources.pickle_reader", "paramscope.commands.diff",
                        "paramscope.commands.scan"})
"""Not needed for the default tree of a safetensors file on a pipe (issue 12: the whole process within 3x of
``python -c pass``): no colour, so no rich; the safety verdict without the pickle reader; only the command run."""


@dataclass(frozen=True)
class Case:
    write: Callable[[Path, FakeHub], list[str] | None]
    """Writes the fixture under the given directory (or serves it from the loopback Hub); returns the
    CLI arguments (None: import only)."""
    total: int | str
    """The parameter total by hand (the import-only case: print_once's result)."""
    absent: frozenset[str]
    needs: tuple[str, ...] = ()
    """Libraries the fixture is written with (skipped where missing)."""


def _import_only(_tmp: Path, _hub: FakeHub) -> None:
    return None


def _safetensors(tmp: Path, _hub: FakeHub) -> list[str]:
    write_sparse(tmp / "m.safetensors", [("w", "F32", (3, 4)), ("b", "BF16", (3,))])
    return [str(tmp / "m.safetensors")]


def _sharded(tmp: Path, _hub: FakeHub) -> list[str]:
    return [str(write_sharded(tmp / "s", [("a", "F32", (2,)), ("b", "F16", (3, 5))], shards=2))]


def _gptq(tmp: Path, _hub: FakeHub) -> list[str]:
    # AutoGPTQ 4-bit QuantLinear of a 256 -> 128 linear: qweight [256 * 4 / 32, 128] packs 256 x 128 weights
    write_sparse(tmp / "q.safetensors", [
        ("l.qweight", "I32", (32, 128)), ("l.qzeros", "I32", (2, 16)), ("l.scales", "F16", (2, 128)),
        ("l.g_idx", "I32", (256,)), ("l.bias", "F16", (128,)),
    ])
    return [str(tmp / "q.safetensors")]


def _config_and_weights(tmp: Path, _hub: FakeHub) -> list[str]:
    write_sparse(tmp / "model.safetensors", [("model.embed_tokens.weight", "F32", (100, 32))])
    (tmp / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 100, "hidden_size": 32}))
    return [str(tmp)]


def _gguf(tmp: Path, _hub: FakeHub) -> list[str]:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(tmp / "m.gguf", "llama")
    writer.add_tensor("token_embd.weight", np.zeros((7, 4), np.float32))
    writer.add_tensor("output_norm.weight", np.zeros(4, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return [str(tmp / "m.gguf")]


def _onnx(tmp: Path, _hub: FakeHub) -> list[str]:
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, (2, 3), [0.0] * 6)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 2))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 3))], [weight])
    onnx.save(helper.make_model(graph), tmp / "m.onnx")
    return [str(tmp / "m.onnx")]


def _h5(target: object, layout: dict[str, tuple[int, ...]]) -> None:
    import h5py

    with h5py.File(target, "w") as h5:
        for name, shape in layout.items():
            h5.create_dataset(name, shape=shape, dtype="f4")


def _keras(tmp: Path, _hub: FakeHub) -> list[str]:
    import io

    weights = io.BytesIO()
    _h5(weights, {"layers/dense/vars/0": (10, 4), "layers/dense/vars/1": (4,)})
    with zipfile.ZipFile(tmp / "m.keras", "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        archive.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"name": "m"}}))
        archive.writestr("model.weights.h5", weights.getvalue())
    return [str(tmp / "m.keras")]


def _legacy_h5(tmp: Path, _hub: FakeHub) -> list[str]:
    _h5(tmp / "m.h5", {"dense/kernel:0": (6, 5), "dense/bias:0": (5,)})
    return [str(tmp / "m.h5")]


def _npy(tmp: Path, _hub: FakeHub) -> list[str]:
    import numpy as np

    np.save(tmp / "a.npy", np.zeros((4, 5), np.float32))
    return [str(tmp / "a.npy")]


def _npz(tmp: Path, _hub: FakeHub) -> list[str]:
    import numpy as np

    np.savez(tmp / "b.npz", x=np.zeros(3), y=np.zeros((2, 2), np.float16))
    return [str(tmp / "b.npz")]


def _pytorch(tmp: Path, _hub: FakeHub) -> list[str]:
    import torch

    torch.save({"w": torch.zeros(3, 4), "b": torch.zeros(3)}, tmp / "m.pt")
    return [str(tmp / "m.pt")]


def _url(tmp: Path, hub: FakeHub) -> list[str]:
    write_sparse(tmp / "m.safetensors", [("w", "F32", (6, 7))])
    hub.plain = tmp
    return [f"{hub.url}/plain/m.safetensors"]


def _hub_repo(tmp: Path, hub: FakeHub) -> list[str]:
    write_sharded(tmp / "repo", [("a.weight", "BF16", (8, 8)), ("b.weight", "BF16", (8,))], shards=2)
    hub.add_repo("acme/tiny", tmp / "repo")
    return ["hf:acme/tiny"]


CASES = {
    "import paramscope": Case(_import_only, "True", frozenset({"torch", "typing", "numpy"})),
    "safetensors": Case(_safetensors, 15, frozenset({"numpy", "safetensors"}) | SMALL_FILE),
    "safetensors index": Case(_sharded, 17, frozenset({"numpy", "safetensors"}) | SMALL_FILE),
    "gptq safetensors": Case(_gptq, 256 * 128 + 128, frozenset({"numpy"})),
    "config.json beside weights": Case(_config_and_weights, 3200, frozenset({"transformers", "numpy"})),
    "gguf": Case(_gguf, 32, frozenset({"gguf", "numpy"}), ("gguf",)),
    "onnx": Case(_onnx, 6, frozenset({"onnx", "numpy"}), ("onnx",)),
    # HDF5 is read through h5py (and so numpy): only the framework stays out
    "keras": Case(_keras, 44, frozenset({"keras", "tensorflow"}), ("h5py",)),
    "hdf5": Case(_legacy_h5, 35, frozenset({"keras", "tensorflow"}), ("h5py",)),
    "npy": Case(_npy, 20, frozenset({"numpy"}), ("numpy",)),
    "npz": Case(_npz, 7, frozenset({"numpy"}), ("numpy",)),
    "pytorch zip": Case(_pytorch, 15, frozenset({"numpy"}), ("torch",)),
    "https url": Case(_url, 42, frozenset({"numpy", "huggingface_hub"})),
    "hf repository": Case(_hub_repo, 72, frozenset({"numpy"}), ("huggingface_hub",)),
}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    server = FakeHub().start()
    hub_environment(monkeypatch, tmp_path, server)  # the child inherits it
    yield server
    server.stop()


@pytest.mark.parametrize("kind", CASES)
def test_reading_imports_no_framework(kind, tmp_path, hub):
    case = CASES[kind]
    for library in case.needs:
        pytest.importorskip(library)
    argv = case.write(tmp_path, hub)
    if argv is not None:
        argv = [*argv, "--format", "json"]
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(argv)], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert (result["code"], result["errors"]) == (0, ""), result["errors"]
    total = result["output"] if argv is None else json.loads(result["output"])["total"]
    assert total == case.total
    forbidden = PLATFORM | case.absent
    assert sorted(forbidden & set(result["modules"])) == []
    # and the bare import, whatever the case: neither torch nor typing
    assert sorted({"torch", "typing"} & set(result["imported"])) == []


# ---- issue 12: the whole process of a small file's default run within 3x of ``python -c pass`` -----------

RUN_MAIN = """\
import atexit, json, runpy, sys
sys.argv = ["paramscope", *json.loads(sys.argv[1])]
# what was imported, said when the process shuts down (a handler: the usual shutdown, not paramscope's quick end)
atexit.register(lambda: print("\\n" + json.dumps({"modules": sorted(sys.modules)})))
runpy.run_module("paramscope", run_name="__main__", alter_sys=True)  # python -m paramscope ARGS
"""

NOT_FOR_A_SMALL_FILE = frozenset({
    # pathlib (with urllib.parse, ipaddress and ntpath): local paths are text (paramscope.sources.path_text)
    "pathlib", "urllib.parse", "ipaddress", "ntpath",
    "locale",  # argparse's gettext lookups (paramscope.commands._as_written)
    "gettext",  # argparse imported with a stand-in for it (paramscope.__main__._import_argparse_in_english)
    "fnmatch",  # only --filter matches a glob
    "struct",  # the header length is int.from_bytes
    "unicodedata",  # text.safe: printable ASCII names are shown as they are
    "paramscope.safety",  # safetensors is safe by construction (paramscope.sources.READ_IS_SAFE)
    "paramscope.renderers.listing",  # a Hub listing is known by its format
    "paramscope.quantization",  # no name has a quantization suffix (quant_names.candidates)
}) | SMALL_FILE
"""What ``python -m paramscope FILE`` (and ``--format json -o OUT``) must not import for a small safetensors file:
each costs a measurable part of the 3x budget, and none has anything to do there."""
NOT_FOR_JSON = frozenset({"paramscope.renderers.rows", "paramscope.renderers.console", "paramscope.renderers.tree"})
"""The terminal's drawing and the tables' columns: the tree's, not JSON's."""


@pytest.mark.parametrize("options", [[], ["--format", "json", "-o", "OUT"]], ids=["tree", "json to a file"])
def test_small_file_run_imports_only_what_it_uses(options, tmp_path):
    # a tied pair would be one tensor: two distinct 100 x 32 bf16 matrices, 6,400 parameters by hand
    write_sparse(tmp_path / "m.safetensors", [("model.embed_tokens.weight", "BF16", (100, 32)),
                                               ("lm_head.weight", "BF16", (100, 32))])
    out = tmp_path / "out.json"
    argv = [str(tmp_path / "m.safetensors"), *(str(out) if o == "OUT" else o for o in options)]
    done = subprocess.run([sys.executable, "-c", RUN_MAIN, json.dumps(argv)], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    *shown, result = done.stdout.splitlines()
    result = json.loads(result)
    assert done.stderr == ""
    if options:
        assert json.loads(out.read_text())["total"] == 6400
    else:
        assert shown[0] == f"{tmp_path / 'm.safetensors'}  (safetensors)"
        assert shown[1].split() == ["parameters", "6,400", "6.4K"]
    unused = NOT_FOR_A_SMALL_FILE | (NOT_FOR_JSON if options else {"paramscope.renderers.json"})
    assert sorted(unused & set(result["modules"])) == []


ARGPARSE_FIRST = """\
import sys
from paramscope.__main__ import _import_argparse_in_english
from paramscope.text import as_written
_import_argparse_in_english()
imported = "gettext" in sys.modules
import argparse, gettext
print(imported, argparse._ is as_written, argparse.ngettext("a", "b", 2), hasattr(gettext, "translation"))
"""


def test_argparse_is_imported_with_a_stand_in_for_gettext_that_is_taken_away_at_once():
    done = subprocess.run([sys.executable, "-c", ARGPARSE_FIRST], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert (done.stdout, done.stderr) == ("False True b True\n", "")  # a later import gets the real gettext


@pytest.mark.parametrize("text", ["m.safetensors", "./m.safetensors", "a//m", "a/./b/", "/abs/m", "//net/m",
                                  "///root/m", "a/../m", "a/b/.", ".", "", "./", "a/"])
def test_path_text_is_pathlibs_form(text):
    from pathlib import Path

    from paramscope.sources import path_text

    assert path_text(text) == str(Path(text))


@pytest.mark.parametrize("case", ["file", "directory", "missing", "under a file", "nul", "too long", "loop"])
def test_path_mode_says_what_pathlib_says(case, tmp_path):
    import errno
    import stat
    from pathlib import Path

    from paramscope.sources import path_mode

    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    path = {"file": tmp_path / "f", "directory": tmp_path, "missing": tmp_path / "no", "under a file": tmp_path / "f/x",
            "nul": tmp_path / "a\0b", "too long": tmp_path / ("x" * 5000), "loop": tmp_path / "loop"}[case]
    try:
        expected: object = (Path(path).exists(), Path(path).is_dir(), Path(path).is_file())
    except OSError as exc:  # what pathlib raises, path_mode raises
        expected = exc.errno
    try:
        mode = path_mode(str(path))
        got: object = (mode is not None, stat.S_ISDIR(mode or 0), stat.S_ISREG(mode or 0))
    except OSError as exc:
        got = exc.errno
    assert got == expected
    assert case != "too long" or got == errno.ENAMETOOLONG  # the case where both raise, not say "no"
