"""paramscope inspect (the default command): options that need --memory, or make no sense with it, are
bad usage in one line instead of being ignored."""

from __future__ import annotations

import json

import pytest

from paramscope.commands.memory import ESTIMATE_OPTIONS

from ._run import run

MEMORY_ONLY = [
    (["--optimizer", "adam"], "--optimizer applies"),
    (["--precision", "fp32"], "--precision applies"),
    (["--zero", "3"], "--zero applies"),
    (["--fsdp"], "--fsdp applies"),
    (["--gpus", "8"], "--gpus applies"),
    (["--frozen-as", "nf4"], "--frozen-as applies"),
    (["--zero", "3", "--gpus", "8"], "--zero, --gpus apply"),  # issue 12's example: it printed a plain tree
    # inference (issue 14)
    (["--arch"], "--arch applies"),
    (["--context", "100"], "--context applies"),
    (["--batch", "8"], "--batch applies"),
    (["--kv-dtype", "fp8"], "--kv-dtype applies"),
    (["--runtime", "vllm"], "--runtime applies"),
    (["--fit", "24GiB"], "--fit applies"),
    (["--weights-as", "int4"], "--weights-as applies"),
]


def test_every_estimate_option_is_checked():
    assert sorted(flag for argv, _ in MEMORY_ONLY for flag in argv if flag.startswith("--")) == sorted(
        [*ESTIMATE_OPTIONS.values(), "--zero", "--gpus"])


@pytest.mark.parametrize(("argv", "said"), MEMORY_ONLY)
def test_estimate_options_without_memory_are_bad_usage(argv, said):
    assert run(*argv) == (2, "", f"paramscope: error: {said} only with --memory (or use 'paramscope memory SOURCE')\n")


@pytest.mark.parametrize(("argv", "said"), [
    (["--depth", "2"], "--depth has"),
    (["--by", "module"], "--by has"),  # even the default, when given: the user asked for something
    (["--top", "3"], "--top has"),
    (["--depth", "0", "--top", "1"], "--depth, --top have"),
])
def test_layout_options_with_memory_are_bad_usage(argv, said):
    assert run("--memory", *argv) == (2, "", f"paramscope: error: {said} no meaning with --memory\n")


def test_by_module_is_the_default():
    assert run("--format", "csv") == run("--format", "csv", "--by", "module")
    code, out, _ = run("--format", "csv")
    assert (code, out.splitlines()[0]) == (0, "module,type,parameters,percent,trainable,buffers,bytes")


def test_the_memory_alias_is_the_memory_command():
    argv = ["torch.nn:Linear", "--args", "[64, 32]", "--zero", "2", "--gpus", "4", "--format", "json"]
    alias = run(*argv, "--memory")
    command = run("memory", *argv)
    assert alias == command
    assert alias[0] == 0 and json.loads(alias[1])["memory"]["parameters"] == 64 * 32 + 32
