"""paramscope.ties: each rule on a file written to its layout, the figures checked by hand (elements = the product
of the shapes written; bytes = elements x the dtype's width, or gguf-py's GGUFReader)."""

from __future__ import annotations

import json

import pytest

import paramscope
from paramscope.fit import fit
from paramscope.ties import MAX_ALIASES
from tests._routes import write_gguf, write_safetensors
from tests.hostile._limits import assert_clean, run_cli

V, D = 1000, 64  # a vocabulary and width: embedding/head 64,000 elements
EMB, NORM = ("float32", (V, D)), ("float32", (D,))


def test_save_model_alias_puts_the_removed_name_back(tmp_path):
    path = write_safetensors(tmp_path / "m.safetensors", {"lm_head.weight": EMB, "transformer.ln_f.weight": NORM},
                             {"transformer.wte.weight": "lm_head.weight", "format": "pt"})
    report = paramscope.inspect(path)
    assert report.ties == [["transformer.wte.weight", "lm_head.weight"]]  # the embedding first, as a live model
    assert (report.total, report.stored_elements, report.bytes) == (V * D + D, V * D + D, 4 * (V * D + D))
    assert report.non_embedding == D  # the group is the embedding's, whichever name the file kept
    assert report.notes == ["transformer.wte.weight is stored as lm_head.weight (safetensors __metadata__ alias): "
                            "counted once"]


@pytest.mark.parametrize("metadata", [
    {"format": "pt"},  # names no tensor
    {"lm_head.weight": "transformer.ln_f.weight"},  # its key is a tensor of the file: not a removed name
    {"x.weight": "not.there"},  # its value is no tensor of the file
])
def test_metadata_that_is_no_alias_changes_nothing(tmp_path, metadata):
    path = write_safetensors(tmp_path / "m.safetensors", {"lm_head.weight": EMB, "transformer.ln_f.weight": NORM},
                             metadata)
    report = paramscope.inspect(path)
    assert report.ties == [] and report.notes == []
    assert report.total == V * D + D


def test_aliases_are_bounded(tmp_path):
    metadata = {f"alias.{i}.weight": "w.weight" for i in range(MAX_ALIASES + 100)}
    path = write_safetensors(tmp_path / "m.safetensors", {"w.weight": NORM}, metadata)
    result = assert_clean(run_cli(str(path), "-f", "json"), path, expect=0)
    doc = json.loads(result.stdout)
    assert doc["total"] == D and len(doc["ties"]) == 1 and len(doc["ties"][0]) == MAX_ALIASES + 1


def _gguf(tmp_path, arch, tensors, **kw):
    return write_gguf(tmp_path / f"{arch}.gguf", arch, 1, tensors, **kw)


def test_gguf_head_stored_twice_counts_once_and_stores_twice(tmp_path):
    import gguf

    path = _gguf(tmp_path, "gpt2", {"transformer.wte.weight": EMB, "transformer.ln_f.weight": NORM}, copy_head=True)
    report = paramscope.inspect(path)
    assert report.ties == [["token_embd.weight", "output.weight"]]
    assert report.total == V * D + D
    assert report.stored_elements == 2 * V * D + D
    assert report.bytes == sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors) == 2 * 2 * V * D + 4 * D
    assert "output.weight is a stored copy of token_embd.weight (llama.cpp writes gpt2's tied head twice): " \
        "counted once" in report.notes


def test_gguf_untied_head_stays_two_tensors(tmp_path):
    path = _gguf(tmp_path, "llama", {"model.embed_tokens.weight": EMB, "lm_head.weight": EMB})
    report = paramscope.inspect(path)
    assert report.ties == [] and report.total == report.stored_elements == 2 * V * D


def test_gguf_head_left_out_is_the_embedding(tmp_path):
    path = _gguf(tmp_path, "gemma", {"model.embed_tokens.weight": EMB, "model.norm.weight": NORM})
    report = paramscope.inspect(path)
    assert report.ties == [["token_embd.weight", "output.weight"]]
    assert (report.total, report.stored_elements, report.bytes) == (V * D + D, V * D + D, 2 * V * D + 4 * D)
    assert "no output.weight: llama.cpp uses token_embd.weight as gemma's output head (tied)" in report.notes


def test_gguf_of_an_architecture_without_a_head_gets_none(tmp_path):
    path = _gguf(tmp_path, "bert", {"embeddings.word_embeddings.weight": EMB})
    report = paramscope.inspect(path)
    assert report.ties == [] and report.total == V * D


def _config(tmp_path, **values):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", **values}))


