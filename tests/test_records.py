"""records.file_record: the reader's fast row is the record the keyword constructor makes, sizes included."""

from paramscope.records import Role, TensorRecord, file_record, sized


def test_file_record_equals_the_keyword_record_and_keeps_the_sizes_it_was_given():
    fast = file_record("a.b.weight", (3, 5), "bfloat16", Role.PARAMETER, "shard-1", 15, 30)
    slow = TensorRecord(name="a.b.weight", shape=(3, 5), dtype="bfloat16", role=Role.PARAMETER, origin="shard-1")
    assert fast == slow
    assert (fast.trainable, fast.tie, fast.owner_type, fast.persistent, fast.quant, fast.extra) == (None,) * 6
    assert (fast.numel, fast.nbytes) == (slow.numel, slow.nbytes) == (15, 30)
    assert repr(fast) == repr(slow)


def test_sized_uses_kept_sizes_and_computes_the_rest_once_per_dtype_and_shape():
    kept = file_record("x", (2, 2), "float32", Role.PARAMETER, "", 4, 16)
    fresh = [TensorRecord("y", (2, 2), "float32"), TensorRecord("z", (2, 2), "float32"), TensorRecord("u", None, "f")]
    unknown = TensorRecord("w", (7,), "no-such-dtype")
    records, numel, nbytes = sized([kept, *fresh, unknown])
    assert [r.name for r in records] == ["x", "y", "z", "w"]  # the uninitialized "u" left out
    assert (numel, nbytes) == ([4, 4, 4, 7], [16, 16, 16, None])
    assert fresh[1]._numel == 4 and fresh[1]._nbytes == 16  # sized records keep their sizes



def test_sized_takes_the_columns_as_they_are_only_when_every_record_is_initialized_and_sized():
    sized_already = [file_record(f"m{i}.weight", (i, 3), "float32", Role.PARAMETER, "", 3 * i, 12 * i)
                     for i in range(1, 4)]
    records, numel, nbytes = sized(sized_already)
    assert (numel, nbytes) == ([3, 6, 9], [12, 24, 36])
    assert records == sized_already
    # an uninitialized record whose (zero) count was read still has no shape: it is left out all the same
    lazy = TensorRecord("lazy.weight", None, "float32")
    assert lazy.numel == 0 and lazy._numel == 0
    records, numel, nbytes = sized([*sized_already, lazy])
    assert [r.name for r in records] == ["m1.weight", "m2.weight", "m3.weight"] and numel == [3, 6, 9]
    # an empty tensor (0 bytes, which compares equal to the "not sized" mark False) and an unknown dtype
    empty = TensorRecord("e", (0, 4), "float32")
    odd = TensorRecord("o", (5,), "no-such-dtype")
    assert (empty.nbytes, odd.nbytes) == (0, None)  # both sized now
    records, numel, nbytes = sized([empty, odd, *sized_already])
    assert (numel, nbytes) == ([0, 5, 3, 6, 9], [0, None, 12, 24, 36])
    # a record sized by count only (its bytes not yet read) has them computed
    half = TensorRecord("h", (2, 2), "bfloat16")
    half._numel = 4
    assert sized([half, *sized_already])[2] == [8, 12, 24, 36] and half._nbytes == 8

# ---- Table: an inventory's tensors as columns ---------------------------------------------------------

from paramscope.records import Inventory, QuantInfo, Table  # noqa: E402


def _mixed() -> list[TensorRecord]:
    return [
        TensorRecord("embed_tokens.weight", (10, 4), "bfloat16", origin="a"),
        TensorRecord("l.0.q.qweight", (2, 8), "int32", quant=QuantInfo("gptq", 128, 4), origin="b"),
        TensorRecord("l.0.q.scales", (1, 8), "float16", role=Role.QUANT_AUX),
        TensorRecord("l.0.ids", (5,), "int64", role=Role.BUFFER, persistent=False),
        TensorRecord("lazy.weight", None, "float32", trainable=True),
        TensorRecord("odd", (3,), "no-such-dtype", tie="k", owner_type="Linear"),
    ]


