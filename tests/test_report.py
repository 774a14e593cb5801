"""Report's counting rules for packed quantization and mixtures of experts, on hand-made inventories."""

from __future__ import annotations

import pytest

from paramscope.records import Inventory, QuantInfo, Role, TensorRecord
from paramscope.report import ModuleNode, Report, natural_order, size_label


def _moe_inventory(experts: int = 4, per_token: int = 1) -> Inventory:
    records = [
        TensorRecord("embed.weight", (10, 8), "float32"),  # 80
        TensorRecord("layers.0.mlp.gate.weight", (experts, 8), "float32"),  # router: active
        TensorRecord("layers.0.mlp.experts.gate_up_proj", (experts, 6, 8), "float32"),  # 48 per expert
        TensorRecord("layers.0.mlp.experts.down_proj", (experts, 8, 3), "float32"),  # 24 per expert
        TensorRecord("layers.0.mlp.shared_experts.down_proj.weight", (8, 3), "float32"),  # shared: active
        TensorRecord("layers.1.mlp.experts.0.w1.weight", (3, 8), "float32"),  # per-expert modules
        *(TensorRecord(f"layers.1.mlp.experts.{i}.w1.weight", (3, 8), "float32") for i in range(1, experts)),
        TensorRecord("layers.0.mlp.experts.scale", (experts,), "int64", role=Role.BUFFER),  # not a parameter
    ]
    meta = {"moe": {"experts": experts, "experts_per_token": per_token, "shared_experts": 1}}
    return Inventory("moe", "test", records, metadata=meta)


def test_active_counts_non_experts_plus_k_of_e_experts():
    report = Report(_moe_inventory(4, 1))
    non_expert = 80 + 4 * 8 + 24
    routed = 4 * 48 + 4 * 24 + 4 * 24
    assert report.total == non_expert + routed
    assert report.active == non_expert + routed // 4
    assert report.size_label == f"4x{non_expert + routed // 4}"
    assert Report(_moe_inventory(4, 2)).active == non_expert + routed // 2


def test_active_is_none_for_dense_and_for_broken_metadata():
    records = [TensorRecord("a.weight", (3, 3), "float32")]
    assert Report(Inventory("d", "test", records)).active is None
    assert Report(Inventory("d", "test", records, metadata={"moe": {"experts": "8"}})).active is None
    assert Report(Inventory("d", "test", records, metadata={"moe": [1]})).active is None


def test_stored_elements_counts_words_and_ties_once():
    packed = TensorRecord("l.qweight", (4, 16), "int32", quant=QuantInfo("gptq", 4 * 16 * 8, 4))
    aux = TensorRecord("l.scales", (1, 16), "float16", role=Role.QUANT_AUX)
    emb = TensorRecord("embed.weight", (10, 4), "float16", tie="t")
    head = TensorRecord("lm_head.weight", (10, 4), "float16", tie="t")
    report = Report(Inventory("q", "test", [emb, packed, aux, head]))
    assert report.total == 512 + 40
    assert report.stored_elements == 64 + 40
    assert report.other == {"quant_aux": 16}
    assert report.parameter_bytes == 64 * 4 + 40 * 2


def test_stored_elements_equals_total_without_quantization():
    report = Report(Inventory("p", "test", [TensorRecord("a.weight", (3, 5), "float32")]))
    assert report.stored_elements == report.total == 15


@pytest.mark.parametrize(
    ("n", "label"),
    [
        (0, "0"), (999, "999"), (1000, "1K"), (87_018, "87K"), (124_439_808, "124M"), (1_100_048_384, "1.1B"),
        (1_540_000_000, "1.5B"), (6_738_415_616, "7B"), (7_241_732_096, "7B"), (13_015_864_320, "13B"),
        (68_976_648_192, "69B"), (999_600_000, "1B"), (1_950_000_000, "2B"), (2_000_000_000_000, "2T"),
    ],
)
def test_size_label_rule(n, label):
    assert size_label(n) == label


def _shape_of(node):
    """A tree as nested tuples, iteratively comparable: (path, figures, own tensors, aliases, children)."""
    return (node.path, node.type, node.parameters, node.trainable, node.buffers, node.bytes,
            [r.name for r in node.tensors], list(node.aliases), [_shape_of(c) for c in node.children])


def test_a_tree_built_to_a_depth_is_the_full_tree_pruned_there():
    records = [
        TensorRecord("a.b.c.w", (2, 3), "float32", trainable=True, tie="T"),
        TensorRecord("a.x", (4,), "float32", role=Role.BUFFER, trainable=False),
        TensorRecord("d.e.f.g.w", (5,), "float16", trainable=False),
        TensorRecord("a.b.tied", (2, 3), "float32", trainable=True, tie="T"),
        TensorRecord("a.b.c.d.lazy", None, "float32", trainable=True),
        TensorRecord("top", (7,), "int8", role=Role.BUFFER, trainable=False),
    ]
    for depth in range(6):
        full = Report(Inventory("m", "torch.nn.Module", records, module_types={"a.b": "Block"})).tree()
        direct = Report(Inventory("m", "torch.nn.Module", records, module_types={"a.b": "Block"})).tree(depth)
        assert _shape_of(direct) == _shape_of(full.pruned(depth)), depth
    assert _shape_of(full)[2] == 6 + 5


def test_names_past_the_caps_are_refused_for_any_source():
    from paramscope.errors import ParamscopeError
    from paramscope.records import MAX_NAME_LENGTH, MAX_NAME_PARTS

    def report(name: str) -> Report:
        return Report(Inventory("src", "torch.nn.Module", [TensorRecord("ok", (1,), "float32"),
                                                            TensorRecord(name, (1,), "float32")]))

    deep = ".".join(["m"] * MAX_NAME_PARTS)
    assert len(report(deep).modules()) == MAX_NAME_PARTS  # at the cap: root and 999 modules, no recursion
    with pytest.raises(ParamscopeError, match=f"src: tensor name .* has {MAX_NAME_PARTS + 1:,} dotted parts"):
        report(deep + ".w")
    assert report("x" * MAX_NAME_LENGTH).total == 2
    with pytest.raises(ParamscopeError, match=f"is {MAX_NAME_LENGTH + 1:,} characters long"):
        report("x" * (MAX_NAME_LENGTH + 1))


