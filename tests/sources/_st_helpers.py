"""Writers of safetensors headers for huge sparse fixtures, shared by the tests and bench/bench_safetensors.py.

A file is written as its real header followed by ``truncate`` to the full size, so a 13.5 GB checkpoint
costs a few kilobytes of disk. The header layout is the one ``safetensors`` itself writes (offsets
contiguous from 0, header padded with spaces to a multiple of 8).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

BITS = {"BF16": 16, "F16": 16, "F32": 32, "F64": 64, "I64": 64, "I32": 32, "U8": 8, "BOOL": 8, "F8_E4M3": 8}


def llama_tensors(
    *, vocab: int, hidden: int, layers: int, intermediate: int, heads: int, kv_heads: int, tied: bool = False
) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every weight of a Llama-architecture model, in Hugging Face naming."""
    head_dim = hidden // heads
    kv = kv_heads * head_dim
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj.weight", (hidden, hidden)),
            (p + "self_attn.k_proj.weight", (kv, hidden)),
            (p + "self_attn.v_proj.weight", (kv, hidden)),
            (p + "self_attn.o_proj.weight", (hidden, hidden)),
            (p + "mlp.gate_proj.weight", (intermediate, hidden)),
            (p + "mlp.up_proj.weight", (intermediate, hidden)),
            (p + "mlp.down_proj.weight", (hidden, intermediate)),
            (p + "input_layernorm.weight", (hidden,)),
            (p + "post_attention_layernorm.weight", (hidden,)),
        ]
    out.append(("model.norm.weight", (hidden,)))
    if not tied:
        out.append(("lm_head.weight", (vocab, hidden)))
    return out


LLAMA2_7B = dict(vocab=32000, hidden=4096, layers=32, intermediate=11008, heads=32, kv_heads=32)
LLAMA2_70B = dict(vocab=32000, hidden=8192, layers=80, intermediate=28672, heads=64, kv_heads=8)
LLAMA2_7B_PARAMS = 6_738_415_616
LLAMA2_70B_PARAMS = 68_976_648_192


def header_bytes(tensors: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str] | None = None) -> tuple[
    bytes, int
]:
    """The 8-byte length + padded JSON header for (name, dtype, shape), and the data size it declares."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape in tensors:
        size = math.prod(shape) * BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, offset


def write_sparse(path: Path, tensors: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str] | None = None):
    """Write the header, then extend the file to its full declared size without writing the data."""
    head, data = header_bytes(tensors, metadata)
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(len(head) + data)
    return len(head) + data


def write_sharded(
    directory: Path, tensors: list[tuple[str, str, tuple[int, ...]]], shards: int, prefix: str = "model"
) -> Path:
    """Split ``tensors`` into ``shards`` sparse files plus a ``model.safetensors.index.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    per = -(-len(tensors) // shards)
    weight_map: dict[str, str] = {}
    total = 0
    for k in range(shards):
        chunk = tensors[k * per : (k + 1) * per]
        name = f"{prefix}-{k + 1:05d}-of-{shards:05d}.safetensors"
        write_sparse(directory / name, chunk, {"format": "pt"})
        for tensor_name, dtype, shape in chunk:
            weight_map[tensor_name] = name
            total += math.prod(shape) * BITS[dtype] // 8
    index = directory / f"{prefix}.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return index


def small_tensors(count: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """``count`` small tensors named like a deep model's, for header-parsing benchmarks."""
    return [(f"model.layers.{i // 10}.block.{i % 10}.weight", "F32", (4, 4)) for i in range(count)]