def test_a_table_round_trips_records_fields_and_sizes():
    records = _mixed()
    table = Table.from_records(records)
    assert table.names == [r.name for r in records]
    assert table.numel == [40, 128, 8, 5, 0, 3]  # logical elements; 0 for the uninitialized tensor
    assert table.nbytes == [80, 64, 16, 40, 0, None]
    assert table.uninitialized == 1
    assert set(table.sparse) == {"quant", "persistent", "trainable", "tie", "owner_type"}
    assert table.sparse["quant"] == {1: QuantInfo("gptq", 128, 4)}
    rows = table.rows()
    assert rows == records
    assert [(r.numel, r.nbytes) for r in rows] == [(r.numel, r.nbytes) for r in records]
    assert [table.row(i) for i in range(len(table))] == records


def test_a_plain_tables_rows_are_the_file_records_a_reader_made():
    table = Table(["a.w", "b"], [(2, 3), (4,)], ["float32", "int64"], [Role.PARAMETER, Role.BUFFER], [6, 4],
                  [24, 32], ["f", "f"])
    assert table.rows() == [file_record("a.w", (2, 3), "float32", Role.PARAMETER, "f", 6, 24),
                            file_record("b", (4,), "int64", Role.BUFFER, "f", 4, 32)]


def test_changed_replaces_entries_in_a_copy_and_extend_shifts_sparse_indices():
    table = Table.from_records(_mixed())
    before = table.rows()
    new = table.changed({0: TensorRecord("embed_tokens.weight", (10, 4), "bfloat16", role=Role.QUANT_AUX),
                         1: before[1].replace(quant=None), 4: TensorRecord("lazy.weight", (2,), "float32")})
    assert table.rows() == before  # unchanged
    assert new.roles[0] is Role.QUANT_AUX and new.numel[1] == 16 and "quant" not in new.sparse
    assert new.uninitialized == 0 and new.numel[4] == 2
    assert 4 not in new.sparse.get("trainable", {})
    joined = Table.empty()
    joined.extend(Table.from_records(_mixed()[:2]))
    joined.extend(table)
    assert joined.sparse["quant"] == {1: QuantInfo("gptq", 128, 4), 3: QuantInfo("gptq", 128, 4)}
    assert joined.rows() == _mixed()[:2] + before


def test_an_inventory_makes_each_view_from_the_other_once():
    records = _mixed()
    by_rows = Inventory("s", "f", records)
    assert not by_rows.columnar and by_rows.names == [r.name for r in records]
    assert by_rows.table.names == by_rows.names and by_rows.columnar
    by_table = Inventory("s", "f", table=Table.from_records(records))
    assert by_table.tensors == records and by_table.tensors is by_table.tensors
    assert len(by_table) == 6 and "tensors=6" in repr(by_table)
    replaced = by_table.replace(notes=["n"])
    assert replaced.table is by_table.table and replaced.notes == ["n"]
    swapped = by_table.replace(tensors=records[:1])
    assert not swapped.columnar and swapped.names == ["embed_tokens.weight"]
    assert Inventory("s", "f").tensors == []


def test_table_facts_are_worked_out_once_and_kept_only_where_the_columns_stay():
    names = ["a.weight", "b.weight", "a.weight"]
    table = Table(names, [(2,), (True,), (1,)], ["float32"] * 3, [Role.PARAMETER] * 3, [2, 1, 1], [8, 4, 4],
                  ["f"] * 3)
    assert table.facts == {}
    assert table.fact("distinct") is False  # a.weight twice
    assert table.fact("typed") is False  # (True,): a bool, not an int
    assert table.facts == {"distinct": False, "typed": False}
    names.pop()  # the lists are never changed in place; done here to show the answer is kept, not worked out again
    assert table.fact("distinct") is False
    quoted = Table(['x."q"', "y"], [(1,), (2,)], ["int8", "int8"], [Role.PARAMETER] * 2, [1, 2], [1, 2], ["f"] * 2)
    assert quoted.fact("typed") is True and quoted.fact("plain_names") is False  # a quote: JSON escapes it
    assert Table(["é"], [(1,)], ["int8"], [Role.PARAMETER], [1], [1], ["f"]).fact("plain_names") is False
    assert Table(["a\x7f"], [(1,)], ["int8"], [Role.PARAMETER], [1], [1], ["f"]).fact("plain_names") is False
    plain = Table(["m.w", "m.s"], [(4,), None], ["float8_e4m3fn", "float32"], [Role.PARAMETER, Role.BUFFER], [4, 0],
                  [4, None], ["f", "f"], uninitialized=1)
    assert plain.fact("typed") and plain.fact("plain_names") and plain.fact("distinct")
    # repacked keeps them (same names, shapes, dtypes); changed and extend do not
    repacked = plain.repacked({0: QuantInfo("fp8", 4, 8)})
    assert repacked.facts == plain.facts and repacked.roles == [Role.PARAMETER, Role.BUFFER]
    assert plain.changed({0: plain.row(0).replace(name="m.s")}).facts == {}
    plain.extend(Table(["m.w"], [(4,)], ["int8"], [Role.PARAMETER], [4], [4], ["g"]))
    assert plain.facts == {} and plain.fact("distinct") is False