# ---- a report counted over columns is the report counted over records ------------------------------------

def _column_cases() -> list[tuple[list[TensorRecord], dict[str, str], dict]]:
    from paramscope.records import QuantInfo as Q

    packed = [
        TensorRecord("model.embed_tokens.weight", (10, 4), "bfloat16"),
        TensorRecord("model.layers.0.q.qweight", (2, 8), "int32", quant=Q("gptq", 128, 4)),
        TensorRecord("model.layers.0.q.scales", (1, 8), "float16", role=Role.QUANT_AUX),
        TensorRecord("model.layers.0.ids", (5,), "int64", role=Role.BUFFER),
        TensorRecord("model.layers.1.mlp.experts.0.w", (3, 4), "float32"),
        TensorRecord("model.layers.1.mlp.experts.1.w", (3, 4), "float32"),
        TensorRecord("opt.m", (7,), "float32", role=Role.OPTIMIZER_STATE),
        TensorRecord("lm_head.weight", (10, 4), "bfloat16"),
        TensorRecord("w", (2,), "bfloat16"),
    ]
    unknown = [*packed[:3], TensorRecord("model.odd", (3,), "no-such-dtype")]
    buffers_only = [TensorRecord("a.ids", (4,), "int64", role=Role.BUFFER)]
    types = {"model": "Model", "model.layers.0.q": "QuantLinear"}
    moe = {"moe": {"experts": 2, "experts_per_token": 1, "shared_experts": 0}}
    return [(packed, {}, {}), (packed, types, moe), (unknown, {}, {}), (buffers_only, {}, {}), ([], {}, {})]


@pytest.mark.parametrize("case", range(5))
def test_a_report_over_columns_gives_every_figure_and_line_the_records_give(case):
    from paramscope.records import Table
    from paramscope.renderers import RenderOptions
    from paramscope.renderers.json import render

    records, types, metadata = _column_cases()[case]
    by_rows = Report(Inventory("s", "safetensors", list(records), module_types=types, metadata=metadata))
    by_columns = Report(Inventory("s", "safetensors", module_types=types, metadata=metadata,
                                  table=Table.from_records(records)))
    assert by_columns.columns is not None and by_rows.columns is None
    for figure in ("total", "trainable", "frozen", "buffers", "other", "parameter_bytes", "buffer_bytes",
                   "quant_aux_bytes", "bytes", "stored_elements", "embedding", "non_embedding", "active",
                   "size_label", "by_type", "by_dtype", "ties", "uninitialized"):
        assert getattr(by_columns, figure) == getattr(by_rows, figure), figure
    assert by_columns.top(3) == by_rows.top(3)
    for depth in (None, 0, 1, 2):
        assert by_columns.to_dict(depth=depth) == by_rows.to_dict(depth=depth)
        assert [n.tensors for n in by_columns.tree(depth).walk()] == [n.tensors for n in by_rows.tree(depth).walk()]
        options = RenderOptions(depth=depth, by="module", top=2, color=False, width=None)
        assert render(by_columns, options) == render(by_rows, options)


def test_a_table_with_ties_or_trainability_is_counted_record_by_record():
    from paramscope.records import Table

    records = [TensorRecord("a.w", (2,), "float32", tie="k"), TensorRecord("b.w", (2,), "float32", tie="k")]
    report = Report(Inventory("s", "f", table=Table.from_records(records)))
    assert report.columns is None and report.total == 2 and report.ties == [["a.w", "b.w"]]
    trained = Report(Inventory("s", "f", table=Table.from_records([TensorRecord("a", (3,), "f32", trainable=True)])))
    assert trained.columns is None and trained.trainable == 3


def test_a_tree_cut_over_columns_places_odd_names_as_the_records_do():
    """Empty dotted parts, a newline in a part, names with no dot, deep names, packed and bookkeeping entries:
    the tree a depth cuts over columns (grouped in C) is the tree the records give, node for node."""
    from paramscope.records import QuantInfo as Q
    from paramscope.records import Table

    records = [
        TensorRecord("w", (2,), "float32"),
        TensorRecord("a..b.w", (3,), "float32"),
        TensorRecord("a.\nx.c.d.e.w", (4,), "bfloat16"),
        TensorRecord(".lead.w", (5,), "float32"),
        TensorRecord("a.b.w", (2, 2), "int32", quant=Q("gptq", 32, 4)),
        TensorRecord("a.b.s", (1,), "float16", role=Role.QUANT_AUX),
        TensorRecord("a.ids", (6,), "int64", role=Role.BUFFER),
        TensorRecord(".".join(["p"] * 40) + ".w", (7,), "float32"),
    ]
    by_rows = Report(Inventory("s", "f", list(records)))
    by_columns = Report(Inventory("s", "f", table=Table.from_records(records)))
    assert by_columns.columns is not None
    for depth in range(0, 8):
        rows_tree = [(n.path, n.parameters, n.buffers, n.bytes, n.trainable, [t.name for t in n.tensors])
                     for n in by_rows.tree(depth).walk()]
        assert [(n.path, n.parameters, n.buffers, n.bytes, n.trainable, [t.name for t in n.tensors])
                for n in by_columns.tree(depth).walk()] == rows_tree, depth


# ---- natural order and folding ---------------------------------------------------------------------------------
def _children(report: Report, path: str = "", depth: int | None = None) -> list[str]:
    node = next(n for n in report.tree(depth).walk() if n.path == path)
    return [child.name for child in node.children]


