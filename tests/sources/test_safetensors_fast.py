"""The safetensors fast path (a canonical header read by one regular expression) against the checked path.

The rule under test: the fast path accepts a subset of what the checked path (``json.loads`` + ``_check_into``)
accepts, and where it accepts it builds the very same columns and metadata; everything else falls back, so the
reader as a whole (``_header_into``) answers exactly as the checked path does, errors included. Headers come from
the real writers (``safetensors.numpy``/``safetensors.torch``, which call the Rust crate), the test fixtures' writer,
hand-made edge cases, and every one-byte mutation of small headers.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as save_numpy

from paramscope.errors import ParamscopeError
from paramscope.sources import safetensors as reader
from tests.hostile._limits import assert_clean, assert_refused, run_cli
from tests.sources._st_paths import checked as _checked
from tests.sources._st_paths import entry as _entry
from tests.sources._st_paths import fast as _fast
from tests.sources._st_paths import header_of as _header
from tests.sources._st_paths import whole as _whole

sys.path.insert(0, str(Path(__file__).parent))
from _st_helpers import header_bytes, llama_tensors, write_sharded

TINY = {"layers": 2, "hidden": 64, "intermediate": 128, "vocab": 100, "heads": 4, "kv_heads": 2}


def _agree(header: bytes, file_size: int | None) -> bool:
    """Assert the rule for one header; True when the fast path took it."""
    checked = _checked(header, file_size)
    fast = _fast(header, file_size)
    if fast is not None:
        assert fast == checked, header[:200]
    assert _whole(header, file_size) == checked, header[:200]
    return fast is not None


def _split(file: bytes) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("<Q", file)
    return file[8 : 8 + n], len(file)


def _numpy_file(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    return save_numpy(tensors, metadata=metadata)


REAL = {
    "plain": ({"a": np.zeros((2, 3), np.float32), "b": np.zeros(5, np.int64)}, None),
    "metadata": ({"w": np.zeros((4, 4), np.float16)}, {"format": "pt", "note": 'a "quoted" \\ value\n'}),
    "scalar and empty": ({"s": np.zeros((), np.float32), "e": np.zeros((0,), np.float32),
                          "z": np.zeros((3, 0, 2), np.uint8), "x": np.zeros((1, 1, 1, 1, 1, 1, 1, 1, 1), bool)}, None),
    "unicode names": ({"模型.权重": np.zeros(3, np.float32), "é ü ☃ 😀": np.zeros(2, np.int8)}, {"ключ": "значение"}),
    "quoted name": ({'we"ird': np.zeros(1, np.float32), "back\\slash": np.zeros(1, np.float32)}, None),
    "control name": ({"tab\there": np.zeros(1, np.float32)}, None),
    "many dtypes": ({f"t{k}": np.zeros((k + 1, 2), dt) for k, dt in enumerate(
        (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32,
         np.uint64, np.complex64, bool))}, {}),
}


@pytest.mark.parametrize("label", list(REAL))
def test_real_numpy_headers_agree(label):
    tensors, metadata = REAL[label]
    header, size = _split(_numpy_file(tensors, metadata))
    took = _agree(header, size)
    # the crate escapes quotes, backslashes and control characters: those names go the checked way
    assert took == (label not in ("quoted name", "control name"))


def test_real_torch_headers_agree():
    torch = pytest.importorskip("torch")
    from safetensors.torch import save as save_torch

    tensors = {"emb": torch.zeros(10, 4, dtype=torch.bfloat16), "fp8": torch.zeros(8, 8, dtype=torch.float8_e4m3fn),
               "scale": torch.zeros(1, dtype=torch.float32), "empty": torch.zeros(0, 3, dtype=torch.float16)}
    header, size = _split(save_torch(tensors, metadata={"format": "pt"}))
    assert _agree(header, size)


def test_fixture_writer_headers_agree():
    head, data = header_bytes([(n, "BF16", s) for n, s in llama_tensors(**TINY)],
                              {"format": "pt"})
    header = head[8:]
    assert _agree(header, 8 + len(header) + data)
    assert _agree(header, None)
    assert not _agree(header, 8 + len(header) + data + 1)  # trailing data: the checked path says so


A = _entry("a", "F32", "2,2", 0, 16)
B = _entry("b", "BF16", "4", 16, 24)

EDGE = {
    # (header, the fast path takes it)
    "canonical": (_header(A, B), True),
    "padded with spaces": (_header(A, B, pad="     "), True),
    "padded with many spaces": (_header(A, B, pad=" " * 100), True),
    "spaces only": (b" " * 9, False),
    "metadata first": (_header('"__metadata__":{"format":"pt"}', A, B), True),
    "metadata null": (_header('"__metadata__":null', A, B), True),
    "metadata empty": (_header('"__metadata__":{}', A, B), True),
    "metadata escaped": (_header('"__metadata__":{"k\\"":"v\\u00e9\\n"}', A, B), True),
    "metadata last": (_header(A, B, '"__metadata__":{"format":"pt"}'), False),
    "metadata in the middle": (_header(A, '"__metadata__":{"format":"pt"}', B), False),
    "metadata not strings": (_header('"__metadata__":{"n":1}', A, B), False),
    "metadata nested": (_header('"__metadata__":{"n":{"x":"y"}}', A, B), False),
    "metadata duplicate key": (_header('"__metadata__":{"k":"a","k":"b"}', A, B), False),
    "metadata lone surrogate": (_header('"__metadata__":{"k":"\\ud800"}', A, B), False),
    "metadata bad escape": (_header('"__metadata__":{"k":"\\q"}', A, B), False),
    "metadata twice": (_header('"__metadata__":{}', A, '"__metadata__":{}', B), False),
    "metadata a tensor": (_header(_entry("__metadata__", "F32", "2,2", 0, 16), B), False),
    "metadata a tensor, second": (_header(A, _entry("__metadata__", "F32", "1", 16, 20)), False),
    "only metadata": (_header('"__metadata__":{"a":"b"}'), False),
    "empty": (b"{}", False),
    "scalar": (_header(_entry("s", "F32", "", 0, 4)), True),
    "zero-size first": (_header(_entry("z", "F32", "0", 0, 0), _entry("a", "F32", "2,2", 0, 16)), True),
    "zero-size last": (_header(A, _entry("z", "F32", "0,7", 16, 16), B), True),
    "zero-size out of order": (_header(A, B, _entry("z", "F32", "0", 0, 0)), True),
    "out of order": (_header(B, A), True),
    "gap": (_header(A, _entry("b", "BF16", "4", 20, 28)), False),
    "overlap": (_header(A, _entry("b", "BF16", "4", 8, 16)), False),
    "zero-size inside a tensor": (_header(A, B, _entry("z", "F32", "0", 8, 8)), False),
    "in order, the second a byte long": (_header(A, _entry("b", "BF16", "4", 16, 25)), False),
    "in order, the first a byte short": (_header(_entry("a", "F32", "2,2", 0, 15), _entry("b", "BF16", "4", 15, 23)),
                                         False),
    "wrong size": (_header(_entry("a", "F32", "2,2", 0, 15)), False),
    "end before begin": (_header(_entry("a", "F32", "0", 16, 0)), False),
    "not from zero": (_header(_entry("a", "F32", "1", 4, 8)), False),
    "duplicate name": (_header(A, _entry("a", "BF16", "4", 16, 24)), False),
    "leading zero in shape": (_header(_entry("a", "F32", "02,2", 0, 16)), False),
    "leading zero in offset": (_header(_entry("a", "F32", "2,2", "00", 16)), False),
    "empty dimension": (_header(_entry("a", "F32", "2,,2", 0, 16)), False),
    "trailing comma in shape": (_header(_entry("a", "F32", "4,", 0, 16)), False),
    "offset past 64 bits": (_header(_entry("a", "U8", "18446744073709551616", 0, 18446744073709551616)), False),
    "size at 64 bits": (_header(_entry("a", "U8", "18446744073709551615", 0, 18446744073709551615)), False),
    "largest size": (_header(_entry("a", "U8", "2305843009213693951", 0, 2305843009213693951)), True),
    "offset of 21 digits": (_header(_entry("a", "U8", "100000000000000000000", 0, 100000000000000000000)), False),
    "shape overflow": (_header(_entry("a", "F32", "4294967296,4294967296", 0, 0)), False),
    "zero times a huge dimension": (_header(_entry("a", "F32", "0,1180591620717411303424", 0, 0)), False),
    "unknown dtype": (_header(_entry("a", "F99", "1", 0, 4)), False),
    "lower-case dtype": (_header(_entry("a", "f32", "1", 0, 4)), False),
    "F4 odd count": (_header(_entry("a", "F4", "3", 0, 2)), False),
    "F4 even count": (_header(_entry("a", "F4", "4", 0, 2)), True),
    "F6 fills bytes": (_header(_entry("a", "F6_E2M3", "4", 0, 3)), True),
    "fields reordered": (b'{"a":{"shape":[1],"dtype":"F32","data_offsets":[0,4]}}', False),
    "extra field": (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}', False),
    "space after colon": (b'{"a": {"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', False),
    "leading space": (b' {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', False),
    "trailing newline": (_header(A, pad="\n"), False),
    "trailing tab": (_header(A, pad="\t"), False),
    "byte order mark": ("\ufeff".encode() + _header(A), False),
    "two objects": (_header(A) + _header(B), False),
    "entries glued": (_header(A + _entry("b", "BF16", "4", 16, 24)), False),
    "comma before the brace": (("{" + A + "," + B + ",}").encode(), False),
    "comma after the brace": (("{" + A + "," + B + "},").encode(), False),
    "metadata then a brace": (("{" + '"__metadata__":{},{' + A + "}").encode(), False),
    "metadata without a comma": (("{" + '"__metadata__":{}' + A + "}").encode(), False),
    "double comma": (("{" + A + ",," + B + "}").encode(), False),
    "a space between entries": (("{" + A + ", " + B + "}").encode(), False),
    "a space before the brace": (("{" + A + "," + B + " }").encode(), False),
    "text before the first entry": (("{" + "x" + A + "," + B + "}").encode(), False),
    "an entry's text repeated after it": (("{" + A + "," + B + B[-3:] + "}").encode(), False),
    "unicode name": (_header(_entry("名前 ☃", "F32", "1", 0, 4)), True),
    "escaped name": (_header(_entry("a\\u0041", "F32", "1", 0, 4)), False),
    "name with braces": (_header(_entry('x]}{"y', "F32", "1", 0, 4)), False),
    "name with ]}{ inside": (_header(_entry("x]}{y", "F32", "1", 0, 4)), True),
    "delete character name": (_header(_entry("x\x7fy", "F32", "1", 0, 4)), True),
    "control character name": (_header(_entry("x\x01y", "F32", "1", 0, 4)), False),
    "shape true": (b'{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}', False),
    "negative dimension": (_header(_entry("a", "F32", "-1", 0, 4)), False),
    "float offset": (_header(_entry("a", "F32", "1", "0.0", 4)), False),
    "not an object": (b"[]", False),
    # the pattern takes each part up to the character that ends it; what it took is checked after
    "name with a unit separator": (_header(_entry("x\x1fy", "F32", "1", 0, 4)), False),
    "name with a raw newline": (_header(A, _entry("b\nc", "BF16", "4", 16, 24)), False),
    "escaped quote in a name": (_header(_entry('x\\"y', "F32", "1", 0, 4)), False),
    "quote in the dtype": (_header(_entry("a", 'F3"2', "1", 0, 4)), False),
    "dtype of 17 characters": (_header(_entry("a", "F" * 17, "1", 0, 4)), False),
    "quote in the shape": (_header(_entry("a", "F32", '1"', 0, 4)), False),
    "shape of 401 characters": (_header(_entry("a", "U8", "1," * 200 + "1", 0, 1)), False),
    "shape of 399 characters": (_header(_entry("a", "U8", "1," * 199 + "1", 0, 1)), True),
    "three offsets": (_header(_entry("a", "F32", "1", 0, "4,8")), False),
    "offsets with a plus, out of order": (_header(B, _entry("a", "F32", "2,2", "+0", 16)), False),
    "offsets with a space, out of order": (_header(B, _entry("a", "F32", "2,2", 0, " 16")), False),
    "offsets with an underscore, out of order": (_header(B, _entry("a", "F32", "2,2", 0, "1_6")), False),
    "offsets in Arabic digits, out of order": (_header(B, _entry("a", "F32", "2,2", 0, "\u0661\u0666")), False),
    "offsets with a leading zero, out of order": (_header(B, _entry("a", "F32", "2,2", 0, "016")), False),
    "negative offsets, out of order": (_header(_entry("b", "BF16", "4", 16, 24), _entry("a", "F32", "2,2", -16, 0)),
                                       False),
    "offset of 21 digits, out of order": (_header(B, _entry("a", "F32", "2,2", "0" * 21, 16)), False),
    "offset of 5000 digits, out of order": (_header(B, _entry("a", "F32", "2,2", 0, "1" * 5000)), False),
    "offsets glued to the next entry": (_header(_entry("a", "F32", "1", 0, '4]},"b":{"x":[1')), False),
    "invalid utf-8": (b'{"\xff":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', False),
}


@pytest.mark.parametrize("label", list(EDGE))
def test_edge_headers_agree(label):
    header, takes = EDGE[label]
    assert _agree(header, None) == takes
    checked = _checked(header, None)
    if checked[0] == "ok":  # and against the exact size the offsets declare, and one byte more
        total = 8 + len(header) + _data_end(header)
        assert _agree(header, total) == takes
        assert not _agree(header, total + 1)


def _data_end(header: bytes) -> int:
    parsed = json.loads(header)
    return max((v["data_offsets"][1] for k, v in parsed.items() if k != "__metadata__"), default=0)


def test_the_fast_path_refuses_nothing_itself():
    """A header the fast path cannot take is refused with the checked path's own message."""
    header, _ = EDGE["gap"]
    with pytest.raises(ParamscopeError, match="leaves a gap of 4 bytes"):
        reader._header_into(reader._Columns(), "f", header, None, "o")
    header, _ = EDGE["leading zero in shape"]
    with pytest.raises(ParamscopeError, match="not valid JSON"):
        reader._header_into(reader._Columns(), "f", header, None, "o")


