"""A config.json never runs, fetches or asks about code, and never builds without a bound (issue 11).

Remote code: a config with ``auto_map`` that reaches transformers without ``trust_remote_code=False``
makes transformers print "Do you wish to run the custom code? [y/N]" and read standard input; answering
``y`` imports the module ``auto_map`` names, from the config's own directory (``name_or_path``) or from
the Hub endpoint (``org/name--module.Class``). Each case here is armed: its module writes a canary file
when imported, so the tests fail on a paramscope that lets transformers import it. Each runs twice: with
standard input closed (the harness) and with ``y`` waiting on it.

Bounds: counts of repeated modules (layers, depths, blocks, experts, heads, in sub-configs too) past
``MAX_BLOCKS`` are refused before torch is imported: within seconds, one line naming the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.hostile._limits import Result, assert_clean, assert_refused, run_cli
from tests.sources._fake_hub import FakeHub, write_repo

pytest.importorskip("transformers")

MODULE = "modeling_evil"


def _armed_module(canary: Path) -> bytes:
    """A module whose import writes ``canary`` (and would then be the model class transformers builds)."""
    return (f"open({str(canary)!r}, 'w').write('imported')\n"
            "from transformers import PreTrainedModel\n"
            "class EvilModel(PreTrainedModel):\n    pass\n"
            "class EvilConfig:\n    pass\n").encode()


def _auto_map(prefix: str = "") -> dict[str, str]:
    return {"AutoModel": f"{prefix}{MODULE}.EvilModel", "AutoConfig": f"{prefix}{MODULE}.EvilConfig",
            "AutoModelForCausalLM": f"{prefix}{MODULE}.EvilModel"}


def run_with_stdin(*args: str | os.PathLike[str], data: bytes, env: dict[str, str] | None = None) -> Result:
    """As :func:`run_cli`, with ``data`` on standard input: a prompt would read it."""
    return run_cli(*args, env=env, stdin=data)


# Every way an auto_map config could reach transformers' remote-code path, each refused (exit 1).
REFUSED = {
    # a model_type transformers does not know: only the repository's code defines it
    "unknown-model-type": ({"model_type": "evil_model"}, "not known to transformers"),
    # a type CONFIG_MAPPING knows but AutoModel does not map: AutoModel.from_config would look at auto_map
    "unmapped-model-type": ({"model_type": "blip_text_model"}, "has no model class"),
    # no model_type; architectures names a class that only auto_map supplies
    "architectures-only": ({"architectures": ["EvilModel"]}, "no 'model_type'"),
    # both: an unmapped type and an auto_map-only architecture
    "unmapped-type-and-architecture": ({"model_type": "blip_text_model", "architectures": ["EvilModel"]},
                                       "has no model class"),
}


def _local_config(tmp_path: Path, fields: dict[str, object]) -> tuple[Path, Path]:
    """config.json + its armed module in one directory, with name_or_path pointing there (the way
    transformers finds a local module); returns (config path, canary path)."""
    canary = tmp_path / "CANARY"
    (tmp_path / f"{MODULE}.py").write_bytes(_armed_module(canary))
    config = {**fields, "name_or_path": str(tmp_path), "auto_map": _auto_map()}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path, canary


@pytest.mark.parametrize("stdin", [None, b"y\n"], ids=["stdin-closed", "stdin-yes"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_auto_map_config_is_refused_and_never_imported(tmp_path, case, stdin):
    fields, fragment = REFUSED[case]
    path, canary = _local_config(tmp_path, fields)
    result = run_cli(path) if stdin is None else run_with_stdin(path, data=stdin)
    assert not canary.exists(), "the config's module was imported"
    assert result.stdout == ""  # no prompt
    assert_refused(result, path, fragment)
    assert "own code (auto_map)" in result.stderr, result.stderr


@pytest.mark.parametrize("stdin", [None, b"y\n"], ids=["stdin-closed", "stdin-yes"])
def test_auto_map_in_a_sub_config_is_never_imported(tmp_path, stdin):
    # transformers builds sub-models with its own AutoModel.from_config(config.text_config), which we
    # cannot hand trust_remote_code=False: the key is stripped at every level instead.
    path, canary = _local_config(tmp_path, {"model_type": "llava"})
    config = json.loads(path.read_text())
    config["text_config"] = {"model_type": "blip_text_model", "name_or_path": str(tmp_path), "auto_map": _auto_map()}
    path.write_text(json.dumps(config))
    result = run_cli(path) if stdin is None else run_with_stdin(path, data=stdin)
    assert not canary.exists(), "the config's module was imported"
    assert result.stdout == ""
    assert_refused(result, path, "could not build 'llava'")


@pytest.mark.parametrize("stdin", [None, b"y\n"], ids=["stdin-closed", "stdin-yes"])
def test_known_model_type_builds_itself_and_ignores_auto_map(tmp_path, stdin):
    gpt2 = {"model_type": "gpt2", "architectures": ["EvilModel"], "vocab_size": 10, "n_positions": 4, "n_embd": 8,
            "n_layer": 1, "n_head": 2}
    path, canary = _local_config(tmp_path, gpt2)
    result = run_cli(path, "--format", "json") if stdin is None else \
        run_with_stdin(path, "--format", "json", data=stdin)
    assert not canary.exists(), "the config's module was imported"
    assert_clean(result, path, expect=0)
    doc = json.loads(result.stdout)
    # GPT2Model, by hand: wte 10x8 + wpe 4x8 + ln_1, ln_2, ln_f (2x8 each) + c_attn 8x24+24 + c_proj 8x8+8
    # + mlp c_fc 8x32+32 + c_proj 32x8+8
    assert doc["total"] == 80 + 32 + 3 * 16 + 216 + 72 + 288 + 264 == 1000
    assert any("auto_map" in n and "not run" in n for n in doc["notes"]), doc["notes"]


def test_hub_attention_kernel_named_by_the_config_is_dropped(tmp_path):
    # "attn_implementation": "org/name" asks transformers to fetch and run a Hub kernel (with the
    # `kernels` package installed); it is stripped like auto_map, and the model builds as usual.
    config = {"model_type": "gpt2", "vocab_size": 10, "n_positions": 4, "n_embd": 8, "n_layer": 1, "n_head": 2,
              "attn_implementation": "evil-org/evil-kernel", "text_config": {"_attn_implementation": "a/b"}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = assert_clean(run_cli(path, "--format", "json"), path, expect=0)
    assert json.loads(result.stdout)["total"] == 1000


# ---- the same through hf: (hub.py builds a repository without safetensors from its config.json) ----


@pytest.fixture
def evil_hub(tmp_path):
    """A loopback Hub with org/evil: config.json whose auto_map points at org/evil--modeling_evil, and
    that module (armed). No weights, so paramscope falls back to building from config.json."""
    canary = tmp_path / "CANARY"
    hub = FakeHub().start()
    config = {"model_type": "blip_text_model", "architectures": ["EvilModel"], "auto_map": _auto_map("org/evil--")}
    hub.add_repo("org/evil", write_repo(tmp_path / "repo", {
        "config.json": config, f"{MODULE}.py": _armed_module(canary),
        "configuration_evil.py": _armed_module(canary)}))
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "PARAMSCOPE_HTTP_TIMEOUT": "2", "PARAMSCOPE_HTTP_BACKOFF": "0.01", "HF_TOKEN": "", "HF_HUB_OFFLINE": "0"}
    yield hub, env, canary
    hub.stop()


@pytest.mark.parametrize("stdin", [None, b"y\n"], ids=["stdin-closed", "stdin-yes"])
def test_hub_repository_with_auto_map_is_refused_and_its_code_never_fetched(evil_hub, stdin):
    hub, env, canary = evil_hub
    source = "hf:org/evil"
    result = run_cli(source, env=env) if stdin is None else run_with_stdin(source, data=stdin, env=env)
    asked = [name for _, name, _ in hub.requests]
    assert not [name for name in asked if name.endswith(".py")], asked
    assert not canary.exists(), "the repository's module was imported"
    assert "config.json" in asked  # the fallback to the config was reached: the test is armed
    assert result.stdout == ""
    assert_refused(result, source, "own code (auto_map)")


# ---- bounds on what a config makes us build (item 8) ------------------------------------------------

# One config per kind of count field: each refused before torch is imported, naming the field.
UNBOUNDED = {
    "depths-list": ({"model_type": "convnext", "depths": [3, 200_000]}, "'depths' = [3, 200,000]"),
    "swin-depths": ({"model_type": "swin", "depths": [2] * 10_001}, "summing to 20,002"),
    "vision-depth": ({"model_type": "llava", "vision_config": {"depth": 100_000}}, "'vision_config.depth'"),
    "num-layers": ({"model_type": "t5", "num_layers": 50_000}, "'num_layers' = 50,000"),
    "n-layer": ({"model_type": "gpt2", "n_layer": 10**9}, "'n_layer'"),
    "encoder-layers": ({"model_type": "bart", "encoder_layers": 20_000}, "'encoder_layers'"),
    "decoder-layers": ({"model_type": "bart", "decoder_layers": 20_000}, "'decoder_layers'"),
    "nested-hidden-layers": ({"model_type": "llava", "text_config": {"num_hidden_layers": 10**6}},
                             "'text_config.num_hidden_layers'"),
    "deeper-nesting": ({"model_type": "x", "a": {"b": [{"num_blocks": 99_999}]}}, "'a.b[0].num_blocks'"),
    "num-experts": ({"model_type": "qwen3_moe", "num_experts": 100_000}, "experts"),
    "layers-x-experts": ({"model_type": "mixtral", "num_hidden_layers": 2_000, "num_local_experts": 1_000},
                         "2,000 layers x 1,000 experts"),
    "heads": ({"model_type": "llama", "num_attention_heads": 10**7}, "'num_attention_heads'"),
    "heads-per-stage": ({"model_type": "swin", "num_heads": [3, 6, 12, 10**6]}, "'num_heads'"),
    "albert-groups": ({"model_type": "albert", "inner_group_num": 100_000}, "'inner_group_num'"),
    "num-labels": ({"model_type": "vit", "num_labels": 10**6}, "'num_labels' = 1,000,000"),
    "layer-index-list": ({"model_type": "mllama", "text_config": {"cross_attention_layers": [0] * 20_000}},
                         "a list of 20,000 entries"),
}


@pytest.mark.parametrize("case", list(UNBOUNDED))
def test_unbounded_counts_are_refused_within_seconds(tmp_path, case):
    config, fragment = UNBOUNDED[case]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = assert_refused(run_cli(path), path, fragment)
    assert "unbounded time" in result.stderr
    assert result.seconds < 5, result.seconds  # refused before torch is imported
