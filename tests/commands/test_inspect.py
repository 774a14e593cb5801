"""paramscope inspect (the default command): options that need --memory, or make no sense with it, are
bad usage in one line instead of being ignored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paramscope.commands.memory import ESTIMATE_OPTIONS

from ._run import run, safetensors

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


# ---- issue 13, item 8: the small ones --------------------------------------------------------------


@pytest.mark.parametrize("flags", [["--trainable-only"], ["--trainable-only", "--memory"]])
def test_trainable_only_on_a_file_is_bad_usage_not_zeros(tmp_path, flags):
    source = safetensors(tmp_path / "m.safetensors", {"w": (3, 4)})
    code, out, err = run(source, *flags)
    assert (code, out) == (2, "")
    assert err == ("paramscope: error: --trainable-only needs a source that knows requires_grad (a module or a "
                   "file.py:Name spec); safetensors files do not record it\n")


def test_trainable_only_still_keeps_the_trainable_parameters_of_a_module():
    code, out, _ = run("--trainable-only", "--format", "json")
    assert code == 0 and json.loads(out)["total"] == 87_018  # the example: every parameter requires grad


@pytest.mark.parametrize("shape", ["1,3,x", "1,,3", "1x3x", "x", "1,3,32.5"])
def test_an_input_shape_that_is_not_all_numbers_is_bad_usage(shape):
    code, out, err = run("--input-shape", shape)
    assert (code, out) == (2, "")
    assert f"input shape must be comma-separated integers, got {shape!r}" in err


@pytest.mark.parametrize(("shape", "dims"), [("1,3,32,32", (1, 3, 32, 32)), ("1x3x32x32", (1, 3, 32, 32)),
                                             ("(8,)", (8,)), ("[2, 5]", (2, 5))])
def test_input_shapes_people_write(shape, dims):
    from paramscope.sources.live import parse_shape

    assert parse_shape(shape) == dims


def test_the_root_row_names_the_file_not_its_path(tmp_path):
    source = safetensors(tmp_path / "m.safetensors", {"a.w": (3,), "b.w": (5,)})
    code, out, _ = run(str(Path(source).resolve()), "--no-color")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith(f"{Path(source).resolve()}  (safetensors)")  # the title: the path
    root = next(line for line in lines if line.endswith("100.0%  32 B"))
    assert root.split() == ["m.safetensors", "8", "100.0%", "32", "B"]


def test_percentages_are_rounded_once_and_alike_in_every_renderer(tmp_path):
    # 49 of 100,000 is 0.049%: one rounding to one decimal gives 0.0; rounding to 0.05 first gave "0.1%"
    source = safetensors(tmp_path / "m.safetensors", {"a.w": (49,), "b.w": (99_951,)})
    tree = run(source, "--no-color")[1]
    assert [line.split()[-3] for line in tree.splitlines() if line.startswith(("├── a ", "└── b "))] == \
        ["0.0%", "100.0%"]
    csv_rows = {row.split(",")[0]: row.split(",")[3] for row in run(source, "--format", "csv")[1].splitlines()}
    assert (csv_rows["a"], csv_rows["b"]) == ("0.0", "100.0")
    modules = {m["path"]: m["percent"] for m in json.loads(run(source, "--format", "json")[1])["modules"]}
    assert (modules["a"], modules["b"]) == (0.0, 100.0)
    markdown = run(source, "--format", "markdown")[1]
    assert "| a | - | 49 | 0.0% |" in markdown and "| b | - | 99,951 | 100.0% |" in markdown


def test_a_config_without_transformers_names_the_transformers_extra(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    script = ("import sys; sys.modules['torch'] = None; from paramscope.cli import main; "
              f"sys.exit(main([{str(config)!r}]))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 1
    assert "pip install 'paramscope[transformers]'" in result.stderr


def test_top_shows_no_internal_tie_identifiers(tied_lm):
    import paramscope

    report = paramscope.inspect(tied_lm)
    top = report.top(1)
    assert [(r.name, r.tie) for r in top] == [(report.ties[0][0], None)]
    assert "'data'" not in repr(top)  # live ties were keyed by ('data', device, storage pointer, ...)


def test_the_license_file_matches_the_declared_license():
    import tomllib

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert (project["license"], project["license-files"]) == ("MIT", ["LICENSE"])
    assert (root / "LICENSE").read_text().startswith("MIT License\n")
