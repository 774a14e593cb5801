"""What a red-team pass over the integrated build found (issue 11): each test is an input that broke the
promise before its fix (a hang, a quadratic blow-up, a message not naming the source), run as a user would
meet it, under the harness's limits."""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from pathlib import Path

import pytest

from ._limits import assert_clean, assert_refused, run_cli

sys.path.insert(0, str(Path(__file__).parents[1] / "sources"))
from _fake_hub import FakeHub, write_repo

REPO = "acme/tiny"


def safetensors(path: Path, names: tuple[str, ...] = ("a.weight",)) -> Path:
    header = {name: {"dtype": "F32", "shape": [2, 2], "data_offsets": [16 * i, 16 * (i + 1)]}
              for i, name in enumerate(names)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(16 * len(names)))
    return path


# ---- -o FILE ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [(), ("memory",)])
def test_output_to_a_fifo_nobody_reads_is_refused_not_waited_on(tmp_path, command):
    # Before: open(FIFO, "w") waits for a reader forever (the run hung past the 60 s bound).
    source = safetensors(tmp_path / "model.safetensors")
    os.mkfifo(tmp_path / "out")
    result = run_cli(*command, source, "-o", tmp_path / "out", timeout=20)
    assert_refused(result, tmp_path / "out", "nothing reads it")


def test_output_to_a_socket_is_one_line(tmp_path):
    source = safetensors(tmp_path / "model.safetensors")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        assert_refused(run_cli(source, "-o", tmp_path / "sock", timeout=20), tmp_path / "sock", "nothing reads it")


def test_output_to_a_fifo_with_a_reader_is_written(tmp_path):
    import threading

    source = safetensors(tmp_path / "model.safetensors")
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the reader must hold the FIFO open before paramscope opens it
        if any(os.path.realpath(f"/proc/self/fd/{fd}") == str(fifo) for fd in os.listdir("/proc/self/fd")):
            break
        time.sleep(0.01)
    assert_clean(run_cli(source, "-o", fifo, "-f", "json", timeout=20), expect=0)
    reader.join(10)
    assert json.loads(got[0])["total"] == 4


# ---- --filter -----------------------------------------------------------------------------------------


def test_a_filter_pattern_past_the_cap_is_bad_usage_at_once(tmp_path):
    # Before: fnmatch translates an unclosed '[' by scanning to the pattern's end: '[' * 20,000 took 17 s,
    # and an argument may be 128 KiB (hours).
    source = safetensors(tmp_path / "model.safetensors")
    result = assert_clean(run_cli(source, "--filter", "[" * 100_000), expect=2)
    assert "--filter: a pattern of 100,000 characters; at most 1,000" in result.stderr
    assert result.seconds < 10


@pytest.mark.parametrize("pattern", ["[" * 1_000, "*" * 999 + "x", "*a" * 499 + "x"])
def test_a_filter_pattern_at_the_cap_ends_quickly(tmp_path, pattern):
    source = safetensors(tmp_path / "model.safetensors", ("a" * 60_000, "a.weight"))
    result = assert_clean(run_cli(source, "--filter", pattern, "-f", "json"), expect=0)
    assert result.seconds < 10
    assert json.loads(result.stdout)["total"] == 0  # neither name has a "[" or ends in x


# ---- the Hugging Face token file ------------------------------------------------------------------------


@pytest.fixture
def hub(tmp_path):
    server = FakeHub().start()
    server.add_repo(REPO, write_repo(tmp_path / "repo", {"config.json": {"model_type": "acme"}}))
    safetensors(tmp_path / "repo" / "model.safetensors")
    yield server
    server.stop()


def hub_env(hub: FakeHub, home: Path, **more: str) -> dict[str, str]:
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1", **more}
    return {k: v for k, v in env.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}


@pytest.fixture(autouse=True)
def _no_token_in_the_environment(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)


def test_the_fixture_hub_reads(hub, tmp_path):
    result = assert_clean(run_cli(f"hf:{REPO}", "-f", "json", env=hub_env(hub, tmp_path / "home")), expect=0)
    assert json.loads(result.stdout)["total"] == 4


