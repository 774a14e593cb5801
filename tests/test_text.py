from __future__ import annotations

import pytest

from paramscope import text


@pytest.mark.parametrize(
    ("n", "exact", "human", "both"),
    [
        (124_439_808, "124,439,808", "124.4M", "124,439,808 · 124.4M"),
        (6_738_415_616, "6,738,415,616", "6.7B", "6,738,415,616 · 6.7B"),
        (87_018, "87,018", "87.0K", "87,018 · 87.0K"),
        (999, "999", "999", "999"),
        (None, "?", "?", "?"),
    ],
)
def test_numbers(n, exact, human, both):
    assert (text.exact(n), text.human(n), text.both(n)) == (exact, human, both)


@pytest.mark.parametrize(
    ("n", "shown"), [(348_072, "339.9 KiB"), (512, "512 B"), (13_476_831_232, "12.6 GiB"), (2**40, "1.0 TiB")]
)
def test_bytes(n, shown):
    assert text.human_bytes(n) == shown


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("layer.0.weight", "layer.0.weight"),
        ("a\x1b[31mred", "a\\x1b[31mred"),
        ("new\nline", "new\\x0aline"),
        ("bidi\u202etxt", "bidi\\u202etxt"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("héllo.権重", "héllo.権重"),
        ("c1\x9b", "c1\\x9b"),
    ],
)
def test_safe_escapes_control_and_bidi_characters(raw, shown):
    assert text.safe(raw) == shown


def test_one_line_joins_escapes_and_cuts():
    assert text.one_line("bad\n  header:\tx\x1b[31m") == "bad header: x\\x1b[31m"
    assert text.one_line("a" * 9 + "b", limit=8) == "aaa...ab"  # the middle goes: the end says what is wrong
    assert text.one_line("a" * 8, limit=8) == "a" * 8


def test_lone_surrogates_are_escaped():
    # a name decoded with surrogateescape (bytes that were not UTF-8): no UTF-8 writer could encode it
    assert text.safe("a\udcffb.\ud800") == "a\\udcffb.\\ud800"
    assert text.safe("a\udcffb").encode("utf-8") == b"a\\udcffb"
    assert text.one_line("x\udc80\ny") == "x\\udc80 y"


def _reference(n: int) -> str:
    import sys

    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # the test alone lifts the limit, for the reference, and restores it
    try:
        return f"{n:,}"
    finally:
        sys.set_int_max_str_digits(old)


@pytest.mark.parametrize("n", [2**20000, -(2**20000), 10**5000 - 1, 10**600, 2 ** (62 * 400), 2**1900, 2**1901],
                         ids=["2^20000", "-2^20000", "10^5000-1", "10^600", "2^24800", "2^1900", "2^1901"])
def test_integers_past_the_digit_limit_are_exact(n):
    shown = text.exact(n)
    assert shown == _reference(n)
    assert text.digits(n) == shown.replace(",", "")
    assert text.shape((n, 3)) == f"[{shown.replace(',', '')}, 3]"


def test_integers_past_the_digit_limit_in_human_form():
    n = 2**20000  # 3.98e+6020
    assert text.human(n) == "4.0e+6020"
    assert text.human_bytes(n) == "4.0e+6020 B"
    assert text.both(n) == f"{_reference(n)} · 4.0e+6020"
    assert text.human(-(10**700)) == "-1.0e+700"
    assert text.percent(2**3000, 7) == "-"  # no share to show, and no OverflowError
    assert text.percent(2**3000, 2**3001) == "50.0%"


def test_integers_too_long_to_spell_are_approximate():
    n = 2 ** (1 << 18)  # 78,914 digits
    assert text.exact(n) == text.digits(n) == "≈1.611e+78913"
    assert text.exact(-n) == "≈-1.611e+78913"
    assert text.exact(10 ** 200_000) == "≈1.000e+200000"


def test_the_digit_limit_is_never_touched(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "set_int_max_str_digits", None)  # calling it would raise
    assert text.exact(2**20000).startswith("398,027,684,033")


def test_one_line_cuts_the_middle_keeping_source_and_reason():
    from paramscope.text import LINE_LIMIT, one_line

    message = "/tmp/idx.json: shard '" + "x" * 70_000 + "' is outside the index's directory"
    line = one_line(message)
    assert len(line) == LINE_LIMIT
    assert line.startswith("/tmp/idx.json: shard 'xxx") and line.endswith("xxx' is outside the index's directory")
    assert "x...x" in line
    assert one_line("a\nb", limit=None) == "a b"


@pytest.mark.parametrize(
    ("part", "whole", "share", "shown"),
    [
        (49, 100_000, 0.0, "0.0%"),  # 0.049: rounded once to one decimal (twice, via 0.05, it read 0.1%)
        (448, 87_018, 0.5, "0.5%"),  # 0.5148...
        (81_930, 87_018, 94.2, "94.2%"),  # 94.1529...
        (3, 8, 37.5, "37.5%"),
        (5, 0, None, "-"),
        (10**400, 1, None, "-"),  # past a float: no meaningful share
    ],
)
def test_one_percentage_rounding(part, whole, share, shown):
    assert (text.share(part, whole), text.percent(part, whole), text.percent_of(share)) == (share, shown, shown)


@pytest.mark.parametrize(
    ("source", "label"),
    [
        ("/abs/dir/model.safetensors", "model.safetensors"),
        ("rel/model.gguf", "model.gguf"),
        ("/abs/checkpoint/", "checkpoint"),
        ("model.bin", "model.bin"),
        ("hf:org/name@main", "hf:org/name@main"),
        ("https://host/a/model.safetensors", "https://host/a/model.safetensors"),
        ("/", "/"),
    ],
)
def test_root_label_names_the_file(source, label):
    assert text.root_label(source) == label


def test_safe_is_the_escaping_regex_for_every_code_point():
    # the rule as first written (a regex over every name, then category Cf/Cc), against which the fast path for
    # printable ASCII must change nothing: ASCII and the next blocks whole (the C0/C1 controls, the bidi and
    # zero-width marks), the BOM, surrogates, and format characters past the BMP; alone and inside a name
    import re
    import unicodedata

    unsafe = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")

    def reference(name: str) -> str:
        def escape(match: re.Match[str]) -> str:
            code = ord(match.group())
            return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

        escaped = unsafe.sub(escape, name)
        if escaped.isascii():
            return escaped
        return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cf", "Cc") else c for c in escaped)

    for code in [*range(0x2100), 0xFEFF, *range(0xD800, 0xE000, 7), 0xDFFF, 0xE0001, 0x1D173, 0x1F600, 0x10FFFF]:
        for name in (chr(code), f"a.{chr(code)}.b"):
            assert text.safe(name) == reference(name), hex(code)