def test_numbered_siblings_in_numeric_order_whatever_the_source_order():
    # a safetensors header lists names as sorted text: 0, 1, 10, 11, 2, ...
    names = sorted(f"h.{i}.w.weight" for i in range(12))
    records = [TensorRecord("wte.weight", (4, 2), "float32"), *(TensorRecord(n, (2, 2), "float32") for n in names)]
    report = Report(Inventory("f", "test", records))
    assert _children(report, "h") == [str(i) for i in range(12)]
    assert _children(report, "h", depth=2) == [str(i) for i in range(12)]
    assert _children(report) == ["wte", "h"]  # names without numbers keep the source's order


def test_names_differing_in_numbers_ordered_in_their_own_places():
    order = ["conv10", "bn", "conv2", "layer10", "layer2", "fc", "conv1", "block.3x10", "block.3x9"]
    records = [TensorRecord(f"{n}.weight", (2,), "float32") for n in order]
    report = Report(Inventory("f", "test", records))
    # conv1/2/10 take the places conv10, conv2, conv1 held; layer2/10 theirs; bn and fc stay
    assert _children(report) == ["conv1", "bn", "conv2", "layer2", "layer10", "fc", "conv10", "block"]
    assert _children(report, "block") == ["3x9", "3x10"]


def test_numbers_too_long_for_int_and_other_scripts_digits_order_without_error():
    huge = "9" * 5000  # int() refuses more than 4,300 digits
    records = [TensorRecord(f"m.{n}.weight", (1,), "float32") for n in (huge, "10", "²", "٣", "2", "0" + huge)]
    report = Report(Inventory("f", "test", records))
    # only ASCII numbers are ordered (those take the places they held); other digits keep their places
    assert _children(report, "m") == ["2", "10", "²", "٣", huge, "0" + huge]
    text = str(report)  # the tree's folding reads these names too
    assert "²" in text


def test_tree_folds_numbered_blocks_listed_as_sorted_text():
    names = sorted(f"model.layers.{i}.{leaf}.weight" for i in range(80) for leaf in ("q", "mlp"))
    records = [TensorRecord(n, (2, 2), "float32") for n in names]
    text = str(Report(Inventory("f", "test", records)))
    assert "0…79" in text and "×80" in text
    assert text.count("×") == 2  # the run and the note under the tree: one row for all 80 layers


def test_tensor_rows_follow_the_tree_only_where_it_reordered():
    names = sorted(f"h.{i}.{leaf}" for i in range(11) for leaf in ("bias", "weight"))
    records = [TensorRecord(n, (2,), "float32") for n in [*names, "ln_f.weight"]]
    report = Report(Inventory("f", "test", records))
    expected = [f"h.{i}.{leaf}" for i in range(11) for leaf in ("bias", "weight")] + ["ln_f.weight"]
    assert [r.name for r in report.natural_tensors] == expected
    # already in order (a live model's ModuleList): the source's order, buffers after parameters included
    live = [TensorRecord("a.0.weight", (2,), "float32"), TensorRecord("a.1.weight", (2,), "float32"),
            TensorRecord("a.0.mean", (2,), "float32", role=Role.BUFFER)]
    assert Report(Inventory("m", "test", live)).natural_tensors == live


# ---- the module tree as columns (Report.module_columns: the JSON document's modules) -------------------------


def _column_report(names: list[str], roles: list[Role] | None = None) -> Report:
    """A report over columns: each tensor float32 of shape (i + 1,), so each module's figures tell its tensors."""
    from paramscope.records import Table

    shapes = [(i + 1,) for i in range(len(names))]
    roles = roles or [Role.PARAMETER] * len(names)
    table = Table(names, shapes, ["float32"] * len(names), roles, [i + 1 for i in range(len(names))],
                  [4 * (i + 1) for i in range(len(names))], ["f"] * len(names))
    report = Report(Inventory("cols", "safetensors", table=table))
    assert report.columns is not None
    return report


def _walked(report: Report) -> list[tuple]:
    """The node tree's rows, the reference: tree(None, natural=False) walked, each depth counted from the root."""
    rows, stack = [], [(report.tree(None, natural=False), 0)]
    while stack:
        node, level = stack.pop()
        rows.append((node.path, level, node.parameters, node.trainable, node.buffers, node.bytes))
        stack.extend((child, level + 1) for child in reversed(node.children))
    return rows


def _columns(report: Report) -> list[tuple] | None:
    cols = report.module_columns()
    if cols is None:
        return None
    return [(p, d, n, cols.trainable, b, s)
            for p, d, n, b, s in zip(cols.paths, cols.depths, cols.parameters, cols.buffers, cols.bytes, strict=True)]


def test_module_columns_by_hand():
    report = _column_report(["a.b.w", "a.b.x", "a.c.w", "a.w", "d.w", "top"],
                            [Role.PARAMETER, Role.BUFFER, Role.PARAMETER, Role.QUANT_AUX, Role.PARAMETER,
                             Role.PARAMETER])
    # numel 1..6, bytes 4 x numel; a quant_aux tensor counts bytes only, a buffer in buffers and bytes
    assert _columns(report) == [
        ("", 0, 1 + 3 + 5 + 6, None, 2, 4 * 21),
        ("a", 1, 1 + 3, None, 2, 4 * (1 + 2 + 3 + 4)),
        ("a.b", 2, 1, None, 2, 4 * 3),
        ("a.c", 2, 3, None, 0, 4 * 3),
        ("d", 1, 5, None, 0, 4 * 5),
    ]
    assert _columns(report) == _walked(_column_report(report.columns.names, report.columns.roles))


@pytest.mark.parametrize("names", [
    [f"model.layers.{i}.mlp.experts.{e}.{p}.weight" for i in range(3) for e in range(12) for p in "gud"],
    ["..w", "a..b.w", ".x", "a.b.c.d.e.w", "a.b.w", "a.bias", "a.b-x.w", "z"],  # empty parts, a sibling after '-'
    ["m.0.w", "m.1.w", "m.10.w", "m.2.w", "m.w", "n.w"],  # a safetensors header's text order is kept here
    ["a.x.w", "a.y.q.w", "a.y.r.w", "b.w"],
])
def test_module_columns_are_the_walked_tree(names):
    assert _columns(_column_report(names)) == _walked(_column_report(names))


