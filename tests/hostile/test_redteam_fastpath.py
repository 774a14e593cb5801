"""Red team of the safetensors fast path (``_fast_check_into``: one regular expression over a canonical header).

The contract under attack: the fast path accepts a subset of what the checked path (``_parse_json`` +
``_check_into``) accepts, with the very same columns and metadata; everything else falls back and ends in the
checked path's answer; and the work is bounded by what an input reaches. Where the checked path itself is the
question (does the crate accept this?), the reference is the crate, through ``safetensors.safe_open``.

Found here and fixed in ``sources/safetensors.py``: a dimension past 64 bits after a zero (``[0, 2**64]``) was
accepted by both paths (the product is 0) though serde cannot read it as a usize; and ``-0`` as a dimension or an
offset was accepted by the checked path (Python reads the int 0, serde the float -0.0, which no usize field takes).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from paramscope.errors import ParamscopeError
from paramscope.sources import safetensors as reader
from tests.hostile._limits import assert_clean, assert_refused, run_cli
from tests.sources._st_paths import checked as _checked
from tests.sources._st_paths import entry as _entry
from tests.sources._st_paths import fast as _fast
from tests.sources._st_paths import header_of as _header
from tests.sources._st_paths import whole as _whole

A = _entry("a", "F32", "2,2", 0, 16)
B = _entry("b", "BF16", "4", 16, 24)
U64 = 1 << 64
M61 = (1 << 61) - 1
"""The most U8 elements whose bits stay under 64 bits."""

# label -> (header, file size or None, the fast path takes it, the checked path's answer: "ok" or its exact error)
ATTACKS: dict[str, tuple[bytes, int | None, bool, str]] = {
    # (a) spellings the fast path must not take on its own
    "metadata key escaped": (_header('"\\u005f_metadata__":{"a":"x"}', A), None, False, "ok"),
    "metadata, a space before its value": (_header('"__metadata__": {}', A), None, False, "ok"),
    "metadata keys equal unescaped": (_header('"__metadata__":{"a":"x","\\u0061":"y"}', A), None, False,
                                      "__metadata__ has the key 'a' more than once"),
    "metadata null twice": (_header('"__metadata__":null', '"__metadata__":null', A), None, False,
                            "header has the key '__metadata__' more than once"),
    "metadata null, then a tensor of that name": (
        _header('"__metadata__":null', _entry("__metadata__", "F32", "1", 0, 4)), None, False,
        "header has the key '__metadata__' more than once"),
    "metadata NaN": (_header('"__metadata__":NaN', A), None, False, "header is not valid JSON: NaN is not valid JSON"),
    "metadata Infinity value": (_header('"__metadata__":{"a":Infinity}', A), None, False,
                                "header is not valid JSON: Infinity is not valid JSON"),
    "metadata a string": (_header('"__metadata__":"x"', A), None, False, "__metadata__ must map strings to strings"),
    "metadata value null": (_header('"__metadata__":{"a":null}', A), None, False,
                            "__metadata__ must map strings to strings"),
    "metadata key a lone surrogate": (_header('"__metadata__":{"\\udc00":"x"}', A), None, False,
                                      "string '\\udc00' holds an unpaired UTF-16 surrogate"),
    "metadata value a lone high surrogate": (_header('"__metadata__":{"k":"x\\ud83d"}', A), None, False,
                                             "string 'x\\ud83d' holds an unpaired UTF-16 surrogate"),
    "names equal unescaped": (_header(A, _entry("\\u0061", "BF16", "4", 16, 24)), None, False,
                              "header has the key 'a' more than once"),
    "names a and a": (_header(_entry("a", "F32", "1", 0, 4), _entry("a", "F32", "1", 4, 8)), None, False,
                      "header has the key 'a' more than once"),
    "dtype carrying a second shape": (_header(_entry("a", 'F32","shape":[1],"x":"', "1", 0, 4)), None, False,
                                      "tensor 'a' has the key 'shape' more than once"),
    "dtype of 17 characters": (_header(_entry("a", "ABCDEFGHIJKLMNOPQ", "1", 0, 1)), None, False,
                               'tensor \'a\': unknown dtype "ABCDEFGHIJKLMNOPQ"'),
    "dtype the table lacks": (_header(_entry("a", "F8_E4M3FNUZ", "1", 0, 1)), None, False,
                              'tensor \'a\': unknown dtype "F8_E4M3FNUZ"'),
    "shape [ ]": (_header(_entry("a", "F32", " ", 0, 4)), None, False, "ok"),
    "shape [1,]": (_header(_entry("a", "F32", "1,", 0, 4)), None, False,
                   "header is not valid JSON: Expecting value: line 1 column 32 (char 31)"),
    "shape -0": (_header(_entry("a", "U8", "-0", 0, 0)), None, False,
                 "tensor 'a': shape [-0.0] is not a list of non-negative integers"),
    "offset -0": (_header(_entry("a", "U8", "0", "-0", 0)), None, False,
                  "tensor 'a': data_offsets [-0.0, 0] is not [begin, end]"),
    "offset +0": (_header(_entry("a", "U8", "0", "+0", 0)), None, False,
                  "header is not valid JSON: Expecting value: line 1 column 48 (char 47)"),
    "offset 1e1": (_header(_entry("a", "U8", "10", 0, "1e1")), None, False,
                   "tensor 'a': data_offsets [0, 10.0] is not [begin, end]"),
    "offset 0e0": (_header(_entry("a", "U8", "0", "0e0", 0)), None, False,
                   "tensor 'a': data_offsets [0.0, 0] is not [begin, end]"),
    "zero, then a dimension of 2**64": (_header(_entry("a", "U8", f"0,{U64}", 0, 0)), None, False,
                                        f"tensor 'a': shape [0, {U64}] overflows 64 bits"),
    "zero, then a 20-digit dimension": (_header(_entry("a", "U8", "0," + "9" * 20, 0, 0)), None, False,
                                        f"tensor 'a': shape [0, {'9' * 20}] overflows 64 bits"),
    "zero, then 2**64 - 1 (a usize)": (_header(_entry("a", "U8", f"0,{U64 - 1}", 0, 0)), None, True, "ok"),
    "2**64 - 1 twice, then zero": (_header(_entry("a", "U8", f"{U64 - 1},{U64 - 1},0", 0, 0)), None, False,
                                   f"tensor 'a': shape [{U64 - 1}, {U64 - 1}, 0] overflows 64 bits"),
    "F4 numel past 2**64 bits": (_header(_entry("a", "F4", str(U64 - 2), 0, (U64 - 2) // 2)), None, False,
                                 f"tensor 'a': size of shape [{U64 - 2}] overflows 64 bits"),
    "the largest U8 size": (_header(_entry("a", "U8", str(U64 - 1), 0, U64 - 1)), None, False,
                            f"tensor 'a': size of shape [{U64 - 1}] overflows 64 bits"),
    "ends running past 2**64 in order": (
        _header(*(_entry(f"t{k}", "U8", str(M61), k * M61, (k + 1) * M61) for k in range(9))), None, False,
        f"tensor 't8': data_offsets [{8 * M61}, {9 * M61}] is not [begin, end]"),
    "overlap and gap that sum right": (
        _header(_entry("a", "U8", "8", 0, 8), _entry("b", "U8", "8", 4, 12), _entry("c", "U8", "4", 12, 16)), None,
        False, "tensor 'b': data_offsets start at 4, which overlaps the previous tensor"),
    "zero-size past the end": (_header(A, _entry("z", "U8", "0", 17, 17)), None, False,
                               "tensor 'z': data_offsets start at 17, which leaves a gap of 1 bytes"),
    "two zero-size at 0, reversed": (_header(_entry("y", "U8", "0", 0, 0), _entry("x", "U8", "0", 0, 0)), None,
                                     True, "ok"),
    "200 dimensions": (_header(_entry("a", "U8", ",".join(["1"] * 199 + ["3"]), 0, 3)), None, True, "ok"),
    "a shape of 401 characters": (_header(_entry("a", "U8", ",".join(["1"] * 201), 0, 1)), None, False, "ok"),
    # padding and framing other than trailing spaces
    "trailing NUL": (_header(A, pad="\0"), None, False,
                     "header is not valid JSON: Extra data: line 1 column 58 (char 57)"),
    "trailing form feed": (_header(A, pad="\x0c"), None, False,
                           "header is not valid JSON: Extra data: line 1 column 58 (char 57)"),
    "trailing no-break space": (_header(A, pad="\u00a0"), None, False,
                                "header is not valid JSON: Extra data: line 1 column 58 (char 57)"),
    "trailing CR LF": (_header(A, pad="\r\n"), None, False, "ok"),
    "spaces, then garbage": (_header(A, pad="   x"), None, False,
                             "header is not valid JSON: Extra data: line 1 column 61 (char 60)"),
    "byte order mark": ("\ufeff".encode() + _header(A), None, False,
                        "header is not valid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 "
                        "(char 0)"),
    "invalid UTF-8 in a name": (b'{"\xc0\x80":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}', None, False,
                                "header is not valid UTF-8 (byte 2)"),
    "an encoded surrogate in a name": (b'{"\xed\xa0\x80":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}', None,
                                       False, "header is not valid UTF-8 (byte 2)"),
    "an entry made of a name": (_header(_entry('a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b', "F32", "1",
                                               4, 8)), None, True, "ok"),
    # the file size: the only check the fast path makes against the world
    "one byte of trailing data": (_header(A, B), 145 + 1, False,
                                  "1 bytes of trailing data after the last tensor (ends at 145)"),
    "one byte short": (_header(A, B), 145 - 1, False,
                       "truncated: tensors end at byte 145 but the file has 144 bytes"),
    "the exact size": (_header(A, B), 145, True, "ok"),  # 8 + a 113-byte header + 24
}


@pytest.mark.parametrize("label", list(ATTACKS))
def test_an_attack_ends_in_the_checked_paths_answer(label):
    header, file_size, takes, answer = ATTACKS[label]
    checked = _checked(header, file_size)
    assert (checked[0] if answer == "ok" else checked) == (answer if answer == "ok" else ("error", answer))
    fast = _fast(header, file_size)
    assert (fast is not None) == takes
    if fast is not None:
        assert fast == checked
    assert _whole(header, file_size) == checked


def _crate(tmp_path: Path, header: bytes, data: int) -> str:
    """What ``safe_open`` (the Rust crate) says: "ok", or its error text."""
    safetensors = pytest.importorskip("safetensors")
    path = tmp_path / "crate.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * data)
    try:
        with safetensors.safe_open(str(path), "numpy") as handle:
            handle.keys()
    except safetensors.SafetensorError as exc:
        return str(exc)
    return "ok"


@pytest.mark.parametrize(("shape", "offsets", "crate_says", "ours"), [
    (f"0,{U64}", "0,0", "floating point `1.8446744073709552e+19`, expected usize",
     f"tensor 'a': shape [0, {U64}] overflows 64 bits"),
    ("-0", "0,0", "floating point `-0.0`, expected usize", "tensor 'a': shape [-0.0] is not a list of non-negative"),
    ("0", "-0,0", "floating point `-0.0`, expected usize", "tensor 'a': data_offsets [-0.0, 0] is not [begin, end]"),
    (f"0,{U64 - 1}", "0,0", None, None),
])
def test_what_the_crate_refuses_is_refused(tmp_path, shape, offsets, crate_says, ours):
    header = f'{{"a":{{"dtype":"U8","shape":[{shape}],"data_offsets":[{offsets}]}}}}'.encode()
    crate = _crate(tmp_path, header, 0)
    result = run_cli(tmp_path / "crate.safetensors", "--format", "json")
    if crate_says is None:
        assert crate == "ok"
        assert_clean(result, tmp_path / "crate.safetensors", expect=0)
        assert json.loads(result.stdout)["total"] == 0
    else:
        assert crate_says in crate
        assert_refused(result, tmp_path / "crate.safetensors", ours)


def test_minus_zero_in_an_ignored_field_is_still_read(tmp_path):
    """serde ignores fields it does not know, whatever their value; so do we."""
    header = b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":-0}}'
    assert _crate(tmp_path, header, 1) == "ok"
    assert _checked(header, None)[0] == "ok"
    assert _whole(header, None) == _checked(header, None)


def _shards(tmp_path: Path, headers: list[bytes], data: list[int]) -> Path:
    weight_map = {}
    for k, header in enumerate(headers):
        name = f"s{k}.safetensors"
        with open(tmp_path / name, "wb") as handle:
            handle.write(struct.pack("<Q", len(header)) + header)
            handle.truncate(8 + len(header) + data[k])
        parsed = json.loads(header)
        weight_map.update({tensor: name for tensor in parsed if tensor != "__metadata__"})
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    return index


def test_shards_mixing_both_paths_give_the_checked_columns(tmp_path):
    """One shard canonical (fast), one spaced (checked), one canonical again sharing the first's shapes: the
    shared cache of sizes (``sized_text``) and the checked path's (``checked``) give one table."""
    first = _header(_entry("a", "F32", "2,2", 0, 16), _entry("b", "U8", "0", 16, 16))
    second = b'{"c": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}'
    third = _header(_entry("d", "F32", "2,2", 0, 16), _entry("e", "F4", "6", 16, 19))
    index = _shards(tmp_path, [first, second, third], [16, 16, 19])
    table = reader.read(index).table
    assert table.names == ["a", "b", "c", "d", "e"]
    assert table.shapes == [(2, 2), (0,), (2, 2), (2, 2), (6,)]
    assert table.numel == [4, 0, 4, 4, 6]
    assert table.origins == ["s0.safetensors", "s0.safetensors", "s1.safetensors", "s2.safetensors",
                             "s2.safetensors"]


