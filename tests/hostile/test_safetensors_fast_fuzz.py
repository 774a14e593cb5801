"""Differential fuzzing of the safetensors header fast path (``_fast_check_into``) against the checked path
(``_parse_json`` + ``_check_into``), against ``json.loads`` read by hand here (the truth), and against the crate itself
(``safetensors.deserialize``).

Headers are built as tokens from a few tensors (names chosen to look like the pattern's own delimiters:
``":{"dtype":"``, ``]``, ``}``, ``,``, the empty name, ``__metadata__``...), then mutated at the level of the document
(an entry or a field given twice, fields reordered or dropped, offsets moved to overlap, leave gaps or run out of order,
20- and 21-digit numbers, ``__metadata__`` in odd places and of odd types, trailing commas) and of the tokens
(JSON whitespace, quotes, brackets, braces, commas, backslashes, control characters, Unicode digits, signs, underscores,
leading zeros put into every part; a byte overwritten). For every header:

* the reader as a whole answers exactly as the checked path does (columns, metadata, or the error message);
* where the fast path takes a header, the checked path takes it with the very same columns and metadata, ``json.loads``
  reads it as a JSON object whose entries say exactly those records (names in order, dtypes, shapes, sizes, tiling
  offsets, the file's size), and the crate reads the same tensors from the file;
* a fallback leaves the columns untouched (``tests/sources/_st_paths.fast``).

The cases are drawn from seeded ``random.Random`` s: a failure names the seed and case that make it again. A longer run:
``PARAMSCOPE_FUZZ_CASES=500000 pytest tests/hostile/test_safetensors_fast_fuzz.py -k differential``.
"""

from __future__ import annotations

import json
import math
import os
import random
import struct
import time

import pytest

from paramscope.errors import ParamscopeError
from paramscope.sources import safetensors as reader
from tests.hostile._limits import assert_clean, assert_refused, run_cli
from tests.hostile._mutate import is_clean, run_all
from tests.sources._st_paths import checked as _checked
from tests.sources._st_paths import fast as _fast
from tests.sources._st_paths import whole as _whole

CASES = int(os.environ.get("PARAMSCOPE_FUZZ_CASES", "20000"))
SEEDS = (1, 2)

# The truth's own dtype table (the crate's ``Dtype`` and its bit sizes), not the reader's
BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16,
        "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64, "F6_E2M3": 6,
        "F6_E3M2": 6, "F4": 4}
CANONICAL = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn",
             "F8_E8M0": "float8_e8m0fnu", "I16": "int16", "U16": "uint16", "F16": "float16", "BF16": "bfloat16",
             "I32": "int32", "U32": "uint32", "F32": "float32", "C64": "complex64", "F64": "float64", "I64": "int64",
             "U64": "uint64", "F6_E2M3": "float6_e2m3fn", "F6_E3M2": "float6_e3m2fn", "F4": "float4_e2m1fn"}
U64 = 1 << 64

NAMES = ["a", "b", "model.layers.0.self_attn.q_proj.weight", "", " ", "x y", '":{"dtype":"', "]", "}", ",", "[", "{",
         ":", "],", "}," , "__metadata__", "__metadata", "dtype", "data_offsets", "é", "模型.权重", "😀", "\x7f",
         "\u0085", "\u2028", "a,b", '","shape":[', "0", "-1", "\\", '"', "\x00", "\t", "\u0661", "a" * 40]
# the names the fast path may take (no quote, backslash or control character), however much they look like JSON
PLAIN_NAMES = [n for n in NAMES if not any(c in n for c in ('"', "\\", *map(chr, range(32))))]
DTYPES = [*BITS, "F33", "f32", "BF16 ", " F16", "", "F8", "F32\x00", "FLOAT32", "F32" * 6]
DIMS = [0, 1, 2, 3, 4, 5, 7, 8, 16]
HUGE_DIMS = [1 << 32, 1 << 61, 1 << 62, 1 << 63, U64 - 1, U64, 10**19, 10**20 - 1]
"""Dimensions whose sizes (or their sum, the last offset) reach 64 bits: the file's size is then only a number."""
# what is put into a token: JSON's structure, whitespace, escapes, controls, digits that are not ASCII, signs...
INSERTS = ['"', "[", "]", "{", "}", ",", ":", "\\", "\\u0041", "\\n", "\x00", "\x01", "\x1f", "\n", "\t", "\r", " ",
           "\x7f", "\u0661", "\uff10", "\u00b2", "_", "+", "-", "0", "00", ".", "e", "E", "1", "9", "é", "\ufeff",
           "null", "true", '"__metadata__":{}', '"a":1', "\\ud800", "\u2028"]
