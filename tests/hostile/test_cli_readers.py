"""Hostile inputs for the CLI and the readers it owns (issue 11): files that are not regular files, names no
writer can encode, numbers past every limit, names that are spreadsheet formulas or HTML, deep HDF5 groups,
ONNX subgraph prefixes that multiply memory, and mutated ONNX / HDF5 / .keras / .npy files.

Each run goes through the harness (``_limits``): its own process, no standard input, 2 GiB of address space."""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import textwrap
import zipfile
from pathlib import Path

import pytest

from ._limits import assert_clean, assert_refused, run_cli

# ------------------------------------------------------------------------------------------------ fixtures


def _safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A float32 safetensors file of zeros; names may hold anything JSON can escape (lone surrogates too)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4
        for d in shape:
            size *= d
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode("ascii")  # ensure_ascii: "\udcff" travels as an escape
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return path


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            return bytes(out + bytes([byte]))
        out.append(byte | 0x80)


def _len(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _tensor(name: bytes, dims: tuple[int, ...] = (2,)) -> bytes:
    """A FLOAT TensorProto with its raw_data."""
    numel = 1
    for d in dims:
        numel *= d
    body = b"".join(b"\x08" + _varint(d) for d in dims) + b"\x10\x01" + _len(8, name)
    return body + _len(9, bytes(4 * numel))


def _onnx(*graph_fields: bytes) -> bytes:
    return b"\x08\x09" + _len(7, b"".join(graph_fields))


def _subgraph_node(node_name: bytes, attr_name: bytes, tensors: list[bytes]) -> bytes:
    """A graph node (an If) whose then_branch subgraph holds ``tensors`` as initializers."""
    graph = b"".join(_len(5, t) for t in tensors)
    attr = _len(1, attr_name) + _len(6, graph)
    return _len(1, _len(3, node_name) + _len(4, b"If") + _len(5, attr))


# ------------------------------------------------------------------- only regular files are opened (item 6)


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    return _safetensors(tmp_path / "model.safetensors", {"w": (2, 3)})


def test_a_fifo_source_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    assert_refused(run_cli(fifo, timeout=20), fifo, "named pipe (FIFO), not a regular file")


def test_a_fifo_config_beside_weights_is_skipped_with_a_note(tmp_path, weights):
    os.mkfifo(tmp_path / "config.json")
    for source in (tmp_path, weights):
        result = assert_clean(run_cli(source, timeout=20), expect=0)
        assert "config.json beside the weights not used: not a regular file" in result.stdout
        assert "6 " in result.stdout or "6\n" in result.stdout


def test_a_fifo_config_alone_in_a_directory_is_refused(tmp_path):
    os.mkfifo(tmp_path / "config.json")
    assert_refused(run_cli(tmp_path, timeout=20), "config.json", "named pipe (FIFO)")


def test_a_fifo_named_as_an_index_shard_is_not_opened(tmp_path):
    os.mkfifo(tmp_path / "model-00001-of-00001.safetensors")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {"w": "model-00001-of-00001.safetensors"}}))
    for source in (tmp_path, index):
        result = assert_clean(run_cli(source, timeout=20), expect=1)
        assert "model-00001-of-00001.safetensors" in result.stderr


def test_a_fifo_among_directory_entries_is_not_opened(tmp_path, weights):
    os.mkfifo(tmp_path / "z.safetensors")
    os.mkfifo(tmp_path / "pipe.bin")
    assert_clean(run_cli(tmp_path, timeout=20))


@pytest.mark.parametrize(("device", "kind"), [("/dev/zero", "character device"), ("/dev/null", "character device"),
                                               ("/dev/stdin", "")])
def test_devices_are_refused(device, kind):
    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    assert_refused(run_cli(device, timeout=20), device, f"{kind}" if kind else "not a regular file")


def test_a_symlink_to_a_device_is_refused(tmp_path):
    link = tmp_path / "model.safetensors"
    link.symlink_to("/dev/zero")
    assert_refused(run_cli(link, timeout=20), link, "character device, not a regular file")