@pytest.mark.parametrize(("bad", "message"), [
    (_header(_entry("z", "U8", f"0,{U64}", 0, 0)), f"tensor 'z': shape [0, {U64}] overflows 64 bits"),
    (_header(_entry("z", "U8", "0", "-0", 0)), "tensor 'z': data_offsets [-0.0, 0] is not [begin, end]"),
    (_header(_entry("a", "U8", "0", 0, 0)), "tensor 'a' is also in shard 's0.safetensors'"),
])
def test_a_bad_second_shard_is_refused_by_name(tmp_path, bad, message):
    _write(tmp_path / "s0.safetensors", _header(A), 16)
    _write(tmp_path / "s1.safetensors", bad, 0)
    result = run_cli(tmp_path, "--format", "json")  # the directory: every shard, in name order
    assert_refused(result, tmp_path / "s1.safetensors", message)


def test_a_remote_header_goes_the_same_way():
    header = _header('"__metadata__":{"format":"pt"}', A, B, pad="    ")
    records, metadata = reader.records_from_header("hf:x", header, 8 + len(header) + 24, "m.safetensors")
    assert [(r.name, r.shape, r.numel, r.origin) for r in records] == [
        ("a", (2, 2), 4, "m.safetensors"), ("b", (4,), 4, "m.safetensors")]
    assert metadata == {"format": "pt"}
    trailing = r"^hf:x: 1 bytes of trailing data after the last tensor \(ends at 180\)$"
    with pytest.raises(ParamscopeError, match=trailing):
        reader.records_from_header("hf:x", header, 8 + len(header) + 25, "m.safetensors")
    with pytest.raises(ParamscopeError, match=r"shape \[0, 18446744073709551616\] overflows 64 bits"):
        reader.records_from_header("hf:x", _header(_entry("z", "U8", f"0,{U64}", 0, 0)), None, "m.safetensors")