NUMBERS = ["0", "00", "01", "-0", "-1", "+1", "1_0", " 1", "1 ", "1.0", "1e0", "1E1", "0x10", "\u0661", "\uff11",
           "true", "null", '"1"', "[]", "", str(U64 - 1), str(U64), str(U64 + 1), "9" * 20, "1" + "0" * 20, "0" * 20,
           "1" + "0" * 19, "18446744073709551616" + "0", "340282366920938463463374607431768211456", "4294967296"]
METADATA = ["{}", '{"format":"pt"}', "null", '{"a":"b","a":"c"}', '{"a":1}', '{"a":null}', "[]", '"x"', "1",
            '{"q":"\\"}\\\\"}', '{"s":"\\ud800"}', '{"s":"\\ud83d\\ude00"}', '{"a":{"b":"c"}}', '{"a":"b",}',
            '{ "a" : "b" }', '{"a":"NaN"}', '{"a":NaN}', '{"a":"\x01"}', '{"__metadata__":"x"}', "{" * 40]


def _tensors(rng: random.Random, hostile: bool) -> list[dict]:
    """A few tensors whose sizes fill whole bytes, with offsets that tile from 0 in a random order."""
    tensors = []
    names = NAMES if hostile else PLAIN_NAMES
    # now and then many tensors of the largest size the crate allows (its bits below 2**64): their offsets then
    # run past 64 bits, though each tensor checks out (the file's size is only a number here)
    many = rng.random() < 0.02
    for _ in range(rng.randint(9, 10) if many else rng.randint(1, 4)):
        dtype = rng.choice(DTYPES) if hostile and rng.random() < 0.1 else rng.choice(list(BITS))
        shape = [rng.choice(HUGE_DIMS if rng.random() < 0.03 else DIMS) for _ in range(rng.choice((0, 1, 1, 2, 2, 3)))]
        if many or rng.random() < 0.03:  # a byte tensor of the most bytes a tensor may hold (or past it)
            dtype = rng.choice(("U8", "I8", "BOOL"))
            shape = [(1 << 61) - 1 if many else rng.choice(((1 << 61) - 1, 1 << 60, 1 << 61))]
        bits = BITS.get(dtype, 8)
        if math.prod(shape) * bits % 8:
            shape.append(8)
        name = rng.choice(names) + (str(rng.randrange(1000)) if rng.random() < 0.85 else "")
        if tensors and rng.random() < 0.05:  # a name given twice, each with its own offsets (they tile)
            name = rng.choice(tensors)["name"]
        tensors.append({"name": name, "dtype": dtype, "shape": [str(d) for d in shape],
                        "size": math.prod(shape) * bits // 8})
    order = list(range(len(tensors)))
    if rng.random() < 0.3:
        rng.shuffle(order)
    cursor = 0
    for k in order:
        tensors[k]["offsets"] = [str(cursor), str(cursor + tensors[k]["size"])]
        cursor += tensors[k]["size"]
    return tensors


def _name_token(rng: random.Random, name: str) -> str:
    if rng.random() < 0.85:
        return '"' + name + '"'  # raw, as the crate writes a plain name (and a quote in it breaks the text)
    return json.dumps(name, ensure_ascii=rng.random() < 0.5)


def _entry_fields(rng: random.Random, tensor: dict, hostile: bool) -> list[list[str]]:
    """The entry's fields, each a list of tokens, after the document-level mutations of one entry."""
    shape = ["["]
    for k, dim in enumerate(tensor["shape"]):
        shape += [",", dim] if k else [dim]
    shape.append("]")
    offsets = ["[", tensor["offsets"][0], ",", tensor["offsets"][1], "]"]
    fields = [['"dtype"', ":", f'"{tensor["dtype"]}"'], ['"shape"', ":", *shape], ['"data_offsets"', ":", *offsets]]
    roll = rng.random() if hostile else 1
    if roll < 0.03:
        rng.shuffle(fields)
    elif roll < 0.05:
        del fields[rng.randrange(3)]
    elif roll < 0.07:
        fields.insert(rng.randrange(4), list(rng.choice(fields)))
    elif roll < 0.09:
        fields.insert(rng.randrange(4), ['"extra"', ":", rng.choice(("1", '"x"', "null", "[]", "{}"))])
    elif roll < 0.11:  # a trailing comma in an array
        field = rng.choice(fields[1:])
        field.insert(len(field) - 1, ",")
    elif roll < 0.13:
        fields[2][-1:-1] = [",", rng.choice(("0", "4"))]
    elif roll < 0.15:
        del fields[2][3:5]
    return fields


def _tokens(rng: random.Random, tensors: list[dict], hostile: bool) -> list[str]:
    members: list[list[str]] = []
    for tensor in tensors:
        tokens = [_name_token(rng, tensor["name"]), ":", "{"]
        for k, field in enumerate(_entry_fields(rng, tensor, hostile)):
            tokens += [",", *field] if k else field
        members.append([*tokens, "}"])
    roll = rng.random()
    if roll < 0.05:  # an entry given twice
        members.insert(rng.randrange(len(members) + 1), list(rng.choice(members)))
    elif roll < 0.08:
        rng.shuffle(members)
    if rng.random() < 0.35:
        meta = ['"__metadata__"', ":", rng.choice(METADATA) if rng.random() < 0.5 else METADATA[rng.randrange(2)]]
        at = 0 if rng.random() < 0.8 else rng.randrange(len(members) + 1)
        members.insert(at, meta)
        if rng.random() < 0.03:
            members.insert(rng.randrange(len(members) + 1), meta)
    tokens = ["{"]
    for k, member in enumerate(members):  # now and then two members glued, no comma between
        glue = "," if rng.random() < 0.97 else rng.choice(("", ",,", " ", ";", ":"))
        tokens += [glue, *member] if k else member
    if rng.random() < 0.03:
        tokens.append(",")
    tokens.append("}" if rng.random() < 0.98 else rng.choice(("", "]", "x", "\n", ",", "}}")))  # the object not closed
    return tokens


def _offset_attack(rng: random.Random, tensors: list[dict]) -> None:
    """Offsets that overlap, leave a gap, run backwards or past 64 bits; numbers written as JSON does not."""
    tensor = rng.choice(tensors)
    roll = rng.random()
    if roll < 0.3:
        k = rng.randrange(2)
        tensor["offsets"][k] = str(int(tensor["offsets"][k]) + rng.choice((-1, 1, 8, -8)))
    elif roll < 0.45:
        tensor["offsets"].reverse()
    elif roll < 0.6:  # both ends moved: the size still checks out, the tiling may not
        shift = rng.choice((-1, 1, 4, U64, U64 - tensor["size"]))
        tensor["offsets"] = [str(int(o) + shift) for o in tensor["offsets"]]
    elif roll < 0.75:
        other = rng.choice(tensors)
        tensor["offsets"], other["offsets"] = list(other["offsets"]), list(tensor["offsets"])
    else:
        where = rng.choice(("offsets", "shape")) if tensor["shape"] else "offsets"
        part = tensor[where]
        part[rng.randrange(len(part))] = rng.choice(NUMBERS)


def _header(rng: random.Random) -> tuple[bytes, int | None]:
    """One case: half the time a header the fast path should take (plain names, only the document-level mutations
    that keep it canonical or break it in ways the text alone shows), else every mutation at once."""
    hostile = rng.random() < 0.5
    tensors = _tensors(rng, hostile)
    data = sum(t["size"] for t in tensors)
    if rng.random() < 0.3:
        _offset_attack(rng, tensors)
    tokens = _tokens(rng, tensors, hostile)
    for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 3)) if hostile else 0):
        k = rng.randrange(len(tokens))
        roll = rng.random()
        if roll < 0.3:
            tokens.insert(k, rng.choice((" ", "\n", "\t", "\r", "  ", "\r\n")))
        elif roll < 0.45:  # a comma, a colon, a brace, a name... left out
            del tokens[k]
        else:
            token = tokens[k]
            at = rng.randrange(len(token) + 1)
            tokens[k] = token[:at] + rng.choice(INSERTS) + token[at:]
    text = "".join(tokens)
    text += " " * (-len(text.encode()) % 8 if rng.random() < 0.8 else rng.choice((0, 1, 70, 200)))
    if rng.random() < 0.02:
        text += rng.choice(("\n", "\t", "}", ",", "\x00", " x"))
    raw = bytearray(text.encode("utf-8", "surrogatepass"))
    if hostile and rng.random() < 0.1:
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    roll = rng.random()
    size: int | None = 8 + len(raw) + data
    if roll < 0.05:
        size = None
    elif roll < 0.1:
        size += rng.choice((-1, 1))
    return bytes(raw), size