@pytest.mark.parametrize("names", [
    ["a.b.w", "c.w", "a.w"],  # a module listed again after another subtree: its sums grow, its place stays
    ["a.b.w", "a.b.x", "c.w", "a.b.y"],  # a module's tensors in two runs, apart: the second adds to the first
    ["a.b.c.d.w", "a.e.w", "f.w"],  # up two and three levels at once
    ["w", "a.w", "v"],  # the root's own tensors, in two runs
    [],  # no tensor: the root alone
])
def test_module_columns_runs_and_walks(names):
    assert _columns(_column_report(names)) == _walked(_column_report(names))


def _first_listed_order(names: list[str]) -> list[str]:
    """The reference order of modules: each module's missing ancestors, then the module, as first listed."""
    paths = [""]
    for name in names:
        module = name.rpartition(".")[0]
        chain = []
        while module not in paths:
            chain.append(module)
            module = module.rpartition(".")[0]
        paths.extend(reversed(chain))
    return paths


def test_module_columns_match_the_tree_on_random_names():
    # reference: the node tree walked; the columns answer exactly where the first-listed order is depth first
    # (each module's parent is the one before it or an ancestor of it), with every role and unknown sizes
    import random

    from paramscope.records import Table

    rng = random.Random(12)
    roles = [Role.PARAMETER, Role.BUFFER, Role.QUANT_AUX, Role.OPTIMIZER_STATE]
    answered = refused = 0
    for _ in range(400):
        names = [".".join(rng.choice("abc") for _ in range(rng.randint(1, 4))) + f".t{i}"
                 for i in range(rng.randint(1, 12))]
        if rng.random() < 0.5:
            names.sort()
        count = len(names)
        table = Table(names, [(i + 1,) for i in range(count)], ["float32"] * count,
                      [rng.choice(roles) if rng.random() < 0.3 else Role.PARAMETER for _ in names],
                      [i + 1 for i in range(count)],
                      [None if rng.random() < 0.1 else 4 * (i + 1) for i in range(count)], ["f"] * count)
        report = Report(Inventory("cols", "safetensors", table=table))
        walked = _walked(Report(Inventory("cols", "safetensors", table=table)))
        order = _first_listed_order(names)
        depth_first = all(order[i - 1] == parent or order[i - 1].startswith(parent + ".") or not parent
                          for i, parent in enumerate((path.rpartition(".")[0] for path in order), start=0) if i)
        columns = _columns(report)
        if depth_first:
            assert columns == walked, names
            answered += 1
        else:
            assert columns is None, names
            refused += 1
    assert answered > 100 and refused > 100


def test_module_columns_by_sibling_groups_are_the_one_by_one_loop():
    # reference: the loop that places one run at a time (_one_by_one); the sibling groups (_by_siblings) answer
    # the same wherever they answer, and decline only where a module would be made twice (listed apart, made as
    # an ancestor before or after its own tensors)
    import random

    from paramscope.report import _by_siblings, _one_by_one

    rng = random.Random(7)
    answered = declined = 0
    for _ in range(800):
        runs = [".".join(rng.choice("abc") for _ in range(rng.choice((0, 1, 2, 3, 3, 3, 4))))
                for _ in range(rng.randint(0, 10))]
        runs = [run for i, run in enumerate(runs) if i == 0 or run != runs[i - 1]]  # runs: a module once in a row
        if rng.random() < 0.5:
            runs.sort()
        twice = "" in runs or len(set(runs)) < len(runs) or any(
            other.startswith(run + ".") for run in runs for other in runs)
        grouped = _by_siblings(runs)
        assert (grouped is None) == twice, runs
        if grouped is None:
            declined += 1
        else:
            assert grouped == _one_by_one(runs, "x"), runs
            answered += 1
    assert answered > 200 and declined > 200
    # a checkpoint's layout is answered by the groups: DeepSeek-V3's experts, each a group of three projections
    runs = [f"model.layers.{i}.mlp.experts.{e}.{p}" for i in range(2) for e in range(3) for p in ("g", "u", "d")]
    grouped = _by_siblings(runs)
    assert grouped == _one_by_one(runs, "x")
    assert grouped[0][:6] == ["", "model", "model.layers", "model.layers.0", "model.layers.0.mlp",
                              "model.layers.0.mlp.experts"]
    assert grouped[0][6:11] == ["model.layers.0.mlp.experts.0", *(f"model.layers.0.mlp.experts.0.{p}" for p in "gud"),
                                "model.layers.0.mlp.experts.1"]
    assert grouped[1][6:11] == [5, 6, 6, 6, 5] and grouped[2][6:11] == [6, 7, 7, 7, 6]
    assert grouped[3][:4] == [7, 8, 9, 11] and grouped[4:] == (False, True)


def test_module_columns_sums_laid_out_by_the_groups_are_the_sums_put_at_their_places():
    # reference: _one_by_one's places, each run's sums put at its place (what module_columns does when the groups
    # decline); the groups lay each module's own sums out beside the paths, stretches included, and list no place
    import random

    from paramscope.report import _by_siblings, _one_by_one

    rng = random.Random(11)
    checked = 0
    layouts = [[f"m.l.{i}.e.{e}.{p}" for i in range(3) for e in range(5) for p in "gud"],
               [f"m.l.{i}.{p}" for i in range(4) for p in ("a.q", "a.k", "n", "e.0.g", "e.1.g", "e.2.g")]]
    for _ in range(600):
        runs = [".".join(rng.choice("abc") for _ in range(rng.choice((1, 2, 3, 3, 4))))
                for _ in range(rng.randint(1, 10))]
        layouts.append(sorted(runs) if rng.random() < 0.5 else runs)
    for runs in layouts:
        runs = [run for i, run in enumerate(runs) if i == 0 or run != runs[i - 1]]
        figures = [[rng.randrange(10**12) for _ in runs] for _ in range(2)]
        sums = [(figure, [0]) for figure in figures]
        grouped = _by_siblings(runs, [], sums)
        if grouped is None:
            continue
        paths, parents, depths, places, _, _ = _one_by_one(runs, "x")
        assert grouped[:3] == (paths, parents, depths) and grouped[3] == []
        for figure, (_, own) in zip(figures, sums, strict=True):
            expected = [0] * len(paths)
            for at, value in zip(places, figure, strict=True):
                expected[at] += value
            assert own == expected, runs
        checked += 1
    assert checked > 200