# ---- (c) bounded work: 100 MB headers built to cost the fast path the most, under the hostile limits -----------


def _write(path: Path, header: bytes, data: int) -> Path:
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header)
        handle.truncate(8 + len(header) + data)
    return path


def _many(count: int, last_name: str | None = None) -> bytes:
    names = [f"t{i}" for i in range(count)]
    if last_name is not None:
        names[-1] = last_name
    return ("{" + ",".join(_entry(name, "U8", "1", i, i + 1) for i, name in enumerate(names)) + "}").encode()


@pytest.mark.slow
@pytest.mark.parametrize(("label", "message"), [
    # the fast path reads 1.4M canonical entries, then one repeated name (or one byte too many) sends all of it
    # to the checked path: twice the work, never twice the memory (the fast path's rows are dropped first)
    ("repeat at the end", "header has the key 't0' more than once"),
    ("trailing byte", "1 bytes of trailing data after the last tensor"),
])
def test_a_huge_canonical_header_that_falls_back_at_the_end(tmp_path, label, message):
    count = 1_400_000
    header = _many(count, "t0" if label == "repeat at the end" else None)
    assert 90_000_000 < len(header) <= reader.MAX_HEADER_SIZE
    path = _write(tmp_path / "big.safetensors", header, count + (label == "trailing byte"))
    assert_refused(run_cli(path, "--format", "json"), path, message)


