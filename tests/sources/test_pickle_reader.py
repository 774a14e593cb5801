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


def test_the_opcode_table_names_every_opcode_as_pickletools_does():
    names = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}
    assert {code: name for code, (name, _steps, _handler) in pr.OPCODES.items()} == names
    refused = {name for code, (name, _steps, handler) in pr.OPCODES.items()
               if handler is not None and handler.__qualname__.startswith("_refused.")}
    assert refused == {"INST", "OBJ", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER", "READONLY_BUFFER"}
    # run() dispatches through the handlers of the table and nothing else
    assert {code: h for code, (_n, _s, h) in pr.OPCODES.items() if h is not None} == pr._HANDLERS


@pytest.mark.parametrize("code", [0x69, 0x6F, 0x82, 0x83, 0x84, 0x97, 0x98])
def test_a_refused_opcode_is_named_with_its_offset(code):
    name = pr.OPCODES[code][0]
    with pytest.raises(ParamscopeError, match=rf"t: pickle: refuses opcode {name} at offset 3$"):
        _decode(b"\x80\x02N" + bytes([code]) + b".")


def test_the_step_costs_come_from_the_table():
    # the heavier opcodes (they allocate a container, a memo entry or an object), as the budget was set
    heavier = {"EMPTY_SET": 8, "FROZENSET": 8, "EMPTY_DICT": 2, "EMPTY_LIST": 2, "DICT": 2, "LIST": 2, "TUPLE": 2,
               "TUPLE1": 2, "TUPLE2": 2, "TUPLE3": 2, "MEMOIZE": 2, "LONG_BINPUT": 2, "PUT": 2, "REDUCE": 2,
               "NEWOBJ": 2, "NEWOBJ_EX": 2, "BINPERSID": 2, "PERSID": 2}
    codes = {op.name: op.code.encode("latin-1")[0] for op in pickletools.opcodes}
    expected = bytearray([1]) * 256
    for name, steps in heavier.items():
        expected[codes[name]] = steps
    assert bytes(expected) == pr._STEP_COST


def test_the_inlined_opcodes_need_no_handler(monkeypatch):
    # Every opcode the table marks inlined runs with no handler at all: the loop in run() is all of it.
    monkeypatch.setattr(pr, "_HANDLERS", {})
    size = pr.TORCH_GLOBALS["torch", "Size"]
    data = (
        b"\x28"  # MARK: the outer tuple
        b"\x28K\x02K\x03\x74"  # MARK BININT1 BININT1 TUPLE -> (2, 3)
        b"q\x00r\x01\x00\x00\x00"  # BINPUT 0, LONG_BINPUT 1
        b"\x85"  # TUPLE1 -> ((2, 3),)
        b"X\x01\x00\x00\x00s"  # BINUNICODE 's': a persistent id
        b"\x51"  # BINPERSID -> torch.Size
        b"h\x00\x85R"  # BINGET 0, TUPLE1, REDUCE -> torch.Size((2, 3))
        b"j\x01\x00\x00\x00\x88\x89)\x87"  # LONG_BINGET 1, NEWTRUE, NEWFALSE, EMPTY_TUPLE, TUPLE3
        b"\x86t."  # TUPLE2, TUPLE (the outer one), STOP
    )
    inlined = {pr.OPCODES[code][0] for code in data if code in pr.OPCODES and pr.OPCODES[code][2] is None}
    assert inlined == {name for name, _steps, handler in pr.OPCODES.values() if handler is None}
    result = pr.load(data, "t", persistent_load=lambda pid: size if pid == "s" else None)
    assert result.value == (((2, 3),), (2, 3), ((2, 3), (True, False, ())))
    assert type(result.value[1]) is tuple and result.end == len(data)
    with pytest.raises(ParamscopeError, match="unknown opcode 0x4e"):  # NONE has a handler, taken away here
        pr.load(b"N.", "t")


def test_refusal_message_names_the_global():
    with pytest.raises(ParamscopeError, match=r"refuses global 'os\.system'") as info:
        _decode(b"cos\nsystem\n(S'true'\ntR.")
    assert str(info.value).startswith("t: pickle: ")
