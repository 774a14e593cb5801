"""Models named as Python: file.py:Name and package.module:Name, built on the meta device."""

from __future__ import annotations

import textwrap

import pytest

import paramscope
from paramscope.sources.spec import looks_like_spec

MODEL_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, width=8, depth=2):
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))

    def make_net():
        return Net(4, 1)

    INSTANCE = nn.Linear(3, 3)
    NOT_A_MODEL = 42

    def broken():
        raise ValueError("no such width")

    def returns_a_string():
        return "hello"
    """
)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(MODEL_FILE)
    return path


def test_file_spec_builds_on_meta_with_kwargs(model_file):
    report = paramscope.inspect(f"{model_file}:Net", kwargs={"width": 16, "depth": 3})
    assert report.total == 3 * (16 * 16 + 16) == 816
    assert report.source == f"{model_file}:Net"


def test_file_spec_with_args_factory_and_instance(model_file):
    assert paramscope.inspect(f"{model_file}:Net", args=[10, 1]).total == 110
    assert paramscope.inspect(f"{model_file}:make_net").total == 20
    assert paramscope.inspect(f"{model_file}:INSTANCE").total == 12


def test_meta_is_the_default_device(model_file):
    from paramscope.sources.spec import build

    assert {p.device.type for p in build(f"{model_file}:Net").parameters()} == {"meta"}
    assert {p.device.type for p in build(f"{model_file}:Net", device="cpu").parameters()} == {"cpu"}


def test_package_module_spec():
    assert paramscope.inspect("paramscope.examples:MyModel").total == 87_018
    assert paramscope.inspect("torch.nn:Linear", args=[5, 7]).total == 42


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        (":Missing", "has no attribute 'Missing'"),
        (":NOT_A_MODEL", "is a int, not a Module class or factory"),
        (":broken", "building the model failed: ValueError: no such width"),
        (":returns_a_string", "returned a str, not a torch.nn.Module"),
    ],
)
def test_spec_errors_are_one_line(model_file, suffix, message):
    with pytest.raises(paramscope.ParamscopeError, match=message):
        paramscope.inspect(f"{model_file}{suffix}")


def test_missing_file_and_module(tmp_path):
    with pytest.raises(paramscope.ParamscopeError, match="no such Python file"):
        paramscope.inspect(f"{tmp_path}/absent.py:Net")
    expected = r"cannot import module 'no_such_pkg_xyz\.models': No module named 'no_such_pkg_xyz'"
    with pytest.raises(paramscope.ParamscopeError, match=expected):
        paramscope.inspect("no_such_pkg_xyz.models:Net")


def test_import_failure_in_user_file(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(paramscope.ParamscopeError, match=r"importing .* failed: RuntimeError: boom"):
        paramscope.inspect(f"{bad}:Net")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("model.py:Net", True), ("pkg.mod:Net", True), ("a/b/model.py:make", True), ("model.safetensors", False),
     ("hf:org/name", False), ("no-colon", False), ("pkg.mod:1bad", False)],
)
def test_looks_like_spec(text, expected):
    assert looks_like_spec(text) is expected
