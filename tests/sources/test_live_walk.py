"""The live walk's module structure (records.ModuleWalk) and the tree the report builds from it by index: the same
tree, node for node, as the one built from the names, and no structure where the names would say otherwise."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import paramscope
from paramscope.records import ModuleWalk
from paramscope.report import Report


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv10 = nn.Conv2d(2, 2, 1)  # before conv2: natural order puts conv2 first
        self.conv2 = nn.Conv2d(2, 3, 1)
        self.norm = nn.BatchNorm2d(3)


class Everything(nn.Module):
    """Ties, a frozen layer, buffers (one non-persistent), a shared submodule, modules without tensors, a lazy layer,
    parameters on a container, numbered siblings past 9."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        shared = nn.Linear(8, 8)
        self.a = shared
        self.b = nn.Sequential(nn.ReLU(), shared)
        self.frozen = nn.Linear(8, 4)
        self.frozen.requires_grad_(False)
        self.blocks = nn.ModuleList([Block() for _ in range(12)])
        self.lazy = nn.LazyLinear(5)
        self.head = nn.Linear(8, 50, bias=False)
        self.head.weight = self.emb.weight
        self.register_buffer("mask", torch.ones(3), persistent=False)
        self.empty = nn.Sequential(nn.ReLU(), nn.Identity())
        self.root_p = nn.Parameter(torch.zeros(2))


class Untied(nn.Module):
    """Everything but ties (whose tree is built whole, Report._walk_tree): what Report counts from the walk's running
    totals and makes node by node as read (report._WalkTree)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.frozen = nn.Linear(8, 4)
        self.frozen.requires_grad_(False)
        self.blocks = nn.ModuleList([Block() for _ in range(12)])
        self.lazy = nn.LazyLinear(5)
        self.register_buffer("mask", torch.ones(3), persistent=False)
        self.empty = nn.Sequential(nn.ReLU(), nn.Identity())
        self.deep = nn.Sequential(nn.Sequential(nn.ReLU(), nn.Sequential(nn.Linear(3, 3))), nn.ReLU())
        self.root_p = nn.Parameter(torch.zeros(2))


class DataParallel(nn.Module):
    """A DDP-like wrapper (matched by class name): its child is visited under the wrapper's own path."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def _tiny_llama(tied: bool = True) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=11,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied)
    with torch.device("meta"):
        return LlamaForCausalLM(config)


def _by_names(report: Report) -> Report:
    """The same records without the walk's structure (a new list of them drops it): the tree from the names."""
    return Report(report.inventory.replace(tensors=list(report.tensors)))


def _nodes(report: Report, *, natural: bool = True) -> list[tuple]:
    return [(n.path, n.type, n.parameters, n.trainable, n.buffers, n.bytes, [id(t) for t in n.tensors], n.aliases,
             [c.path for c in n.children]) for n in report.tree(natural=natural).walk()]


MODELS = {
    "everything": Everything,
    "tiny llama, tied": _tiny_llama,
    "untied": Untied,
    "tiny llama, untied": lambda: _tiny_llama(tied=False),
    "blocks": lambda: nn.Sequential(*(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2), nn.GELU()) for _ in range(12))),
}


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_the_tree_by_index_is_the_tree_by_names(make):
    report = paramscope.inspect(make())
    assert report.inventory.walk is not None
    by_names = _by_names(report)
    assert by_names.inventory.walk is None
    for natural in (True, False):
        assert _nodes(report, natural=natural) == _nodes(by_names, natural=natural)
    for depth in (0, 1, 2):
        assert _nodes_at(report, depth) == _nodes_at(by_names, depth)
    assert report.natural_tensors == by_names.natural_tensors


@pytest.mark.parametrize("first", [None, 0, 2, "natural_tensors"])
def test_a_tree_asked_in_any_order_is_the_tree_by_names(first):
    """Whatever is asked first (the whole tree, a cut, the rows in natural order), the rest agrees with the names."""
    report = paramscope.inspect(Untied())
    if first == "natural_tensors":
        names = [r.name for r in report.natural_tensors]  # the root's own first, then conv2 before conv10
        assert names[:2] == ["root_p", "mask"] and names[5:8] == ["blocks.0.conv2.weight", "blocks.0.conv2.bias",
                                                                  "blocks.0.conv10.weight"]
    else:
        report.tree(first)
    by_names = _by_names(report)
    for depth in (2, None, 1):
        assert _nodes_at(report, depth) == _nodes_at(by_names, depth)
    assert report.natural_tensors == by_names.natural_tensors


