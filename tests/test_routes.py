"""One model, one number, one picture: every route to the same model reports the same total, non-embedding count
and tie group, each file's stored facts are what that file holds, and ``diff`` of any two routes is "equivalent".

GPT-2 (124,439,808 parameters) is built on the meta device and its files are written header-first with the data a
sparse hole (tests/_routes.py), in the layouts the real writers use; a small GPT-2, Llama (untied) and Gemma (tied
by default) are also written by the libraries themselves (``save_pretrained``, ``safetensors.torch.save_model``,
``torch.save``, ``torch.onnx.export`` with and without constant folding). References: the live model's own
``sum(p.numel())`` (torch, each Parameter once), the safetensors header's data offsets, gguf-py's ``GGUFReader``
and onnx's ``load``. The same picture: the default text tree shows the blocks folded as one row (``0…11 ×12``).

The full-size GPT-2 is not exported to ONNX here (~500 MB of fp32 written for real: the exporter cannot write a
hole); the small exports cover the ONNX rules (sources/onnx.py, ties.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
st = pytest.importorskip("safetensors.torch")

import paramscope  # noqa: E402
from paramscope.diff import compare  # noqa: E402
from tests._routes import write_gguf, write_safetensors, write_sharded  # noqa: E402
from tests.hostile._limits import run_cli  # noqa: E402

GPT2_TOTAL = 124_439_808  # GPT2LMHeadModel(GPT2Config()): sum(p.numel() for p in model.parameters())
GPT2_NON_EMBEDDING = 85_056_000  # less wte (50,257 x 768) and wpe (1,024 x 768)
GPT2_CONV1D = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")  # llama.cpp's converter transposes these
GPT2_TIE = ["transformer.wte.weight", "lm_head.weight"]


def _unique_numel(model) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields each shared Parameter once


def _shapes(model, drop: str | None = None) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {k: (str(v.dtype).removeprefix("torch."), tuple(v.shape)) for k, v in model.state_dict().items()
            if k != drop}


def _config_dir(path: Path, config) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config.to_json_file(path / "config.json")
    return path


def _safetensors_data(path: Path) -> tuple[int, int]:
    """(elements, bytes) a safetensors file holds, from its header's shapes and data offsets."""
    with open(path, "rb") as f:  # the header alone: the data is a hole of hundreds of megabytes
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    elements = size = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for d in entry["shape"]:
            n *= d
        elements += n
        size += entry["data_offsets"][1] - entry["data_offsets"][0]
    return elements, size


def _folded_blocks(report) -> list[tuple[str, str]]:
    """(container, row) of each folded run in the default text tree: the row ``0…N-1 … ×N`` and the module above
    it, read from what the renderer prints."""
    lines = str(report).splitlines()
    out = []
    for k, line in enumerate(lines):
        found = re.search(r"── (\d+…\d+)\s.*×(\d+)\b", line)
        if found:
            parent = re.search(r"── (\S+)", lines[k - 1])
            out.append((parent.group(1) if parent else "", f"{found.group(1)} ×{found.group(2)}"))
    return out


def _onnx_data(path: Path) -> tuple[int, int]:
    """(elements, bytes) of an export's weights as onnx reads them: its floating initializers of more than one
    element (the rest are the exporter's shapes, indices and scalars)."""
    import math

    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(path), load_external_data=False)
    weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and math.prod(t.dims) > 1]
    return sum(math.prod(t.dims) for t in weights), sum(len(t.raw_data) for t in weights)


def _gguf_data(path: Path) -> tuple[int, int]:
    reader = gguf.GGUFReader(path)
    return sum(int(t.n_elements) for t in reader.tensors), sum(int(t.n_bytes) for t in reader.tensors)