def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "s.onnx"
    if len(os.fsencode(path)) > 100:
        pytest.skip("socket paths are limited to ~107 bytes")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        assert_refused(run_cli(path, timeout=20), path, "a socket, not a regular file")
    finally:
        server.close()


# ------------------------------------------------------------------ names no writer can encode (item 3 c, d)

FORMATS = ("tree", "table", "json", "csv", "markdown", "html")


SURROGATE_MODULE = """
from torch import nn
class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.add_module("a\\udcff", nn.Linear(2, 2))
"""


def test_a_lone_surrogate_in_a_live_module_name_is_escaped(tmp_path):
    spec = tmp_path / "m.py"
    spec.write_text(SURROGATE_MODULE)
    out = tmp_path / "out.md"
    assert_clean(run_cli(f"{spec}:M", "-f", "markdown", "--by", "tensor", "-o", out), expect=0)
    # text.safe writes the surrogate as \udcff; Markdown then escapes that backslash
    assert "| a\\\\udcff.weight | [2, 2] |" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_lone_surrogate_is_escaped_in_every_format_written_with_o(tmp_path, fmt):
    # in-process (torch is imported once): the output file must be strict UTF-8 whatever the format
    from paramscope.cli import main

    spec = tmp_path / "m.py"
    spec.write_text(SURROGATE_MODULE)
    out, err = tmp_path / f"out.{fmt}", io.StringIO()
    by = "tensor" if fmt != "html" else "module"
    assert main([f"{spec}:M", "-f", fmt, "--by", by, "-o", str(out)], stdout=io.StringIO(), stderr=err) == 0, \
        err.getvalue()
    written = out.read_bytes().decode("utf-8")  # strict
    assert "udcff" in written and "\udcff" not in written


def test_non_utf8_file_names_as_source_and_output(tmp_path):
    source = _safetensors(tmp_path / os.fsdecode(b"\xff\xfe.safetensors"), {"w": (3,)})
    out = tmp_path / os.fsdecode(b"\xfe.csv")
    assert_clean(run_cli(source, "-f", "csv", "-o", out), expect=0)
    assert out.read_text(encoding="utf-8") == (
        "module,type,parameters,percent,trainable,buffers,bytes\n,,3,100.0,,0,12\n"
    )
    bad = tmp_path / os.fsdecode(b"\xff.safetensors")
    bad.write_bytes(b"garbage that is no checkpoint")
    result = assert_clean(run_cli(bad), expect=1)
    assert "\\udcff.safetensors" in result.stderr  # the undecodable byte shown as an escape, on one line


# ---------------------------------------------------------------------- numbers past every limit (item 3 b)


@pytest.mark.parametrize("dims", [(2**62,) * 20, (2**62,) * 400, (3, -1)])
def test_a_live_shape_beyond_int64_is_refused_in_one_line(tmp_path, dims):
    spec = tmp_path / "big.py"
    spec.write_text(textwrap.dedent(f"""
        import torch
        from torch import nn
        class Big(nn.Module):
            def __init__(self):
                super().__init__()
                p = nn.Parameter(torch.empty(0, device="meta"))
                p.ds_shape = {dims!r}
                p.ds_numel = 1
                for d in p.ds_shape:
                    p.ds_numel *= d
                self.w = p
    """))
    result = run_cli(f"{spec}:Big", "-f", "csv")
    if -1 in dims:  # refused earlier, by ZeRO-3's metadata check, which names the tensor only
        assert_refused(result, "w", "negative dimension")
    else:
        assert_refused(result, "big.py", f"{len(dims)} dimensions holding more elements than int64 can count")


