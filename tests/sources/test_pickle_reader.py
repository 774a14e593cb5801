"""The restricted pickle machine decodes plain data exactly as CPython's pickle does, for protocols 0-5."""

from __future__ import annotations

import collections
import pickle
import pickletools
from typing import Any

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


# ---- a rebuild call read whole (_rebuild_call) is the opcodes it stands for ------------------------


def _torch_pickles() -> list[tuple[str, bytes]]:
    """data.pkl of torch.save files covering the forms a rebuild call takes: 0-d to 5-d tensors (EMPTY_TUPLE,
    TUPLE1..3, MARK .. TUPLE), sizes past a byte and past two (BININT2, BININT), views and ties of one storage,
    requires_grad (NEWTRUE), Parameters, nesting, several storage classes, memo keys past a byte (LONG_BINPUT),
    protocols 2 and 4 (MEMOIZE: read opcode by opcode)."""
    torch = pytest.importorskip("torch")
    import io
    import zipfile

    base = torch.zeros(10)
    shapes = [(3,), (2, 3), (), (1, 2, 3), (2, 1, 2, 1, 3), (0, 4), (300,), (70_000,)]
    state = {f"l.{i}.w": torch.zeros(s) for i, s in enumerate(shapes)}
    state["half"] = torch.zeros(2, dtype=torch.float16)
    state["ints"] = torch.zeros(3, dtype=torch.int64)
    linear = torch.nn.Linear(2, 3)
    objects = {
        "state_dict": state,
        "views": [base[:4], base[4:], base[:4], base[2:].view(2, 4), base.as_strided((2, 2), (1, 2), 3), base],
        "nested": {"model": state, "optimizer": {"state": {0: {"exp_avg": torch.ones(2, requires_grad=True)}}},
                   "params": list(linear.parameters()), "module": linear.state_dict(keep_vars=True)},
        # past 255 memo entries: the later calls' PUTs and gets are LONG_BINPUT / LONG_BINGET
        "long_memo": {f"m.{i}.w": torch.zeros((2, 300, 4)[: i % 3 + 1]) for i in range(60)},
    }
    out = []
    for label, obj in objects.items():
        for protocol in (2, 4):
            buffer = io.BytesIO()
            torch.save(obj, buffer, pickle_protocol=protocol)
            with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
                name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
                out.append((f"{label}-p{protocol}", archive.read(name)))
    return out


def _run(data: bytes) -> tuple[Any, pr._Machine, dict[str, Any]]:
    from paramscope.sources.torch_pickle import _Storages

    storages = _Storages(legacy=False)
    machine = pr._Machine(data, 0, storages, pr.TORCH_GLOBALS, False)
    return machine.run(), machine, storages.refs


def _shape_of(value: Any, seen: dict[int, int]) -> Any:
    """A comparable picture of an object graph: values by content, shared objects by first-seen number."""
    if id(value) in seen and not isinstance(value, (int, str, bool, float, type(None))):
        return ("shared", seen[id(value)])
    seen[id(value)] = len(seen)
    if isinstance(value, pr.TensorRef):
        return ("tensor", value.storage, value.offset, value.shape, value.stride, value.dtype, value.requires_grad,
                value.parameter)
    if isinstance(value, dict):
        return (type(value).__name__, [(_shape_of(k, seen), _shape_of(v, seen)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_shape_of(v, seen) for v in value])
    return (type(value).__name__, value)


def _least_steps(data: bytes, monkeypatch) -> int:
    """The smallest MAX_STEPS the pickle runs under (the budget is charged exactly as the opcodes cost)."""
    low, high = 1, pr.MAX_STEPS
    while low < high:
        middle = (low + high) // 2
        monkeypatch.setattr(pr, "MAX_STEPS", middle)
        try:
            _run(data)
            high = middle
        except pr.PickleRefused:
            low = middle + 1
    monkeypatch.setattr(pr, "MAX_STEPS", 16_000_000)
    return low


def test_a_rebuild_call_read_whole_is_its_opcodes(monkeypatch):
    """Same value, memo (by content and sharing), storages, elements, end and step count with _rebuild_call
    as with the opcodes run one by one; and it is taken for every call of a protocol-2 file whose storage
    class is a memo get."""
    real = pr._rebuild_call
    taken: list[Any] = []

    def counted(*args: Any) -> Any:
        taken.append(real(*args))
        return taken[-1]

    for label, data in _torch_pickles():
        taken.clear()
        monkeypatch.setattr(pr, "_rebuild_call", counted)
        fast_value, fast, fast_refs = _run(data)
        read_whole = sum(result is not None for result in taken)
        fast_steps = _least_steps(data, monkeypatch)
        monkeypatch.setattr(pr, "_rebuild_call", lambda *a: None)
        slow_value, slow, slow_refs = _run(data)
        slow_steps = _least_steps(data, monkeypatch)
        seen_fast: dict[int, int] = {}
        seen_slow: dict[int, int] = {}
        assert _shape_of(fast_value, seen_fast) == _shape_of(slow_value, seen_slow), label
        assert sorted(fast.memo) == sorted(slow.memo), label
        for key in sorted(slow.memo):
            assert _shape_of(fast.memo[key], seen_fast) == _shape_of(slow.memo[key], seen_slow), (label, key)
        assert fast_refs == slow_refs, label
        assert (fast.elements, fast.pos, fast.protocol) == (slow.elements, slow.pos, slow.protocol), label
        assert fast_steps == slow_steps, label
        if label.endswith("p2"):
            # Every call but those that name their storage class for the first time (a GLOBAL, not a get).
            ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
            calls = ops.count(("BINPERSID", None))
            first_classes = sum(name == "GLOBAL" and arg.endswith("Storage") for name, arg in ops)
            assert read_whole == calls - first_classes > 0, label


def test_a_rebuild_call_leaves_what_it_does_not_know_to_the_opcodes():
    """Each accepted int form decodes as the opcode does; a LONG1 cut short, another opcode, is not taken."""
    assert pr._int_at(b"K\x07", 0) == (7, 2)
    assert pr._int_at(b"M\x01\x02", 0) == (0x0201, 3)
    assert pr._int_at(b"J\xff\xff\xff\xff", 0) == (-1, 5)
    assert pr._int_at(b"\x8a\x05\x00\x00\x00\x80\x00", 0) == (2**31, 7)
    assert pr._int_at(b"\x8a\x05\x00\x00", 0) == (None, 0)
    assert pr._int_at(b"N", 0) == (None, 0)
    puts: list[Any] = []
    assert pr._ints_at(b"K\x01K\x02\x85q\x00", 0, puts) == (None, 0, 0)  # TUPLE1 of two ints: not a tuple of them
    assert pr._ints_at(b"K\x01K\x02\x86q\x00", 0, puts) == ((1, 2), 5, 7) and puts == [0]
