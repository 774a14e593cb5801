"""The JSON renderer's additions: stored_elements, active, size_label and per-tensor quant, against the schema."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest

from paramscope.records import Inventory, QuantInfo, Role, TensorRecord
from paramscope.renderers import RenderOptions, render
from paramscope.report import Report


def _report() -> Report:
    records = [
        TensorRecord("embed.weight", (10, 8), "float16"),
        TensorRecord("l.qweight", (1, 8), "int32", quant=QuantInfo("gptq", 64, 4)),
        TensorRecord("l.scales", (1, 8), "float16", role=Role.QUANT_AUX),
        TensorRecord("l.experts.gate_up_proj", (2, 4, 8), "float16"),
    ]
    meta = {"moe": {"experts": 2, "experts_per_token": 1, "shared_experts": 0}}
    return Report(Inventory("toy", "safetensors", records, metadata=meta))


def test_json_has_the_new_fields_and_validates():
    jsonschema = pytest.importorskip("jsonschema")
    doc = json.loads(render(_report(), "json", RenderOptions()))
    schema = json.loads(files("paramscope").joinpath("schema/report-v1.json").read_text())
    jsonschema.validate(doc, schema)
    assert doc["total"] == 80 + 64 + 64
    assert doc["stored_elements"] == 80 + 8 + 64
    assert doc["active"] == 80 + 64 + 32
    assert doc["size_label"] == "2x176"
    assert doc["other"] == {"quant_aux": 8}
    q = next(t for t in doc["tensors"] if t["name"] == "l.qweight")
    assert q["quant"] == {"scheme": "gptq", "bits": 4, "logical": 64, "stored_elements": 8}
    assert q["numel"] == 64 and q["bytes"] == 32 and q["role"] == "parameter"


def test_dense_json_has_null_active():
    report = Report(Inventory("d", "test", [TensorRecord("a.weight", (2, 2), "float32")]))
    doc = json.loads(render(report, "json", RenderOptions()))
    assert doc["active"] is None and doc["stored_elements"] == 4 and doc["size_label"] == "4"


def test_summary_lines_for_text_renderers():
    out = render(_report(), "tree", RenderOptions(color=False))
    assert "stored elements" in out and "active per token" in out
    assert "(safetensors, 2x176)" in out
    dense = render(Report(Inventory("d", "test", [TensorRecord("a.weight", (2, 2), "float32")])), "tree",
                   RenderOptions(color=False))
    assert "stored elements" not in dense and "active per token" not in dense and "(test)" in dense


def test_each_module_and_tensor_line_is_the_encoders_text_of_its_dict():
    # The renderer writes plain rows straight from their values; each line must be exactly what the JSON
    # encoder makes of the dict that Report.to_dict holds (ties, frozen, buffers, unknown dtypes, quant,
    # uninitialized tensors, names that need escaping, a module type, None and float percents).
    records = [
        TensorRecord("emb.weight", (10, 8), "float16", trainable=True, tie="E", owner_type="Embedding"),
        TensorRecord("head.weight", (10, 8), "float16", trainable=True, tie="E"),
        TensorRecord("blk.0.w\u00e9\"\n", (3,), "bfloat16", trainable=False),
        TensorRecord("blk.0.running_mean", (3,), "float32", role=Role.BUFFER, trainable=False, persistent=False),
        TensorRecord("blk.1.q", (1, 8), "int32", quant=QuantInfo("gptq", 64, 4), trainable=True),
        TensorRecord("blk.1.odd", (2, 2), "mystery", trainable=True),
        TensorRecord("lazy.weight", None, "float32", trainable=True),
        TensorRecord("opt.m", (4,), "float32", role=Role.OPTIMIZER_STATE),
    ]
    report = Report(Inventory("toy", "torch.nn.Module", records, module_types={"blk.0": "Block", "": "Net"}))
    encode = json.JSONEncoder(ensure_ascii=True, default=str, separators=(", ", ": ")).encode
    doc = report.to_dict()
    text = render(report, "json", RenderOptions())
    lines = [line.strip().rstrip(",") for line in text.splitlines()]
    for key in ("modules", "tensors"):
        start = lines.index(f'"{key}": [') + 1
        assert lines[start : start + len(doc[key])] == [encode(row) for row in doc[key]], key
    assert json.loads(text) == json.loads(json.dumps(doc, default=str))


def _wide(count: int) -> Report:
    records = [TensorRecord(f"layers.{i // 4}.w{i % 4}.weight", (i % 7 + 1, 3), "float16") for i in range(count)]
    return Report(Inventory("wide", "safetensors", records))


@pytest.mark.parametrize("count", [0, 1, 4096, 4097, 10_000])  # no rows, one, a block exactly, a block and one
def test_render_chunks_is_render_in_pieces(count):
    from paramscope.renderers import render_chunks

    report = _wide(count)
    for options in (RenderOptions(), RenderOptions(depth=1, top=3)):
        whole = render(report, "json", options)
        pieces = list(render_chunks(report, "json", options))
        assert "".join(pieces) == whole
        assert json.loads(whole)["tensors"][-1:] == ([] if not count else [json.loads(whole)["tensors"][-1]])
        if count == 10_000:  # the tensor lines come in blocks of 4,096 lines: no piece is near the whole
            assert len(pieces) > 6 and max(map(len, pieces)) < len(whole) / 2


def test_render_chunks_of_other_formats_is_their_text_in_one_piece():
    from paramscope.renderers import render_chunks

    for fmt in ("tree", "csv", "markdown"):
        assert list(render_chunks(_report(), fmt, RenderOptions())) == [render(_report(), fmt, RenderOptions())]
    with pytest.raises(ValueError, match="unknown format 'yaml'"):
        render_chunks(_report(), "yaml")


def test_render_chunks_left_part_way_resumes_the_collector():
    import gc

    from paramscope.renderers import render_chunks

    assert gc.isenabled()
    pieces = render_chunks(_wide(5000), "json", RenderOptions())
    next(pieces)
    assert not gc.isenabled()  # paused while the rows are made ...
    pieces.close()
    assert gc.isenabled()  # ... and resumed when the writer stops early (a broken pipe)


@pytest.mark.parametrize("types", [{}, {"": "Net", "blk.0": "Block"}])
@pytest.mark.parametrize("buffered", [True, False])  # without buffers a line's tail is written per bytes alone
@pytest.mark.parametrize("escaped", ["module", "leaf", "none"])  # where a character to escape is: paths plain or not
def test_modules_written_from_columns_are_the_nodes_text(types, buffered, escaped):
    """A report over columns writes its modules from Report.module_columns; the text must be what the node tree
    gives (the tree built first makes the renderer walk its nodes instead)."""
    from paramscope.records import Table

    first = {"module": "blk.0.w\u00e9\"\n.weight", "leaf": "blk.0.w\u00e9\"\n", "none": "blk.0.w.weight"}[escaped]
    names = [first, "blk.0.norm", "blk.1.a.weight", "blk.1.a.bias", "head.weight", "x"]
    shapes = [(2, 3), (3,), (4, 4), (4,), (5, 2), (1,)]
    roles = [Role.PARAMETER, Role.BUFFER if buffered else Role.PARAMETER, Role.PARAMETER, Role.PARAMETER,
             Role.PARAMETER, Role.QUANT_AUX]
    numel = [6, 3, 16, 4, 10, 1]

    def report() -> Report:
        table = Table(list(names), shapes, ["float16"] * 6, roles, numel, [2 * n for n in numel], ["f"] * 6)
        return Report(Inventory("cols", "safetensors", table=table, module_types=types))

    from_columns = report()
    assert from_columns.columns is not None and from_columns.module_columns() is not None
    from_nodes = report()
    from_nodes.tree(None, natural=False)
    assert from_nodes.module_columns() is None
    text = render(from_columns, "json", RenderOptions())
    assert text == render(from_nodes, "json", RenderOptions())
    modules = json.loads(text)["modules"]
    held = 3 if buffered else 0  # blk.0.norm's 3 elements: a buffer, or parameters
    assert [(m["path"], m["depth"], m["parameters"], m["buffers"], m["bytes"]) for m in modules][:3] == [
        ("", 0, 6 + 16 + 4 + 10 + 3 - held, held, 2 * 40), ("blk", 1, 26 + 3 - held, held, 2 * 29),
        ("blk.0", 2, 6 + 3 - held, held, 18)]


@pytest.mark.parametrize("escaped", [False, True])
@pytest.mark.parametrize("uniform", [False, True])  # one dtype and role, nothing packed: a line's text per shape
def test_tensor_lines_joined_from_columns_are_the_encoders_text_of_each_row(escaped, uniform):
    """Plain columns are written by joining each name to the text of its (shape, dtype, role, packing); each line
    must be the encoder's text of the row's dict, with every name escaped as the encoder escapes it (all plain
    ASCII, or one name that needs escaping among plain ones) and packed rows kept apart from plain ones."""
    from paramscope.records import Table

    names = ["a.weight", "a.bias", "b.qweight", "c.qweight", "d.weight", "e.x"]
    if escaped:
        names[3] = "c.\u00e9\"\\\x7f\x01.qweight"
    shapes = [(4, 4), (4,), (4, 4), (4, 4), (4, 4), (4,)]
    dtypes = ["float16", "float16", "int32", "int32", "int32", "float32"]
    roles = [Role.PARAMETER] * 5 + [Role.BUFFER]
    numel = [16, 4, 16, 16, 16, 4]
    nbytes = [32, 8, 64, 64, 64, 16]
    # b and c packed alike, d differently; d's plain twin shape/dtype must not take b's text
    sparse = {"quant": {2: QuantInfo("gptq", 128, 4), 3: QuantInfo("gptq", 128, 4), 4: QuantInfo("awq", 64, 8)}}
    if uniform:
        dtypes, roles, sparse = ["float16"] * 6, [Role.PARAMETER] * 6, {}
        nbytes = [2 * n for n in numel]
    table = Table(names, shapes, dtypes, roles, numel, nbytes, ["f"] * 6, sparse)
    report = Report(Inventory("cols", "safetensors", table=table))
    encode = json.JSONEncoder(ensure_ascii=True, default=str, separators=(", ", ": ")).encode
    records = [table.row(i) for i in range(6)]
    expected = Report(Inventory("recs", "safetensors", records)).to_dict()["tensors"]
    lines = [line.strip().rstrip(",") for line in render(report, "json", RenderOptions()).splitlines()]
    start = lines.index('"tensors": [') + 1
    assert lines[start : start + 6] == [encode(row) for row in expected]
    assert json.loads(lines[start + 3])["name"] == names[3]
    if uniform:
        assert [json.loads(line)["bytes"] for line in lines[start: start + 6]] == [32, 8, 32, 32, 32, 8]
    else:
        assert json.loads(lines[start + 4])["quant"] == {"scheme": "awq", "bits": 8, "logical": 64,
                                                         "stored_elements": 16}


def test_a_report_over_no_columns_writes_the_root_alone():
    # a safetensors file of no tensor is read as empty columns: the modules are the root (0 of everything)
    from paramscope.records import Table

    report = Report(Inventory("empty", "safetensors", table=Table.empty()))
    assert report.columns is not None and report.module_columns() is not None
    text = render(report, "json", RenderOptions())
    from_nodes = Report(Inventory("empty", "safetensors", table=Table.empty()))
    from_nodes.tree(None, natural=False)  # the node tree built first: the renderer walks it instead
    assert text == render(from_nodes, "json", RenderOptions())
    doc = json.loads(text)
    assert [(m["path"], m["depth"], m["parameters"], m["buffers"], m["bytes"]) for m in doc["modules"]] == [
        ("", 0, 0, 0, 0)]
    assert doc["tensors"] == []


def test_joined_blocks_are_the_rows_concatenated():
    # reference: each row as first + its pieces, rows joined by the separator that ends each last piece, a block
    # every _CHUNK rows (here 2.5 blocks), one column an iterator read a block at a time; a column of another
    # length is refused
    from paramscope.renderers import json as module

    chunk, sep, first = module._CHUNK, module._SEPARATOR, '{"x": "'
    rows = 2 * chunk + chunk // 2
    a = [f"a{i % 7}" for i in range(rows)]
    b = [f'", "n": {i}' for i in range(rows)]
    c = [f"}}{sep}{first}" for _ in range(rows)]
    blocks = list(module._joined([a, iter(b), c], first))
    lines = [first + a[i] + b[i] + "}" for i in range(rows)]  # each row's line, as a loop would write it
    assert len(blocks) == 3
    assert sep.join(blocks) == sep.join(lines) and blocks[0] == sep.join(lines[:chunk])
    with pytest.raises(ValueError):
        list(module._joined([a, b[:-1], c], first))