SMALL = [
    _header('"__metadata__":{"format":"pt"}', _entry("a", "F32", "2,2", 0, 16), _entry("b", "BF16", "4", 16, 24),
            _entry("z", "U8", "0", 24, 24), pad="  "),
    _split(_numpy_file({"s": np.zeros((), np.float32), "w": np.zeros((3, 1), np.int16)}))[0],
]
_REPLACEMENTS = b'09,]}{":\\ aF\x00'


@pytest.mark.parametrize("which", range(len(SMALL)))
def test_every_one_byte_mutation_agrees(which):
    """Each byte replaced (by a structural character, a digit, a letter, a NUL), deleted and doubled."""
    header = SMALL[which]
    data = _data_end(header)
    taken = 0
    cases = 0
    for position in range(len(header)):
        variants = [header[:position] + header[position + 1 :], header[:position + 1] + header[position:]]
        variants += [header[:position] + bytes([c]) + header[position + 1 :] for c in _REPLACEMENTS
                     if c != header[position]]
        for mutated in variants:
            for size in (None, 8 + len(mutated) + data):
                taken += _agree(mutated, size)
                cases += 1
    assert cases > 2000
    assert 0 < taken < cases  # both paths were exercised


def test_shards_agree_with_the_checked_path(tmp_path):
    """A sharded set read through the fast path gives the checked path's table, shard by shard."""
    tensors = [(n, "BF16", s) for n, s in llama_tensors(**TINY)]
    index = write_sharded(tmp_path / "m", tensors, 4)
    inventory = reader.read(index)
    expected = reader._Columns()
    for shard in sorted(index.parent.glob("*.safetensors")):
        header, size = reader._read_header_bytes(shard)
        reader._check_into(expected, shard, reader._parse_json(shard, header, pairs=True), len(header), size,
                           shard.name)
    table = inventory.table
    assert (table.names, table.shapes, table.dtypes, table.numel, table.nbytes, table.origins) == (
        expected.names, expected.shapes, expected.kinds, expected.numels, expected.sizes, expected.origins)
    assert inventory.metadata["shards"] == 4