@pytest.mark.parametrize(("runs", "stretches"), [
    # a layer's experts after the first (whose list is new too): one stretch of groups of three, per layer
    ([f"m.l.{i}.e.{e}.{p}" for i in range(2) for e in range(4) for p in "gud"], [3, 3]),
    (["m.a", "m.b", "head"], []),  # the root is a group's parent already made: no stretch
    (["x.a.w", "x.b.w", "x.b.v", "x.c.w"], []),  # groups of two sizes: group by group
    (["x.a.w", "y.q", "x.b.w", "x.c.w"], [2]),  # x's subtree listed apart: one stretch, not depth first
    (["s.0.w", "s.1.w", "s.1.w2", "t.0.w", "s.2.w", "s.3.w"], [2]),  # two sizes, then s.2 and s.3 after t
    (["e.0.a", "e.1.a", "e.1.a"], []),  # a module in two runs: declined
    (["e.0.a", "e.1.a", "e.2.a", "e.1.b"], []),  # e.1 twice in the stretch: group by group (e.1 found again)
])
def test_module_columns_by_stretches_are_the_one_by_one_loop(monkeypatch, runs, stretches):
    import paramscope.report as report_module

    runs = [run for i, run in enumerate(runs) if i == 0 or run != runs[i - 1]]
    made = []
    stretch = report_module._stretch
    monkeypatch.setattr(report_module, "_stretch", lambda *a: made.append(len(a[3])) or stretch(*a))
    grouped = report_module._by_siblings(runs)
    assert made == stretches
    reference = report_module._one_by_one(runs, "x")
    again = reference[4]  # a module placed before its run: listed apart, or made as an ancestor before
    if not again and not any(other.startswith(run + ".") for run in runs for other in runs):
        assert grouped == reference
    else:
        assert grouped is None


def test_module_columns_refuse_an_order_that_is_not_depth_first():
    # a's subtree is listed again after b's: the node tree puts a.z under a, before b; the columns cannot
    report = _column_report(["a.x.w", "b.y.w", "a.z.w"])
    assert report.module_columns() is None
    # the same where a's new child is made on the way to its own child (a.z, then a.z.q)
    assert _column_report(["a.x.w", "b.y.w", "a.z.q.w"]).module_columns() is None
    assert [row[0] for row in _walked(report)] == ["", "a", "a.x", "a.z", "b", "b.y"]


def test_module_columns_keep_the_tree_text_limit(monkeypatch):
    import paramscope.report as report_module
    from paramscope.errors import ParamscopeError

    names = ["a.bb.ccc.w", "a.bb.dd.w"]  # paths a, a.bb, a.bb.ccc, a.bb.dd: 1 + 4 + 8 + 7 = 20 characters
    monkeypatch.setattr(report_module, "MAX_TREE_TEXT", 19)
    monkeypatch.setattr(report_module, "_TREE_TEXT_REASON", "too long")
    for build in (lambda r: r.module_columns(), lambda r: r.tree(None, natural=False)):
        with pytest.raises(ParamscopeError, match="too long"):
            build(_column_report(names))
    monkeypatch.setattr(report_module, "MAX_TREE_TEXT", 20)
    assert len(_columns(_column_report(names))) == 5


@pytest.mark.parametrize("limit", [15, 39])  # over in the stretch's own count, over only in all the paths' count
def test_module_columns_keep_the_tree_text_limit_in_a_stretch(monkeypatch, limit):
    import paramscope.report as report_module
    from paramscope.errors import ParamscopeError

    # paths m, m.e, m.e.0, m.e.0.x, m.e.1, m.e.1.x, m.e.2, m.e.2.x: 40 characters; m.e.1 and m.e.2 made by a stretch
    names = ["m.e.0.x.w", "m.e.1.x.w", "m.e.2.x.w"]
    stretches = []
    stretch = report_module._stretch
    monkeypatch.setattr(report_module, "_stretch", lambda *a: stretches.append(a[3]) or stretch(*a))
    monkeypatch.setattr(report_module, "MAX_TREE_TEXT", limit)
    monkeypatch.setattr(report_module, "_TREE_TEXT_REASON", "too long")
    for build in (lambda r: r.module_columns(), lambda r: r.tree(None, natural=False)):
        with pytest.raises(ParamscopeError, match="too long"):
            build(_column_report(names))
    monkeypatch.setattr(report_module, "MAX_TREE_TEXT", 40)
    stretches.clear()
    assert [row[0] for row in _columns(_column_report(names))] == [
        "", "m", "m.e", "m.e.0", "m.e.0.x", "m.e.1", "m.e.1.x", "m.e.2", "m.e.2.x"]
    assert stretches == [["m.e.1", "m.e.2"]]