@pytest.mark.parametrize("fmt", ["csv", "markdown"])
def test_renderers_write_counts_past_the_digit_limit(fmt):
    from paramscope import text
    from paramscope.records import Inventory, Role, TensorRecord
    from paramscope.renderers import RenderOptions, render
    from paramscope.report import Report

    shape = (2**62,) * 400  # 24,800 bits: 7,466 digits, past the 4,300 str() allows
    record = TensorRecord("w", shape, "float32", Role.PARAMETER, None, None, "(file)", origin="f")
    report = Report(Inventory("huge", "test", [record]))
    out = render(report, fmt, RenderOptions(by="tensor"))
    numel = 2 ** (62 * 400)
    assert text.exact(numel).replace(",", "")[:20] == "34985852975793758758"
    if fmt == "csv":
        assert f",{text.digits(numel)},{text.digits(numel * 4)}," in out
    elif fmt == "markdown":
        assert f"| {text.exact(numel)} |" in out


# ------------------------------------------------------------------- CSV and Markdown injection (item 10)

INJECTION_NAMES = ("=cmd|calc", "@SUM(1)", "+1", "-2", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
                   "a&amp;b", "[x](javascript:alert(1))", "`code`|x")


@pytest.fixture
def injection(tmp_path: Path) -> Path:
    return _safetensors(tmp_path / "evil.safetensors", {name: (1,) for name in INJECTION_NAMES})


def test_csv_neutralises_formulas_and_keeps_numbers(injection, tmp_path):
    out = tmp_path / "out.csv"
    assert_clean(run_cli(injection, "-f", "csv", "--by", "tensor", "-o", out), expect=0)
    assert out.read_text(encoding="utf-8").splitlines() == [
        "name,shape,dtype,role,trainable,numel,bytes,tied_to",
        "\"'=cmd|calc\",1,float32,parameter,,1,4,",
        "\"'@SUM(1)\",1,float32,parameter,,1,4,",
        "\"'+1\",1,float32,parameter,,1,4,",
        "\"'-2\",1,float32,parameter,,1,4,",
        "<script>alert(1)</script>,1,float32,parameter,,1,4,",
        "<img src=x onerror=alert(1)>,1,float32,parameter,,1,4,",
        "a&amp;b,1,float32,parameter,,1,4,",
        "[x](javascript:alert(1)),1,float32,parameter,,1,4,",
        "`code`|x,1,float32,parameter,,1,4,",
    ]


def test_csv_module_rows_neutralise_formulas(tmp_path):
    source = _safetensors(tmp_path / "evil.safetensors", {"=cmd|calc.w": (1,), "-2.w": (3,)})
    out = tmp_path / "out.csv"
    assert_clean(run_cli(source, "-f", "csv", "-o", out), expect=0)
    assert out.read_text(encoding="utf-8").splitlines() == [
        "module,type,parameters,percent,trainable,buffers,bytes",
        ",,4,100.0,,0,16",
        "\"'=cmd|calc\",,1,25.0,,0,4",
        "\"'-2\",,3,75.0,,0,12",
    ]


def test_markdown_escapes_html_links_and_code(injection, tmp_path):
    out = tmp_path / "out.md"
    assert_clean(run_cli(injection, "-f", "markdown", "--by", "tensor", "--top", "9", "-o", out), expect=0)
    lines = out.read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines if line.endswith("| 4 B | - |")]
    assert [row.split(" | [1] |")[0] for row in rows] == [
        "| =cmd\\|calc", "| @SUM(1)", "| +1", "| -2", "| &lt;script&gt;alert(1)&lt;/script&gt;",
        "| &lt;img src=x onerror=alert(1)&gt;", "| a&amp;amp;b", "| \\[x\\](javascript:alert(1))",
        "| \\`code\\`\\|x",
    ]
    top = [line for line in lines if line.startswith("- ") and line.endswith(": 1")]
    assert "- `` `code`|x `` [1] float32: 1" in top
    assert "- `<script>alert(1)</script>` [1] float32: 1" in top  # a code span: shown, never markup
    assert "<script>" not in "\n".join(line for line in lines if line not in top)


# --------------------------------------------------------------------------- deep HDF5 groups (item 3 a)