def _shard_set(tmp_path: Path, shards: list[list[str]], broken: int | None = None) -> dict[str, Path]:
    """Shards holding the named F32 [1] tensors; ``broken`` (an index) gets a gap in its offsets."""
    found: dict[str, Path] = {}
    for k, names in enumerate(shards):
        members = [_entry(name, "F32", "1", 4 * i + (4 if k == broken and i else 0), 4 * i + 4 + (4 if k == broken
                                                                                                  and i else 0))
                   for i, name in enumerate(names)]
        header = _header(*members)
        path = tmp_path / f"s{k}.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * _data_end(header))
        found[path.name] = path
    return found


@pytest.mark.parametrize(("shards", "broken", "message"), [
    # the first shard (in reading order) that repeats a name, and its first repeated name (header order)
    ([["a", "b"], ["c", "b", "a"], ["d"]], None, "s1.safetensors: tensor 'b' is also in shard 's0.safetensors'"),
    ([["a"], ["b"], ["c", "b"], ["a"]], None, "s2.safetensors: tensor 'b' is also in shard 's1.safetensors'"),
    # a repeat before a refused shard is what is reported; a refused shard before a repeat is
    ([["a", "b"], ["b"], ["c", "d"]], 2, "s1.safetensors: tensor 'b' is also in shard 's0.safetensors'"),
    ([["a", "b"], ["c", "d"], ["a"]], 1, "s1.safetensors: tensor 'd': data_offsets start at 8, which leaves a gap"),
])
def test_a_name_in_two_shards_is_reported_as_shard_by_shard(tmp_path, shards, broken, message):
    paths = _shard_set(tmp_path, shards, broken)
    with pytest.raises(ParamscopeError) as caught:
        reader._read_shards(paths)
    assert f"{Path(caught.value.source).name}: {caught.value.reason}".startswith(message)