@pytest.mark.parametrize(
    "names",
    [["0", "1", "2"], ["0", "2", "10"], ["9", "10", "11"], ["10", "9"], ["0", "10", "2"], ["00", "1"], ["3", "01", "2"],
     ["1", "1000000000000000000000000000000", "999999999999999999999999999999"],
     ["0", "1"], ["1", "0"], ["0", "01"], ["10", "11"], ["10", "1"]],  # two siblings: the fast path's cases
)
@pytest.mark.parametrize("parent", ["layers.", ""])  # a module's children, and the root's
def test_natural_order_of_numbered_siblings_is_their_integer_order(names, parent):
    # reference: Python's int order (a stable sort, so equal numbers keep the source's order); the fast paths for
    # names without a leading zero must agree with it, and say they moved something exactly when the order changed
    children = [ModuleNode(f"{parent}{name}", None) for name in names]
    moved = natural_order(children)
    expected = sorted(names, key=int)
    assert [child.name for child in children] == expected
    assert moved is (expected != names)


def test_embedding_rule_by_holder_class_decided_per_class_and_by_name_without_one():
    # hand count: the Embedding's 10x4 and 6x4 weights, the ScaledWordEmbedding subclass's 5x2 weight and the
    # classless "wte.weight" (3x3) are embeddings; a Linear's weight is not, even under an embedding-like name
    records = [
        TensorRecord("a.emb.weight", (10, 4), "float32", owner_type="Embedding"),
        TensorRecord("b.emb.weight", (6, 4), "float32", owner_type="Embedding"),
        TensorRecord("c.embed_tokens.weight", (7, 7), "float32", owner_type="Linear"),
        TensorRecord("d.tok.weight", (5, 2), "float32", owner_type="GemmaScaledWordEmbedding"),
        TensorRecord("wte.weight", (3, 3), "float32"),
        TensorRecord("mlp.weight", (2, 2), "float32"),
    ]
    report = Report(Inventory("e", "test", records))
    assert report.embedding == 40 + 24 + 10 + 9
    assert report.non_embedding == 49 + 4


def test_record_tree_makes_missing_ancestors_in_order_and_keeps_the_text_limit(monkeypatch):
    # Records (trainability known: counted record by record). a.bb.ccc's parents a and a.bb hold nothing, so the
    # tree makes them on the way; paths a, a.bb, a.bb.ccc, a.bb.dd, e: 1 + 4 + 8 + 7 + 1 = 21 characters
    import paramscope.report as report_module
    from paramscope.errors import ParamscopeError

    def report() -> Report:
        records = [TensorRecord("a.bb.ccc.w", (2, 3), "float32", trainable=True, owner_type="Linear"),
                   TensorRecord("a.bb.dd.w", (4,), "float16", trainable=False, owner_type="Linear"),
                   TensorRecord("e.w", (5,), "float32", trainable=True)]
        return Report(Inventory("m", "torch.nn.Module", records, {"": "M", "a.bb": "Block"}))

    rows = [(n.path, n.type, n.parameters, n.trainable, n.bytes, [t.name for t in n.tensors])
            for n in report().tree(None).walk()]
    assert rows == [("", "M", 15, 11, 52, []), ("a", None, 10, 6, 32, []), ("a.bb", "Block", 10, 6, 32, []),
                    ("a.bb.ccc", None, 6, 6, 24, ["a.bb.ccc.w"]), ("a.bb.dd", None, 4, 0, 8, ["a.bb.dd.w"]),
                    ("e", None, 5, 5, 20, ["e.w"])]
    monkeypatch.setattr(report_module, "_TREE_TEXT_REASON", "too long")
    for limit in (12, 13, 20):  # past a.bb.ccc (13), past a.bb.dd (20), past e (21)
        monkeypatch.setattr(report_module, "MAX_TREE_TEXT", limit)
        with pytest.raises(ParamscopeError, match="too long"):
            report().tree(None)
    monkeypatch.setattr(report_module, "MAX_TREE_TEXT", 21)
    assert len(list(report().tree(None).walk())) == 6


def test_headline_figures_and_dtype_and_type_rows_match_torch_whatever_the_runs():
    # The totals come from records grouped by (role, dtype, trainable) in runs, by_type from runs of one module:
    # dtypes, trainability and roles that change every record or two, checked against torch's own numbers.
    torch = pytest.importorskip("torch")
    from torch import nn

    import paramscope

    blocks: list[nn.Module] = []
    for i in range(6):
        linear = nn.Linear(4, 3)
        if i % 2:
            linear.weight = nn.Parameter(linear.weight.detach().to(torch.bfloat16))  # weight bf16, bias fp32
        if i % 3 == 0:
            linear.bias.requires_grad_(False)
        blocks += [linear, nn.BatchNorm1d(3)]  # float32 and int64 buffers between the parameters
    model = nn.Sequential(*blocks, nn.Linear(3, 2).to(torch.float16), nn.Embedding(5, 2))
    report = paramscope.inspect(model)
    params, buffers = list(model.parameters()), list(model.buffers())

    def size(ts):
        return sum(t.numel() * t.element_size() for t in ts)

    assert report.total == sum(p.numel() for p in params) == 6 * 15 + 6 * 6 + 8 + 10
    assert report.trainable == sum(p.numel() for p in params if p.requires_grad) == report.total - 2 * 3
    assert report.frozen == 6
    assert report.buffers == sum(b.numel() for b in buffers)
    assert (report.parameter_bytes, report.buffer_bytes) == (size(params), size(buffers))
    assert report.bytes == size(params) + size(buffers)
    assert report.non_embedding == report.total - 10
    expected: dict[str, list[int]] = {}
    for tensors, column in ((params, 0), (buffers, 1)):
        for t in tensors:
            row = expected.setdefault(str(t.dtype).removeprefix("torch."), [0, 0, 0])
            row[column] += t.numel()
            row[2] += t.numel() * t.element_size()
    assert {d.dtype: [d.parameters, d.buffers, d.bytes] for d in report.by_dtype} == expected
    assert set(expected) == {"float32", "bfloat16", "float16", "int64"}
    types: dict[str, list[int]] = {}
    for _, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if own:
            row = types.setdefault(type(module).__name__, [0, 0, 0])
            row[0] += 1
            row[1] += sum(p.numel() for p in own)
            row[2] += size(own)
    assert {t.type: [t.modules, t.parameters, t.bytes] for t in report.by_type} == types