def test_the_safetensors_reader_states_the_facts_its_checks_found(tmp_path):
    from paramscope.sources import safetensors as reader
    from tests.sources._st_paths import entry, header_of

    def table_of(header: bytes, data: int) -> Table:
        path = tmp_path / "m.safetensors"
        path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * data)
        return reader.read(path).table

    canonical = table_of(header_of(entry("a", "F32", "2,2", 0, 16), entry("b", "U8", "0", 16, 16)), 16)
    assert canonical.facts == {"distinct": True, "typed": True, "plain_names": True}
    # a name JSON escapes: the fast path still reads it, plain names are then left to be worked out (and are not)
    accented = table_of(header_of(entry("é", "F32", "2,2", 0, 16)), 16)
    assert accented.facts == {"distinct": True, "typed": True} and accented.fact("plain_names") is False
    # the checked path (spaces): plain names worked out on use
    spaced = table_of(b'{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}', 16)
    assert spaced.facts == {"distinct": True, "typed": True} and spaced.fact("plain_names") is True


def test_a_tables_role_set_is_the_roles_its_column_holds():
    """Table.role_set against the column itself (set of the Role members), before and after a repacking, and
    after extend (which adds entries: worked out again)."""
    roles = [Role.PARAMETER, Role.QUANT_AUX, Role.PARAMETER, Role.BUFFER]
    table = Table(["a.weight", "a.weight_scale", "b.weight", "c"], [(2,), (1,), (2,), (1,)], ["int8", "float32",
                  "float32", "int64"], roles, [2, 1, 2, 1], [2, 4, 8, 8], ["f"] * 4)
    assert table.role_set() == frozenset(roles) == {Role.PARAMETER, Role.QUANT_AUX, Role.BUFFER}
    packed = table.repacked({0: QuantInfo("int8", 2, 8), 2: None, 3: None})
    assert packed.role_set() == frozenset(packed.roles) == {Role.PARAMETER, Role.QUANT_AUX}
    assert table.role_set() == {Role.PARAMETER, Role.QUANT_AUX, Role.BUFFER}  # the old table's own
    plain = Table(["x"], [(1,)], ["float32"], [Role.PARAMETER], [1], [4], ["f"])
    assert plain.role_set() == {Role.PARAMETER} and Table.empty().role_set() == frozenset()
    plain.extend(table)
    assert plain.role_set() == frozenset(plain.roles) == {Role.PARAMETER, Role.QUANT_AUX, Role.BUFFER}


def test_a_tables_modules_are_its_names_less_the_last_part():
    """Table.modules against rpartition by hand; kept by repacked (same names), made again after forget_modules
    and after extend."""
    table = Table(["a.b.weight", "a.b.weight_scale_inv", "x", ".y", "c."], [(2,), (1,), (1,), (1,), (1,)],
                  ["float8_e4m3fn", "float32", "float32", "float32", "float32"], [Role.PARAMETER] * 5,
                  [2, 1, 1, 1, 1], [2, 4, 4, 4, 4], ["f"] * 5)
    assert table.modules() == ["a.b", "a.b", "", "", "c"]
    assert table.modules() is table.modules()  # made once
    packed = table.repacked({0: QuantInfo("fp8", 2, 8), 1: None})
    assert packed.modules() is table.modules()
    table.forget_modules()
    assert table.modules() == ["a.b", "a.b", "", "", "c"] and table.modules() is not packed.modules()
    table.extend(Table(["z.w"], [(1,)], ["float32"], [Role.PARAMETER], [1], [4], ["f"]))
    assert table.modules() == ["a.b", "a.b", "", "", "c", "z"]