def test_distinct_shards_give_the_owner_map(tmp_path):
    paths = _shard_set(tmp_path, [["a", "b"], ["c"], ["d", "e"]])
    table, owner, _, _ = reader._read_shards(paths)
    assert owner == {"a": "s0.safetensors", "b": "s0.safetensors", "c": "s1.safetensors", "d": "s2.safetensors",
                     "e": "s2.safetensors"}
    assert table.names == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("value", [1, 1.5, None, True, False, 0, ["a.safetensors"], {"a": "b"}, []])
def test_an_index_value_that_is_not_a_file_name_is_refused(value):
    raw = json.dumps({"weight_map": {"a": "s0.safetensors", "b": value}}).encode()
    with pytest.raises(ParamscopeError, match="weight_map values must be shard file names"):
        reader.parse_index("i", raw)


def test_an_index_of_file_names_is_read():
    raw = json.dumps({"metadata": {"total_size": 8}, "weight_map": {"a": "s0.safetensors", "b": "s1.safetensors"}})
    assert reader.parse_index("i", raw.encode()) == ({"a": "s0.safetensors", "b": "s1.safetensors"},
                                                     {"total_size": 8})
    # the shards each once, first listed first (what the reader opens, in order)
    raw = json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s0.safetensors", "c": "s1.safetensors"}})
    assert reader._parse_index("i", raw.encode())[2] == ["s1.safetensors", "s0.safetensors"]


