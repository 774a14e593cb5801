"""GGUF files shaped like real community uploads, for the remote GGUF tests and bench/bench_remote_gguf.py:
real headers written by gguf-py's own GGUFWriter (a 32k-token SentencePiece vocabulary with scores and token
types, the llama key/values, a chat template, quantized tensor infos), the data section left sparse (truncate),
so a 7B-shaped file of any quantization costs a megabyte of disk."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

# Llama-2-7B: vocab 32000, hidden 4096, 32 layers, FFN 11008 (its config.json); 6,738,415,616 parameters.
LLAMA_7B = {"vocab": 32_000, "hidden": 4096, "layers": 32, "ffn": 11_008}
LLAMA_7B_PARAMS = 6_738_415_616

# file name suffix -> (general.file_type, type of the big matrices, type of output.weight)
Q = gguf.GGMLQuantizationType
QUANTIZATIONS = {
    "Q2_K": (10, Q.Q2_K, Q.Q6_K),
    "Q3_K_M": (12, Q.Q3_K, Q.Q6_K),
    "Q4_0": (2, Q.Q4_0, Q.Q6_K),
    "Q4_K_M": (15, Q.Q4_K, Q.Q6_K),
    "Q5_K_M": (17, Q.Q5_K, Q.Q6_K),
    "Q6_K": (18, Q.Q6_K, Q.Q6_K),
    "Q8_0": (7, Q.Q8_0, Q.Q8_0),
    "F16": (1, Q.F16, Q.F16),
}


def llama_tensors(vocab: int, hidden: int, layers: int, ffn: int) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, numpy-order shape, is a big matrix) in llama.cpp's naming and order."""
    out = [("token_embd.weight", (vocab, hidden), True)]
    for i in range(layers):
        out += [
            (f"blk.{i}.attn_norm.weight", (hidden,), False),
            (f"blk.{i}.attn_q.weight", (hidden, hidden), True),
            (f"blk.{i}.attn_k.weight", (hidden, hidden), True),
            (f"blk.{i}.attn_v.weight", (hidden, hidden), True),
            (f"blk.{i}.attn_output.weight", (hidden, hidden), True),
            (f"blk.{i}.ffn_norm.weight", (hidden,), False),
            (f"blk.{i}.ffn_gate.weight", (ffn, hidden), True),
            (f"blk.{i}.ffn_up.weight", (ffn, hidden), True),
            (f"blk.{i}.ffn_down.weight", (hidden, ffn), True),
        ]
    return [*out, ("output_norm.weight", (hidden,), False), ("output.weight", (vocab, hidden), True)]


def _configure(writer: gguf.GGUFWriter, vocab: int, hidden: int, layers: int, ffn: int, file_type: int) -> None:
    writer.add_name("Llama-2-7b")
    writer.add_context_length(4096)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(32)
    writer.add_head_count_kv(32)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(hidden // 32)
    writer.add_file_type(file_type)
    writer.add_quantization_version(2)
    writer.add_tokenizer_model("llama")
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 12, vocab)  # SentencePiece pieces: "▁" plus a few letters
    writer.add_token_list([("\u2581" + "abcdefghijk"[: int(n)] + str(i)) for i, n in enumerate(lengths)])
    writer.add_token_scores([float(-i) for i in range(vocab)])
    writer.add_token_types([1] * vocab)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_chat_template("{% for message in messages %}{{ message['content'] }}{% endfor %}" * 20)


def write_llama_gguf(path: Path, quant: str = "Q4_K_M", shape: dict[str, int] | None = None,
                     split_max_tensors: int = 0) -> list[Path]:
    """A Llama-shaped GGUF (every part, with ``split_max_tensors``) with real headers and sparse data; returns
    the files written."""
    shape = shape or LLAMA_7B
    file_type, big, output = QUANTIZATIONS[quant]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, "llama", split_max_tensors=split_max_tensors)
    _configure(writer, **shape, file_type=file_type)
    for name, dims, is_big in llama_tensors(**shape):
        qtype = (output if name == "output.weight" else big) if is_big else Q.F32
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        numel = int(np.prod(dims))
        writer.add_tensor_info(name, dims, np.dtype(np.float32), numel // block * type_size, raw_dtype=qtype)
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    paths = sorted(path.parent.glob(f"{path.stem}*.gguf")) if split_max_tensors else [path]
    sizes = [sum(gguf.GGUFWriter.ggml_pad(ti.nbytes, writer.data_alignment) for ti in tensors.values())
             for tensors in writer.tensors]
    writer.close()
    for part, data in zip(paths, sizes, strict=True):
        header = part.stat().st_size
        start = -(-header // writer.data_alignment) * writer.data_alignment
        with open(part, "r+b") as handle:
            handle.truncate(start + data)
    return paths


def gguf_py_parameters(path: Path) -> int:
    """The element count gguf-py's own GGUFReader finds in a file (the independent reference)."""
    return sum(int(t.n_elements) for t in gguf.GGUFReader(path).tensors)
