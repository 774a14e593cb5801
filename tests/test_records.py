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
    rows = sized([kept, *fresh, unknown])
    assert [(r.name, n, b) for r, n, b in rows] == [("x", 4, 16), ("y", 4, 16), ("z", 4, 16), ("w", 7, None)]
    assert fresh[1]._numel == 4 and fresh[1]._nbytes == 16  # sized records keep their sizes
