"""paramscope diff A B: exit codes as diff(1), with the shared rules (one line, --debug, broken pipes)."""

from __future__ import annotations

import io

import pytest

import paramscope.commands.diff as command
from paramscope.cli import main

from ._run import run, safetensors


@pytest.fixture
def files(tmp_path):
    return {
        "a": safetensors(tmp_path / "a.safetensors", {"weight": (3, 4), "bias": (3,)}),
        "same": safetensors(tmp_path / "same.safetensors", {"weight": (3, 4), "bias": (3,)}),
        "wide": safetensors(tmp_path / "wide.safetensors", {"weight": (5, 4), "bias": (5,)}),
        "missing": str(tmp_path / "missing.safetensors"),
    }


def test_exit_codes(files):
    assert run("diff", files["a"], files["same"])[0] == 0
    code, out, err = run("diff", files["a"], files["wide"])
    assert (code, err) == (1, "") and "weight: [3, 4] -> [5, 4]" in out
    code, out, err = run("diff", files["a"], files["missing"])
    assert (code, out) == (2, "")
    assert err == f"paramscope: {files['missing']}: no such file, and not a 'file.py:Name' or " \
                  "'package.module:Name' spec\n"


def _raises(exc):
    def run_that_fails(*_args):
        raise exc
    return run_that_fails


def test_an_internal_error_is_exit_3_and_debug_shows_it(files, monkeypatch):
    monkeypatch.setattr(command, "run", _raises(KeyError("boom")))
    assert run("diff", files["a"], files["same"]) == (
        3, "", "paramscope: internal error: KeyError: 'boom' (--debug shows a traceback)\n")
    with pytest.raises(KeyError):
        run("diff", files["a"], files["same"], "--debug")


def test_out_of_memory_names_both_sources_and_is_trouble(monkeypatch):
    monkeypatch.setattr(command, "run", _raises(MemoryError()))
    assert run("diff", "a.gguf", "b.bin") == (2, "", "paramscope: out of memory reading a.gguf, b.bin\n")


def test_a_broken_pipe_is_exit_0_quietly(files):
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    err = io.StringIO()
    assert main(["diff", files["a"], files["wide"]], stdout=Closed(), stderr=err) == 0
    assert err.getvalue() == ""