def test_grouped_totals_keep_unknown_sizes_and_other_roles_apart_by_hand():
    # hand count: an unknown dtype in the middle of a run of float32 parameters makes parameter bytes unknown but
    # leaves every dtype's known bytes; optimizer state and bookkeeping are neither parameters nor buffers
    records = [
        TensorRecord("a.weight", (2, 3), "float32", trainable=True),
        TensorRecord("a.odd", (5,), "no-such-dtype", trainable=True),
        TensorRecord("a.bias", (3,), "float32", trainable=True),
        TensorRecord("a.exp_avg", (2, 3), "float32", role=Role.OPTIMIZER_STATE),
        TensorRecord("a.scales", (4,), "float16", role=Role.QUANT_AUX),
        TensorRecord("b.weight", (4,), "float32", trainable=False),
        TensorRecord("b.ids", (7,), "int64", role=Role.BUFFER),
        TensorRecord("b.scales", (2,), "float16", role=Role.QUANT_AUX),
        TensorRecord("c.exp_avg", (1,), "float32", role=Role.OPTIMIZER_STATE),
    ]
    report = Report(Inventory("g", "test", records))
    assert (report.total, report.trainable, report.frozen, report.buffers) == (6 + 5 + 3 + 4, 14, 4, 7)
    assert report.parameter_bytes is None and report.bytes is None
    assert (report.buffer_bytes, report.quant_aux_bytes) == (56, 12)
    assert report.other == {"optimizer_state": 7, "quant_aux": 6}
    assert list(report.other) == ["optimizer_state", "quant_aux"]  # first-seen order
    assert [(d.dtype, d.parameters, d.buffers, d.bytes) for d in report.by_dtype] == [
        ("int64", 0, 7, 56), ("float32", 13, 0, 52), ("no-such-dtype", 5, 0, 0)]


def test_tie_groups_among_unique_names_and_a_tie_key_shaped_like_a_name_key():
    # hand count: "a" and "c" share storage 7, "b" and "e" storage ("s", 1); "d" stands alone
    records = [
        TensorRecord("a", (2, 3), "float32", tie=7),
        TensorRecord("b", (4,), "float32", tie=("s", 1)),
        TensorRecord("c", (2, 3), "float32", tie=7),
        TensorRecord("d", (5,), "float32"),
        TensorRecord("e", (4,), "float32", tie=("s", 1)),
    ]
    report = Report(Inventory("t", "test", records))
    assert [r.name for r in report.unique] == ["a", "b", "d"]
    assert report.ties == [["a", "c"], ["b", "e"]]
    assert report.total == 6 + 4 + 5
    assert report.canonical_name == {"a": "a", "c": "a", "b": "b", "e": "b"}
    # a tie key equal to an untied record's own key, ("name", its name), is that record's group (records.tie_key)
    shaped = [*records, TensorRecord("f", (5,), "float32", tie=("name", "d"))]
    report = Report(Inventory("t", "test", shaped))
    assert [r.name for r in report.unique] == ["a", "b", "d"]
    assert report.ties == [["a", "c"], ["b", "e"], ["d", "f"]]
    assert report.total == 15


def test_module_columns_summed_by_stretches_match_the_tree(monkeypatch):
    # reference: the node tree walked. Experts-like names (a stretch of new sibling modules, each holding runs)
    # sum their stretches by C loops; a module listed apart under a stretch's parent, or a stretch inside a
    # stretch, sends every module through the loop: both answers exactly the tree's
    import random

    import paramscope.report as report_module
    from paramscope.records import Table

    answers: list[bool] = []
    summed = report_module._stretches_summed

    def spy(*args):
        rest = summed(*args)
        answers.append(rest is not None)
        return rest

    monkeypatch.setattr(report_module, "_stretches_summed", spy)
    rng = random.Random(7)
    for _ in range(600):
        names: list[str] = []
        for layer in range(rng.randint(1, 3)):
            experts = rng.randint(1, 5)
            projections, kept = rng.sample(["g", "u", "d"], rng.randint(1, 3)), rng.randint(1, 2)  # alike (a stretch)
            for expert in range(experts):
                if rng.random() < 0.2:  # or not
                    projections, kept = rng.sample(["g", "u", "d"], rng.randint(1, 3)), rng.randint(1, 2)
                for proj in projections:
                    names += [f"m.l.{layer}.x.{expert}.{proj}.w", f"m.l.{layer}.x.{expert}.{proj}.s"][:kept]
            if rng.random() < 0.3:  # modules under the last expert's (a stretch's parent): one, or a stretch of them
                names += [f"m.l.{layer}.x.{experts - 1}.{part}.r.w" for part in "ab"[:rng.randint(1, 2)]]
            if rng.random() < 0.2:
                names.append(f"m.l.{layer}.n.w")
        names = list(dict.fromkeys(names))
        count = len(names)
        table = Table(names, [(i + 1,) for i in range(count)], ["float32"] * count,
                      [rng.choice([Role.BUFFER, Role.QUANT_AUX]) if rng.random() < 0.3 else Role.PARAMETER
                       for _ in names], [i + 1 for i in range(count)], [4 * (i + 1) for i in range(count)],
                      ["f"] * count)
        columns = _columns(Report(Inventory("cols", "safetensors", table=table)))
        if columns is not None:  # (None: a module listed apart after its siblings, no longer depth first)
            assert columns == _walked(Report(Inventory("cols", "safetensors", table=table))), names
    assert answers.count(True) > 50 and answers.count(False) > 5, (answers.count(True), answers.count(False))