@pytest.mark.slow
@pytest.mark.parametrize(("label", "body", "message"), [
    ("quotes", '"' * 99_999_990, "header is not valid JSON: Expecting ':' delimiter"),
    ("quote colon brace", '":{' * 33_333_330, "header JSON is nested too deeply"),
    ("an unterminated name", '"' + "a" * 99_999_980, "header is not valid JSON: Unterminated string"),
    # every entry a near miss: a 401-character shape the expression scans to its bound, then gives up
    ("shapes one past the bound", ('"a":{"dtype":"U8","shape":[' + "1," * 200 + '1],"data_offsets":[0,1]},') * 220_000
     + '"z":1', "header has the key 'a' more than once"),
    # every name scanned to a backslash, then backtracked
    ("escaped names", ('"' + "a" * 1000 + '\\u0041":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},') * 94_000
     + '"z":1', "header has the key 'aaaa"),
])
def test_a_header_of_near_misses_is_refused_in_bounded_time(tmp_path, label, body, message):
    header = ("{" + body + "}").encode()
    assert 90_000_000 < len(header) <= reader.MAX_HEADER_SIZE
    path = _write(tmp_path / "nasty.safetensors", header, 0)
    assert_refused(run_cli(path, "--format", "json"), path, message)


# ---- differential fuzzing: random splices of the characters the expression and JSON care about ------------------

