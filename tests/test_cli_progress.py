"""The CLI's progress bar while reading remote headers: on a terminal only, never with --no-progress,
never on standard output, and the output itself unchanged by it."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from paramscope.cli import ProgressBar, main

sys.path.insert(0, str(Path(__file__).parent / "sources"))
from _fake_hub import FakeHub
from _st_helpers import LLAMA2_7B, LLAMA2_7B_PARAMS, llama_tensors, write_sharded


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A 7B-shaped checkpoint in 4 sparse shards behind a plain loopback URL."""
    directory = tmp_path_factory.mktemp("plain")
    tensors = [(name, "BF16", shape) for name, shape in llama_tensors(**LLAMA2_7B)]
    index = write_sharded(directory, tensors, 4)
    hub = FakeHub().start()
    hub.plain = directory
    yield f"{hub.url}/plain/{index.name}"
    hub.stop()


def run(argv: list[str], stderr: io.StringIO) -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, stdout=out, stderr=stderr)
    return code, out.getvalue()


def test_bar_on_a_terminal(served):
    err = Terminal()
    code, out = run([served, "--format", "json"], err)
    assert code == 0
    assert json.loads(out)["totals"]["parameters"] == LLAMA2_7B_PARAMS if "totals" in json.loads(out) else True
    assert _total(out) == LLAMA2_7B_PARAMS
    assert "reading headers" in err.getvalue()
    assert "4/4" in err.getvalue()


def test_no_bar_when_not_a_terminal(served):
    err = io.StringIO()
    code, out = run([served, "--format", "json"], err)
    assert code == 0 and err.getvalue() == ""
    assert _total(out) == LLAMA2_7B_PARAMS


def test_no_bar_with_no_progress(served):
    err = Terminal()
    code, out = run([served, "--format", "json", "--no-progress"], err)
    assert code == 0 and err.getvalue() == ""
    assert _total(out) == LLAMA2_7B_PARAMS


def test_local_sources_draw_nothing(tmp_path):
    directory = tmp_path / "ckpt"
    write_sharded(directory, [(name, "BF16", shape) for name, shape in llama_tensors(**LLAMA2_7B)], 2)
    err = Terminal()
    code, out = run([str(directory), "--format", "json"], err)
    assert code == 0 and err.getvalue() == ""
    assert _total(out) == LLAMA2_7B_PARAMS


def test_progress_bar_callable_directly():
    err = Terminal()
    bar = ProgressBar(err)
    bar(0, 3)
    bar(3, 3, 12_345)
    bar.close()
    assert "3/3" in err.getvalue() and "12.1 KiB fetched" in err.getvalue()


def test_remote_error_is_one_line_exit_1(served):
    err = io.StringIO()
    code, _ = run([served.replace("model.safetensors.index.json", "nope.safetensors"), "--no-progress"], err)
    assert code == 1
    assert err.getvalue().count("\n") == 1 and "not found (404)" in err.getvalue()


def _total(out: str) -> int:
    """The parameter total from --format json."""
    return json.loads(out)["total"]
