"""renderers/listing.py: a repository's GGUF models as a table, every format; names from the Hub and from
headers are untrusted, so each format's escapes apply (the figures themselves are checked against gguf-py in
tests/sources/test_remote_gguf.py)."""

from __future__ import annotations

import csv
import io
import json

from paramscope.records import Inventory
from paramscope.renderers import listing
from paramscope.report import Report

HOSTILE = "=HYPERLINK(\"x\")|<script>`\x1b[31m.gguf"


def listed(*rows: dict) -> Report:
    return Report(Inventory(source="hf:acme/q", format=listing.FORMAT, tensors=[],
                            metadata={"repository": "acme/q", "gguf.files": list(rows)}, notes=["a <note>"]))


ROW = {"file": HOSTILE, "parts": 2, "quantization": "Q4_K_M|<b>", "bytes": 3 << 30, "parameters": 6_738_415_616,
       "elements": 6_738_415_616, "bits_per_weight": 4.54, "tensors": 291, "data_offset": 968_064, "error": None}


def test_text_escapes_terminal_sequences_and_says_how_to_pick():
    out = listing.render(listed(ROW), "tree")
    assert "\x1b" not in out and "\\x1b[31m.gguf (+1 parts)" in out
    first, _, heading, rule, row, note = out.splitlines()
    assert first == ('1 GGUF models in hf:acme/q; name one to read it: '
                     'hf:acme/q:=HYPERLINK("x")|<script>`\\x1b[31m.gguf (or hf:acme/q --file FILE)')
    assert heading == "file".ljust(49) + "  quantization     size     parameters  bits/weight"
    assert rule == "  ".join("-" * n for n in (49, 12, 7, 13, 11))
    assert row == ('=HYPERLINK("x")|<script>`\\x1b[31m.gguf (+1 parts)  '
                   "Q4_K_M|<b>    3.0 GiB  6,738,415,616         4.54")
    assert note == "note: a <note>"


def test_csv_neutralises_formulas_and_quotes():
    out = listing.render(listed(ROW), "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [["file", "parts", "quantization", "bytes", "parameters", "bits_per_weight", "error"],
                    ["'" + HOSTILE.replace("\x1b", "\\x1b"), "2", "Q4_K_M|<b>", str(3 << 30), "6738415616", "4.54", ""]]


def test_markdown_cells_are_inert():
    out = listing.render(listed(ROW), "markdown")
    line = out.splitlines()[6]
    assert line == ('| =HYPERLINK("x")\\|&lt;script&gt;\\`\\\\x1b\\[31m.gguf (+1 parts) | Q4_K_M\\|&lt;b&gt; '
                    "| 3.0 GiB (3,221,225,472) | 6,738,415,616 | 4.54 |")
    assert out.count("|") - out.count("\\|") == 6 + 6 + 6  # heading, rule, row: six cell bars each, none from names


def test_json_is_the_rows_and_html_is_escaped():
    doc = json.loads(listing.render(listed(ROW), "json"))
    assert doc["files"] == [{k: ROW[k] for k in ("file", "parts", "quantization", "bytes", "parameters",
                                                 "bits_per_weight", "tensors", "error")}]
    assert doc["source"] == "hf:acme/q" and doc["metadata"] == {"repository": "acme/q"}
    page = listing.render(listed(ROW), "html")
    assert "<script>" not in page and "&lt;script&gt;" in page and "\x1b" not in page and "a &lt;note&gt;" in page


def test_the_python_views_of_a_listing_are_the_listing():
    report = listed(ROW)
    assert str(report) == listing.render(report, "tree")
    assert report.to_dict() == json.loads(listing.render(report, "json"))
