"""The live-module source: every rule of parameters() made explicit, checked against hand counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import paramscope
from paramscope.records import Role

# The article prints exactly these six names and sizes (../shared/seed).
ARTICLE_PARAMETERS = [
    ("conv1.weight", (16, 3, 3, 3)),
    ("conv1.bias", (16,)),
    ("conv2.weight", (32, 16, 3, 3)),
    ("conv2.bias", (32,)),
    ("fc.weight", (10, 8192)),
    ("fc.bias", (10,)),
]


def test_article_model_names_shapes_and_total(article_model):
    report = paramscope.inspect(article_model)
    assert [(r.name, r.shape) for r in report.tensors] == ARTICLE_PARAMETERS
    # 16*3*3*3+16 + 32*16*3*3+32 + 10*8192+10
    assert report.total == 448 + 4640 + 81930 == 87_018
    assert report.trainable == 87_018
    assert report.frozen == 0
    assert report.buffers == 0
    assert report.bytes == 87_018 * 4
    assert report.ties == []


def test_article_count_matches_the_articles_one_liner(article_model):
    one_liner = sum(p.numel() for p in article_model.parameters() if p.requires_grad)
    assert one_liner == 87_018
    assert paramscope.count(article_model) == 87_018
    assert paramscope.count(article_model, trainable_only=True) == 87_018


def test_article_by_type(article_model):
    rows = {(t.type, t.modules, t.parameters, t.bytes) for t in paramscope.inspect(article_model).by_type}
    assert rows == {("Linear", 1, 81_930, 327_720), ("Conv2d", 2, 5_088, 20_352)}


def test_tied_embedding_and_head_counted_once(tied_lm):
    report = paramscope.inspect(tied_lm)
    assert report.total == 1600 + 32
    assert report.ties == [["embed.weight", "head.weight"]]
    # state_dict() holds both names, so a naive count over it doubles the tie
    assert sum(t.numel() for t in tied_lm.state_dict().values()) == 3200 + 32
    head = report.tree().children[2]
    assert (head.path, head.parameters, head.aliases) == ("head", 0, [("head.weight", "embed.weight")])
    assert report.canonical_name["head.weight"] == "embed.weight"


def test_non_embedding_drops_the_whole_tie_group(tied_lm):
    report = paramscope.inspect(tied_lm)
    assert report.embedding == 1600
    assert report.non_embedding == 32
    assert paramscope.inspect(tied_lm, exclude_embeddings=True).total == 32


def test_frozen_backbone(frozen_backbone):
    report = paramscope.inspect(frozen_backbone)
    assert (report.total, report.trainable, report.frozen) == (283, 63, 220)
    assert paramscope.count(frozen_backbone, trainable_only=True) == 63
    backbone = report.tree().children[0]
    assert (backbone.parameters, backbone.trainable) == (220, 0)
    assert paramscope.inspect(frozen_backbone, trainable_only=True).total == 63


def test_batchnorm_buffers_and_non_persistent_buffers():
    model = nn.Sequential(nn.Conv2d(3, 8, 1, bias=False), nn.BatchNorm2d(8))
    model.register_buffer("mask", torch.ones(4), persistent=False)
    report = paramscope.inspect(model)
    assert report.total == 24 + 16
    # running_mean 8 + running_var 8 + num_batches_tracked 1 + mask 4
    assert report.buffers == 21
    assert report.buffer_bytes == 8 * 4 + 8 * 4 + 8 + 4 * 4
    buffers = {r.name: (r.dtype, r.persistent) for r in report.tensors if r.role is Role.BUFFER}
    assert buffers == {
        "mask": ("float32", False),
        "1.running_mean": ("float32", True),
        "1.running_var": ("float32", True),
        "1.num_batches_tracked": ("int64", True),
    }
    assert paramscope.inspect(model, include_buffers=False).buffers == 0


def _lazy_model() -> nn.Module:
    return nn.Sequential(nn.LazyConv2d(8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10), nn.Linear(10, 2))


def test_lazy_module_before_dry_run_is_reported_not_crashed():
    report = paramscope.inspect(_lazy_model())
    assert report.total == 22  # only the initialized Linear(10, 2)
    assert report.uninitialized == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert any("uninitialized" in note for note in report.notes)
    assert paramscope.count(_lazy_model()) == 22


def test_lazy_module_materialised_by_meta_dry_run():
    model = _lazy_model()
    report = paramscope.inspect(model, input_shape=(1, 3, 32, 32))
    # conv: 8*3*3*3 + 8 = 224; flatten 8*30*30 = 7200 -> linear 7200*10 + 10 = 72010; then 22
    assert report.total == 224 + 72_010 + 22
    assert report.uninitialized == []
    # the user's model is left exactly as it was
    assert sum(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()) == 4
    assert paramscope.inspect(model, example_input=torch.zeros(2, 3, 32, 32)).total == 72_256


def test_dry_run_failure_is_one_clear_error():
    with pytest.raises(paramscope.ParamscopeError, match=r"dry run with input \(1, 5\) failed"):
        paramscope.inspect(_lazy_model(), input_shape=(1, 5))


def test_shared_submodule_counted_once():
    block = nn.Linear(4, 4)
    model = nn.Sequential(block, nn.ReLU(), block)
    report = paramscope.inspect(model)
    assert report.total == 20
    assert report.ties == [["0.weight", "2.weight"], ["0.bias", "2.bias"]]
    assert [n.path for n in report.modules()] == ["", "0", "2"]


def test_parameter_list_and_dict_and_parameters_on_non_leaf_modules():
    class Mixer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(7))  # held by a non-leaf module
            self.plist = nn.ParameterList([nn.Parameter(torch.zeros(3, 4)), nn.Parameter(torch.zeros(5))])
            self.pdict = nn.ParameterDict({"alpha": nn.Parameter(torch.zeros(2)), "beta": nn.Parameter(torch.zeros(6))})
            self.proj = nn.Linear(2, 2)

    report = paramscope.inspect(Mixer())
    assert [(r.name, r.numel) for r in report.tensors] == [
        ("scale", 7), ("plist.0", 12), ("plist.1", 5), ("pdict.alpha", 2), ("pdict.beta", 6),
        ("proj.weight", 4), ("proj.bias", 2),
    ]
    assert report.total == 38
    root = report.tree()
    assert [r.name for r in root.tensors] == ["scale"]
    assert {(c.path, c.type, c.parameters) for c in root.children} == {
        ("plist", "ParameterList", 17), ("pdict", "ParameterDict", 8), ("proj", "Linear", 6),
    }


def test_mixed_dtypes_bytes():
    model = nn.Module()
    model.a = nn.Parameter(torch.zeros(10, dtype=torch.float32))
    model.b = nn.Parameter(torch.zeros(10, dtype=torch.float16))
    model.c = nn.Parameter(torch.zeros(10, dtype=torch.complex64))
    model.d = nn.Parameter(torch.zeros(10, dtype=torch.bfloat16))
    model.register_buffer("e", torch.zeros(10, dtype=torch.int8))
    report = paramscope.inspect(model)
    assert report.bytes == 40 + 20 + 80 + 20 + 10
    assert {(d.dtype, d.parameters, d.buffers, d.bytes) for d in report.by_dtype} == {
        ("complex64", 10, 0, 80), ("float32", 10, 0, 40), ("float16", 10, 0, 20),
        ("bfloat16", 10, 0, 20), ("int8", 0, 10, 10),
    }


def test_meta_tensors_are_identified_by_object_not_data_ptr():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    assert all(p.data_ptr() == 0 for p in model.parameters())
    report = paramscope.inspect(model)
    assert report.total == 144
    assert report.ties == []


def test_two_parameters_over_the_same_memory_are_one_tensor():
    model = nn.Module()
    model.a = nn.Parameter(torch.zeros(3, 3))
    model.b = nn.Parameter(model.a.data)  # another Parameter object, same storage
    report = paramscope.inspect(model)
    assert report.total == 9
    assert report.ties == [["a", "b"]]


def test_module_cycle_does_not_hang():
    model = nn.Sequential(nn.Linear(2, 2))
    model[0].loop = model  # a child that points back to its parent
    assert paramscope.count(model) == 6


def test_not_a_module_is_a_clear_error():
    with pytest.raises(paramscope.ParamscopeError, match=r"expected a torch\.nn\.Module, got dict"):
        paramscope.inspect({"weight": 1})


def test_only_tensors_met_more_than_once_carry_a_tie_key():
    # named_parameters(remove_duplicate=False) is the reference: the names it lists twice for one object are a tie
    block = nn.Linear(4, 4)
    model = nn.Sequential(block, nn.ReLU(), block, nn.Linear(4, 2))
    repeated: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        repeated.setdefault(id(p), []).append(name)
    inventory = paramscope.sources.open_source(model)
    ties = {r.name: r.tie for r in inventory.tensors}
    assert [name for name, tie in ties.items() if tie is None] == ["3.weight", "3.bias"]
    groups = [names for names in repeated.values() if len(names) > 1]
    assert groups == [["0.weight", "2.weight"], ["0.bias", "2.bias"]]
    assert all(ties[a] == ties[b] is not None for a, b in groups) and ties["0.weight"] != ties["0.bias"]
    assert paramscope.inspect(model).total == sum(p.numel() for p in model.parameters()) == 30


def test_two_parameters_over_one_storage_are_one_tensor():
    weight = torch.zeros(3, 3)
    first, second = nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False)
    first.weight, second.weight = nn.Parameter(weight), nn.Parameter(weight)  # two objects, one storage
    model = nn.Sequential(first, second)
    assert first.weight is not second.weight and first.weight.data_ptr() == second.weight.data_ptr()
    report = paramscope.inspect(model)
    assert (report.total, report.ties) == (9, [["0.weight", "1.weight"]])