def test_packed_corrections_by_kind_are_the_entries_summed():
    # reference: each packed entry's logical less stored elements (the per-entry pass, no kinds found), and by hand:
    # three GPTQ qweights [4, 2] int32 standing for 64 weights each (64 - 8 = 56 more each, two of one packing and
    # one of another), two FP8 weights counted as stored (no correction), a scale made bookkeeping
    from paramscope.records import Table

    gptq, other, fp8 = QuantInfo("gptq", 64, 4), QuantInfo("gptq", 64, 4), QuantInfo("fp8", 16, 8)
    records = [TensorRecord("a.qweight", (4, 2), "int32", quant=gptq),
               TensorRecord("b.qweight", (4, 2), "int32", quant=gptq),
               TensorRecord("c.qweight", (4, 2), "int32", quant=other),
               TensorRecord("d.weight", (4, 4), "float8_e4m3fn", quant=fp8),
               TensorRecord("e.weight", (4, 4), "float8_e4m3fn", quant=fp8),
               TensorRecord("e.weight_scale_inv", (1, 1), "float32", role=Role.QUANT_AUX),
               TensorRecord("f.bias", (4,), "float32")]

    def report() -> Report:
        return Report(Inventory(source="t", format="safetensors", table=Table.from_records(records)))

    per_entry, by_kind = report(), report()
    assert by_kind.row_kinds == [0, 0, 2, 3, 3, 5, 6]  # the packing by identity: c's is a kind of its own
    assert sorted(per_entry._packed) == [("int32", Role.PARAMETER, 56)] * 3
    assert sorted(by_kind._packed) == [("int32", Role.PARAMETER, 56), ("int32", Role.PARAMETER, 112)]
    for r in (per_entry, by_kind):
        assert r.total == 3 * 64 + 2 * 16 + 4 and r.stored_elements == 3 * 8 + 2 * 16 + 4
        assert [tuple(d) for d in r.by_dtype] == [("int32", 192, 0, 96), ("float8_e4m3fn", 32, 0, 32),
                                                  ("float32", 4, 0, 16)]


def test_a_table_with_other_roles_counts_its_parameters_only():
    # reference: the same records counted as records (the general rules), and by hand: the embedding is the
    # parameter embed_tokens (6), not the buffer named like one; three modules hold parameters; the modules'
    # parameters leave the buffer and the scale out
    from paramscope.records import Table

    records = [TensorRecord("model.embed_tokens.weight", (3, 2), "float32"),
               TensorRecord("model.wte.weight", (4,), "float32", role=Role.BUFFER),
               TensorRecord("model.q.weight", (2, 2), "float8_e4m3fn"),
               TensorRecord("model.q.weight_scale_inv", (1, 1), "float32", role=Role.QUANT_AUX),
               TensorRecord("lm_head.weight", (3, 2), "float32")]
    table = Report(Inventory(source="t", format="safetensors", table=Table.from_records(records)))
    plain = Report(Inventory(source="t", format="safetensors", tensors=records))
    assert table.embedding == plain.embedding == 6 and table.non_embedding == plain.non_embedding == 4 + 6
    assert table.by_type[0].modules == 3 and table.by_type[0].parameters == plain.total == 16
    columns = table.module_columns()
    assert columns is not None and "_parameter_mask" not in table.__dict__  # dropped with the modules
    by_path = dict(zip(columns.paths, columns.parameters, strict=True))
    assert by_path == {m.path: m.parameters for m in plain.tree(None, natural=False).walk()}
    assert by_path["model"] == 6 + 4 and by_path["model.wte"] == 0 and by_path[""] == 16


@pytest.mark.parametrize("module", [
    "embed", "wte", "transformer.wte", "model.embed_tokens", "bert.embeddings", "word_embeddings", "x_embeds",
    "token_embd", "pos_wpe", "a.b.tok_embeddings", "model.embed_tokens_x", "xembed", "wte.0", "", ".", "_",
    "embedding.", "model.layers.0.mlp", "Embed", "wte\u2028", "a-embed", "a.embed_tokens.embed",
])
def test_embedding_name_test_is_the_rules_expression(module):
    import re

    from paramscope.report import EMBEDDING_NAME, _named_like_embedding

    assert _named_like_embedding(module) == (re.search(EMBEDDING_NAME, module) is not None)


def test_embedding_name_test_takes_the_names_very_end():
    import re

    from paramscope.report import EMBEDDING_NAME, _named_like_embedding

    assert re.search(EMBEDDING_NAME, "model.wte\n") is not None  # the expression's $ before a final newline
    assert not _named_like_embedding("model.wte\n")


def test_a_tables_embedding_is_the_records_one():
    """The table path's embedding (a one-character look-up picks the candidates) against the same tensors counted as
    records (the general rule): names with the words' last characters 8 from the end, names that end so without
    being embeddings, another role, and short names (shorter than 8 characters: every name tested)."""
    from paramscope.records import Table

    def counted(names: list[str]) -> tuple[int, int]:
        records = [TensorRecord(name, (k + 1, 3), "float32", role=Role.BUFFER if name.startswith("buf") else
                                Role.PARAMETER) for k, name in enumerate(names)]
        as_table = Report(Inventory(source="t", format="safetensors", table=Table.from_records(records)))
        as_records = Report(Inventory(source="t", format="safetensors", tensors=records))
        assert as_table.columns is not None and as_records.columns is None
        return as_table.embedding, as_records.embedding

    long = ["model.embed_tokens.weight", "transformer.wte.weight", "transformer.wpe.weight", "x.gate.weight",
            "tok_embeddings.weight", "a.token_embd.weight", "b.embeddings.weight", "lm_head.weight", "c_embed.weight",
            "bufwte.weight", "bufx.embed.weight", "d.notembed.weight", "e.embed.bias", "f.xwte.weight"]
    for names in (long, [*long, "w", "embed", "wte.w"]):
        table_count, record_count = counted(names)
        assert table_count == record_count
    # by hand: embed_tokens (1), wte (2), wpe (3), tok_embeddings (5), token_embd (6), embeddings (7), c_embed (9)
    assert counted(long)[0] == 3 * (1 + 2 + 3 + 5 + 6 + 7 + 9)
