"""The harness itself: it must fail on what it exists to catch (a test that cannot fail is a defect)."""

from __future__ import annotations

import pytest

from ._limits import Result, assert_clean, assert_refused, run_cli


def test_the_example_runs_under_the_limits():
    result = assert_clean(run_cli(), expect=0)
    assert "87,018" in result.stdout


def test_a_missing_file_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "nothing-here.safetensors"
    assert_refused(run_cli(missing), missing, "no such file")


@pytest.mark.parametrize("bad", [
    Result(3, "", "paramscope: internal error: X\n", 0.1),
    Result(-9, "", "", 0.1),
    Result(1, "", "Traceback (most recent call last):\n  ...\nMemoryError\n", 0.1),
    Result(1, "", "a.bin: one\na.bin: two\n", 0.1),
    Result(1, "", "some other file: bad\n", 0.1),
])
def test_the_checks_catch_what_they_exist_for(bad):
    with pytest.raises(AssertionError):
        assert_clean(bad, "a.bin")


@pytest.mark.parametrize(("code", "stderr", "clean"), [
    (0, "", True),
    (1, "paramscope: /t/x.gguf: truncated\n", True),
    (1, "paramscope: /t/other.gguf: truncated\n", False),
    (1, "paramscope: /t/x.gguf: a\nsecond line\n", False),
    (3, "paramscope: internal error: RecursionError\n", False),
    ("hang", "", False),
    ("raised MemoryError", "", False),
    (0, "a warning on stderr\n", False),
])
def test_the_mutation_verdicts(code, stderr, clean):
    from ._mutate import is_clean

    assert is_clean({"path": "/t/x.gguf", "code": code, "stderr": stderr}) is clean


def test_a_shard_name_of_64_kib_makes_a_bounded_line(tmp_path):
    import json

    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "x" * 65_000 + ".safetensors"}}))
    result = assert_refused(run_cli(index), index, "cannot be read: File name too long")
    assert "x...x" in result.stderr
