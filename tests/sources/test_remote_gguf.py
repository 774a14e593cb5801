"""Remote GGUF (issue 15, item 1): ``https://.../x.gguf``, ``hf:org/name`` of a GGUF repository (a listing of
its quantizations, each from its header) and ``hf:org/name:file.gguf``, split GGUFs combined, all by ranged
reads against the loopback fake Hub (tests/sources/_fake_hub.py). Counts are compared with gguf-py's own
GGUFReader and with paramscope's local read of the same file; bytes and requests with the fake Hub's counters.
"""

from __future__ import annotations

import math
import struct
import sys
from pathlib import Path

import gguf
import pytest

from paramscope.errors import ParamscopeError
from paramscope.report import Report
from paramscope.sources import gguf as gguf_source
from paramscope.sources import open_source, remote
from paramscope.sources.ranged import FileRangeReader

sys.path.insert(0, str(Path(__file__).parent))
from _fake_hub import write_repo
from _gguf_helpers import write_gguf
from _gguf_repo import LLAMA_7B, LLAMA_7B_PARAMS, QUANTIZATIONS, gguf_py_parameters, llama_tensors, write_llama_gguf

pytest.importorskip("huggingface_hub")

SMALL = {"vocab": 1000, "hidden": 256, "layers": 2, "ffn": 512}
SMALL_PARAMS = 2 * 1000 * 256 + 2 * (4 * 256 * 256 + 3 * 256 * 512 + 2 * 256) + 256




@pytest.fixture(scope="module")
def quant_repo(tmp_path_factory):
    """Eight quantizations of a 7B-shaped model (real headers, sparse data) and a README."""
    directory = tmp_path_factory.mktemp("llama-gguf")
    for quant in QUANTIZATIONS:
        write_llama_gguf(directory / f"llama-2-7b.{quant}.gguf", quant)
    write_repo(directory, {"README.md": b"# GGUF"})
    return directory


