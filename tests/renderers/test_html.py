"""The HTML page and the Jupyter summary: structure, escaping of hostile names, and numbers equal to the
report's (and to independent counts: torch's own, safetensors', or by hand)."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paramscope
from paramscope import text
from paramscope.errors import MissingExtraError
from paramscope.records import Inventory, TensorRecord
from paramscope.renderers import RenderOptions, render
from paramscope.renderers import html as html_renderer
from tests.conftest import FrozenBackbone, TiedLM

GOLDEN = Path(__file__).parent / "golden"
HOSTILE = [
    "</script><script>alert(1)",
    "<img src=x onerror=alert(2)>.weight",
    "a&amp;b.<!--.weight",
    "rtl\u202eevil.weight",
    "x</SCRIPT >.bias",
]
STUB = "/* plotly.js bundle stripped */"


class _Elements(HTMLParser):
    """Collects elements with an id (attributes and text), and counts <script> tags."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict] = {}
        self.scripts = 0
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if "id" in attrs:
            self.by_id[attrs["id"]] = {"tag": tag, "attrs": attrs, "text": ""}
            self._open.append(attrs["id"])
        elif tag not in ("meta", "input", "br"):
            self._open.append("")

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for ident in self._open:
            if ident:
                self.by_id[ident]["text"] += data


def _parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


def _data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="paramscope-data">(.*?)</script>', page, re.S)
    assert match
    return json.loads(match.group(1))


def _value(elements: _Elements, ident: str) -> int | None:
    raw = elements.by_id[ident]["attrs"]["data-value"]
    return int(raw) if raw else None


def _leaf_sum(tree: dict) -> int:
    parents = set(tree["parent"])
    return sum(int(v) for i, v in enumerate(tree["value"]) if i not in parents)


def test_html_is_a_cli_format_and_a_redirected_stdout_gets_the_page():
    import io

    from paramscope.cli import main

    out, err = io.StringIO(), io.StringIO()  # not a terminal: no -o needed
    assert main(["--format", "html", "--depth", "1"], stdout=out, stderr=err) == 0, err.getvalue()
    assert out.getvalue().startswith("<!DOCTYPE html>") and err.getvalue() == ""
    assert _value(_parse(out.getvalue()), "total") == 87_018


def test_article_page(article_model):
    report = paramscope.inspect(article_model)
    page = render(report, "html")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # offline: no URL is ever fetched (plotly's bundle mentions URLs in strings, but no tag loads one)
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    assert page.count('<script id="plotly-bundle">') == 1
    elements = _parse(page)
    assert elements.scripts == 3  # data, plotly, the report's own script
    independent = sum(p.numel() for p in article_model.parameters())
    assert _value(elements, "total") == independent == 87_018
    assert elements.by_id["total"]["text"] == "87,018"
    assert _value(elements, "trainable") == 87_018
    assert _value(elements, "frozen") == 0
    assert _value(elements, "buffers") == 0
    assert _value(elements, "bytes") == 4 * 87_018
    assert _value(elements, "tensor-count") == 6
    assert _value(elements, "non-embedding") == report.non_embedding
    data = _data(page)
    assert data["total"] == 87_018
    tree = data["tree"]
    assert tree["value"][0] == 87_018 and tree["parent"][0] == -1
    assert _leaf_sum(tree) == 87_018  # every tensor is a leaf: the areas add up
    leaves = {p: v for p, v, k in zip(tree["path"], tree["value"], tree["kind"], strict=True) if k == "t"}
    assert leaves == {n: p.numel() for n, p in article_model.named_parameters()}
    modules = {p: v for p, v, k in zip(tree["path"], tree["value"], tree["kind"], strict=True) if k == "m"}
    assert modules["fc"] == 32 * 16 * 16 * 10 + 10
    rows = data["tensors"]["rows"]
    assert [r[0] for r in rows] == [n for n, _ in article_model.named_parameters()]
    assert [r[5] for r in rows] == [p.numel() for p in article_model.parameters()]
    assert data["maxdepth"] == -1 and data["colour"] == "trainable"


def test_tied_model_lists_the_group_once():
    model = TiedLM()
    page = render(paramscope.inspect(model), "html")
    elements = _parse(page)
    assert _value(elements, "total") == sum(p.numel() for p in model.parameters()) == 1_632
    assert _value(elements, "tie-count") == 1
    group = re.search(r'<ul class="ties"><li data-names="2" data-value="(\d+)">(.*?)</li>', page)
    assert group and int(group.group(1)) == 100 * 16
    assert "<code>embed.weight</code> = <code>head.weight</code>" in group.group(2)
    tree = _data(page)["tree"]
    assert _leaf_sum(tree) == 1_632
    assert "head.weight" not in tree["path"]  # the alias is counted under embed.weight, not drawn twice
    rows = {r[0]: r for r in _data(page)["tensors"]["rows"]}
    assert rows["head.weight"][7] == "embed.weight"


