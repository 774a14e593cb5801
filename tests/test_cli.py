"""The command line: exit codes, one-line errors, every option wired to the report."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from paramscope.cli import main


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_no_source_runs_the_built_in_example():
    code, out, err = run()
    assert code == 0 and err == ""
    assert "87,018" in out
    for name in ("conv1", "conv2", "fc", "[16, 3, 3, 3]", "[10, 8192]"):
        assert name in out


def test_json_validates_against_the_published_schema():
    jsonschema = pytest.importorskip("jsonschema")
    from importlib.resources import files

    _code, out, _ = run("--format", "json")
    doc = json.loads(out)
    schema = json.loads(files("paramscope").joinpath("schema/report-v1.json").read_text())
    jsonschema.validate(doc, schema)
    assert (doc["schema"], doc["total"], doc["trainable"], doc["frozen"], doc["buffers"]) == (
        "paramscope.report/1", 87_018, 87_018, 0, 0,
    )
    assert [t["name"] for t in doc["tensors"]] == [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias",
    ]
    assert doc["tensors"][4] == {
        "name": "fc.weight", "shape": [10, 8192], "dtype": "float32", "role": "parameter",
        "trainable": True, "numel": 81_920, "bytes": 327_680, "tied_to": None,
    }


def test_options_reach_the_report(tmp_path):
    _, out, _ = run("--format", "json", "--filter", "conv*")
    assert json.loads(out)["total"] == 448 + 4640
    _, out, _ = run("--format", "json", "--top", "2")
    assert json.loads(out)["top"] == ["fc.weight", "conv2.weight"]
    _, out, _ = run("--format", "csv", "--by", "type")
    assert out.splitlines() == [
        "type,modules,parameters,percent,bytes", "Linear,1,81930,94.2,327720", "Conv2d,2,5088,5.8,20352",
    ]
    _code, out, _ = run("--format", "json", "--depth", "0")
    assert [m["path"] for m in json.loads(out)["modules"]] == [""]


def test_spec_source_with_kwargs_and_input_shape(tmp_path):
    model = tmp_path / "lazy.py"
    model.write_text(
        "from torch import nn\n"
        "def build(out=4):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(out))\n"
    )
    code, out, _ = run(f"{model}:build", "--kwargs", '{"out": 3}', "--format", "json")
    assert (code, json.loads(out)["total"], json.loads(out)["uninitialized"]) == (0, 0, ["1.weight", "1.bias"])
    code, out, _ = run(f"{model}:build", "--kwargs", '{"out": 3}', "--input-shape", "2,5,2", "--format", "json")
    assert (code, json.loads(out)["total"]) == (0, 10 * 3 + 3)


def test_output_file(tmp_path):
    target = tmp_path / "report.md"
    code, out, _ = run("--format", "markdown", "-o", str(target))
    assert (code, out) == (0, "")
    assert "**parameters**: 87,018" in target.read_text()


@pytest.mark.parametrize(
    "argv",
    [["--depth", "-1"], ["--top", "0"], ["--format", "xml"], ["--args", "{not json"], ["--kwargs", "[1]"],
     ["--input-shape", "a,b"], ["--by", "layer"]],
)
def test_bad_usage_exits_2(argv, capsys):
    code, out, _ = run(*argv)
    assert code == 2
    assert out == ""


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("no/such/path",
         "paramscope: no/such/path: no such file, and not a 'file.py:Name' or 'package.module:Name' spec"),
        ("paramscope.examples:Nope",
         "paramscope: paramscope.examples:Nope: paramscope.examples has no attribute 'Nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(source, message):
    code, out, err = run(source)
    assert (code, out) == (1, "")
    assert err == message + "\n"


def test_errors_in_a_subprocess_have_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "paramscope", str(tmp_path / "missing.py") + ":Net"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "no such Python file" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="no such Python file"):
        main([str(tmp_path / "missing.py") + ":Net", "--debug"])


def test_colour_follows_terminal_and_no_color(monkeypatch):
    class FakeTTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = FakeTTY()
    assert main([], stdout=tty) == 0 and "\x1b[" in tty.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    tty = FakeTTY()
    assert main([], stdout=tty) == 0 and "\x1b[" not in tty.getvalue()
    assert main(["--no-color"], stdout=(plain := FakeTTY())) == 0 and "\x1b[" not in plain.getvalue()
    # a 5 MB page is not poured onto a terminal: -o is asked for; redirected output is fine
    err = io.StringIO()
    assert main(["--format", "html"], stdout=FakeTTY(), stderr=err) == 2
    assert err.getvalue().startswith("paramscope: error: --format html writes a whole page: give -o FILE.html")
    page = io.StringIO()
    assert main(["--format", "html"], stdout=page) == 0 and page.getvalue().startswith("<!DOCTYPE html>")


def test_help_states_the_non_embedding_rule():
    for argv in (["--help"], ["inspect", "--help"]):
        code, out, err = run(*argv)
        assert (code, err) == (0, "")
        assert "Non-embedding = all parameters except the weights of nn.Embedding" in out


def test_console_script_and_module_entry_points_exist():
    root = Path(sys.executable).parent
    result = subprocess.run([str(root / "paramscope"), "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("paramscope ")


def test_memory_estimate_from_the_cli():
    # Linear(4096, 4096): 16,781,312 parameters; bf16 weights are 2 bytes each; ZeRO-3 over 8 GPUs
    code, out, _ = run("torch.nn:Linear", "--args", "[4096, 4096]", "--memory", "--zero", "3", "--gpus", "8",
                       "--format", "json")
    memory = json.loads(out)["memory"]
    assert code == 0
    assert (memory["parameters"], memory["shard"], memory["gpus"]) == (16_781_312, "zero3", 8)
    assert memory["inference_as"]["bf16"] == 2 * 16_781_312
    code, _, err = run("--memory", "--frozen-as", "int3")
    assert code == 2 and err.startswith("paramscope: error: unknown weight format 'int3'")
    assert run("--memory", "--zero", "2", "--fsdp")[0] == 2
    code, _, err = run("--memory", "--format", "html")
    assert code == 2 and err.startswith("paramscope: error: --memory has no html layout")


def test_diff_subcommand_exit_codes(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3, 4), "bias": torch.zeros(3)}, tmp_path / "a.safetensors")
    save_file({"weight": torch.zeros(3, 4), "bias": torch.zeros(3)}, tmp_path / "same.safetensors")
    save_file({"weight": torch.zeros(5, 4), "bias": torch.zeros(5)}, tmp_path / "wide.safetensors")
    a = str(tmp_path / "a.safetensors")
    assert run("diff", a, str(tmp_path / "same.safetensors"))[0] == 0
    assert run("diff", a, str(tmp_path / "wide.safetensors"))[0] == 1
    code, out, err = run("diff", a, str(tmp_path / "missing.safetensors"))
    assert (code, out) == (2, "") and err.count("\n") == 1 and "missing.safetensors" in err


# ---- the last line of defence (issue 11): running out of memory or stack is one line, exit 1


def _failing_run(exc: BaseException):
    def run_that_fails(*_args, **_kwargs):
        raise exc

    return run_that_fails


@pytest.mark.parametrize(("exc", "line"), [
    (MemoryError(), "paramscope: out of memory reading model.onnx\n"),
    (RecursionError("maximum recursion depth exceeded"),
     "paramscope: model.onnx: nested too deeply to read (recursion limit)\n"),
])
def test_memory_and_recursion_errors_are_one_line(monkeypatch, exc, line):
    import paramscope.cli as cli

    monkeypatch.setattr(cli, "run", _failing_run(exc))
    assert run("model.onnx") == (1, "", line)


def test_out_of_memory_while_printing_falls_back_to_the_raw_descriptor(monkeypatch, capfd):
    import paramscope.cli as cli

    class NoMemoryStream(io.StringIO):
        def write(self, text):
            raise MemoryError

    monkeypatch.setattr(cli, "run", _failing_run(MemoryError()))
    assert main(["big.gguf"], stdout=io.StringIO(), stderr=NoMemoryStream()) == 1
    assert capfd.readouterr().err == "paramscope: out of memory reading big.gguf\n"


def test_memory_error_while_reporting_another_error_is_still_one_line(monkeypatch):
    import paramscope.cli as cli
    from paramscope.errors import ParamscopeError

    class FailsOnce(io.StringIO):
        failed = False

        def write(self, text):
            if not self.failed:  # printing the first error runs out of memory
                self.failed = True
                raise MemoryError
            return super().write(text)

    monkeypatch.setattr(cli, "run", _failing_run(ParamscopeError("x.bin", "bad")))
    err = FailsOnce()
    assert main(["x.bin"], stdout=io.StringIO(), stderr=err) == 1
    assert err.getvalue() == "paramscope: out of memory reading x.bin\n"


def test_debug_shows_the_memory_error(monkeypatch):
    import paramscope.cli as cli

    monkeypatch.setattr(cli, "run", _failing_run(MemoryError()))
    with pytest.raises(MemoryError):
        run("x.bin", "--debug")


def test_a_character_the_terminal_cannot_encode_is_escaped_not_fatal():
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert main([], stdout=out, stderr=io.StringIO()) == 0
    out.flush()
    text = out.buffer.getvalue().decode("ascii")
    assert "87,018" in text and "\\u2514" in text  # the tree's "└" shown as its escape


# ---- broken pipes (issue 12): one rule for every command, exit 0 and nothing said


class _ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("argv", [[], ["--format", "json"], ["memory"], ["--memory"], ["diff", "example", "example"],
                                  ["--help"], ["diff", "--help"], ["--version"]])
@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_a_broken_pipe_is_exit_0_quietly(argv, debug):
    err = io.StringIO()
    assert main([*argv, *debug], stdout=_ClosedPipe(), stderr=err) == 0
    assert err.getvalue() == ""


@pytest.mark.parametrize("command", [[], ["diff", "example"]])
def test_a_reader_gone_before_the_output_is_exit_0_quietly(tmp_path, command):
    import os

    from tests.sources._st_helpers import write_sparse

    source = tmp_path / "many.safetensors"
    write_sparse(source, [(f"layer.{i}.weight", "F32", (1,)) for i in range(5000)])  # 200 KB of csv/json
    argv = [*command, str(source), *(["--by", "tensor", "-f", "csv"] if not command else ["-f", "json"])]
    read, write = os.pipe()
    child = subprocess.Popen([sys.executable, "-m", "paramscope", *argv], stdout=write, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
    os.close(write)
    os.close(read)  # no reader left: the first write fails with EPIPE
    _, err = child.communicate(timeout=120)
    assert (child.returncode, err) == (0, b"")


@pytest.mark.parametrize(("argv", "code"), [([], 1), (["memory"], 1), (["diff", "example", "example"], 2)])
def test_a_full_standard_output_is_named_as_such(argv, code):
    import errno

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    err = io.StringIO()
    assert main(argv, stdout=Full(), stderr=err) == code
    assert err.getvalue() == "paramscope: standard output: No space left on device\n"


@pytest.mark.parametrize("where", ["parse", "run"])
def test_an_interrupt_is_130_without_a_traceback(monkeypatch, where):
    import paramscope.cli as cli
    import paramscope.commands as commands

    monkeypatch.setattr(*((commands, "parse") if where == "parse" else (cli, "run")), _failing_run(KeyboardInterrupt()))
    assert run("x.bin") == (130, "", "")


def test_output_dash_is_standard_output(tmp_path, monkeypatch):


    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    assert main(["-f", "csv", "-o", "-"], stdout=out, stderr=err) == 0
    assert "87018" in out.getvalue().replace(",", "") and err.getvalue() == ""
    assert not (tmp_path / "-").exists()


ENDING = """\
import atexit, os, sys
real_exit = os._exit