def test_an_untied_live_tree_makes_its_nodes_as_they_are_read():
    from paramscope.report import ModuleNode, _WalkNode

    model = nn.Sequential(*(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2), nn.GELU()) for _ in range(30)))
    report = paramscope.inspect(model)
    root = report.tree()
    assert type(root) is _WalkNode
    # the figures of the whole model, counted before any node below the root is made: 30 x (2*2 + 2 + 2 + 2)
    assert (root.parameters, root.trainable, root.buffers, root.bytes) == (300, 300, 0, 1200)
    def made(node: ModuleNode) -> bool:  # whether its children are made: the slot is set
        return ModuleNode.__dict__["children"].__get__(node) is not None

    with pytest.raises(AttributeError):
        made(root)  # nothing made yet
    shown = report.tree(1)  # a tree of its own, cut at the first level
    assert [n.path for n in shown.walk()] == ["", *map(str, range(30))]
    assert all(made(block) and block.children == () for block in shown.children)
    with pytest.raises(AttributeError):
        made(root)
    assert len(root.children) == 30 and made(root)  # read once: the whole tree made, in one pass
    assert all(made(block) for block in root.children)
    assert [n.parameters for n in root.children[7].children] == [6, 4]  # GELU holds nothing: no node
    assert [t.name for t in root.children[7].children[1].tensors] == ["7.1.weight", "7.1.bias"]


def test_a_tied_model_is_made_as_read_with_its_aliases_named():
    from paramscope.report import ModuleNode, _WalkNode

    report = paramscope.inspect(_tiny_llama(tied=True))
    root = report.tree()
    assert type(root) is _WalkNode
    with pytest.raises(AttributeError):
        ModuleNode.__dict__["children"].__get__(root)  # nothing below the root made yet
    head = {n.path: n for n in root.walk()}["lm_head"]
    assert head.aliases == [("lm_head.weight", "model.embed_tokens.weight")]
    assert head.parameters == head.bytes == 0 and head.tensors == ()  # counted under the embedding, held by none
    assert root.parameters == report.total == 26_736  # the embedding (64 x 16) once
    assert [n.aliases for n in report.tree(1).walk() if n.path == "lm_head"] == [[("lm_head.weight",
                                                                                  "model.embed_tokens.weight")]]
    assert [n.aliases for n in report.tree(0).walk()] == [()]  # the alias's module is below the cut


def test_a_tie_first_named_by_the_root_counts_at_the_root():
    class Root(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.w = self.emb.weight  # the root's own parameter: the walk lists the root's records first

    report = paramscope.inspect(Root())
    root = report.tree()
    assert [t.name for t in root.tensors] == ["w"] and root.aliases == ()
    assert (root.parameters, [(n.path, n.parameters, n.aliases) for n in root.children]) == (
        15, [("emb", 0, [("emb.weight", "w")])])
    assert _nodes_at(report, None) == _nodes_at(_by_names(report), None)


def _nodes_at(report: Report, depth: int | None) -> list[tuple]:
    return [(n.path, n.type, n.parameters, n.trainable, n.buffers, n.bytes, [t.name for t in n.tensors], n.aliases)
            for n in report.tree(depth).walk()]


def test_the_walk_by_hand():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Sequential(nn.Linear(2, 1, bias=False)))
    inventory = paramscope.inspect(model).inventory
    # records: 0.weight 0.bias 2.0.weight; ReLU (1) and the inner Sequential (2) hold none themselves
    assert inventory.walk == ModuleWalk(["", "0", "1", "2", "2.0"], [-1, 0, 0, 0, 3], [0, 0, 2, 2, 2, 3])
    root = paramscope.inspect(model).tree()
    assert [n.path for n in root.walk()] == ["", "0", "2", "2.0"]  # no node for a module without tensors
    assert [t.name for t in root.children[1].children[0].tensors] == ["2.0.weight"]
    assert root.parameters == 2 * 2 + 2 + 2 == 8


def test_a_shared_submodule_is_two_visits_with_its_tensors_aliased():
    report = paramscope.inspect(Everything())
    walk = report.inventory.walk
    assert walk.paths.index("a") < walk.paths.index("b.1")
    node = {n.path: n for n in report.tree().walk()}["b.1"]
    assert node.aliases == [("b.1.weight", "a.weight"), ("b.1.bias", "a.bias")]
    assert list(node.tensors) == [] and node.parameters == 0


def test_held_tensors_are_read_from_the_records_on_demand():
    report = paramscope.inspect(Everything())
    node = {n.path: n for n in report.tree().walk()}["blocks.11.norm"]
    names = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert [t.name for t in node.tensors] == [f"blocks.11.norm.{n}" for n in names]
    assert all(a is b for a, b in zip(node.tensors, [r for r in report.tensors if r.name.startswith("blocks.11.norm.")],
                                      strict=True))
    pruned = report.tree(3)  # copies of the nodes share what they hold
    assert {n.path: n for n in pruned.walk()}["blocks.11.norm"].tensors == node.tensors