_SEEDS = [
    _header('"__metadata__":{"format":"pt","k":"v"}', _entry("a", "F32", "2,2", 0, 16), _entry("z", "U8", "0", 16, 16),
            _entry("b", "F4", "4", 16, 18), pad="  "),
    _header(_entry("b", "BF16", "4", 16, 24), _entry("a", "F32", "2,2", 0, 16), _entry("s", "I64", "", 24, 32)),
    _header('"__metadata__":null', _entry("é☃", "F6_E2M3", "4,1", 0, 3)),
]
_ALPHABET = ['"', "\\", "-", "+", ".", "e", "E", "0", "1", "9", ",", ":", "[", "]", "{", "}", " ", "\t", "\0", "u",
             "\\u0061", "\\ud800", "__metadata__", '"a"', "18446744073709551616", "-0", "00", "é", "\u2028",
             '"dtype":"F32"', '"data_offsets":[0,16]', '"shape":[2,2]']


@pytest.mark.parametrize("seed", range(len(_SEEDS)))
def test_random_splices_agree(seed):
    """Each case replaces, inserts or deletes up to three random spans; the fast path, when it takes the result, must
    give the checked path's answer, and the reader as a whole always does (errors included)."""
    import random

    rng = random.Random(seed)
    base = _SEEDS[seed].decode()
    data_end = 32 if seed == 1 else (18 if seed == 0 else 3)
    taken = cases = 0
    for _ in range(3000):
        text = base
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text))
            cut = rng.choice((0, 0, 1, 2, 5))
            text = text[:at] + (rng.choice(_ALPHABET) if rng.random() < 0.8 else "") + text[at + cut:]
        header = text.encode("utf-8", "surrogatepass")
        for size in (None, 8 + len(header) + data_end):
            checked = _checked(header, size)
            fast = _fast(header, size)
            if fast is not None:
                assert fast == checked, header
                taken += 1
            assert _whole(header, size) == checked, header
            cases += 1
    assert 100 < taken < cases, (taken, cases)