def _deep_h5(path: Path, depth: int, key: str = "g") -> Path:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w", libver="latest") as f:
        group = f
        for _ in range(depth):
            group = group.create_group(key)
        group.create_dataset("w", shape=(2, 3), dtype="f4")
    return path


def test_hdf5_groups_thousands_deep_are_one_line(tmp_path):
    path = _deep_h5(tmp_path / "deep.h5", 3000)
    assert_refused(run_cli(path), path, "HDF5 groups nested deeper than 64 levels")


def test_hdf5_groups_at_the_depth_limit_are_read(tmp_path):
    path = _deep_h5(tmp_path / "ok.h5", 64)
    result = assert_clean(run_cli(path, "-f", "csv", "--by", "tensor"), expect=0)
    assert result.stdout.splitlines()[1] == "g." * 64 + "w,2x3,float32,parameter,,6,24,"
    assert_refused(run_cli(_deep_h5(tmp_path / "over.h5", 65)), "over.h5", "nested deeper than 64 levels")


def test_hdf5_names_past_the_cap_are_refused(tmp_path):
    path = _deep_h5(tmp_path / "long.h5", 3, key="k" * 30_000)  # 3 x 30,000 characters, joined: over 65,536
    assert_refused(run_cli(path), path, "longer than the 65,536 paramscope reads")


def test_a_deep_keras_archive_is_one_line(tmp_path):
    h5 = _deep_h5(tmp_path / "model.weights.h5", 500)
    archive = tmp_path / "deep.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("config.json", "{}")
        z.write(h5, "model.weights.h5")
    assert_refused(run_cli(archive), archive, "nested deeper than 64")


# ------------------------------------------------------------ ONNX subgraph prefixes multiply names (item 4)


def test_onnx_128k_prefix_on_every_subgraph_tensor_is_refused_at_once(tmp_path):
    # the reported file: node and attribute names of 64 KiB each, prefixed to each of ~20,000 tiny tensors
    tensors = [_tensor(b"t%d" % i, dims=()) for i in range(20_000)]
    path = tmp_path / "prefix.onnx"
    path.write_bytes(_onnx(_subgraph_node(b"n" * 65536, b"a" * 65536, tensors)))
    assert path.stat().st_size < 512 * 1024
    result = assert_refused(run_cli(path), path, "a tensor name of 131,076 characters")
    assert result.seconds < 20


def test_onnx_prefixes_under_the_name_cap_are_bounded_in_total(tmp_path):
    # 4,000-character prefixes on 20,000 tensors would be 80 MB of names from a ~250 KB file
    tensors = [_tensor(b"t%d" % i, dims=()) for i in range(20_000)]
    path = tmp_path / "total.onnx"
    path.write_bytes(_onnx(_subgraph_node(b"n" * 2000, b"a" * 2000, tensors)))
    result = assert_refused(run_cli(path), path, "total more characters than the file has bytes plus 32 MiB")
    assert result.seconds < 20


def test_onnx_subgraph_names_share_their_prefix_and_are_exact(tmp_path):
    inner = _subgraph_node(b"inner", b"else_branch", [_tensor(b"x")])
    graph = _len(1, _len(3, b"outer") + _len(4, b"If") + _len(5, _len(1, b"then_branch") + _len(6, inner)))
    path = tmp_path / "nested.onnx"
    path.write_bytes(_onnx(graph, _len(5, _tensor(b"top"))))
    result = assert_clean(run_cli(path, "-f", "csv", "--by", "tensor"), expect=0)
    assert [line.split(",")[0] for line in result.stdout.splitlines()[1:]] == [
        "top", "outer.then_branch.inner.else_branch.x"]


def test_a_bytes_path_that_is_not_utf8_is_read_in_process(tmp_path):
    import paramscope

    source = _safetensors(tmp_path / os.fsdecode(b"\xff.safetensors"), {"w": (5,)})
    report = paramscope.inspect(os.fsencode(source))
    assert (report.total, report.source) == (5, str(source))