def test_a_wrapper_and_hand_written_dotted_names_leave_the_names_to_decide():
    wrapped = paramscope.inspect(DataParallel(Everything()))
    assert wrapped.inventory.walk is None  # the wrapped model's visit shares the wrapper's path
    assert _nodes(wrapped) == _nodes(_by_names(wrapped))
    assert [n.path for n in wrapped.tree().children][:3] == ["emb", "a", "b"]

    odd = nn.Module()
    odd.x = nn.Linear(2, 2)
    odd._parameters["p.q"] = nn.Parameter(torch.zeros(3))  # torch's register_parameter refuses a dot
    assert paramscope.inspect(odd).inventory.walk is None
    for dotted in ("_modules", "_buffers"):
        odd = nn.Module()
        getattr(odd, dotted)["m.n"] = nn.Linear(2, 3) if dotted == "_modules" else torch.zeros(2)
        report = paramscope.inspect(odd)
        assert report.inventory.walk is None
        assert [n.path for n in report.tree().walk()] == ["", "m", "m.n"] if dotted == "_modules" else ["", "m"]


def test_a_stage_that_changes_the_records_drops_the_walk():
    report = paramscope.inspect(Everything())
    inventory = report.inventory
    assert inventory.replace(notes=["x"]).walk is inventory.walk
    assert inventory.replace(tensors=inventory.tensors[::-1]).walk is None
    assert inventory.replace(module_types={**inventory.module_types}).walk is None
    filtered = report.filter(pattern="*weight*")
    assert filtered.inventory.walk is None
    assert filtered.tree().parameters == sum(r.numel for r in filtered.unique if r.role.value == "parameter")


def test_ties_found_at_the_end_of_the_walk():
    model = Everything()
    report = paramscope.inspect(model)
    ties = {r.name: r.tie for r in report.tensors if r.tie is not None}
    # meta or not, tied by the object here (the embedding's weight held twice), the shared Linear's two
    assert ties["emb.weight"] == ties["head.weight"] != ties["a.weight"] == ties["b.1.weight"]
    assert ties["a.bias"] == ties["b.1.bias"]
    assert set(ties) == {"emb.weight", "head.weight", "a.weight", "b.1.weight", "a.bias", "b.1.bias"}
    assert ties["a.weight"] == ("data", "cpu", model.a.weight.data_ptr(), (8, 8), torch.float32)
    llama = _tiny_llama()
    tied = [r for r in paramscope.inspect(llama).tensors if r.tie is not None]
    assert [r.name for r in tied] == ["model.embed_tokens.weight", "lm_head.weight"]
    assert tied[0].tie == tied[1].tie == ("object", id(llama.lm_head.weight))  # meta: every data_ptr() is 0


@pytest.mark.parametrize("limit", [4, 5, 6])
def test_the_tree_text_limit_holds_by_index_as_by_names(monkeypatch, limit):
    from paramscope import report as report_module
    from paramscope.errors import ParamscopeError

    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2)), nn.ReLU(), nn.Linear(2, 2))  # built: 0, 0.0, 2 (5 chars)
    monkeypatch.setattr(report_module, "MAX_TREE_TEXT", limit)  # all paths: 0, 0.0, 1, 2 (6 chars)
    report = paramscope.inspect(model)
    assert report.inventory.walk is not None
    outcomes = []
    for each in (report, _by_names(report)):
        try:
            outcomes.append([n.path for n in each.tree().walk()])
        except ParamscopeError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
    if limit >= 5:
        assert outcomes[0] == ["", "0", "0.0", "2"]
    else:
        assert "module paths of its tensor names add up to more than" in outcomes[0]


def _broken(where: str, key: object, value: object) -> nn.Module:
    """A module whose ``where`` dict (``_parameters``, ``_buffers``, ``_modules``) holds ``value`` under ``key``,
    set by hand past nn.Module's checks, one level down."""
    inner = nn.Linear(2, 2)
    getattr(inner, where)[key] = value
    return nn.Sequential(nn.Linear(2, 2), inner)


@pytest.mark.parametrize(("where", "key", "value", "reason"), [
    ("_modules", 3, nn.Linear(2, 2), "module '1' holds a submodule under a key of type int, not a string"),
    ("_parameters", 7, nn.Parameter(torch.zeros(2)),
     "module '1' holds a parameter under a key of type int, not a string"),
    ("_buffers", (1,), torch.zeros(2), "module '1' holds a buffer under a key of type tuple, not a string"),
    ("_modules", "x", 5, "module '1' holds a submodule 'x' of type int, not a torch.nn.Module"),
    ("_parameters", "p", 5, "module '1' holds a parameter 'p' of type int, not a tensor"),
    ("_buffers", "b", "text", "module '1' holds a buffer 'b' of type str, not a tensor"),
])
def test_a_module_layout_broken_by_hand_is_named_in_one_line(where, key, value, reason):
    model = _broken(where, key, value)
    with pytest.raises(paramscope.ParamscopeError) as caught:
        paramscope.inspect(model)
    assert caught.value.reason == reason
    assert caught.value.source == "Sequential"