def test_frozen_split():
    model = FrozenBackbone()
    elements = _parse(render(paramscope.inspect(model), "html"))
    assert _value(elements, "trainable") == sum(p.numel() for p in model.parameters() if p.requires_grad) == 63
    assert _value(elements, "frozen") == 220


def test_checkpoint_page_has_unknown_trainability(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    state = {"enc.embed_tokens.weight": torch.zeros(50, 8, dtype=torch.bfloat16), "enc.ln.weight": torch.zeros(8),
             "enc.position_ids": torch.zeros(1, 16, dtype=torch.int64)}
    path = tmp_path / "model.safetensors"
    save_file(state, path)
    report = paramscope.inspect(path)
    page = render(report, "html")
    elements = _parse(page)
    with safe_open(path, "pt") as f:  # the reference reader
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118
    params = sum(math.prod(shape) for k, shape in shapes.items() if k != "enc.position_ids")
    assert _value(elements, "total") == params == 408
    assert _value(elements, "buffers") == 16
    assert _value(elements, "trainable") is None and elements.by_id["trainable"]["text"] == "unknown"
    assert _value(elements, "non-embedding") == 8
    data = _data(page)
    assert data["trainability_known"] is False and data["colour"] == "dtype"
    assert data["dtypes"] == [d.dtype for d in report.by_dtype]
    assert set(data["dtypes"]) == {"bfloat16", "float32", "int64"}
    assert data["tree"]["dtype"][0] == "mixed"
    assert elements.by_id["format"]["text"] == "safetensors"


def test_hostile_names_cannot_break_out():
    records = [TensorRecord(name, (2, 3), "float32", tie=("t", i // 2)) for i, name in enumerate(HOSTILE)]
    inventory = Inventory("</title><script>alert(3)</script>", "test", records,
                          module_types={"": "Root\u202eledoM", "x</SCRIPT >": "<b>Evil\x1b[31m"},
                          metadata={"<b>key</b>": "</script><script>alert(4)", "vocab": ["<s>"] * 5000},
                          notes=["<i>note</i>"])
    report = paramscope.Report(inventory)
    page = html_renderer.page(report, RenderOptions(), STUB)
    lowered = page.lower()
    assert lowered.count("<script") == 3 and lowered.count("</script") == 3
    assert "alert(1)" in page  # it is shown, as text
    for raw in ("<script>alert", "<img src=x", "<!--", "\u202e", "<b>key", "<i>note"):
        assert raw not in page
    elements = _parse(page)
    assert elements.by_id["source"]["text"] == "</title><script>alert(3)</script>"
    data = _data(page)
    assert [r[0] for r in data["tensors"]["rows"]] == [text.safe(n) for n in HOSTILE]
    # module classes are untrusted too: control and bidi characters escaped in the chart's labels and types
    assert data["tree"]["label"][0] == "Root\\u202eledoM"
    assert "<b>Evil\\x1b[31m" in data["tree"]["type"]
    drawn = {p for p, k in zip(data["tree"]["path"], data["tree"]["kind"], strict=True) if k == "t"}
    assert drawn == {text.safe(HOSTILE[i]) for i in (0, 2, 4)}  # tie groups (0, 1), (2, 3), (4): heads only
    assert _value(elements, "total") == 3 * 6  # five names, three tie groups of 2 x 3
    assert "(5000 items)" in page  # a long metadata value is clipped, not dumped


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6, unique=True), st.text(max_size=12))
def test_fuzz_names_stay_inside_their_elements(names, source):
    records = [TensorRecord(n, (1, 2), "float16") for n in names]
    report = paramscope.Report(Inventory(source, "test", records, metadata={source: source}))
    page = html_renderer.page(report, RenderOptions(), STUB)
    assert page.lower().count("<script") == 3 and page.lower().count("</script") == 3
    data = _data(page)
    assert [r[0] for r in data["tensors"]["rows"]] == [text.safe(n) for n in names]
    assert data["total"] == 2 * len(names)
    assert _leaf_sum(data["tree"]) == 2 * len(names)


def _flat_report(n: int) -> paramscope.Report:
    records = [TensorRecord(f"layers.{i}.weight", (i + 1,), "float32") for i in range(n)]
    return paramscope.Report(Inventory("flat", "test", records))


def test_big_tree_is_budgeted_and_areas_stay_exact():
    n = 12_000
    report = _flat_report(n)
    data = json.loads(html_renderer.data_json(report))
    tree = data["tree"]
    count = len(tree["parent"])
    shown = html_renderer.TREEMAP_FAN_OUT - 1
    assert count == 1 + 1 + shown + 1 + shown <= html_renderer.TREEMAP_NODES  # root, layers, modules, rest, leaves
    assert data["tree_nodes"] == 1 + 1 + 2 * n
    total = n * (n + 1) // 2
    assert tree["value"][0] == total == report.total
    children: dict[int, int] = {}
    for i, p in enumerate(tree["parent"]):
        if p >= 0:
            children[p] = children.get(p, 0) + int(tree["value"][i])
    for p, s in children.items():
        assert s <= int(tree["value"][p])
    layers = tree["path"].index("layers")
    assert children[layers] == total  # shown children plus the lumped rest: exactly the module's total
    lumped = [i for i, k in enumerate(tree["kind"]) if k == "o"]
    assert len(lumped) == 1
    assert tree["value"][lumped[0]] == (n - shown) * (n - shown + 1) // 2  # the smallest ones
    assert len(data["tensors"]["rows"]) == n  # the table keeps every tensor


def test_wide_and_deep_tree_spends_the_whole_budget():
    records = [TensorRecord(f"b.{i}.l.{j}.weight", (3,), "float32") for i in range(400) for j in range(40)]
    data = json.loads(html_renderer.data_json(paramscope.Report(Inventory("wide", "test", records))))
    assert len(data["tree"]["parent"]) == html_renderer.TREEMAP_NODES
    assert data["maxdepth"] == html_renderer.OPEN_DEPTH
    assert data["tree"]["value"][0] == 400 * 40 * 3


def test_depth_prunes_the_treemap(article_model):
    data = json.loads(html_renderer.data_json(paramscope.inspect(article_model), depth=0))
    assert data["tree"]["parent"] == [-1] and data["tree"]["value"] == [87_018]


def test_counts_beyond_2_53_travel_as_strings():
    report = paramscope.Report(Inventory("x", "test", [TensorRecord("w", (2**40, 2**20), "float32")]))
    data = json.loads(html_renderer.data_json(report))
    assert data["total"] == str(2**60) and data["tensors"]["rows"][0][5] == str(2**60)


def test_empty_report_renders():
    page = html_renderer.page(paramscope.Report(Inventory("empty", "test", [])), RenderOptions(), STUB)
    assert _value(_parse(page), "total") == 0


def test_missing_plotly_names_the_extra(monkeypatch, article_model):
    report = paramscope.inspect(article_model)
    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(MissingExtraError) as info:
        render(report, "html")
    assert info.value.extra == "html" and "paramscope[html]" in str(info.value)


def test_cli_writes_the_page(tmp_path):
    from paramscope.cli import main

    out = tmp_path / "report.html"
    assert main(["--format", "html", "-o", str(out)]) == 0
    elements = _parse(out.read_text(encoding="utf-8"))
    assert _value(elements, "total") == 87_018


def test_golden_page_without_the_bundle(article_model):
    actual = html_renderer.page(paramscope.inspect(article_model), RenderOptions(), STUB)
    path = GOLDEN / "article.html"
    if os.environ.get("PARAMSCOPE_UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


# ---- Jupyter ---------------------------------------------------------------------------------------
def test_notebook_summary(article_model):
    report = paramscope.inspect(article_model)
    shown = report._repr_html_()
    assert "<script" not in shown and len(shown) < 10_000
    assert "87,018" in shown and "conv1" in shown and "Linear" in shown
    _parse(shown)  # well-formed enough to parse


def test_notebook_summary_escapes_and_stays_small():
    records = [TensorRecord(f"{HOSTILE[0]}.{i}.weight", (4,), "float32") for i in range(500)]
    records.append(TensorRecord("tied", (4,), "float32", tie="k"))
    records.append(TensorRecord(HOSTILE[1], (4,), "float32", tie="k"))
    shown = paramscope.Report(Inventory(HOSTILE[0], "test", records, notes=["<i>x</i>"]))._repr_html_()
    assert "<script" not in shown.lower() and "<img" not in shown and "<i>x" not in shown
    assert "&lt;/script&gt;" in shown
    assert len(shown) < 20_000
    assert "2,004" in shown  # by hand: 500 tensors of 4, and the tied pair of 4 counted once