@pytest.mark.parametrize("document", [
    {"metadata": {"total_size": 8, "a": {"b": [1, {"c": 2}]}},
     "weight_map": {"x": "s1.st", "y": "s0.st", "z": "s1.st"}},
    {"weight_map": {"x:1": "s1.st", "y": "s0:1.st", "z": "s1.st"}},  # colons in strings: parsed again by the pairs
    {"weight_map": {"x": "s1.st"}, "extra": [{"weight_map": {"y": 1}}], "more": {"weight_map": ["z"]}},
])
def test_an_index_is_what_json_reads(document):
    # reference: json.loads of the same text; the shards each once, first listed first, as dict.fromkeys lists them
    raw = json.dumps(document).encode()
    weight_map, declared, shards, _ = reader._parse_index("i", raw)
    assert weight_map == json.loads(raw)["weight_map"] and declared == json.loads(raw).get("metadata", {})
    assert shards == list(dict.fromkeys(document["weight_map"].values()))


@pytest.mark.parametrize("text", [
    '{"weight_map": {"x": "s0.st", "x": "s1.st"}}',  # a name given twice: the count of keys finds it
    '{"weight_map": {"x": "s0.st"}, "weight_map": {"y": "s1.st"}}',
    '{"weight_map": {"x": "s0.st"}, "metadata": {"a": 1, "a": 2}}',
])
def test_an_index_with_a_key_given_twice_is_refused(text):
    with pytest.raises(ParamscopeError, match="more than once"):
        reader._parse_index("i", text.encode())


