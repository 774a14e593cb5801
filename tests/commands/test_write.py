"""_common.write: a command's output, whole or in pieces, to standard output or -o FILE, each piece written as it
is made, with the same text, escapes and errors either way."""

from __future__ import annotations

import argparse
import gc
import io
import json

import pytest

from paramscope.commands._common import STDOUT, write

from ._run import run, safetensors


def _args(output=None) -> argparse.Namespace:
    return argparse.Namespace(output=output)


class Pieces:
    """Pieces of text handed out one at a time, remembering how many were taken and whether it was closed."""

    def __init__(self, *pieces: str, fail_at: int | None = None) -> None:
        self.pieces, self.fail_at, self.taken, self.closed = pieces, fail_at, 0, False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.taken == self.fail_at:
            raise RuntimeError("renderer failed")
        if self.taken == len(self.pieces):
            raise StopIteration
        self.taken += 1
        return self.pieces[self.taken - 1]

    def close(self) -> None:
        self.closed = True


class Stream(io.StringIO):
    """A standard output that records each write, or fails on the ``fail_at``-th with ``error``."""

    def __init__(self, encoding: str = "utf-8", fail_at: int | None = None, error: OSError | None = None) -> None:
        super().__init__()
        self._encoding, self.fail_at, self.error, self.writes = encoding, fail_at, error, []

    @property
    def encoding(self) -> str:
        return self._encoding

    def write(self, text: str) -> int:
        if len(self.writes) == self.fail_at:
            raise self.error
        text.encode(self._encoding)  # a character the encoding lacks fails as a real stream's would
        self.writes.append(text)
        return super().write(text)


def test_pieces_go_to_standard_output_one_write_each():
    out = Stream()
    pieces = Pieces("{\n", "a" * 10, "\n}\n")
    write(pieces, _args(), out)
    assert out.writes == ["{\n", "a" * 10, "\n}\n"] and pieces.closed


def test_text_and_pieces_write_the_same_file(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    text = 'caf\u00e9 \ud800 "x"\n'  # a lone surrogate slipped past text.safe: an escape, not a failure
    write(text, _args(str(whole)), Stream())
    write(Pieces("caf\u00e9 ", "\ud800", ' "x"\n'), _args(str(parts)), Stream())
    assert whole.read_bytes() == parts.read_bytes() == b'caf\xc3\xa9 \\ud800 "x"\n'


def test_a_character_the_terminal_lacks_is_escaped_in_its_own_piece():
    out = Stream(encoding="ascii")
    write(Pieces("a\u00b7b ", "plain ", "\u00e9"), _args(), out)
    assert out.getvalue() == "a\\xb7b plain \\xe9"


def test_a_renderer_failing_at_its_first_piece_leaves_the_file_as_it_was(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("kept")
    pieces = Pieces("x", fail_at=0)
    with pytest.raises(RuntimeError):
        write(pieces, _args(str(target)), Stream())
    assert target.read_text() == "kept" and pieces.closed


def test_an_error_writing_names_standard_output_and_stops_the_pieces():
    pieces = Pieces("a", "b", "c")
    out = Stream(fail_at=1, error=OSError(28, "No space left on device"))
    with pytest.raises(OSError) as caught:
        write(pieces, _args(), out)
    assert (caught.value.filename, caught.value.errno, pieces.taken, pieces.closed) == (STDOUT, 28, 2, True)


def test_a_broken_pipe_stays_a_broken_pipe_and_resumes_the_collector():
    from paramscope.records import Inventory, TensorRecord
    from paramscope.renderers import RenderOptions, render_chunks
    from paramscope.renderers.json import _CHUNK
    from paramscope.report import Report

    report = Report(Inventory("w", "t", [TensorRecord(f"t{i}", (2,), "float32") for i in range(2 * _CHUNK)]))
    out = Stream(fail_at=3, error=BrokenPipeError(32, "Broken pipe"))
    with pytest.raises(BrokenPipeError):
        write(render_chunks(report, "json", RenderOptions()), _args(), out)
    assert gc.isenabled()


def test_json_through_the_cli_to_a_file_and_to_standard_output_is_one_text(tmp_path):
    source = safetensors(tmp_path / "m.safetensors", {f"layers.{i}.weight": (i + 1, 4) for i in range(5000)})
    code, printed, err = run(source, "--format", "json")
    assert (code, err) == (0, "")
    assert run(source, "--format", "json", "-o", str(tmp_path / "out.json")) == (0, "", "")
    assert (tmp_path / "out.json").read_text() == printed
    assert len(json.loads(printed)["tensors"]) == 5000
