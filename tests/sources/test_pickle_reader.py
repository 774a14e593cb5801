"""The restricted pickle machine decodes plain data exactly as CPython's pickle does, for protocols 0-5."""

from __future__ import annotations

import collections
import pickle
import pickletools

import pytest

from paramscope.errors import ParamscopeError
from paramscope.sources import pickle_reader as pr

PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))

SAMPLES = [
    None,
    True,
    False,
    0,
    -1,
    255,
    256,
    65535,
    65536,
    -(2**31),
    2**31 - 1,
    2**31,
    2**64 + 7,
    -(2**100),
    1.5,
    -0.0,
    float("inf"),
    "",
    "ascii",
    "ünïcödé ✓ \n 'quotes' \"double\" \\ backslash",
    b"",
    b"\x00\xffbytes",
    (),
    (1,),
    (1, 2),
    (1, 2, 3),
    (1, 2, 3, 4),
    [],
    [1, "a", None],
    list(range(2000)),
    {},
    {"a": 1, 2: "b", (1, 2): [3]},
    {f"k{i}": i for i in range(3000)},
    {1, 2, 3},
    frozenset({"x", "y"}),
    set(),
    complex(1, -2),
    bytearray(b"abc"),
    {"nested": {"deeper": [{"deepest": (1, [2, {3: 4}])}]}},
]


def _decode(data: bytes) -> object:
    return pr.load(data, "t").value


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_plain_data_matches_pickle(protocol, index):
    value = SAMPLES[index]
    data = pickle.dumps(value, protocol=protocol)
    expected = pickle.loads(data)
    got = _decode(data)
    if isinstance(expected, bytearray):
        expected = bytes(expected)
    assert got == expected
    assert type(got) is type(expected) or isinstance(expected, bytes)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shared_references_are_kept(protocol):
    inner = [1, 2]
    data = pickle.dumps({"a": inner, "b": inner, "c": (inner, inner)}, protocol=protocol)
    got = _decode(data)
    assert got["a"] is got["b"] is got["c"][0] is got["c"][1]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ordered_dict_with_state(protocol):
    od = collections.OrderedDict([("w", 1), ("b", 2)])
    od._metadata = {"": {"version": 1}}  # what nn.Module.state_dict() attaches
    got = _decode(pickle.dumps(od, protocol=protocol))
    assert isinstance(got, pr.ODict) and dict(got) == {"w": 1, "b": 2}
    assert list(got) == ["w", "b"]


def test_result_carries_end_and_protocol():
    first = pickle.dumps([1], protocol=2)
    data = first + pickle.dumps("next", protocol=4)
    one = pr.load(data, "t")
    assert one.value == [1] and one.end == len(first) and one.protocol == 2
    two = pr.load(data, "t", start=one.end)
    assert two.value == "next" and two.end == len(data) and two.protocol == 4


class _Ext:
    def __init__(self, n: int) -> None:
        self.n = n


class _Pickler(pickle.Pickler):
    """Protocol 0 needs a one-line string persistent id; the binary protocols take any object."""

    def persistent_id(self, obj):
        if not isinstance(obj, _Ext):
            return None
        return f"ext-{obj.n}" if self.proto == 0 else ("ext", obj.n)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_persistent_ids_go_through_the_handler(protocol):
    import io

    buf = io.BytesIO()
    pickler = _Pickler(buf, protocol=protocol)
    pickler.proto = protocol
    pickler.dump([_Ext(7), _Ext(8)])
    seen: list[object] = []
    result = pr.load(buf.getvalue(), "t", persistent_load=lambda pid: seen.append(pid) or "S")
    assert result.value == ["S", "S"]
    assert seen == (["ext-7", "ext-8"] if protocol == 0 else [("ext", 7), ("ext", 8)])
    with pytest.raises(ParamscopeError, match="persistent id"):
        pr.load(buf.getvalue(), "t")


def test_allowed_globals_are_stand_ins():
    data = b"\x80\x02ctorch\nfloat16\nctorch\nHalfStorage\nctorch\nSize\nK\x02K\x03\x86\x85R\x87."
    dtype, storage, size = _decode(data)
    assert dtype == pr.DTypeRef("float16")
    assert storage == pr.StorageType("HalfStorage", "float16")
    assert size == (2, 3)


def test_codecs_encode_bytes_of_protocol_2():
    # Protocol 2 pickles bytes as _codecs.encode(text, 'latin1') (pickle.dumps(b'..', 2) with fix_imports).
    data = pickle.dumps(b"\x00\xfe", protocol=2)
    assert b"_codecs" in data
    assert _decode(data) == b"\x00\xfe"


def test_every_handled_opcode_is_a_real_opcode():
    names = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}
    assert set(pr._HANDLERS) <= set(names)
    assert set(pr._REFUSED) <= set(names)
    assert {names[c] for c in pr._REFUSED} == {"INST", "OBJ", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER", "READONLY_BUFFER"}
    # Every opcode of protocols 0-5 is either handled or refused by name.
    assert set(names) == set(pr._HANDLERS) | set(pr._REFUSED)


def test_refusal_message_names_the_global():
    with pytest.raises(ParamscopeError, match=r"refuses global 'os\.system'") as info:
        _decode(b"cos\nsystem\n(S'true'\ntR.")
    assert str(info.value).startswith("t: pickle: ")