def _no_constant(literal: str) -> None:
    raise AssertionError(f"{literal} is not JSON")


def _truth(header: bytes, size: int | None) -> tuple[list[tuple], dict[str, str]]:
    """What the JSON says, read here without the reader: the rows (name, canonical dtype, shape, numel, bytes) in the
    header's order and the metadata. Fails when the document is not one the crate would take."""
    text = header.decode("utf-8")
    pairs = json.loads(text, object_pairs_hook=list, parse_constant=_no_constant)
    assert isinstance(pairs, list)
    keys = [key for key, _ in pairs]
    assert len(set(keys)) == len(keys), "a key given twice"
    metadata: dict[str, str] = {}
    rows, spans = [], []
    for name, value in pairs:
        name.encode("utf-8")  # no lone surrogate
        if name == "__metadata__":
            assert value is None or (isinstance(value, list) and all(type(v) is str for _, v in value))
            if value:
                assert len({k for k, _ in value}) == len(value)
                metadata = dict(value)
                for k, v in value:
                    k.encode("utf-8"), v.encode("utf-8")
            continue
        assert isinstance(value, list) and sorted(k for k, _ in value) == ["data_offsets", "dtype", "shape"]
        fields = dict(value)
        dtype, shape, offsets = fields["dtype"], fields["shape"], fields["data_offsets"]
        assert dtype in BITS
        assert type(shape) is list and all(type(d) is int and 0 <= d < U64 for d in shape)
        numel = math.prod(shape)
        assert numel < U64 and numel * BITS[dtype] % 8 == 0 and numel * BITS[dtype] < U64
        assert type(offsets) is list and len(offsets) == 2 and all(type(o) is int and 0 <= o < U64 for o in offsets)
        begin, end = offsets
        assert end - begin == numel * BITS[dtype] // 8
        spans.append((begin, end))
        rows.append((name, CANONICAL[dtype], tuple(shape), numel, numel * BITS[dtype] // 8))
    cursor = 0
    for begin, end in sorted(spans):
        assert begin == cursor
        cursor = end
    assert size is None or size == 8 + len(header) + cursor
    return rows, metadata


def _crate_rows(header: bytes, size: int) -> list[tuple]:
    safetensors = pytest.importorskip("safetensors")
    file = struct.pack("<Q", len(header)) + header + bytes(size - 8 - len(header))
    tensors = safetensors.deserialize(file)
    return sorted((name, CANONICAL[t["dtype"]], tuple(t["shape"])) for name, t in tensors)


def _check_one(header: bytes, size: int | None, where: str) -> bool:
    """The rules for one header; True when the fast path took it."""
    checked = _checked(header, size)
    fast = _fast(header, size)
    assert _whole(header, size) == checked, where
    if fast is None:
        return False
    assert fast == checked, where
    _, columns, metadata = fast
    rows, truth_metadata = _truth(header, size)
    assert metadata == truth_metadata, where
    assert list(zip(columns["names"], columns["kinds"], columns["shapes"], columns["numels"], columns["sizes"],
                    strict=True)) == rows, where
    if size is not None and size - 8 - len(header) <= 1 << 20:
        assert _crate_rows(header, size) == sorted(row[:3] for row in rows), where
    # the fact the fast path hands on (Table.facts["plain_names"]): then every name is printable ASCII, no quote and no
    # backslash (the renderers then print names without the escaping pass)
    plain = reader._Columns()
    assert reader._fast_check_into(plain, "f", header.decode(), len(header), size, "o") is not None
    if plain.plain_names:
        assert all(name.isascii() and name.isprintable() and '"' not in name and "\\" not in name
                   for name in columns["names"]), where
    return True


@pytest.mark.parametrize("seed", SEEDS)
def test_differential_fast_against_checked_json_and_crate(seed):
    rng = random.Random(seed)
    took = 0
    start = time.monotonic()
    for case in range(CASES // len(SEEDS)):
        header, size = _header(rng)
        took += _check_one(header, size, f"seed {seed} case {case}: {header[:300]!r} size {size}")
    elapsed = time.monotonic() - start
    # the cases reach both ways: many taken by the fast path (checked then against the truth), many falling back
    assert CASES // len(SEEDS) * 0.1 < took < CASES // len(SEEDS) * 0.6, took
    if CASES <= 20000:
        assert elapsed < 20, f"{elapsed:.1f} s"


def test_the_cli_on_fuzzed_files(tmp_path):
    """Whole files made from fuzzed headers (zeros for the data), through the CLI under the hostile-input limits: each
    ends as the checked path says (exit 0, or exit 1 with one line naming the file), on both ways of printing."""
    rng = random.Random(11)
    expected: dict[str, int] = {}
    paths = []
    while len(paths) < 60:
        header, size = _header(rng)
        data = (size if size is not None else 8 + len(header)) - 8 - len(header)
        if not 0 <= data <= 1 << 16:
            continue
        path = tmp_path / f"{len(paths)}.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(data))
        expected[str(path)] = 0 if _checked(header, 8 + len(header) + data)[0] == "ok" else 1
        paths.append(path)
    assert 10 < sum(expected.values()) < 50  # both outcomes reached
    rows = run_all(paths)
    assert all(map(is_clean, rows)), [row for row in rows if not is_clean(row)][:3]
    assert {(row["path"], row["code"]) for row in rows} == set(expected.items())
    # and one of each as a user meets them: a separate process, no standard input
    taken = next(p for p in paths if expected[str(p)] == 0)
    assert_clean(run_cli(taken), taken, expect=0)
    refused = next(p for p in paths if expected[str(p)] == 1)
    assert_refused(run_cli(refused), refused)


def _fast_takes(header: bytes, repeats_later: bool) -> bool:
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError:
        return False
    found = reader._fast_check_into(reader._Columns(), "f", text, len(header), None, "o", repeats_later)
    return found is not None


def _read_outcome(path) -> tuple:
    try:
        inventory = reader.read(path)
    except ParamscopeError as exc:
        return ("error", os.path.basename(str(exc.source)), exc.reason)
    return ("ok", inventory.table.rows(), inventory.metadata, inventory.notes)


@pytest.mark.parametrize("layout", ["index", "directory"])
def test_sharded_reads_agree_with_the_checked_path_alone(tmp_path, monkeypatch, layout):
    """Shards made of fuzzed headers (some the very same header twice, so every name in two shards; some with a name
    twice in one shard), read through an index (where the fast path leaves a name twice to the caller: its index's
    names may prove there is none) or as a directory: the inventory, or the error, is the one the checked path alone
    gives (the fast path switched off)."""
    rng = random.Random(13 if layout == "index" else 14)
    taken = 0
    for case in range(150):
        folder = tmp_path / str(case)
        folder.mkdir()
        weight_map: dict[str, str] = {}
        headers = []
        for k in range(rng.randint(1, 3)):
            while True:
                header, _ = _header(rng) if not headers or rng.random() < 0.8 else (headers[-1], None)
                took = _fast_takes(header, layout == "index")
                if took or rng.random() < 0.05:
                    break
            taken += took
            headers.append(header)
            cursor = 0
            try:  # the data area as long as the largest offset says; the index lists the names the JSON gives
                for name, value in json.loads(header, object_pairs_hook=list):
                    if name != "__metadata__":
                        end = dict(value)["data_offsets"][1]
                        cursor = max(cursor, end if type(end) is int else 0)
                        weight_map[name] = f"s{k}.safetensors"
            except (ValueError, TypeError, KeyError, IndexError):
                cursor = rng.choice((0, 4, 64))
                weight_map[f"unread{k}"] = f"s{k}.safetensors"  # listed, so read (and refused)
            if cursor > 1 << 30:  # past what a sparse file in a test's folder should claim
                cursor = 0
            with open(folder / f"s{k}.safetensors", "wb") as file:
                file.write(struct.pack("<Q", len(header)) + header)
                file.truncate(8 + len(header) + cursor)  # sparse: the data is never read
        if weight_map and rng.random() < 0.2:  # the index lies: a name left out, or put in another shard
            name = rng.choice(list(weight_map))
            if rng.random() < 0.5:
                del weight_map[name]
            else:
                weight_map[name] = f"s{rng.randrange(len(headers))}.safetensors"
        if layout == "index":
            (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        with monkeypatch.context() as patch:
            patch.setattr(reader, "_fast_check_into", lambda *args, **kwargs: None)
            alone = _read_outcome(folder)
        assert _read_outcome(folder) == alone, f"case {case}: {headers}"
    assert taken > 100