def spy(code):
    print(f"os._exit({code})", flush=True)
    real_exit(code)


os._exit = spy
case, *argv = sys.argv[1:]
if case == "threading":
    import threading  # noqa: F401
elif case == "atexit":
    atexit.register(print, "handler ran")
sys.argv = ["paramscope", *argv]
from paramscope.__main__ import console
console()
"""


@pytest.mark.parametrize("case", ["plain", "threading", "atexit"])
@pytest.mark.parametrize("readable", [True, False], ids=["file", "truncated"])
def test_the_process_ends_at_once_only_where_shutdown_has_nothing_to_do(case, readable, tmp_path):
    from tests.sources._st_helpers import write_sparse

    path = tmp_path / "m.safetensors"
    if readable:
        write_sparse(path, [("w", "F32", (3, 4))])
    else:
        path.write_bytes(b"abc")
    done = subprocess.run([sys.executable, "-c", ENDING, case, str(path), "--format", "json"], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    code = 0 if readable else 1
    assert done.returncode == code
    lines = done.stdout.splitlines()
    ended = {"plain": [f"os._exit({code})"], "threading": [], "atexit": ["handler ran"]}[case]
    # at once where nothing is left to do; else the usual shutdown (threads joined, handlers run), no os._exit
    assert (lines[-1:] if ended else [line for line in lines if line.startswith("os._exit")]) == ended
    body = "\n".join(lines[:-1] if ended else lines)
    if readable:  # the output flushed whole before the end
        assert json.loads(body)["total"] == 12
        assert done.stderr == ""
    else:
        assert body == ""
        assert done.stderr == f"paramscope: {path}: truncated: 3 bytes, a safetensors file starts with 8\n"