def test_config_tie_of_a_head_the_file_stores_apart(tmp_path):
    _config(tmp_path, tie_word_embeddings=True)
    path = write_safetensors(tmp_path / "model.safetensors", {"transformer.wte.weight": EMB, "lm_head.weight": EMB})
    report = paramscope.inspect(path)
    assert report.ties == [["transformer.wte.weight", "lm_head.weight"]]
    assert (report.total, report.stored_elements, report.bytes) == (V * D, 2 * V * D, 2 * 4 * V * D)
    assert report.notes == ["config.json ties lm_head.weight to transformer.wte.weight (tie_word_embeddings): "
                            "lm_head.weight is a stored copy, counted once"]


def test_config_tie_of_a_head_the_file_leaves_out(tmp_path):
    _config(tmp_path, tie_word_embeddings=True, architectures=["GPT2LMHeadModel"])
    path = write_safetensors(tmp_path / "model.safetensors", {"transformer.wte.weight": EMB})
    report = paramscope.inspect(path)
    assert report.ties == [["transformer.wte.weight", "lm_head.weight"]]
    assert (report.total, report.stored_elements, report.bytes) == (V * D, V * D, 4 * V * D)


@pytest.mark.parametrize("values", [{"tie_word_embeddings": False, "architectures": ["GPT2LMHeadModel"]},
                                    {"tie_word_embeddings": True}, {"architectures": ["GPT2LMHeadModel"]}])
def test_no_head_is_made_up_without_both_the_tie_and_a_head_class(tmp_path, values):
    _config(tmp_path, **values)
    path = write_safetensors(tmp_path / "model.safetensors", {"transformer.wte.weight": EMB})
    assert paramscope.inspect(path).ties == []


def test_fit_of_a_save_model_file_into_the_base_class(tmp_path):
    """The issue's case: GPT-2 weights saved by safetensors.torch.save_model beside a config without
    ``architectures`` (built as GPT2Model, base_model_prefix "transformer")."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    st = pytest.importorskip("safetensors.torch")
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50, n_positions=16)
    st.save_model(transformers.GPT2LMHeadModel(config), str(tmp_path / "model.safetensors"))
    doc = config.to_dict()
    doc.pop("architectures", None)
    (tmp_path / "config.json").write_text(json.dumps(doc))
    report = paramscope.inspect(tmp_path / "config.json")
    assert report.metadata["fit"] == {"missing": [], "unexpected": [], "mismatched": []}
    assert report.notes[0].startswith(f"weights in {tmp_path} fit the architecture")
    with torch.device("meta"):
        base = transformers.GPT2Model(config)
    assert report.total == sum(p.numel() for p in base.parameters())


def test_fit_of_an_untied_head_checkpoint_into_the_base_class(tmp_path):
    """LlamaForCausalLM weights (own lm_head) beside a config built as LlamaModel: lm_head is unused, not a misfit."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, vocab_size=64,
                                      tie_word_embeddings=False)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    doc.pop("architectures")
    (tmp_path / "config.json").write_text(json.dumps(doc))
    architecture = paramscope.pipeline.read(tmp_path / "config.json")
    assert architecture.metadata["fit"] == {"missing": [], "unexpected": [], "mismatched": [],
                                            "unused": ["lm_head.weight"]}
    assert architecture.notes[0] == (f"weights in {tmp_path} fit the architecture: 12 tensors (1 head tensors the "
                                     "base model does not use: 'lm_head.weight')")
    assert fit(architecture, paramscope.pipeline.read(tmp_path / "model.safetensors"))["unused"] == ["lm_head.weight"]