@pytest.fixture(scope="module")
def gpt2_routes(tmp_path_factory) -> dict[str, object]:
    """GPT-2 by every route paramscope reads, full size: the model on meta, its config, and header-only files."""
    tmp = tmp_path_factory.mktemp("gpt2")
    config = transformers.GPT2Config()
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(config)
    config.architectures = ["GPT2LMHeadModel"]
    assert _unique_numel(model) == GPT2_TOTAL
    shapes = _shapes(model)
    kept = {k: v for k, v in shapes.items() if k != "lm_head.weight"}  # save_pretrained leaves the tied head out
    single = _config_dir(tmp / "single", config)
    write_safetensors(single / "model.safetensors", kept)
    sharded = write_sharded(_config_dir(tmp / "sharded", config), kept, 3)
    # safetensors.torch.save_model keeps lm_head.weight and records the removed name (tests/test_diff.py checks
    # the library writes exactly this)
    saved = write_safetensors(tmp / "save_model.safetensors",
                              {k: v for k, v in shapes.items() if k != "transformer.wte.weight"},
                              {"transformer.wte.weight": "lm_head.weight", "format": "pt"})
    arch = _config_dir(tmp / "arch", config)
    f16 = write_gguf(tmp / "gpt2-f16.gguf", "gpt2", 12, kept, transpose=GPT2_CONV1D, copy_head=True)
    q8 = write_gguf(tmp / "gpt2-q8_0.gguf", "gpt2", 12, kept, quant="Q8_0", transpose=GPT2_CONV1D, copy_head=True)
    with_config = _config_dir(tmp / "gguf_config", config)
    write_gguf(with_config / "gpt2-f16.gguf", "gpt2", 12, kept, transpose=GPT2_CONV1D, copy_head=True)
    return {
        "live": model, "config.json": arch / "config.json", "save_pretrained": single,
        "save_pretrained file": single / "model.safetensors", "sharded": sharded, "save_model": saved,
        "gguf f16": f16, "gguf q8_0": q8, "gguf f16 + config.json": with_config / "gpt2-f16.gguf",
    }


ROUTES = ("live", "config.json", "save_pretrained", "save_pretrained file", "sharded", "save_model", "gguf f16",
          "gguf q8_0", "gguf f16 + config.json")


@pytest.mark.parametrize("route", ROUTES)
def test_gpt2_every_route_counts_the_same(gpt2_routes, route):
    report = paramscope.inspect(gpt2_routes[route])
    assert report.total == GPT2_TOTAL
    assert report.non_embedding == GPT2_NON_EMBEDDING
    assert len(report.ties) == 1
    expected = ["token_embd.weight", "output.weight"] if route.startswith("gguf") else GPT2_TIE
    assert report.ties == [expected]
    # the same picture: the twelve blocks folded as one row (GGUF names them blk.N, the rest transformer.h.N)
    assert _folded_blocks(report) == [("blk" if route.startswith("gguf") else "h", "0…11 ×12")]


@pytest.mark.parametrize("route", ["save_pretrained file", "save_model"])
def test_gpt2_safetensors_stored_facts_are_the_file(gpt2_routes, route):
    report = paramscope.inspect(gpt2_routes[route])
    elements, size = _safetensors_data(gpt2_routes[route])
    assert (report.stored_elements, report.bytes) == (elements, size) == (GPT2_TOTAL, 4 * GPT2_TOTAL)


@pytest.mark.parametrize("route", ["gguf f16", "gguf q8_0", "gguf f16 + config.json"])
def test_gpt2_gguf_stored_facts_are_the_file(gpt2_routes, route):
    """llama.cpp stores GPT-2's head twice: the model has 124,439,808 parameters, the file 163,037,184 elements."""
    report = paramscope.inspect(gpt2_routes[route])
    elements, size = _gguf_data(gpt2_routes[route])
    assert elements == 163_037_184 == GPT2_TOTAL + 50_257 * 768
    assert (report.stored_elements, report.bytes) == (elements, size)
    assert "output.weight is a stored copy of token_embd.weight (llama.cpp writes gpt2's tied head twice): " \
        "counted once" in report.notes


def test_gpt2_memory_weights_are_the_bytes_stored(gpt2_routes):
    from paramscope.memory import estimate

    report = paramscope.inspect(gpt2_routes["gguf f16 + config.json"])
    assert report.parameter_bytes == _gguf_data(gpt2_routes["gguf f16 + config.json"])[1]
    assert estimate(report).weights_stored == report.parameter_bytes


