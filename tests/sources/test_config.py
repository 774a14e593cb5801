"""Models from a transformers config.json, built on meta; and whether weights beside it fit.

Counts are checked against the published parameter counts of each model (independent of transformers'
and paramscope's code), and the fit against state dicts that transformers itself produces.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paramscope
from paramscope import hf_config, pipeline
from paramscope.errors import ParamscopeError
from paramscope.report import Report
from paramscope.sources import config as config_source
from paramscope.sources import files
from tests.sources._fuzz import mutated
from tests.sources._st_helpers import LLAMA2_7B, llama_tensors, write_sharded, write_sparse

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

# Published hyper-parameters (the models' own config.json files), and published counts.
CONFIGS = {
    "gpt2": ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 50257, "n_positions": 1024,
              "n_embd": 768, "n_layer": 12, "n_head": 12}, 124_439_808),
    "bert-base": ({"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 30522, "hidden_size": 768,
                   "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                   "max_position_embeddings": 512, "type_vocab_size": 2}, 109_482_240),
    "llama-2-7b": ({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000,
                    "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                    "num_attention_heads": 32, "num_key_value_heads": 32, "torch_dtype": "float16"}, 6_738_415_616),
    "llama-3-8b": ({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 128256,
                    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                    "num_attention_heads": 32, "num_key_value_heads": 8, "rope_theta": 500000.0,
                    "torch_dtype": "bfloat16"}, 8_030_261_248),
    "mistral-7b": ({"model_type": "mistral", "architectures": ["MistralForCausalLM"], "vocab_size": 32000,
                    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                    "num_attention_heads": 32, "num_key_value_heads": 8, "torch_dtype": "bfloat16"}, 7_241_732_096),
    "llama-2-70b": ({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000,
                     "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
                     "num_attention_heads": 64, "num_key_value_heads": 8, "torch_dtype": "float16"}, 68_976_648_192),
    "mixtral-8x7b": ({"model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "vocab_size": 32000,
                      "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                      "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
                      "num_experts_per_tok": 2, "torch_dtype": "bfloat16"}, 46_702_792_704),
    # 86,567,656 is ViT-B/16 with its 1000-class head and no pooler (torchvision's vit_b_16 count);
    # ViTModel with its pooler is 86,389,248 (checked by hand below).
    "vit-b-16": ({"model_type": "vit", "architectures": ["ViTForImageClassification"], "image_size": 224,
                  "patch_size": 16, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "intermediate_size": 3072, "num_labels": 1000}, 86_567_656),
}

TINY_LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 32,
              "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "tie_word_embeddings": False}
TINY_GPT2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 100, "n_positions": 16,
             "n_embd": 32, "n_layer": 2, "n_head": 4}


def _write(directory: Path, config: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Report]:
    """Every published config written as config.json, read through the file dispatch and settled, once."""
    root = tmp_path_factory.mktemp("configs")
    return {name: Report(pipeline.read(_write(root / name, cfg))) for name, (cfg, _) in CONFIGS.items()}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_published_counts(built, name):
    report = built[name]
    assert report.total == CONFIGS[name][1]
    assert report.format == "config"
    assert report.trainable == report.total  # a freshly built module: every parameter requires grad
    assert report.metadata["model_type"] == CONFIGS[name][0]["model_type"]
    assert report.metadata["class"] == CONFIGS[name][0]["architectures"][0]


def test_gpt2_tie_comes_from_the_real_module(built):
    report = built["gpt2"]
    assert report.ties == [["transformer.wte.weight", "lm_head.weight"]]
    # counted once: the tied head adds 50,257 x 768 only when the tie is ignored
    assert sum(r.numel for r in report.tensors if r.role.value == "parameter") == 124_439_808 + 50257 * 768


def test_llama_7b_shape_and_dtype_declared_by_config(built):
    report = built["llama-2-7b"]
    assert len([r for r in report.tensors if r.role.value == "parameter"]) == 291
    assert {r.dtype for r in report.tensors if r.role.value == "parameter"} == {"float16"}
    assert report.metadata["dtype"] == "float16"
    assert report.ties == []


def test_mixtral_config_gives_active_parameters_and_label(built):
    report = built["mixtral-8x7b"]
    routed = 32 * 8 * 3 * 4096 * 14336  # 32 layers x 8 experts x (w1, w2, w3), hand-computed
    assert report.metadata["moe"]["experts"] == 8
    assert report.active == 46_702_792_704 - routed + routed * 2 // 8 == 12_879_925_248
    assert report.size_label == "8x7B"
    assert built["llama-2-7b"].active is None


def test_vit_model_with_pooler_by_hand(tmp_path):
    cfg = dict(CONFIGS["vit-b-16"][0], architectures=["ViTModel"])
    report = Report(files.read_path(_write(tmp_path, cfg)))
    layer = 4 * (768 * 768 + 768) + 2 * 768 * 3072 + 3072 + 768 + 4 * 768
    embeddings = 768 + 197 * 768 + 3 * 16 * 16 * 768 + 768
    assert report.total == embeddings + 12 * layer + 2 * 768 + (768 * 768 + 768) == 86_389_248


def test_directory_with_only_a_config_is_the_architecture(tmp_path):
    _write(tmp_path, CONFIGS["gpt2"][0])
    report = paramscope.inspect(tmp_path)
    assert (report.format, report.total) == ("config", 124_439_808)


def test_directory_with_config_and_unread_weights_says_so(tmp_path):
    _write(tmp_path, TINY_GPT2)
    (tmp_path / "flax_model.msgpack").write_bytes(b"\x80")  # Flax weights: no reader reads them
    inventory = files.read_path(tmp_path)
    assert inventory.format == "config"
    assert any("flax_model.msgpack" in n and "not compared" in n for n in inventory.notes)


def test_unknown_architecture_falls_back_to_automodel(tmp_path):
    cfg = dict(TINY_GPT2, architectures=["NotAClass"])
    inventory = pipeline.read(_write(tmp_path, cfg))
    assert inventory.metadata["class"] == "GPT2Model"
    assert any("NotAClass" in n and "AutoModel" in n for n in inventory.notes)
    # GPT2Model: wte 100x32 + wpe 16x32 + 2 blocks + ln_f
    block = 2 * 32 + (32 * 96 + 96) + (32 * 32 + 32) + 2 * 32 + (32 * 128 + 128) + (128 * 32 + 32)
    assert Report(inventory).total == 100 * 32 + 16 * 32 + 2 * block + 2 * 32


def test_architecture_of_another_model_type_is_not_used(tmp_path):
    cfg = dict(TINY_GPT2, architectures=["LlamaForCausalLM"])
    inventory = pipeline.read(_write(tmp_path, cfg))
    assert inventory.metadata["class"] == "GPT2Model"


def test_model_type_inferred_from_architecture(tmp_path):
    cfg = {k: v for k, v in TINY_GPT2.items() if k != "model_type"}
    inventory = pipeline.read(_write(tmp_path, cfg))
    assert inventory.metadata["model_type"] == "gpt2"
    assert inventory.metadata["class"] == "GPT2LMHeadModel"


def test_known_model_type_ignores_auto_map(tmp_path):
    cfg = dict(TINY_GPT2, auto_map={"AutoModel": "modeling_evil.Evil"})
    inventory = pipeline.read(_write(tmp_path, cfg))
    assert inventory.metadata["class"] == "GPT2LMHeadModel"


def test_quantization_config_is_noted_not_applied(tmp_path):
    cfg = dict(CONFIGS["llama-2-7b"][0], quantization_config={"quant_method": "gptq", "bits": 4})
    report = Report(pipeline.read(_write(tmp_path, cfg)))
    assert report.total == 6_738_415_616
    assert any("quantization_config ('gptq') is not applied" in n for n in report.notes)


def test_never_downloads(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained called")

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    inventory = config_source.from_config(dict(TINY_LLAMA), source="tiny")
    assert inventory.format == "config"


# ---- weights vs architecture --------------------------------------------------------------------


def _state_dict_files(directory: Path, model_class, cfg: dict, change=None) -> dict[str, tuple[int, ...]]:
    """Build ``model_class`` from ``cfg`` on CPU and save its state dict (transformers' own names) as
    safetensors into ``directory`` with ``change`` applied to the dict; returns name -> shape saved."""
    from safetensors.torch import save_file

    config = transformers.AutoConfig.for_model(**cfg)
    model = model_class(config)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # save_pretrained drops the tied copy
    if change is not None:
        change(state)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / "model.safetensors"))
    return {k: tuple(v.shape) for k, v in state.items()}


def test_weights_that_fit(tmp_path):
    saved = _state_dict_files(tmp_path, transformers.LlamaForCausalLM, TINY_LLAMA)
    inventory = paramscope.inspect(_write(tmp_path, TINY_LLAMA))
    assert inventory.metadata["fit"] == {"missing": [], "unexpected": [], "mismatched": []}
    assert inventory.notes[0] == f"weights in {tmp_path} fit the architecture: {len(saved)} tensors"
    assert len(saved) == 2 * 9 + 3


def test_tied_head_absent_from_the_file_is_not_missing(tmp_path):
    saved = _state_dict_files(tmp_path, transformers.GPT2LMHeadModel, TINY_GPT2)
    assert "lm_head.weight" not in saved
    inventory = pipeline.read(_write(tmp_path, TINY_GPT2))
    assert inventory.metadata["fit"] == {"missing": [], "unexpected": [], "mismatched": []}


def test_base_class_checkpoint_into_head_class(tmp_path):
    # GPT2Model's names have no "transformer." prefix; the tied head is covered by wte
    _state_dict_files(tmp_path / "gpt2", transformers.GPT2Model, TINY_GPT2)
    inventory = pipeline.read(_write(tmp_path / "gpt2", TINY_GPT2))
    assert inventory.metadata["fit"] == {"missing": [], "unexpected": [], "mismatched": []}
    # LlamaModel's names have no "model." prefix; the untied head really is missing
    _state_dict_files(tmp_path / "llama", transformers.LlamaModel, TINY_LLAMA)
    inventory = pipeline.read(_write(tmp_path / "llama", TINY_LLAMA))
    assert inventory.metadata["fit"] == {"missing": ["lm_head.weight"], "unexpected": [], "mismatched": []}
    assert "1 missing" in inventory.notes[0]


def test_weights_that_do_not_fit(tmp_path):
    def change(state):
        del state["model.layers.1.mlp.up_proj.weight"]
        state["model.layers.1.extra.weight"] = torch.zeros(3)
        state["model.norm.weight"] = torch.zeros(31)

    _state_dict_files(tmp_path, transformers.LlamaForCausalLM, TINY_LLAMA, change)
    inventory = pipeline.read(_write(tmp_path, TINY_LLAMA))
    assert inventory.metadata["fit"] == {
        "missing": ["model.layers.1.mlp.up_proj.weight"],
        "unexpected": ["model.layers.1.extra.weight"],
        "mismatched": [("model.norm.weight", (32,), (31,))],
    }
    assert inventory.notes[0] == (
        f"weights in {tmp_path} do not fit the architecture: 1 missing ('model.layers.1.mlp.up_proj.weight'); "
        "1 unexpected ('model.layers.1.extra.weight'); 1 shape-mismatched ('model.norm.weight')"
    )


def test_broken_weights_beside_the_config_are_a_note(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    inventory = pipeline.read(_write(tmp_path, TINY_GPT2))
    assert "fit" not in inventory.metadata
    assert inventory.notes[0].startswith(f"weights beside the config not compared: {tmp_path / 'model.safetensors'}")


def test_sharded_7b_fits_its_config(tmp_path):
    tensors = [(n, "F16", s) for n, s in llama_tensors(**LLAMA2_7B)]
    write_sharded(tmp_path, tensors, shards=2)
    inventory = pipeline.read(_write(tmp_path, CONFIGS["llama-2-7b"][0]))
    assert inventory.metadata["fit"] == {"missing": [], "unexpected": [], "mismatched": []}
    assert inventory.notes[0] == f"weights in {tmp_path} fit the architecture: 291 tensors"


# ---- directories and weights files beside a config ----------------------------------------------


@pytest.fixture
def recorded_apply(monkeypatch):
    calls: list[tuple[str, dict | None]] = []

    def apply(inventory, config):
        calls.append((inventory.format, config))
        return inventory.replace(notes=[*inventory.notes, "applied"])

    monkeypatch.setattr(hf_config, "apply_config", apply)
    return calls


def _tiny_weights(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.safetensors"
    write_sparse(path, [("model.embed_tokens.weight", "F32", (100, 32))])
    return path


def test_directory_with_weights_reads_weights_and_applies_config(tmp_path, recorded_apply):
    _tiny_weights(tmp_path)
    _write(tmp_path, TINY_LLAMA)
    read = files.read_path(tmp_path)  # the reader hands the config on and applies nothing
    assert (read.pending["config"], recorded_apply) == (TINY_LLAMA, [])
    inventory = pipeline.settle(read)
    assert inventory.format == "safetensors"
    assert recorded_apply == [("safetensors", TINY_LLAMA)]
    assert inventory.notes[-1] == "applied"
    assert Report(inventory).total == 3200


def test_weights_file_beside_a_config_gets_it_applied(tmp_path, recorded_apply):
    path = _tiny_weights(tmp_path)
    _write(tmp_path, TINY_LLAMA)
    pipeline.read(path)
    assert recorded_apply == [("safetensors", TINY_LLAMA)]


def test_weights_beside_a_broken_or_foreign_config(tmp_path, recorded_apply):
    path = _tiny_weights(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    inventory = pipeline.read(path)
    # what names alone tell is still applied: with no config
    assert recorded_apply == [("safetensors", None)]
    assert inventory.notes[-2].startswith("config.json beside the weights not used: malformed JSON")
    (tmp_path / "config.json").write_text('{"not": "a transformers config"}')
    pipeline.read(path)
    assert recorded_apply == [("safetensors", None)] * 2


def test_other_json_is_not_claimed(tmp_path):
    path = tmp_path / "tokenizer_config.json"
    path.write_text('{"model_max_length": 512}')
    with pytest.raises(ParamscopeError, match="not a checkpoint format"):
        files.read_path(path)
    named = tmp_path / "my-model.json"
    named.write_text(json.dumps(TINY_GPT2))
    assert files.read_path(named).format == "config"


def test_a_config_found_by_its_content_is_parsed_once(tmp_path, monkeypatch):
    # not named config.json: the probe parses it to see that it is a transformers config; its Reader builds
    # from that parse
    named = tmp_path / "my-model.json"
    named.write_text(json.dumps(TINY_GPT2))
    parsed = []
    real = config_source.load_json
    monkeypatch.setattr(config_source, "load_json", lambda path: (parsed.append(path), real(path))[1])
    assert Report(files.read_path(named)).total == Report(config_source.read(named)).total
    assert parsed == [named, named]  # one read_path, then the direct read


def test_cli_reads_a_config(tmp_path):
    path = _write(tmp_path, CONFIGS["gpt2"][0])
    proc = subprocess.run([sys.executable, "-m", "paramscope", str(path), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["format"], doc["total"]) == ("config", 124_439_808)
    assert proc.stderr == ""  # transformers' and its optional packages' chatter is silenced


# ---- bad input ----------------------------------------------------------------------------------


BAD = {
    "malformed": (b'{"model_type": "gpt2",', "malformed JSON"),
    "not-a-dict": (b'["gpt2"]', "JSON object"),
    "not-utf8": (b'{"model_type": "\xff"}', "not UTF-8"),
    "unknown-type": (b'{"model_type": "no-such-model"}', "not known to transformers"),
    "custom-code": (b'{"model_type": "evil", "auto_map": {"AutoModel": "m.E"}}', "paramscope does not run"),
    "no-type": (b'{"architectures": ["Custom"]}', "no 'model_type'"),
    "type-not-str": (b'{"model_type": 3}', "must be a string"),
    "too-many-layers": (b'{"model_type": "llama", "num_hidden_layers": 1000000}', "more than 10,000 layers"),
    "nested-layers": (b'{"model_type": "llava", "text_config": {"num_hidden_layers": 99999}}', "99,999"),
    "layers-x-experts": (b'{"model_type": "mixtral", "num_hidden_layers": 5000, "num_local_experts": 5000}',
                         "experts"),
    "rejected": (b'{"model_type": "llama", "hidden_size": 30, "num_attention_heads": 7}', "transformers"),
    "unbuildable": (b'{"model_type": "gpt2", "n_embd": -5}', "could not build"),
    "deep": (b"{" + b'"a":[' * 5000 + b"]" * 5000 + b"}", "nested deeper"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_config_is_one_line_error(tmp_path, case):
    raw, expected = BAD[case]
    path = tmp_path / "config.json"
    path.write_bytes(raw)
    with pytest.raises(ParamscopeError) as info:
        paramscope.inspect(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_oversized_config_refused(tmp_path):
    path = tmp_path / "config.json"
    with open(path, "wb") as handle:
        handle.write(b'{"model_type": "gpt2", "pad": "')
        handle.truncate(config_source.MAX_CONFIG_BYTES + 10)
    with pytest.raises(ParamscopeError, match="larger than 16 MiB"):
        files.read_path(path)


def test_from_config_refuses_non_dict():
    with pytest.raises(ParamscopeError, match="JSON object"):
        config_source.from_config(["x"], source="s")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_config_file_only_paramscope_errors(tmp_path, data):
    path = tmp_path / "config.json"
    path.write_bytes(mutated(data, json.dumps(TINY_GPT2).encode()))
    try:
        files.read_path(path)
    except ParamscopeError as exc:
        assert "\n" not in str(exc)


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.integers(-(2**70), 2**70),
                   st.floats(allow_nan=True), st.text(max_size=5), st.lists(st.integers(-2, 4), max_size=3),
                   st.dictionaries(st.text(max_size=4), st.integers(-2, 4), max_size=2))
KEYS = ["vocab_size", "hidden_size", "n_embd", "intermediate_size", "num_attention_heads", "n_head",
        "num_key_value_heads", "max_position_embeddings", "n_positions", "head_dim", "rope_scaling",
        "tie_word_embeddings", "architectures", "torch_dtype", "type_vocab_size", "n_inner"]


@settings(max_examples=200, deadline=None)
@given(model_type=st.sampled_from(["llama", "gpt2", "bert"]), layers=st.integers(-2, 2),
       fields=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4))
def test_fuzz_config_values_only_paramscope_errors(model_type, layers, fields):
    base = {"llama": TINY_LLAMA, "gpt2": TINY_GPT2, "bert": {"model_type": "bert", "hidden_size": 32,
                                                             "num_attention_heads": 4, "intermediate_size": 64,
                                                             "vocab_size": 50}}[model_type]
    cfg = {**base, "num_hidden_layers": layers, "n_layer": layers, **fields}
    try:
        config_source.from_config(cfg, source="fuzz")
    except ParamscopeError as exc:
        assert "\n" not in str(exc)


# ---- never code, always bounded ------------------------------------------------------------------


def test_code_keys_are_stripped_at_every_level_without_touching_the_input():
    cfg = {"model_type": "llava", "auto_map": {"AutoModel": "m.E"}, "custom_pipelines": {"x": {}},
           "text_config": {"auto_map": {"AutoModel": "m.E"}, "attn_implementation": "org/kernel", "n": 1},
           "list": [{"trust_remote_code": True, "_attn_implementation_internal": "a/b", "keep": 2}]}
    before = json.dumps(cfg)
    assert config_source._without_code(cfg) == {"model_type": "llava", "text_config": {"n": 1},
                                                "list": [{"keep": 2}]}
    assert json.dumps(cfg) == before


def test_sealed_build_cannot_prompt_or_load_code():
    import builtins

    from transformers import dynamic_module_utils
    from transformers.models.auto import auto_factory

    originals = (builtins.input, auto_factory.resolve_trust_remote_code,
                 dynamic_module_utils.get_class_from_dynamic_module)
    for call in (lambda: input("run? [y/N] "),
                 lambda: auto_factory.resolve_trust_remote_code(None, "org/x", False, True),
                 lambda: dynamic_module_utils.get_class_from_dynamic_module("m.E", "org/x")):
        with pytest.raises(ParamscopeError, match=r"^src: transformers asked to run the model repository's own code"), \
                config_source._sealed("src"):
            call()
    assert (builtins.input, auto_factory.resolve_trust_remote_code,
            dynamic_module_utils.get_class_from_dynamic_module) == originals


def test_too_many_modules_stop_the_build(monkeypatch):
    # TINY_LLAMA registers 2 x 13 layer modules + 4 others: past a limit of 20 the build stops, whatever
    # the count keys are called; the hook is removed afterwards (the next build is not counted).
    monkeypatch.setattr(config_source, "MAX_MODULES", 20)
    with pytest.raises(ParamscopeError, match=r"^tiny: the architecture has more than 20 modules"):
        config_source.from_config(dict(TINY_LLAMA), source="tiny")
    monkeypatch.setattr(config_source, "MAX_MODULES", 1_000)
    assert config_source.from_config(dict(TINY_LLAMA), source="tiny").metadata["class"] == "LlamaForCausalLM"


# Real configs (their published count fields) that the count bound must let through.
REAL_COUNTS = {
    "swin-large": {"model_type": "swin", "depths": [2, 2, 18, 2], "num_heads": [6, 12, 24, 48]},
    "llama-3.1-405b": {"model_type": "llama", "num_hidden_layers": 126, "num_attention_heads": 128,
                       "num_key_value_heads": 8},
    # layer indices: summed they would be 8,001 (0 + ... + 126)
    "indices": {"model_type": "qwen2_moe", "num_hidden_layers": 127, "mlp_only_layers": list(range(127)),
                "num_experts": 60},
    "mllama-90b": {"model_type": "mllama", "text_config": {"num_hidden_layers": 100, "cross_attention_layers":
                   [3, 8, 13, 18, 23, 28, 33, 38, 43, 48, 53, 58, 63, 68, 73, 78, 83, 88, 93, 98]},
                   "vision_config": {"num_hidden_layers": 32, "num_global_layers": 8}},
    "deepseek-v3": {"model_type": "deepseek_v3", "num_hidden_layers": 61, "n_routed_experts": 256,
                    "n_shared_experts": 1, "first_k_dense_replace": 3},
    "switch-c-2048": {"model_type": "switch_transformers", "num_experts": 2048, "num_layers": 15,
                      "num_decoder_layers": 15, "num_heads": 30},
    "vision-feature-layer": {"model_type": "llava", "vision_feature_layer": [-2, -5, -8, -11, -24]},
}


@pytest.mark.parametrize("name", list(REAL_COUNTS))
def test_real_counts_pass_the_bound(name):
    config_source._check_blocks(REAL_COUNTS[name], "real")


@pytest.mark.parametrize(("key", "at_bound", "past", "message"), [
    ("depths", [1, 9_999], [1, 10_000], "'depths' = [1, 10,000]: more than 10,000 layers"),
    ("depths", [1] * 10_000, [1] * 10_001,
     "'depths' = a list of 10,001 entries, summing to 10,001: more than 10,000 layers"),
    ("moe_layers", [0] * 10_000, [0] * 10_001,
     "'moe_layers' = a list of 10,001 entries, largest 0: more than 10,000 layers"),
    ("moe_layers", [10_000], [10_001], "'moe_layers' = [10,001]"),
    ("num_experts", 10_000, 10_001, "'num_experts' = 10,001: more than 10,000 experts"),
    ("num_key_value_heads", 10_000, 10_001, "'num_key_value_heads' = 10,001: more than 10,000 heads"),
    ("n_layer", 10_000, 10_001, "'n_layer' = 10,001: more than 10,000 layers"),
])
def test_count_bound_is_at_max_blocks_and_names_the_field(key, at_bound, past, message):
    config_source._check_blocks({"model_type": "x", key: at_bound}, "ok")
    with pytest.raises(ParamscopeError, match="^src: " + re.escape(message)):
        config_source._check_blocks({"model_type": "x", key: past}, "src")


def test_count_bound_path_names_the_sub_config():
    cfg = {"model_type": "x", "vision_config": {"blocks": [{"depth": 3}, {"depth": 10_001}]}}
    with pytest.raises(ParamscopeError, match=r"'vision_config\.blocks\[1\]\.depth' = 10,001"):
        config_source._check_blocks(cfg, "src")


def test_labels_are_bounded():
    config_source._check_blocks({"model_type": "vit", "num_labels": 21_843}, "imagenet-21k")
    with pytest.raises(ParamscopeError, match=r"^src: 'num_labels' = 250,001: more than 250,000 labels"):
        config_source._check_blocks({"model_type": "vit", "num_labels": 250_001}, "src")
    labels = {str(i): f"L{i}" for i in range(250_001)}
    with pytest.raises(ParamscopeError, match=r"^src: 'id2label' = a mapping of 250,001 entries"):
        config_source._check_blocks({"model_type": "vit", "id2label": labels}, "src")