def test_diff_of_a_gguf_with_a_far_block_is_bounded_and_lists_what_it_cannot_map(tmp_path):
    """A name of block 999,999 does not make gguf-py's name map a million blocks deep (diff.MAX_GGUF_BLOCKS):
    the name stays as it is and a note lists it."""
    import gguf
    import numpy as np

    from paramscope.diff import compare

    path = tmp_path / "far.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    for name in ("token_embd.weight", "blk.0.attn_norm.weight", "blk.999999.attn_norm.weight"):
        writer.add_tensor_info(name, (D,), np.dtype(np.float32), 4 * D)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    import os

    os.truncate(path, -(-os.path.getsize(path) // 32) * 32 + 3 * 4 * D)
    other = write_safetensors(tmp_path / "m.safetensors", {"model.embed_tokens.weight": NORM, "lm_head.weight": NORM,
                                                           "model.layers.0.input_layernorm.weight": NORM})
    d = compare(paramscope.inspect(path), paramscope.inspect(other))
    assert d.only_in_a == ["blk.999999.attn_norm.weight"] and d.only_in_b == []
    assert d.normalisation == [
        "A: 3 GGUF names mapped to Hugging Face names (gguf-py's TensorNameMap for llama)",
        "A: 1 GGUF names have no counterpart among the other side's names (blk.999999.attn_norm.weight)",
    ]


def test_a_file_without_ties_keeps_its_columns(tmp_path):
    """Nothing to tie: the rules hand back the inventory as read, its columns never turned into records (the
    100,000-tensor benchmark reads through here)."""
    from paramscope.hf_config import apply_config
    from paramscope.sources import open_source

    path = write_safetensors(tmp_path / "m.safetensors", {"model.embed_tokens.weight": EMB, "lm_head.weight": EMB},
                             {"format": "pt"})
    inventory = open_source(path)
    assert inventory.columnar
    settled = apply_config(inventory, inventory.pending.get("config"))
    assert settled is inventory and settled._rows is None


@pytest.mark.parametrize("arch", [["gpt2"], 7, None, "gpt2\x1b[31m"])
def test_a_gguf_architecture_that_is_no_known_name_ties_nothing(arch):
    from paramscope.records import Inventory, TensorRecord
    from paramscope.ties import apply

    records = [TensorRecord("token_embd.weight", (V, D), "float16"), TensorRecord("output.weight", (V, D), "float16")]
    inventory = Inventory("x.gguf", "gguf", records, metadata={"general.architecture": arch})
    assert apply(inventory, None) is inventory


def test_diff_says_why_gguf_names_are_not_mapped(tmp_path):
    import gguf
    import numpy as np

    from paramscope.diff import compare

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(path, "no-such-architecture")
    writer.add_tensor_info("token_embd.weight", (D,), np.dtype(np.float32), 4 * D)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    import os

    os.truncate(path, -(-os.path.getsize(path) // 32) * 32 + 4 * D)
    other = write_safetensors(tmp_path / "m.safetensors", {"embed_tokens.weight": NORM})
    d = compare(paramscope.inspect(path), paramscope.inspect(other))
    assert d.normalisation == ["A: GGUF names not mapped: gguf-py does not know the architecture "
                               "'no-such-architecture'"]
    assert d.only_in_a == ["token_embd.weight"] and not d.equivalent


@pytest.mark.parametrize(("arch", "tied"), [
    ("qwen3moe", True), ("deepseek2", True), ("t5", True), ("jamba", True), ("falcon-h1", True),  # output optional
    ("bitnet", True), ("openelm", True), ("gemma4-assistant", True),  # token_embd always
    ("bert", False), ("nomic-bert", False), ("phi2", False),  # not in llama.cpp 0c1e57098bba's fallback list
])
def test_gguf_head_fallback_follows_llama_cpp(arch, tied):
    """llama.cpp 0c1e57098bba, src/models/<arch>.cpp load_arch_tensors: qwen3moe's ``output`` is
    TENSOR_NOT_REQUIRED with token_embd TENSOR_DUPLICATED; bitnet reads no output tensor; bert has no LM head and
    phi2 requires its own ``output``."""
    from paramscope.records import Inventory, TensorRecord
    from paramscope.ties import apply

    records = [TensorRecord("token_embd.weight", (V, D), "float16"), TensorRecord("blk.0.attn_norm.weight", (D,),
                                                                                  "float32")]
    settled = apply(Inventory("x.gguf", "gguf", records, metadata={"general.architecture": arch}), None)
    if tied:
        assert [r.name for r in settled.tensors] == ["token_embd.weight", "output.weight", "blk.0.attn_norm.weight"]
        assert f"no output.weight: llama.cpp uses token_embd.weight as {arch}'s output head (tied)" in settled.notes
    else:
        assert settled is not None and [r.name for r in settled.tensors] == [r.name for r in records]


@pytest.mark.parametrize("arch", ["qwen2", "starcoder", "bloom"])
def test_gguf_equal_head_of_a_current_converter_is_its_own_tensor(arch):
    """Only gpt2/mpt's old converters wrote the tied head twice (llama.cpp issue #12567: current converters write
    lm_head only when the checkpoint has it): an equal ``output.weight`` elsewhere is an untied head."""
    from paramscope.records import Inventory, TensorRecord
    from paramscope.ties import apply

    records = [TensorRecord("token_embd.weight", (V, D), "float16"), TensorRecord("output.weight", (V, D), "float16")]
    inventory = Inventory("x.gguf", "gguf", records, metadata={"general.architecture": arch})
    assert apply(inventory, None) is inventory
    assert apply(inventory, {"tie_word_embeddings": True}).tensors[1].tie is not None


def test_the_tree_holds_a_stored_copys_bytes(tmp_path):
    """The tree's root size is the file's bytes: a stored copy counts no parameters but keeps its bytes
    (GGUF F16 head: V x D x 2 bytes, what gguf-py says the file holds)."""
    import gguf

    path = _gguf(tmp_path, "gpt2", {"transformer.wte.weight": EMB, "transformer.ln_f.weight": NORM}, copy_head=True)
    report = paramscope.inspect(path)
    root = report.tree()
    heads = {child.path: (child.parameters, child.bytes) for child in root.children}
    assert root.bytes == report.bytes == sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)
    assert heads["output"] == (0, 2 * V * D)
    assert heads["token_embd"] == (V * D, 2 * V * D)
    assert root.parameters == report.total == V * D + D