@pytest.mark.parametrize("pair", [("live", "sharded"), ("save_pretrained file", "save_model"),
                                  ("config.json", "gguf f16"), ("save_model", "gguf q8_0"), ("sharded", "save_model")])
def test_gpt2_diff_of_two_routes_is_equivalent(gpt2_routes, pair):
    a, b = (paramscope.inspect(gpt2_routes[r]) for r in pair)
    d = compare(a, b)
    assert d.equivalent, d.to_dict()
    assert d.exit_code() == 0
    assert d.a.parameters == d.b.parameters == GPT2_TOTAL


# ---- small models written by the libraries themselves -----------------------------------------------------------


def _small(kind: str):
    if kind == "gpt2":
        config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100, n_positions=32)
        return config, transformers.GPT2LMHeadModel, "gpt2"
    if kind == "llama":
        config = transformers.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                          tie_word_embeddings=False)
        return config, transformers.LlamaForCausalLM, "llama"
    config = transformers.GemmaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=1, head_dim=16, vocab_size=128)
    return config, transformers.GemmaForCausalLM, "gemma"


@pytest.fixture(scope="module", params=["gpt2", "llama", "gemma"])
def small_routes(request, tmp_path_factory):
    kind = request.param
    tmp = tmp_path_factory.mktemp(kind)
    config, cls, arch = _small(kind)
    torch.manual_seed(0)
    model = cls(config).eval()
    with torch.no_grad():  # distinct values: the ONNX exporter merges equal initializers (fresh norms are all ones)
        for p in model.parameters():
            p.normal_()
    tied = config.tie_word_embeddings
    model.save_pretrained(tmp / "pretrained")
    model.save_pretrained(tmp / "sharded", max_shard_size="40KB")
    st.save_model(model, str(tmp / "save_model.safetensors"))
    torch.save(model.state_dict(), tmp / "state_dict.bin")
    head = "lm_head.weight"
    shapes = _shapes(model, drop=head if tied else None)
    transpose = GPT2_CONV1D if kind == "gpt2" else ()
    # llama.cpp: GPT-2's tied head written twice, Gemma's left out (its loader uses token_embd), Llama's own head
    write_gguf(tmp / "f16.gguf", arch, 2, shapes, transpose=transpose, copy_head=kind == "gpt2")
    write_gguf(tmp / "q8_0.gguf", arch, 2, shapes, quant="Q8_0", transpose=transpose, copy_head=kind == "gpt2")
    arch_dir = _config_dir(tmp / "arch", model.config)
    one_less = cls(type(config)(**{**config.to_dict(), _layers_key(config): 1}))
    onnx_folded = _export_onnx(model, tmp / "folded.onnx", fold=True)
    onnx_unfolded = _export_onnx(model, tmp / "unfolded.onnx", fold=False)
    return {
        "kind": kind, "tied": tied, "model": model, "one_less": one_less,
        "routes": {
            "live": model, "config.json": arch_dir / "config.json", "save_pretrained": tmp / "pretrained",
            "sharded": tmp / "sharded", "save_model": tmp / "save_model.safetensors", "bin": tmp / "state_dict.bin",
            "gguf f16": tmp / "f16.gguf", "gguf q8_0": tmp / "q8_0.gguf",
            "onnx folded": onnx_folded, "onnx unfolded": onnx_unfolded,
        },
    }


def _export_onnx(model, path: Path, *, fold: bool) -> Path:
    """torch.onnx.export of ``model``'s logits (the TorchScript exporter; dynamo needs onnxscript), with and
    without ``do_constant_folding``: folded, each Linear's weight is stored transposed as ``onnx::MatMul_<n>``
    and a tied head as its own transposed initializer; unfolded, the weights keep their names and a tied head is
    the embedding read again through a Transpose."""
    import contextlib
    import io
    import warnings

    plain = model.forward

    def logits(ids):  # a plain forward for tracing (tensors in, tensors out), names kept: no wrapper module
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        return plain(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions,
                     use_cache=False).logits

    model.forward = logits
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.ones(1, 8, dtype=torch.long),), str(path), dynamo=False,
                              opset_version=17, do_constant_folding=fold)
    finally:
        del model.forward
    return path