@pytest.mark.parametrize("via", ["HF_HOME", "HF_TOKEN_PATH"])
def test_a_fifo_as_the_saved_token_is_refused_not_waited_on(hub, tmp_path, via):
    # Before: huggingface_hub's get_token() read_text()s the token file: a FIFO there blocked forever.
    (tmp_path / "home").mkdir()
    fifo = tmp_path / "home" / "token"
    os.mkfifo(fifo)
    more = {"HF_TOKEN_PATH": str(fifo)} if via == "HF_TOKEN_PATH" else {}
    result = run_cli(f"hf:{REPO}", env=hub_env(hub, tmp_path / "home", **more), timeout=30)
    assert_refused(result, f"hf:{REPO}", f"the Hugging Face token file {fifo} is a named pipe (FIFO)")


def test_dev_zero_as_the_saved_token_is_refused_before_it_is_read(hub, tmp_path):
    # Before: read until memory ran out (4.5 s, then "out of memory").
    result = run_cli(f"hf:{REPO}", env=hub_env(hub, tmp_path / "home", HF_TOKEN_PATH="/dev/zero"), timeout=30)
    assert_refused(result, f"hf:{REPO}", "token file /dev/zero is a character device")
    assert result.seconds < 10


def test_a_huge_saved_token_is_refused_before_it_is_read(hub, tmp_path):
    (tmp_path / "home").mkdir()
    with open(tmp_path / "home" / "token", "wb") as handle:
        handle.truncate(3 << 30)  # sparse; read whole, it would pass the 2 GiB limit
    result = run_cli(f"hf:{REPO}", env=hub_env(hub, tmp_path / "home"), timeout=30)
    assert_refused(result, f"hf:{REPO}", "is 3,221,225,472 bytes; a token is at most 1,048,576")


def test_hf_home_that_is_a_file_names_the_source(hub, tmp_path):
    # Before: "paramscope: .../home/token: Not a directory" (huggingface_hub's error, naming no source).
    (tmp_path / "home").write_bytes(b"")
    result = run_cli(f"hf:{REPO}", env=hub_env(hub, tmp_path / "home"), timeout=30)
    assert_refused(result, f"hf:{REPO}", "Not a directory")


def test_a_saved_token_is_still_sent(hub, tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "token").write_text("secret\n")
    hub.token = "secret"
    result = assert_clean(run_cli(f"hf:{REPO}", "-f", "json", env=hub_env(hub, tmp_path / "home")), expect=0)
    assert json.loads(result.stdout)["total"] == 4
    assert ("config.json", "Bearer secret") in hub.authorization


# ---- directories: a symlink loop beside the weights --------------------------------------------------


@pytest.mark.parametrize("loop", ["loop", "x.safetensors"])
def test_a_symlink_loop_beside_the_weights_does_not_hide_them(tmp_path, loop):
    directory = tmp_path / "model"
    directory.mkdir()
    safetensors(directory / "model.safetensors")
    os.symlink(loop, directory / loop)
    result = assert_clean(run_cli(directory, "-f", "json"), directory)
    assert json.loads(result.stdout)["total"] == 4


# ---- config.json: size alone is not the bound ---------------------------------------------------------


def _config(path: Path, fields: str) -> Path:
    path.write_text('{"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 10, ' + fields + "}")
    return path


@pytest.mark.parametrize(("fields", "fragment"), [
    # Before: 35 s (1,300,000 keys under the 16 MiB cap: transformers sets and prints every one).
    (",".join(f"\"k{i}\":0" for i in range(1_300_000)), "holds more than 1,000,000 values"),
    # Before: 37 s (a list of 8,000,000 zeros: copied, encoded and printed several times).
    ('"x": [' + ",".join(["0"] * 8_000_000) + "]", "holds more than 1,000,000 values"),
    (", ".join(f'"k{i}": 0' for i in range(10_001)), "the config has 10,006 keys: more than 10,000"),
    ('"x": {' + ", ".join(f'"k{i}": 0' for i in range(10_001)) + "}", "'x' has 10,001 keys: more than 10,000"),
])
def test_a_config_of_a_million_values_is_refused_before_transformers_sees_it(tmp_path, fields, fragment):
    config = _config(tmp_path / "config.json", fields)
    assert config.stat().st_size < 16 << 20
    result = assert_refused(run_cli(config), config, fragment)
    assert result.seconds < 15


