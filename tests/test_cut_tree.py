"""Report._cut_tree (the tree to a depth over columns, by runs of names) against the records' tree and against
the Counter-grouped cut it replaced as the default (:meth:`Report._cut_tree_counted`): node for node, on random
names in any order (interleaved modules, empty parts, newlines, "/" beside "."), every role, packed entries."""

from __future__ import annotations

import random

import pytest

from paramscope import report as report_module
from paramscope.records import Inventory, QuantInfo, Role, Table, TensorRecord
from paramscope.report import Report

PARTS = ["model", "layers", "0", "1", "10", "2", "mlp", "experts", "a", "", "x/y", "é", "\n", "w"]
ROLES = [Role.PARAMETER] * 6 + [Role.BUFFER, Role.QUANT_AUX, Role.OPTIMIZER_STATE]


def _records(rng: random.Random) -> list[TensorRecord]:
    records: dict[str, TensorRecord] = {}
    prefixes = [".".join(rng.choice(PARTS) for _ in range(rng.randint(0, 5))) for _ in range(rng.randint(1, 8))]
    for _ in range(rng.randint(0, 120)):
        prefix = rng.choice(prefixes)
        name = (prefix + "." if prefix or rng.random() < 0.2 else "") + rng.choice(["weight", "bias", "s", "ids"])
        name += "" if rng.random() < 0.7 else f".{rng.randint(0, 3)}"
        role = rng.choice(ROLES)
        shape = tuple(rng.randint(1, 5) for _ in range(rng.randint(0, 3)))
        if role is Role.PARAMETER and rng.random() < 0.15:
            records[name] = TensorRecord(name, (shape or (1,)) + (4,), "int32", quant=QuantInfo("gptq", 32, 4))
        else:
            records[name] = TensorRecord(name, shape, rng.choice(["float32", "bfloat16", "int8"]), role=role)
    out = list(records.values())
    if rng.random() < 0.5:
        out.sort(key=lambda r: r.name)  # a safetensors header's order
    elif rng.random() < 0.5:
        rng.shuffle(out)  # modules split over many runs
    return out


def _tree(report: Report, depth: int, natural: bool) -> list[tuple]:
    return [(n.path, n.type, n.parameters, n.buffers, n.bytes, n.trainable, [t.name for t in n.tensors],
             [c.path for c in n.children]) for n in report.tree(depth, natural=natural).walk()]


@pytest.mark.parametrize("seed", range(80))
def test_the_cut_tree_is_the_records_tree(seed, monkeypatch):
    monkeypatch.setattr(report_module, "_SAMPLED_NAMES", 0)  # by runs, however short they are
    records = _records(random.Random(seed))
    by_rows = Report(Inventory("s", "f", list(records)))
    columns = Report(Inventory("s", "f", table=Table.from_records(records)))
    assert columns.columns is not None
    for depth in range(0, 7):
        for natural in (True, False):
            expected = _tree(Report(Inventory("s", "f", list(records))), depth, natural)
            assert _tree(Report(Inventory("s", "f", table=Table.from_records(records))), depth, natural) == expected
            if natural:
                assert _tree(by_rows, depth, natural) == expected
    assert columns.tree(0).parameters == by_rows.total
    # and the counted cut, which it replaced as the default, agrees
    monkeypatch.setattr(Report, "_cut_tree", Report._cut_tree_counted)
    for depth in range(0, 7):
        expected = _tree(Report(Inventory("s", "f", list(records))), depth, True)
        assert _tree(Report(Inventory("s", "f", table=Table.from_records(records))), depth, True) == expected


def test_runs_are_found_without_walking_from_the_start():
    """100,000 names in 500 runs: the cut is linear (an islice from the start per run would be quadratic)."""
    import time

    names = [f"model.layers.{i // 200}.mlp.experts.{i % 200}.w" for i in range(100_000)]
    records = [TensorRecord(n, (2, 3), "bfloat16") for n in names]
    report = Report(Inventory("s", "safetensors", table=Table.from_records(records)))
    report.total  # noqa: B018 - the totals first, as the CLI has them
    start = time.process_time()
    root = report.tree(3)
    elapsed = time.process_time() - start
    assert root.parameters == 600_000 and len(root.children[0].children[0].children) == 500
    assert elapsed < 2.0, elapsed


def test_names_in_short_runs_are_counted_instead(monkeypatch):
    """Shuffled names (a Python step per few names by runs) go to the Counter cut; a header's order does not."""
    names = [f"model.layers.{i // 50}.mlp.experts.{i % 50}.w" for i in range(5000)]
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    counted = []
    plain = Report._cut_tree_counted
    monkeypatch.setattr(Report, "_cut_tree_counted", lambda self, *a: counted.append(1) or plain(self, *a))
    trees = []
    for order in (names, shuffled):
        report = Report(Inventory("s", "safetensors", table=Table.from_records(
            [TensorRecord(n, (2,), "float32") for n in order])))
        trees.append([(n.path, n.parameters) for n in report.tree(4).walk()])
        assert len(counted) == (order is shuffled)
    assert trees[0] == trees[1] and trees[0][0] == ("", 10_000)