def _layers_key(config) -> str:
    return "n_layer" if hasattr(config, "n_layer") else "num_hidden_layers"


def _head_numel(small_routes) -> int:
    return small_routes["model"].get_output_embeddings().weight.numel()


def _embedding_numel(model) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))


def test_small_models_every_route_counts_the_same(small_routes):
    model = small_routes["model"]
    total = _unique_numel(model)
    non_embedding = total - _embedding_numel(model)
    for route, source in small_routes["routes"].items():
        report = paramscope.inspect(source)
        assert (route, report.total) == (route, total)
        assert (route, report.non_embedding) == (route, non_embedding)
        assert (route, len(report.ties)) == (route, 1 if small_routes["tied"] else 0)
        container = "blk" if route.startswith("gguf") else "h" if small_routes["kind"] == "gpt2" else "layers"
        assert (route, _folded_blocks(report)) == (route, [(container, "0…1 ×2")])


def test_small_models_stored_facts_are_the_files(small_routes):
    routes = small_routes["routes"]
    for route in ("save_model",):
        report = paramscope.inspect(routes[route])
        assert (report.stored_elements, report.bytes) == _safetensors_data(routes[route])
    report = paramscope.inspect(routes["save_pretrained"])
    assert (report.stored_elements, report.bytes) == _safetensors_data(routes["save_pretrained"] / "model.safetensors")
    for route in ("gguf f16", "gguf q8_0"):
        report = paramscope.inspect(routes[route])
        assert (report.stored_elements, report.bytes) == _gguf_data(routes[route])
    for route in ("onnx folded", "onnx unfolded"):  # folded and tied, the head is stored a second time
        report = paramscope.inspect(routes[route])
        assert (route, report.stored_elements, report.bytes) == (route, *_onnx_data(routes[route]))
        copy = small_routes["tied"] and route == "onnx folded"
        assert report.stored_elements == report.total + _head_numel(small_routes) * copy
        assert report.tree().bytes == report.bytes
    report = paramscope.inspect(routes["bin"])  # torch.save keeps one storage for the tied pair
    state = small_routes["model"].state_dict()
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in state.values()}
    assert report.bytes == sum(storages.values())


def test_small_models_diff_of_any_two_routes_is_equivalent(small_routes):
    routes = small_routes["routes"]
    reports = {route: paramscope.inspect(source) for route, source in routes.items()}
    names = list(reports)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d = compare(reports[a], reports[b])
            assert (a, b, d.equivalent) == (a, b, True), d.to_dict()


def test_small_models_diff_names_a_removed_layer(small_routes, tmp_path):
    one_less = small_routes["one_less"]
    one_less.save_pretrained(tmp_path / "one_less")
    for route in ("save_pretrained", "gguf f16", "onnx folded", "onnx unfolded"):
        d = compare(paramscope.inspect(small_routes["routes"][route]), paramscope.inspect(tmp_path / "one_less"))
        assert not d.equivalent
        assert d.exit_code() == 1
        assert d.unexpected_keys == []
        assert d.missing_keys and all(".1." in name for name in d.missing_keys)


def test_diff_cli_exit_codes(small_routes, tmp_path):
    if small_routes["kind"] != "gpt2":
        pytest.skip("the command once is enough")
    routes = small_routes["routes"]
    for other in ("gguf q8_0", "onnx folded"):
        same = run_cli("diff", str(routes["save_pretrained"]), str(routes[other]))
        assert same.returncode == 0, same.stderr
        assert re.search(r"verdict: (identical|equivalent)", same.stdout), same.stdout  # fp32 ONNX: identical
    small_routes["one_less"].save_pretrained(tmp_path / "one_less")
    different = run_cli("diff", str(routes["save_model"]), str(tmp_path / "one_less"))
    assert different.returncode == 1, different.stderr
    assert "transformer.h.1.attn.c_attn.weight" in different.stdout
