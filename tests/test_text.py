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
    assert text.one_line("a" * 10, limit=8) == "aaaaa..."
    assert text.one_line("a" * 8, limit=8) == "a" * 8
