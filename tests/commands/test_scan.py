"""``paramscope scan``: outputs (table, CSV, JSON Lines, Parquet), exit codes and gates, the cache, usage errors,
escaping in every format; hostile targets end cleanly in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ..hostile._limits import assert_clean, run_cli
from ._run import run

EVIL = "evil\x1b[31m=calc,\"quoted\""


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo never run",))


@pytest.fixture
def zoo(tmp_path) -> Path:
    """Three safetensors models (12, 6 and 30 parameters), one with a hostile name; a pickled call; garbage."""
    root = tmp_path / "zoo"
    root.mkdir()
    save_file({"w": np.zeros((3, 4), dtype=np.float32)}, str(root / "a.safetensors"))
    save_file({"w": np.zeros((2, 3), dtype=np.float16)}, str(root / f"{EVIL}.safetensors"))
    big = root / "big"
    big.mkdir()
    save_file({"w": np.zeros((5, 6), dtype=np.float32)}, str(big / "model-00001-of-00001.safetensors"))
    (root / "call.pkl").write_bytes(pickle.dumps(_Evil(), protocol=4))
    (root / "junk.ckpt").write_bytes(b"\x00" * 32)
    return root


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_jsonl_rows_and_the_exit_code(zoo):
    code, out, err = run("scan", str(zoo), "-f", "jsonl")
    rows = _jsonl(out)
    by_name = {Path(r["source"]).name: r for r in rows}
    assert len(rows) == 5
    assert by_name["a.safetensors"]["parameters"] == 12 and by_name["a.safetensors"]["stored_bytes"] == 48
    assert by_name["big"]["parameters"] == 30 and by_name["big"]["dtypes"] == "float32"
    assert by_name["call.pkl"]["safety"] == "needs-trust" and by_name["call.pkl"]["error"]
    assert by_name["junk.ckpt"]["safety"] == "unreadable" and by_name["junk.ckpt"]["error"]
    # two rows could not be read: exit 1 (the default gate, --fail-on error), one line saying so
    assert code == 1
    assert err == "paramscope: scan: 2 of 5 models failed (error: 2)\n"


def test_fail_on_none_and_unsafe(zoo):
    code, _, err = run("scan", str(zoo), "-f", "jsonl", "--fail-on", "none")
    assert (code, err) == (0, "")
    code, _, err = run("scan", str(zoo / "a.safetensors"), str(zoo / "call.pkl"), "-f", "jsonl",
                       "--fail-on", "unsafe")
    assert code == 1 and err == "paramscope: scan: 1 of 2 models failed (unsafe: 1)\n"


def test_size_gates(zoo):
    code, _, err = run("scan", str(zoo / "a.safetensors"), str(zoo / "big"), "-f", "jsonl", "--max-params", "20")
    assert code == 1 and err == "paramscope: scan: 1 of 2 models failed (max-params: 1)\n"
    code, _, err = run("scan", str(zoo / "a.safetensors"), "-f", "jsonl", "--max-bytes", "48")
    assert (code, err) == (0, "")
    code, _, _ = run("scan", str(zoo / "a.safetensors"), "-f", "jsonl", "--max-bytes", "0.04kB")
    assert code == 1


def test_sort_by_size(zoo):
    _, out, _ = run("scan", str(zoo), "-f", "jsonl", "--sort", "size", "--fail-on", "none")
    assert [r["stored_bytes"] for r in _jsonl(out)][:3] == [120, 48, 12]


def test_csv_is_escaped_and_neutralised(zoo):
    _, out, _ = run("scan", str(zoo), "-f", "csv", "--fail-on", "none")
    assert "\x1b" not in out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["source", "formats", "parameters", "active", "stored_bytes", "dtypes", "quantization",
                             "tie_groups", "files", "safety", "safety_detail", "error"]
    evil = next(r for r in rows if "evil" in r["source"])
    assert evil["source"].startswith(str(zoo)) and "\\x1b" in evil["source"]
    assert evil["parameters"] == "6"


def test_table_and_jsonl_escape_names(zoo):
    for fmt in ("table", "jsonl"):
        _, out, _ = run("scan", str(zoo), "-f", fmt, "--fail-on", "none")
        assert "\x1b" not in out
    _, out, _ = run("scan", str(zoo / "a.safetensors"), "--fail-on", "none")
    header, line = out.splitlines()
    assert header.split()[:4] == ["SOURCE", "FORMAT", "PARAMS", "ACTIVE"]
    assert line.split()[1:4] == ["safetensors", "12", "12"]


def test_parquet(zoo, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "rows.parquet"
    code, out, _ = run("scan", str(zoo), "-f", "parquet", "-o", str(target), "--memory", "--fail-on", "none")
    assert (code, out) == (0, "")
    table = pq.read_table(target).to_pylist()
    assert len(table) == 5
    row = next(r for r in table if r["source"].endswith("a.safetensors"))
    assert row["parameters"] == 12 and row["inference_bytes"] == 48
    assert all("\x1b" not in r["source"] for r in table)


def test_memory_columns(zoo):
    from paramscope.memory import estimate
    from paramscope.pipeline import inspect

    _, out, _ = run("scan", str(zoo / "big"), "-f", "jsonl", "--memory")
    (row,) = _jsonl(out)
    figures = estimate(inspect(str(zoo / "big")))
    assert (row["inference_bytes"], row["training_bytes"]) == (figures.inference_stored, figures.training_total)


def test_cache_and_resume_on_the_command_line(zoo, tmp_path):
    cache = tmp_path / "rows.jsonl"
    _, first, _ = run("scan", str(zoo), "-f", "jsonl", "--cache", str(cache), "--fail-on", "none")
    assert len(cache.read_text().splitlines()) == 3  # the rows that were read; failures are retried
    _, again, _ = run("scan", str(zoo), "-f", "jsonl", "--cache", str(cache), "--resume", "--fail-on", "none")
    assert again == first


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--resume"], "--resume needs --cache"),
    (["-f", "parquet"], "give -o FILE.parquet"),
    (["--shard", "3/3"], "0 <= I < N"),
    (["--fail-on", "maybe"], "choose from"),
    (["--max-params", "lots"], "not a number"),
])
def test_usage_errors(zoo, argv, fragment):
    code, out, err = run("scan", str(zoo), *argv)
    assert code == 2 and out == ""
    assert fragment in err and len(err.splitlines()) == 1


def test_hostile_targets_end_cleanly(tmp_path):
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    (tmp_path / "loop").symlink_to(tmp_path)
    (tmp_path / "huge.safetensors").write_bytes((1 << 62).to_bytes(8, "little") + b"{")
    listing = tmp_path / "list.txt"
    listing.write_text(f"@{listing}\n{tmp_path}\n")
    for target in (str(tmp_path), f"@{listing}", f"@{tmp_path / 'absent.txt'}", "hf:*/*", "s3://"):
        result = run_cli("scan", target, "-f", "jsonl", timeout=60)
        assert_clean(result)


def test_workers_never_meet_a_half_imported_module(zoo):
    """Each run is a fresh process whose worker threads import the readers lazily: before the scan imported
    them first, two threads could meet `typing` half initialised ("internal error: ... no attribute
    'ClassVar'") in about half of the runs with --memory."""
    for _ in range(4):
        result = run_cli("scan", str(zoo), "--format", "jsonl", "--fail-on", "none", "--memory", "--workers", "4")
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(rows) == 5
        assert not [row for row in rows if "internal error" in str(row.get("error"))]