def test_a_module_whose_init_did_not_run_or_whose_dict_is_replaced_is_named():
    class NoInit(nn.Module):
        def __init__(self) -> None:  # nn.Module.__init__ never called
            pass

    with pytest.raises(paramscope.ParamscopeError, match=r"^NoInit: the root module has no _parameters \(its "
                                                        r"nn.Module.__init__ did not run\)$"):
        paramscope.inspect(NoInit())
    model = nn.Sequential(nn.Linear(2, 2))
    model._modules = [nn.Linear(2, 2)]  # type: ignore[assignment]
    with pytest.raises(paramscope.ParamscopeError, match="the root module's _modules is of type list, not the dict"):
        paramscope.inspect(model)


def test_a_broken_layout_from_the_command_line_exits_1_with_one_line(tmp_path):
    from tests.hostile._limits import run_cli

    script = tmp_path / "broken.py"
    script.write_text("from torch import nn\n"
                      "class Broken(nn.Sequential):\n"
                      "    def __init__(self):\n"
                      "        super().__init__(nn.Linear(2, 2))\n"
                      "        self._modules[3] = nn.Linear(2, 2)\n")
    result = run_cli(f"{script}:Broken")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"paramscope: {script}:Broken: the root module holds a submodule under a key of type int, not a string"]


def test_a_report_and_its_live_tree_are_freed_without_a_collection():
    """The tree keeps the inventory, not the report that keeps the tree: no cycle to wait on the collector for."""
    import gc

    model = nn.Sequential(*(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)) for _ in range(5)))
    gc.collect()
    report = paramscope.inspect(model)
    assert len(list(report.tree().walk())) == 16 and len(list(report.tree(1).walk())) == 6
    assert report.natural_tensors == report.tensors
    del report
    assert gc.collect() == 0


class Odd(nn.Module):
    """What the figures by class must get right from the walk: a module whose only parameter is an alias (counted
    under another module, not its own), one whose only parameter holds no element (a module all the same), a module
    holding a buffer and no parameter, frozen and trainable parameters of one class, and an uninitialized one."""

    def __init__(self) -> None:
        super().__init__()
        shared = nn.Linear(4, 4)
        self.first = shared
        self.again = nn.Sequential(shared)  # again.0's parameters: aliases of first's
        with warnings.catch_warnings():  # torch says initializing no element does nothing
            warnings.simplefilter("ignore", UserWarning)
            self.zero = nn.Linear(0, 3, bias=False)  # a weight of shape (3, 0)
        self.norm = nn.BatchNorm1d(4)
        self.frozen = nn.Linear(4, 2)
        self.frozen.requires_grad_(False)
        self.lazy = nn.LazyLinear(3)
        self.register_buffer("steps", torch.zeros(5, dtype=torch.int64))


def _figures(report: Report) -> tuple:
    return (report.total, report.trainable, report.frozen, report.buffers, report.bytes, report.parameter_bytes,
            report.buffer_bytes, report.stored_elements, report.by_type, report.by_dtype, report.non_embedding)


@pytest.mark.parametrize("make", [*MODELS.values(), Odd], ids=[*MODELS.keys(), "odd"])
def test_the_figures_from_the_walk_are_the_figures_by_names(make):
    """Headline figures, by class and by dtype counted over the walk (report._tally's running totals, class runs and
    module spans) against the same records counted one by one (the report by names)."""
    report = paramscope.inspect(make())
    assert report._walk_countable
    assert _figures(report) == _figures(_by_names(report))


def test_the_figures_by_class_by_hand():
    """Odd's by_type from torch's own modules: each class's parameters (a tie once, under its first module), and the
    modules holding one (again.0 holds only aliases: not a Linear of its own; zero holds a weight of no element)."""
    model = Odd()
    report = paramscope.inspect(model)
    rows = {row.type: (row.modules, row.parameters) for row in report.by_type}
    linear = 4 * 4 + 4 + 2 * 4 + 2  # first, frozen (again.0 is first; zero's weight has no element)
    assert rows == {"Linear": (3, linear), "BatchNorm1d": (1, 8)}
    assert sum(p.numel() for p in model.parameters() if not isinstance(p, nn.parameter.UninitializedParameter)) \
        == linear + 8 == report.total