def _index(tmp_path: Path, shards: list[list[str]], weight_map: dict[str, str]) -> Path:
    _shard_set(tmp_path, shards)
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    return index


@pytest.mark.parametrize(("listed", "outcome"), [
    ({"a": "s0.safetensors", "b": "s0.safetensors", "c": "s1.safetensors"}, []),
    ({"a": "s0.safetensors", "c": "s1.safetensors"},
     ["1 tensors are in the shards but not in the index's weight_map; they are counted."]),
    ({"a": "s0.safetensors", "b": "s1.safetensors", "c": "s1.safetensors"},
     "weight_map puts 'b' in 's1.safetensors', but it is in 's0.safetensors'"),
    ({"a": "s0.safetensors", "b": "s0.safetensors", "c": "s1.safetensors", "d": "s1.safetensors"},
     "weight_map puts 'd' in 's1.safetensors', but no shard holds it"),
    # as many listed as read, but one read twice and one not read: the repeat is what is reported
    ({"a": "s0.safetensors", "b": "s0.safetensors", "c": "s1.safetensors", "z": "s1.safetensors"}, "repeat"),
])
def test_the_index_and_the_shards_agree_or_are_refused(tmp_path, listed, outcome):
    shards = [["a", "b"], ["c", "a"]] if outcome == "repeat" else [["a", "b"], ["c"]]
    index = _index(tmp_path, shards, listed)
    if isinstance(outcome, list):
        inventory = reader.read(index)
        assert inventory.notes == outcome
        assert inventory.table.names == ["a", "b", "c"]
        assert inventory.table.origins == ["s0.safetensors", "s0.safetensors", "s1.safetensors"]
    else:
        with pytest.raises(ParamscopeError) as caught:
            reader.read(index)
        expected = "tensor 'a' is also in shard 's0.safetensors'" if outcome == "repeat" else outcome
        assert caught.value.reason == expected


@pytest.mark.parametrize(("listed", "runs"), [
    ({"a": "s0.safetensors", "b": "s0.safetensors", "c": "s1.safetensors"}, [2, 1]),
    ({"c": "s1.safetensors", "a": "s0.safetensors", "b": "s0.safetensors"}, [1, 2]),  # s1 listed, so read, first
    ({"a": "s0.safetensors", "c": "s1.safetensors", "b": "s0.safetensors"}, None),  # s0's names apart
])
def test_an_index_listing_each_shard_together_is_read_by_its_runs(tmp_path, listed, runs):
    # reference, by hand: each shard's entries counted where the weight map lists them together; the inventory is
    # the one the names looked up one by one give (the shards read in the order first listed, each in header order)
    raw = json.dumps({"weight_map": listed}).encode()
    assert reader._parse_index("i", raw)[3] == runs
    inventory = reader.read(_index(tmp_path, [["a", "b"], ["c"]], listed))
    first = "s1.safetensors" if next(iter(listed.values())) == "s1.safetensors" else "s0.safetensors"
    order = [["c"], ["a", "b"]] if first == "s1.safetensors" else [["a", "b"], ["c"]]
    assert inventory.table.names == [name for part in order for name in part] and inventory.notes == []
    assert inventory.table.origins == [listed[name] for part in order for name in part]


@pytest.mark.parametrize(("metadata", "refused"), [
    ('{"k":"' + "a" * 30_000_000 + '"}', None),  # a regular expression once backtracked over this: 4 GB
    ('{"k":"' + 'a\\"' * 5_000_000 + '"x}', "not valid JSON"),
    ("[" * 200_000, "nested too deeply"),
])
def test_a_huge_metadata_is_read_in_bounded_memory(tmp_path, metadata, refused):
    header = ('{"__metadata__":' + metadata + "," + A + "}").encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    result = run_cli(str(path), "--format", "json")
    if refused is None:
        assert_clean(result, str(path))
        assert result.returncode == 0
        assert json.loads(result.stdout)["metadata"]["__metadata__"]["k"] == "a" * 30_000_000
    else:
        assert_refused(result, str(path), refused)
