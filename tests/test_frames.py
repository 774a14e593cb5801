"""Report.to_pandas(): the frames hold the report's figures, checked against torch's own counts."""

from __future__ import annotations

import sys

import pytest

import paramscope
from paramscope.errors import MissingExtraError
from paramscope.frames import MODULE_COLUMNS, TENSOR_COLUMNS, Frames


def _counted(tensors):
    """Parameters by the report's rule, recomputed from the frame: each tie group once."""
    rows = tensors[tensors["tied_to"].isna() & (tensors["role"] == "parameter")]
    return int(rows["numel"].sum())


def test_article_model_frames(article_model):
    frames = paramscope.inspect(article_model).to_pandas()
    assert isinstance(frames, Frames)
    tensors, modules = frames
    assert tuple(tensors.columns) == TENSOR_COLUMNS
    assert tuple(modules.columns) == MODULE_COLUMNS
    expected = {n: p.numel() for n, p in article_model.named_parameters()}
    assert dict(zip(tensors["name"], tensors["numel"].astype(int), strict=True)) == expected
    assert _counted(tensors) == sum(expected.values()) == 87_018
    assert list(tensors["shape"]) == [tuple(p.shape) for p in article_model.parameters()]
    assert tensors["trainable"].all()
    assert int(tensors["bytes"].sum()) == sum(p.numel() * p.element_size() for p in article_model.parameters())
    root = modules.iloc[0]
    assert root["path"] == "" and root["parameters"] == 87_018 and root["depth"] == 0
    by_path = modules.set_index("path")
    for name, child in article_model.named_children():
        assert by_path.loc[name, "parameters"] == sum(p.numel() for p in child.parameters())
        assert by_path.loc[name, "type"] == type(child).__name__
    assert by_path.loc["fc", "percent"] == round(100 * 81_930 / 87_018, 1)


def test_tied_alias_counted_once(tied_lm):
    tensors, modules = paramscope.inspect(tied_lm).to_pandas()
    assert len(tensors) == 4  # embed.weight, norm.weight, norm.bias, head.weight
    head = tensors.set_index("name").loc["head.weight"]
    assert head["tied_to"] == "embed.weight"
    # torch's parameters() yields a shared tensor once: the independent count
    assert _counted(tensors) == sum(p.numel() for p in tied_lm.parameters()) == 1_632
    assert modules.set_index("path").loc["head", "parameters"] == 0  # counted under embed


def test_frozen_and_trainable(frozen_backbone):
    tensors, modules = paramscope.inspect(frozen_backbone).to_pandas()
    trainable = dict(zip(tensors["name"], tensors["trainable"], strict=True))
    assert trainable == {n: p.requires_grad for n, p in frozen_backbone.named_parameters()}
    assert modules.iloc[0]["trainable"] == sum(p.numel() for p in frozen_backbone.parameters() if p.requires_grad)


def test_file_report_has_unknown_trainability(tmp_path):
    import torch
    from safetensors.torch import save_file

    state = {"a.weight": torch.zeros(3, 4), "a.ids": torch.zeros(5, dtype=torch.int64)}
    save_file(state, tmp_path / "m.safetensors")
    tensors, modules = paramscope.inspect(tmp_path / "m.safetensors").to_pandas()
    assert tensors["trainable"].isna().all()
    assert modules["trainable"].isna().all()
    assert dict(zip(tensors["name"], tensors["role"], strict=True)) == {"a.weight": "parameter", "a.ids": "buffer"}
    assert _counted(tensors) == 12
    assert set(tensors["origin"]) == {"m.safetensors"}


def test_huge_counts_stay_exact():
    from paramscope.records import Inventory, TensorRecord

    big = (2**40, 2**30)  # 2**70 elements: beyond int64, only a lying header declares that
    report = paramscope.Report(Inventory("x", "test", [TensorRecord("w", big, "float32")]))
    tensors, _ = report.to_pandas()
    assert tensors["numel"].iloc[0] == 2**70


def test_missing_pandas_names_the_extra(monkeypatch, article_model):
    report = paramscope.inspect(article_model)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingExtraError) as info:
        report.to_pandas()
    assert info.value.extra == "pandas"
    assert "paramscope[pandas]" in str(info.value)
