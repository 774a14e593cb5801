"""apply_config: ties a config declares, the unchanged fast path, and hostile configs."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from paramscope.hf_config import apply_config
from paramscope.records import Inventory, TensorRecord
from paramscope.report import Report
from paramscope.sources.files import read_path
from tests.sources._gguf_helpers import write_gguf
from tests.sources._st_helpers import llama_tensors

TOY = dict(vocab=1000, hidden=64, layers=2, intermediate=128, heads=4, kv_heads=2)


def _llama_file(tmp_path, **kwargs):
    tensors = llama_tensors(**TOY, **kwargs)
    path = tmp_path / "model.safetensors"
    save_file({n: np.zeros(s, np.float16) for n, s in tensors}, path)
    return path, sum(math.prod(s) for _, s in tensors)


@pytest.mark.parametrize("value", [True, False, None])
def test_cloned_head_is_tied_only_when_the_config_says_so(tmp_path, value):
    path, stored_total = _llama_file(tmp_path)  # lm_head.weight saved as its own copy
    config = {"model_type": "llama"} if value is None else {"model_type": "llama", "tie_word_embeddings": value}
    report = Report(apply_config(read_path(path), config))
    if value:
        assert report.total == stored_total - 1000 * 64
        assert report.ties == [["model.embed_tokens.weight", "lm_head.weight"]]
        assert any("tie_word_embeddings" in note for note in report.notes)
        assert report.non_embedding == report.total - 1000 * 64
        # the file holds both copies: its stored facts say so (the head is a stored copy, paramscope.ties)
        assert report.stored_elements == stored_total
        assert report.bytes == 2 * stored_total  # float16
    else:
        assert report.total == stored_total
        assert report.ties == []


def test_tied_count_matches_the_tied_transformers_model(tmp_path):
    """The tied total is what a tied model counts: the untied hand sum less one vocab x hidden matrix."""
    path, _ = _llama_file(tmp_path)
    tied = sum(math.prod(s) for _, s in llama_tensors(**TOY, tied=True))
    assert Report(apply_config(read_path(path), {"tie_word_embeddings": True})).total == tied


def test_gpt2_names_and_text_config(tmp_path):
    arrays = {"transformer.wte.weight": (50, 8), "transformer.wpe.weight": (16, 8), "lm_head.weight": (50, 8)}
    save_file({n: np.zeros(s, np.float32) for n, s in arrays.items()}, tmp_path / "g.safetensors")
    report = Report(apply_config(read_path(tmp_path / "g.safetensors"), {"text_config": {"tie_word_embeddings": True}}))
    assert report.total == 50 * 8 + 16 * 8
    assert report.ties == [["transformer.wte.weight", "lm_head.weight"]]


def test_shapes_must_agree(tmp_path):
    save_file({"model.embed_tokens.weight": np.zeros((50, 8), np.float32),
               "lm_head.weight": np.zeros((51, 8), np.float32)}, tmp_path / "m.safetensors")
    inv = read_path(tmp_path / "m.safetensors")
    assert apply_config(inv, {"tie_word_embeddings": True}) is inv


def test_gguf_output_and_token_embd(tmp_path):
    path = tmp_path / "t.gguf"
    shapes = {"token_embd.weight": (40, 16), "blk.0.attn_q.weight": (16, 16), "output.weight": (40, 16)}
    reference = write_gguf(path, "llama", shapes)
    inv = read_path(path)
    assert apply_config(inv, None) is inv
    report = Report(apply_config(inv, {"tie_word_embeddings": True}))
    assert report.total == reference - 40 * 16
    assert report.ties == [["token_embd.weight", "output.weight"]]
    assert report.stored_elements == reference  # llama does not tie by default: the config said so; stored twice


def test_nothing_to_do_is_fast_and_returns_the_same_inventory():
    records = [TensorRecord(f"model.layers.{i // 10}.block.{i % 10}.weight", (4, 4), "float32") for i in range(100_000)]
    inv = Inventory("big", "safetensors", records)
    start = time.perf_counter()
    assert apply_config(inv, None) is inv
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, elapsed


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
_KEYS = st.sampled_from([
    "quantization_config", "quantization", "num_local_experts", "num_experts", "num_experts_per_tok",
    "n_shared_experts", "tie_word_embeddings", "text_config", "ffn_config", "quant_method", "bits",
    "load_in_4bit", "config_groups", "shared_expert_intermediate_size",
])
_CONFIG = st.dictionaries(_KEYS, _JSON | st.dictionaries(_KEYS, _JSON, max_size=4), max_size=6)


@settings(max_examples=200, deadline=None)
@given(config=st.one_of(st.none(), _CONFIG), gguf_meta=st.dictionaries(
    st.sampled_from(["general.architecture", "llama.expert_count", "llama.expert_used_count"]), _JSON))
def test_fuzz_hostile_configs_never_raise(config, gguf_meta):
    records = [
        TensorRecord("model.embed_tokens.weight", (10, 4), "float16"),
        TensorRecord("model.layers.0.mlp.experts.0.w1.weight", (4, 4), "float16"),
        TensorRecord("model.layers.0.mlp.experts.gate_up_proj", (8, 4, 4), "float16"),
        TensorRecord("model.layers.0.q_proj.qweight", (1, 4), "int32"),
        TensorRecord("model.layers.0.q_proj.scales", (1, 4), "float16"),
        TensorRecord("lm_head.weight", (10, 4), "float16"),
    ]
    report = Report(apply_config(Inventory("x", "gguf", records, metadata=dict(gguf_meta)), config))
    assert report.total >= 0
    assert report.active is None or 0 <= report.active <= report.total
    report.to_dict()


def test_applying_twice_changes_nothing_more(tmp_path):
    path, _ = _llama_file(tmp_path)
    config = {"tie_word_embeddings": True, "num_local_experts": 4, "num_experts_per_tok": 2}
    once = apply_config(read_path(path), config)
    twice = apply_config(once, config)
    assert twice.notes == once.notes and twice.metadata == once.metadata
    assert [r.name for r in twice.tensors] == [r.name for r in once.tensors]
    assert Report(twice).total == Report(once).total


def test_ambiguous_quantization_note_once(tmp_path):
    """MLX 4-bit group 128 without a config fits 8-bit group 64 too: stored words counted, one note, twice applied."""
    save_file({"l.weight": np.zeros((8, 256 * 4 // 32), np.uint32), "l.scales": np.zeros((8, 2), np.float16),
               "l.biases": np.zeros((8, 2), np.float16)}, tmp_path / "m.safetensors")
    once = apply_config(read_path(tmp_path / "m.safetensors"), None)
    twice = apply_config(once, None)
    assert Report(twice).total == 8 * 32  # the stored uint32 words, not a 2x guess either way
    assert sum("fit several bit widths" in n for n in twice.notes) == 1
    assert twice.notes == once.notes


def test_rules_over_columns_give_the_records_rules_over_records_give():
    """apply_config on an inventory read as columns (the safetensors reader's) marks the same packed weights,
    bookkeeping and ties as on a list of records, and leaves an unquantized, untied one's columns as they are."""
    from paramscope.hf_config import apply_config
    from paramscope.records import Inventory, Role, Table, TensorRecord

    records = [
        TensorRecord("model.embed_tokens.weight", (10, 4), "bfloat16"),
        TensorRecord("model.layers.0.q.qweight", (2, 8), "int32", role=Role.BUFFER),
        TensorRecord("model.layers.0.q.qzeros", (1, 1), "int32", role=Role.BUFFER),
        TensorRecord("model.layers.0.q.scales", (1, 8), "float16"),
        TensorRecord("model.layers.0.f.weight", (4, 4), "float8_e4m3fn"),
        TensorRecord("model.layers.0.f.weight_scale_inv", (1, 1), "float32"),
        TensorRecord("lm_head.weight", (10, 4), "bfloat16"),
    ]
    configs = [None, {"tie_word_embeddings": True},
               {"tie_word_embeddings": True, "quantization_config": {"quant_method": "gptq", "bits": 8}}]
    for config in configs:
        by_rows = apply_config(Inventory("s", "safetensors", list(records)), config)
        by_columns = apply_config(Inventory("s", "safetensors", table=Table.from_records(records)), config)
        assert by_columns.tensors == by_rows.tensors
        assert [r.numel for r in by_columns.tensors] == [r.numel for r in by_rows.tensors]
        assert (by_columns.metadata, by_columns.notes) == (by_rows.metadata, by_rows.notes)
    assert by_rows.tensors[1].quant.logical_numel == 2 * 8 * 32 // 8 and by_rows.tensors[0].tie is not None
    plain = Inventory("s", "safetensors", table=Table.from_records([records[0], records[6]]))
    settled = apply_config(plain, None)
    assert settled is plain and plain.columnar and plain._rows is None  # no record was made


def test_the_raw_table_lets_its_modules_go_once_repacked():
    """A quantized table's modules (each name less its last part) are made once for the rules and handed to the
    repacked table, which the report drops them from; the raw table (held on by the small-tensor reader's
    inventory) keeps none. The repacked table's are the names' own modules."""
    from paramscope.records import Inventory, Table, TensorRecord

    records = [
        TensorRecord("model.embed_tokens.weight", (10, 4), "bfloat16"),
        TensorRecord("model.layers.0.f.weight", (4, 4), "float8_e4m3fn"),
        TensorRecord("model.layers.0.f.weight_scale_inv", (1, 1), "float32"),
    ]
    raw = Table.from_records(records)
    settled = apply_config(Inventory("s", "safetensors", table=raw), None)
    assert settled.table is not raw and raw._modules is None
    assert settled.table._modules == ["model.embed_tokens", "model.layers.0.f", "model.layers.0.f"]
    report = Report(settled)
    assert report.by_type[0].modules == 2  # (two modules hold a parameter: the embedding and f)
    report.module_columns()
    assert settled.table._modules is None


def test_an_index_is_read_the_same_with_its_raw_bytes_let_go(tmp_path):
    """_read_index drops the index's bytes once parsed (memory only): the shards it names are still all read."""
    import json

    from paramscope.sources.safetensors import _read_index

    for k in range(2):
        save_file({f"layer{k}.weight": np.zeros((2, 3), np.float16)}, tmp_path / f"m-{k}.safetensors")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"layer0.weight": "m-0.safetensors",
                                                "layer1.weight": "m-1.safetensors"}}))
    inventory = _read_index(index)
    assert inventory.table.names == ["layer0.weight", "layer1.weight"] and inventory.metadata["shards"] == 2
