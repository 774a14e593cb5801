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