@pytest.mark.parametrize(("prefix", "rest", "message"), [
    (0, b"", "header is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
    (1, b"{", "header is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2"),
    (8, b"{       ", "header is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 9"),
    (50, b"{}", "header length 50 bytes runs past the end of the file (10 bytes)"),
    (100_000_001, b"{}", "header length 100,000,001 bytes exceeds the safetensors limit of 100,000,000"),
    ((1 << 64) - 1, b"{}", "header length 18,446,744,073,709,551,615 bytes exceeds the safetensors limit"),
])
def test_the_declared_header_length_against_the_file(tmp_path, prefix, rest, message):
    path = tmp_path / "len.safetensors"
    path.write_bytes(struct.pack("<Q", prefix) + rest)
    assert_refused(run_cli(path), path, message)


# ---- a name given twice in one shard of an index: looked for at the end, refused as the shard's own check did -------

_TWICE = (_entry("a", "U8", "1", 0, 1), _entry("a", "U8", "1", 1, 2))


@pytest.mark.parametrize(("headers", "data", "where", "message"), [
    # the shard itself (the index lists the name once)
    ([_header(*_TWICE)], [2], 0, "header has the key 'a' more than once"),
    # before a shard refused for its own sake: the repeat is the first shard's refusal, as read shard by shard
    ([_header(*_TWICE), _header(_entry("b", "U8", "1", 0, 1))], [2, 2], 0, "header has the key 'a' more than once"),
    # after a shard that repeats another's name: that shard is refused first
    ([_header(_entry("a", "U8", "1", 0, 1)), _header(_entry("a", "U8", "1", 0, 1)),
      _header(_entry("b", "U8", "1", 0, 1), _entry("b", "U8", "1", 1, 2))], [1, 1, 2], 1,
     "tensor 'a' is also in shard 's0.safetensors'"),
    # a shard repeating its own name and another's: its own repeat first
    ([_header(_entry("a", "U8", "1", 0, 1)),
      _header(_entry("a", "U8", "1", 0, 1), _entry("c", "U8", "1", 1, 2), _entry("c", "U8", "1", 2, 3))], [1, 3], 1,
     "header has the key 'c' more than once"),
])
def test_a_name_twice_in_a_shard_of_an_index_is_refused_by_that_shard(tmp_path, headers, data, where, message):
    """The fast path leaves a shard's own repeats to the end of an index's read (where the index's names, matched in
    order, prove there is none); the refusal is the one a shard-by-shard read gives (each shard listed, in order)."""
    weight_map = {}
    for k, header in enumerate(headers):
        _write(tmp_path / f"s{k}.safetensors", header, data[k])
        weight_map[f"listed{k}"] = f"s{k}.safetensors"  # each shard listed, in order (the names then disagree)
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    assert_refused(run_cli(index, "--format", "json"), tmp_path / f"s{where}.safetensors", message)


def test_an_index_whose_shards_hold_its_names_in_order_gives_distinct_names(tmp_path):
    index = _shards(tmp_path, [_header(A, B), _header(_entry("c", "U8", "1", 0, 1))], [24, 1])
    table = reader.read(index).table
    assert table.names == ["a", "b", "c"] and table.facts["distinct"] is True