def local_records(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    return [(t.name, t.shape, t.dtype) for t in gguf_source.read_file(path).tensors]  # one file, not its split


def records(inventory) -> list[tuple[str, tuple[int, ...], str]]:
    return [(t.name, t.shape, t.dtype) for t in inventory.tensors]


def test_small_gguf_url_matches_gguf_py_and_the_local_read(hub, tmp_path):
    def configure(writer):
        writer.add_token_list([f"t{i}" for i in range(5000)])
        writer.add_token_scores([0.5] * 5000)
    path = tmp_path / "tiny.gguf"
    expected = write_gguf(path, "llama", {"token_embd.weight": (50, 16), "blk.0.attn_q.weight": (16, 16)}, configure)
    inventory = open_source(f"{hub.url}/plain/tiny.gguf")
    assert Report(inventory).total == expected == 50 * 16 + 16 * 16
    assert records(inventory) == local_records(path)
    assert inventory.format == "gguf" and inventory.source == f"{hub.url}/plain/tiny.gguf"
    assert {t.origin for t in inventory.tensors} == {"tiny.gguf"}
    assert inventory.metadata["requests"] == hub.gets("tiny.gguf")
    assert any(note.startswith("Read 1 GGUF header(s) over HTTP") for note in inventory.notes)


def test_a_repository_of_eight_quantizations_is_listed_from_headers(hub, quant_repo):
    """The table a user picks from: exact parameters (gguf-py), the file's size, its quantization; each file
    costs at most 1.2x the bytes before its data section, in a few requests."""
    from paramscope.pipeline import read

    hub.add_repo("acme/llama-gguf", quant_repo)
    inventory = read("hf:acme/llama-gguf")
    rows = inventory.metadata["gguf.files"]
    assert [row["file"] for row in rows] == sorted(f"llama-2-7b.{q}.gguf" for q in QUANTIZATIONS)
    # gguf-py's reader takes seconds on a 32k vocabulary: it is the reference for one file, and paramscope's
    # local reader (itself checked against gguf-py in test_gguf.py) for the other seven
    reference = gguf.GGUFReader(quant_repo / "llama-2-7b.Q4_K_M.gguf")
    assert sum(int(t.n_elements) for t in reference.tensors) == LLAMA_7B_PARAMS
    for row in rows:
        path = quant_repo / row["file"]
        local = gguf_source.read(path)
        assert row["parameters"] == Report(local).total == LLAMA_7B_PARAMS
        assert row["bytes"] == path.stat().st_size
        assert row["quantization"] == row["file"].split(".")[1]
        assert row["data_offset"] == local.metadata["gguf.data_offset"] == reference.data_offset
        assert hub.sent[row["file"]] <= 1.2 * row["data_offset"]
        assert hub.gets(row["file"]) <= 6
    assert inventory.format == "gguf-listing" and inventory.tensors == [] and "gguf.models" not in inventory.pending
    # bits per weight as llama.cpp prints it (tensor bytes * 8 / tensor elements): from gguf-py's reader for one
    # file, from gguf-py's block table and the tensors written for every file
    q4 = next(row for row in rows if row["file"] == "llama-2-7b.Q4_K_M.gguf")
    expected = 8 * sum(int(t.n_bytes) for t in reference.tensors) / sum(int(t.n_elements) for t in reference.tensors)
    assert q4["bits_per_weight"] == round(expected, 2) == 4.54  # Q4_K 144 B per 256, output Q6_K 210 B per 256
    for row in rows:
        _, big, output = QUANTIZATIONS[row["quantization"]]
        f32 = gguf.GGMLQuantizationType.F32
        sizes = [(math.prod(dims), (output if name == "output.weight" else big) if is_big else f32)
                 for name, dims, is_big in llama_tensors(**LLAMA_7B)]
        data = sum(n // gguf.GGML_QUANT_SIZES[q][0] * gguf.GGML_QUANT_SIZES[q][1] for n, q in sizes)
        assert row["bits_per_weight"] == round(8 * data / LLAMA_7B_PARAMS, 2), row["file"]
        assert row["parts"] == 1 and row["error"] is None


def test_a_named_file_of_the_repository(hub, quant_repo):
    hub.add_repo("acme/llama-gguf", quant_repo)
    inventory = open_source("hf:acme/llama-gguf:llama-2-7b.Q4_K_M.gguf")
    assert Report(inventory).total == LLAMA_7B_PARAMS
    assert records(inventory) == local_records(quant_repo / "llama-2-7b.Q4_K_M.gguf")
    assert inventory.metadata["gguf.file_type"] == "MOSTLY_Q4_K_M"
    fetched = {name for method, name, _ in hub.requests if name.endswith(".gguf")}
    assert fetched == {"llama-2-7b.Q4_K_M.gguf"}  # no other quantization, and no listing, was read


def test_a_repository_of_one_gguf_reads_it(hub, tmp_path):
    write_llama_gguf(tmp_path / "repo" / "model.Q8_0.gguf", "Q8_0", SMALL)
    hub.add_repo("acme/one", tmp_path / "repo")
    inventory = open_source("hf:acme/one")
    assert Report(inventory).total == SMALL_PARAMS == gguf_py_parameters(tmp_path / "repo" / "model.Q8_0.gguf")
    assert inventory.format == "gguf"


def test_split_gguf_is_combined(hub, tmp_path):
    """gguf-py's writer splits the model into parts; any part's URL (and the repository) reads all of them."""
    parts = write_llama_gguf(tmp_path / "repo" / "m.gguf", "Q4_K_M", SMALL, split_max_tensors=7)
    assert len(parts) == 3
    expected = sum(gguf_py_parameters(p) for p in parts)
    assert expected == SMALL_PARAMS
    hub.add_repo("acme/split", tmp_path / "repo")
    hub.plain = tmp_path / "repo"
    for source in ("hf:acme/split", f"hf:acme/split:{parts[1].name}", f"{hub.url}/plain/{parts[2].name}"):
        inventory = open_source(source)
        assert Report(inventory).total == expected, source
        assert records(inventory) == [r for p in parts for r in local_records(p)]
        assert [t.origin for t in inventory.tensors] == [p.name for p in parts for _ in local_records(p)]
        assert inventory.metadata["gguf.splits"] == 3


def test_a_split_with_a_part_missing_is_one_line(hub, tmp_path):
    parts = write_llama_gguf(tmp_path / "m.gguf", "Q4_K_M", SMALL, split_max_tensors=7)
    parts[1].unlink()
    with pytest.raises(ParamscopeError, match=r"m-00002-of-00003\.gguf: not found \(404\)"):
        open_source(f"{hub.url}/plain/{parts[0].name}")


def test_a_part_that_lies_about_its_number_is_refused(hub, tmp_path):
    parts = write_llama_gguf(tmp_path / "m.gguf", "Q4_K_M", SMALL, split_max_tensors=7)
    parts[0].rename(tmp_path / "swap")
    parts[1].rename(parts[0])
    (tmp_path / "swap").rename(parts[1])
    with pytest.raises(ParamscopeError, match=r"says it is split 1 of 3, but it is part 0 of 3"):
        open_source(f"{hub.url}/plain/{parts[0].name}")


def test_skipping_fixed_width_arrays_saves_their_bytes(hub, tmp_path):
    """Scores and token types (32k x 4 bytes each, 250 KiB) are skipped by range: most of them never fetched
    (bench/bench_remote_gguf.py measures it)."""
    path = write_llama_gguf(tmp_path / "m.gguf", "Q4_K_M")[0]
    inventory = open_source(f"{hub.url}/plain/m.gguf")
    data_offset = gguf_source.read(path).metadata["gguf.data_offset"]
    assert data_offset == 968_064  # the header gguf-py wrote, tokens ~470 KB of it
    assert hub.sent["m.gguf"] <= data_offset - 128_000
    assert Report(inventory).total == LLAMA_7B_PARAMS


@pytest.mark.parametrize(("knob", "count", "ok"), [("fail", 2, True), ("fail", 3, False), ("truncate", 1, True),
                                                     ("stall", 1, True)])
def test_faults_are_retried_or_one_line(hub, tmp_path, monkeypatch, knob, count, ok):
    monkeypatch.setattr(hub, "stall_seconds", 1.5)
    path = write_llama_gguf(tmp_path / "m.gguf", "Q4_K_M", SMALL)[0]
    getattr(hub, knob)["m.gguf"] = count
    if ok:
        assert Report(open_source(f"{hub.url}/plain/m.gguf")).total == SMALL_PARAMS
        assert records(open_source(f"{hub.url}/plain/m.gguf")) == local_records(path)
    else:
        with pytest.raises(ParamscopeError, match=r"m\.gguf: server answered HTTP 500 \(after 3 attempts\)"):
            open_source(f"{hub.url}/plain/m.gguf")


def test_a_server_ignoring_range_sends_only_the_header(hub, tmp_path):
    write_llama_gguf(tmp_path / "m.gguf", "Q4_K_M")
    hub.ignore_range = True
    inventory = open_source(f"{hub.url}/plain/m.gguf")
    assert Report(inventory).total == LLAMA_7B_PARAMS
    # each request reads from byte 0 to its end and hangs up: never the 3.8 GB of weights (the server's count
    # includes what its socket buffers took before the hang-up)
    data_offset = inventory.metadata["gguf.data_offset"]
    assert inventory.metadata["fetched_bytes"] <= inventory.metadata["requests"] * data_offset
    assert hub.sent["m.gguf"] < 64 << 20


def test_access_denied_and_missing_are_one_line(hub, quant_repo):
    hub.add_repo("acme/llama-gguf", quant_repo)
    hub.token = "secret"
    hub.token_scope = ".gguf"
    with pytest.raises(ParamscopeError, match=r"llama-2-7b\.Q2_K\.gguf: authentication required"):
        open_source("hf:acme/llama-gguf:llama-2-7b.Q2_K.gguf")
    hub.token_scope = ""
    hub.token = None
    with pytest.raises(ParamscopeError, match=r"nothing\.gguf: not found \(404\)"):
        open_source("hf:acme/llama-gguf:nothing.gguf")


def test_a_vocabulary_that_claims_more_than_the_file_is_refused_before_fetching(hub, tmp_path):
    path = tmp_path / "lie.gguf"
    write_gguf(path, "llama", {"w": (4, 4)}, lambda w: w.add_token_list(["a", "b"]))
    data = bytearray(path.read_bytes())
    at = data.index(b"tokenizer.ggml.tokens") + len(b"tokenizer.ggml.tokens") + 4 + 4
    struct.pack_into("<Q", data, at, 1 << 40)
    path.write_bytes(bytes(data))
    with pytest.raises(ParamscopeError, match=r"declares 1099511627776 items of string, more than the file"):
        open_source(f"{hub.url}/plain/lie.gguf")
    assert hub.sent["lie.gguf"] == len(data)


def test_the_local_and_ranged_readers_are_one_parser(tmp_path):
    """A local file read through the ranged entry point gives the same inventory as the local reader."""
    path = write_llama_gguf(tmp_path / "m.gguf", "Q6_K", SMALL)[0]
    with open(path, "rb") as handle:
        reader = FileRangeReader(handle, "m.gguf")
        ranged = gguf_source.read_ranged(reader, "somewhere")
    local = gguf_source.read(path)
    assert records(ranged) == records(local) and ranged.source == "somewhere"
    assert {k: v for k, v in ranged.metadata.items()} == local.metadata
    assert reader.fetched_bytes <= local.metadata["gguf.data_offset"] + gguf_source.REMOTE_MIN_READ


def test_unsupported_hub_file_is_one_line(hub, quant_repo):
    hub.add_repo("acme/llama-gguf", quant_repo)
    with pytest.raises(ParamscopeError, match=r"README\.md: paramscope reads \.safetensors, \.gguf"):
        open_source("hf:acme/llama-gguf:README.md")
    with pytest.raises(ParamscopeError, match=r"not a file name inside the repository"):
        open_source("hf:acme/llama-gguf:../x.gguf")


def test_ranged_kind():
    assert remote.ranged_kind("a/B.GGUF") == "gguf" and remote.ranged_kind("x.pth") == "pytorch"
    assert remote.ranged_kind("model.safetensors") is None
    assert gguf_source.split_names("d/x-00002-of-00003.gguf") == [
        "d/x-00001-of-00003.gguf", "d/x-00002-of-00003.gguf", "d/x-00003-of-00003.gguf"]
    assert gguf_source.split_names("x-00004-of-00003.gguf") is None
    assert gguf_source.split_names("x.gguf") is None


def test_the_file_option_names_a_file_of_the_repository(hub, tmp_path):
    import io
    import json

    from paramscope.cli import main

    write_llama_gguf(tmp_path / "repo" / "m.Q8_0.gguf", "Q8_0", SMALL)
    write_llama_gguf(tmp_path / "repo" / "m.Q4_0.gguf", "Q4_0", SMALL)
    hub.add_repo("acme/two", tmp_path / "repo")
    for source in ("hf:acme/two", "acme/two"):
        out, err = io.StringIO(), io.StringIO()
        assert main([source, "--file", "m.Q4_0.gguf", "--format", "json", "--no-progress"], stdout=out, stderr=err) == 0
        report = json.loads(out.getvalue())
        assert report["total"] == SMALL_PARAMS and report["metadata"]["file"] == "m.Q4_0.gguf"
        assert err.getvalue() == ""
    out, err = io.StringIO(), io.StringIO()
    assert main(["hf:acme/two", "--format", "json", "--no-progress"], stdout=out, stderr=err) == 0
    rows = json.loads(out.getvalue())["files"]
    assert [(r["file"], r["quantization"], r["parameters"]) for r in rows] == [
        ("m.Q4_0.gguf", "Q4_0", SMALL_PARAMS), ("m.Q8_0.gguf", "Q8_0", SMALL_PARAMS)]
    out, err = io.StringIO(), io.StringIO()
    assert main([str(tmp_path / "x.gguf"), "--file", "m.Q4_0.gguf", "--no-progress"], stdout=out, stderr=err) == 1
    assert err.getvalue().endswith("--file names a file of a Hugging Face repository, and SOURCE is not one\n")


def test_a_listing_reads_at_most_max_listed_gguf_headers(hub, tmp_path, monkeypatch):
    from paramscope.sources import hub as hub_source

    monkeypatch.setattr(hub_source, "MAX_LISTED_GGUF", 2)
    for quant in ("Q4_0", "Q8_0", "F16"):
        write_llama_gguf(tmp_path / "repo" / f"m.{quant}.gguf", quant, SMALL)
    hub.add_repo("acme/three", tmp_path / "repo")
    inventory = open_source("hf:acme/three")
    assert [row["file"] for row in inventory.metadata["gguf.files"]] == ["m.F16.gguf", "m.Q4_0.gguf"]
    assert hub.gets("m.Q8_0.gguf") == 0
    assert "1 more GGUF models are not listed (at most 2 are)" in inventory.notes


def test_403_is_one_line_at_once(hub, tmp_path):
    write_llama_gguf(tmp_path / "m.gguf", "Q4_0", SMALL)
    hub.forbid = {"m.gguf"}
    with pytest.raises(ParamscopeError, match=r"m\.gguf: access denied \(set HF_TOKEN to a token with access\)"):
        open_source(f"{hub.url}/plain/m.gguf")
    assert hub.gets("m.gguf") == 1  # not retried


def test_a_split_gguf_on_disk_is_one_model(tmp_path):
    """Any part's path, or the directory, reads every part (gguf-py counts each part's tensors)."""
    parts = write_llama_gguf(tmp_path / "m.gguf", "Q4_K_M", SMALL, split_max_tensors=7)
    expected = sum(gguf_py_parameters(p) for p in parts)
    assert expected == SMALL_PARAMS and len(parts) == 3
    for source in (parts[0], parts[2], tmp_path):
        inventory = open_source(str(source))
        assert Report(inventory).total == expected, source
        names = [t.name for p in parts for t in gguf.GGUFReader(p).tensors]
        assert [t.name for t in inventory.tensors] == names
        assert inventory.metadata["gguf.splits"] == 3 and inventory.source == str(source)


def test_a_split_gguf_on_disk_with_a_part_missing_is_one_line(tmp_path):
    from tests.hostile._limits import assert_refused, run_cli

    parts = write_llama_gguf(tmp_path / "m.gguf", "Q4_K_M", SMALL, split_max_tensors=7)
    parts[1].unlink()
    for source in (parts[0], tmp_path):
        result = run_cli(str(source))
        assert_refused(result, str(source), "part m-00002-of-00003.gguf of the split GGUF is missing")


def test_a_directory_of_several_gguf_models_is_not_one_model(tmp_path):
    write_llama_gguf(tmp_path / "m.Q4_0.gguf", "Q4_0", SMALL)
    write_llama_gguf(tmp_path / "m.Q8_0.gguf", "Q8_0", SMALL)
    assert not gguf_source.sniff_directory(tmp_path)
    assert Report(open_source(str(tmp_path / "m.Q8_0.gguf"))).total == SMALL_PARAMS
    (tmp_path / "m.Q4_0.gguf").unlink()
    assert not gguf_source.sniff_directory(tmp_path)  # one plain file: the directory rules of files.py decide


def test_the_listing_is_a_table_to_pick_from_in_every_format(hub, tmp_path):
    """Two quantizations, a split one (one row) and a GPT-2 whose head is a stored copy of its embedding
    (parameters count it once, as ties.py says llama.cpp writes it): every figure against gguf-py."""
    import csv
    import io
    import json
    from importlib.resources import files

    from paramscope.cli import main

    jsonschema = pytest.importorskip("jsonschema")
    repo = tmp_path / "repo"
    write_llama_gguf(repo / "m.Q8_0.gguf", "Q8_0", SMALL)
    write_llama_gguf(repo / "-m.Q4_0.gguf", "Q4_0", SMALL)  # a CSV cell that starts with "-" is a formula
    split = write_llama_gguf(repo / "m.Q4_K_M.gguf", "Q4_K_M", SMALL, split_max_tensors=7)
    write_gguf(repo / "gpt2.F32.gguf", "gpt2", {"token_embd.weight": (50, 16), "output.weight": (50, 16),
                                                  "blk.0.attn_q.weight": (16, 16)})
    hub.add_repo("acme/q", repo)

    def reference(paths: list[Path], quantization: str, tied: int = 0) -> dict:
        tensors = [t for p in paths for t in gguf.GGUFReader(p).tensors]
        elements, data = sum(int(t.n_elements) for t in tensors), sum(int(t.n_bytes) for t in tensors)
        return {"file": paths[0].name, "parts": len(paths), "quantization": quantization,
                "bytes": sum(p.stat().st_size for p in paths), "parameters": elements - tied,
                "bits_per_weight": round(8 * data / elements, 2), "tensors": len(tensors), "error": None}

    expected = [reference([repo / "-m.Q4_0.gguf"], "Q4_0"),
                reference([repo / "gpt2.F32.gguf"], "float32", tied=50 * 16),
                reference(split, "Q4_K_M"), reference([repo / "m.Q8_0.gguf"], "Q8_0")]
    assert [row["parameters"] for row in expected] == [SMALL_PARAMS, 16 * 16 + 50 * 16, SMALL_PARAMS, SMALL_PARAMS]

    def run(fmt: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        assert main(["hf:acme/q", "--format", fmt, "--no-progress"], stdout=out, stderr=err) == 0
        assert err.getvalue() == ""
        return out.getvalue()

    doc = json.loads(run("json"))
    jsonschema.validate(doc, json.loads(files("paramscope").joinpath("schema/listing-v1.json").read_text()))
    assert doc["source"] == "hf:acme/q" and doc["files"] == expected

    assert list(csv.DictReader(io.StringIO(run("csv")))) == [
        {"file": ("'" if row["file"].startswith("-") else "") + row["file"], "parts": str(row["parts"]),
         "quantization": row["quantization"], "bytes": str(row["bytes"]), "parameters": str(row["parameters"]),
         "bits_per_weight": str(row["bits_per_weight"]), "error": ""} for row in expected]

    lines = run("tree").splitlines()
    assert lines[0] == ("4 GGUF models in hf:acme/q; name one to read it: hf:acme/q:-m.Q4_0.gguf "
                        "(or hf:acme/q --file FILE)")
    assert lines[2].split() == ["file", "quantization", "size", "parameters", "bits/weight"]
    bpw = f"{expected[0]['bits_per_weight']:.2f}"
    assert lines[4].split() == ["-m.Q4_0.gguf", "Q4_0", "1.1", "MiB", "1,824,000", bpw]
    assert lines[5].split() == ["gpt2.F32.gguf", "float32", "7.5", "KiB", "1,056", "32.00"]
    assert lines[6].split()[:3] == ["m.Q4_K_M-00001-of-00003.gguf", "(+2", "parts)"]
    assert lines[7].startswith("m.Q8_0.gguf") and lines[8].startswith("note: Read 6 GGUF header(s) over HTTP")
    assert run("table") == run("tree")

    markdown = run("markdown").splitlines()
    assert markdown[4:6] == ["| file | quantization | size | parameters | bits/weight |", "|---|---|---:|---:|---:|"]
    assert markdown[7] == "| gpt2.F32.gguf | float32 | 7.5 KiB (7,680) | 1,056 | 32.00 |"


def test_what_needs_one_model_refuses_a_listing_in_one_line(hub, tmp_path):
    import io

    from paramscope import scan
    from paramscope.cli import main

    write_llama_gguf(tmp_path / "repo" / "m.Q8_0.gguf", "Q8_0", SMALL)
    write_llama_gguf(tmp_path / "repo" / "m.Q4_0.gguf", "Q4_0", SMALL)
    hub.add_repo("acme/two", tmp_path / "repo")
    said = ("hf:acme/two: a repository of 2 GGUF models: name one, as hf:acme/two:FILE or --file FILE "
            "('paramscope hf:acme/two' lists them)")
    for argv, code in ((["memory", "hf:acme/two"], 1), (["hf:acme/two", "--memory"], 1),
                       (["diff", "hf:acme/two", "hf:acme/two:m.Q8_0.gguf"], 2)):
        out, err = io.StringIO(), io.StringIO()
        assert main(argv, stdout=out, stderr=err) == code, argv
        assert (out.getvalue(), err.getvalue()) == ("", f"paramscope: {said}\n"), argv
    (row,) = scan.scan(["hf:acme/*"])
    assert row["error"] == said.removeprefix("hf:acme/two: ") and row["parameters"] is None


def test_a_listed_file_that_cannot_be_read_is_a_row_that_says_so(hub, tmp_path):
    """A cut header among good files: its row holds the reason (the header read alone says the same), the
    others are listed; when no file can be read, the first failure is the one line."""
    import io
    import json

    from paramscope.cli import main

    repo = tmp_path / "repo"
    write_llama_gguf(repo / "m.Q8_0.gguf", "Q8_0", SMALL)
    cut = write_llama_gguf(repo / "m.Q4_0.gguf", "Q4_0", SMALL)[0]
    with open(cut, "r+b") as handle:
        handle.truncate(5000)  # inside the vocabulary
    hub.add_repo("acme/cut", repo)
    with pytest.raises(ParamscopeError) as alone:
        open_source("hf:acme/cut:m.Q4_0.gguf")
    out, err = io.StringIO(), io.StringIO()
    assert main(["hf:acme/cut", "--format", "json", "--no-progress"], stdout=out, stderr=err) == 0
    rows = json.loads(out.getvalue())["files"]
    assert [(r["file"], r["parameters"], r["error"]) for r in rows] == [
        ("m.Q4_0.gguf", None, alone.value.reason), ("m.Q8_0.gguf", SMALL_PARAMS, None)]
    assert alone.value.reason == ("the value of key 'tokenizer.ggml.tokens' declares 1000 items of string, more "
                                  "than the file can hold")
    out = io.StringIO()
    assert main(["hf:acme/cut", "--no-progress"], stdout=out, stderr=io.StringIO()) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("name one to read it: hf:acme/cut:m.Q8_0.gguf (or hf:acme/cut --file FILE)")
    assert lines[4].split() == ["m.Q4_0.gguf", "?", "?", "?", "?"]
    assert lines[6] == f"note: m.Q4_0.gguf: not read: {rows[0]['error']}"
    (repo / "m.Q8_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(ParamscopeError, match=r"^hf:acme/cut: m\.Q4_0\.gguf: the value of key"):
        open_source("hf:acme/cut")


def test_hostile_split_parts_on_disk_end_in_one_line(tmp_path):
    """A part that is a FIFO (never opened to block), a dangling link, a name claiming 1,024 parts: each is one
    line naming what is wrong, at once."""
    import os

    from tests.hostile._limits import assert_refused, run_cli

    parts = write_llama_gguf(tmp_path / "m.gguf", "Q4_K_M", SMALL, split_max_tensors=7)
    parts[1].unlink()
    os.mkfifo(parts[1])
    assert_refused(run_cli(str(parts[0])), str(parts[1]), "a named pipe (FIFO), not a regular file")
    parts[1].unlink()
    parts[1].symlink_to(tmp_path / "nowhere")
    assert_refused(run_cli(str(tmp_path)), str(tmp_path), "part m-00002-of-00003.gguf of the split GGUF is missing")
    lone = tmp_path / "x-00001-of-01024.gguf"
    lone.write_bytes(parts[0].read_bytes())
    assert_refused(run_cli(str(lone)), str(lone), "part x-00002-of-01024.gguf of the split GGUF is missing "
                                                  "(and 1022 more of the 1024 parts)")


def test_the_help_names_every_remote_source():
    import io

    from paramscope.cli import main

    out = io.StringIO()
    assert main(["inspect", "--help"], stdout=out, stderr=io.StringIO()) == 0
    text = " ".join(out.getvalue().split())
    for named in ("'hf:org/name[@revision]:FILE'", "--file FILE", "s3://", "gs://", "az://", "https://",
                  "a split GGUF's parts read as one model", "several GGUF files is listed"):
        assert named in text, named


def test_a_listed_split_with_a_part_missing_is_a_row_that_says_which(hub, tmp_path):
    import io
    import json

    from paramscope.cli import main

    repo = tmp_path / "repo"
    write_llama_gguf(repo / "m.Q8_0.gguf", "Q8_0", SMALL)
    parts = write_llama_gguf(repo / "m.Q4_K_M.gguf", "Q4_K_M", SMALL, split_max_tensors=7)
    parts[2].unlink()
    hub.add_repo("acme/gap", repo)
    out, err = io.StringIO(), io.StringIO()
    assert main(["hf:acme/gap", "--format", "json", "--no-progress"], stdout=out, stderr=err) == 0
    rows = json.loads(out.getvalue())["files"]
    assert [(r["file"], r["parts"], r["parameters"], r["error"]) for r in rows] == [
        ("m.Q4_K_M-00001-of-00003.gguf", 3, None,
         "m.Q4_K_M-00003-of-00003.gguf: part of a split GGUF missing from the repository (1 of 3 parts missing)"),
        ("m.Q8_0.gguf", 1, SMALL_PARAMS, None)]
    assert hub.gets(parts[0].name) == 0  # a split known to be incomplete is not fetched