def test_a_config_under_the_value_caps_builds(tmp_path):
    pytest.importorskip("transformers")
    config = _config(tmp_path / "config.json", '"x": [' + ",".join(["0"] * 100_000) + "], "
                     + ", ".join(f'"k{i}": 0' for i in range(9_000)))
    result = assert_clean(run_cli(config, "-f", "json"), expect=0)
    # GPT2Model, one block of width 8: wte 10x8 + wpe 1024x8 + ln_1, ln_2, ln_f 3x(8+8) + c_attn 8x24+24
    # + attn.c_proj 8x8+8 + c_fc 8x32+32 + mlp.c_proj 32x8+8
    assert json.loads(result.stdout)["total"] == 80 + 8192 + 48 + 216 + 72 + 288 + 264 == 9160


# ---- a FIFO put in place of the file between read_path's head and the reader ---------------------------
# A race a subprocess cannot hit on cue: the probe and the Reader are called in-process on a FIFO with the
# head a regular file had, under an alarm (before the fix, zipfile.ZipFile(path), h5py.File(path) and
# numpy_files.read's open() blocked on it forever).


@pytest.fixture
def alarm():
    import signal

    class Blocked(Exception):  # not an OSError: nothing under test may take it for a failed open
        pass

    def blocked(*_):
        raise Blocked("blocked on the FIFO")

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(("reader", "suffix", "head"), [
    ("numpy_files", ".npz", b"PK\x03\x04"),
    ("numpy_files", ".npy", b"\x93NUMPY"),
    ("keras", ".keras", b"PK\x03\x04"),
    ("keras", ".h5", b"\x89HDF\r\n\x1a\n"),
])
def test_a_fifo_swapped_in_after_the_head_is_refused_not_waited_on(tmp_path, alarm, reader, suffix, head):
    import importlib

    from paramscope.errors import ParamscopeError

    module = importlib.import_module(f"paramscope.sources.{reader}")
    fifo = tmp_path / f"w{suffix}"
    os.mkfifo(fifo)
    found = module.probe(head + bytes(56), fifo)
    if found is not None:  # a Reader for the head: it refuses the FIFO when it reads
        with pytest.raises(ParamscopeError, match="a named pipe"):
            found.read()
    with pytest.raises(ParamscopeError, match="a named pipe"):
        module.read(fifo)


@pytest.mark.parametrize("suffix", [".npz", ".keras", ".h5"])
def test_zip_and_hdf5_files_still_read_through_the_checked_handle(tmp_path, suffix):
    np = pytest.importorskip("numpy")
    path = tmp_path / f"w{suffix}"
    if suffix == ".npz":
        np.savez(path, a=np.zeros((2, 3), "f4"), b=np.zeros(5, "f4"))
        expected = 11
    else:
        h5py = pytest.importorskip("h5py")
        target = tmp_path / "model.weights.h5" if suffix == ".keras" else path
        with h5py.File(target, "w") as h5:
            h5.create_dataset("layers/dense/vars/0", data=np.zeros((4, 3), "f4"))
            h5.create_dataset("layers/dense/vars/1", data=np.zeros(3, "f4"))
        if suffix == ".keras":
            import zipfile

            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("config.json", "{}")
                archive.write(target, "model.weights.h5")
        expected = 15
    result = assert_clean(run_cli(path, "-f", "json"), expect=0)
    assert json.loads(result.stdout)["total"] == expected


# ---- the tree renderer -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_hundred_thousand_distinct_top_level_tensors_are_drawn_as_a_tree_in_time(tmp_path):
    count = 200_000
    header = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(count)}
    raw = json.dumps(header).encode()
    path = tmp_path / "flat.safetensors"
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + 4 * count)  # sparse data
    for fmt in ("json", "table"):  # the reference: these end in seconds
        assert_clean(run_cli(path, "-f", fmt, "-o", tmp_path / f"out.{fmt}"), expect=0)
    result = assert_clean(run_cli(path), path, expect=0)
    assert f"{count:,}" in result.stdout
