"""Writers of one model's files by every route paramscope reads, for tests/test_routes.py and tests/test_ties.py.

Headers are written by the libraries' own writers (gguf-py's ``GGUFWriter``) or by hand to the published layout
(safetensors: an 8-byte length, a JSON header, the data); the data is a sparse hole made by ``truncate``, since the
readers read headers alone. Names follow what the real writers produce: ``save_pretrained`` leaves out a tied head,
``safetensors.torch.save_model`` keeps one name and records the other in ``__metadata__``, llama.cpp's converter
maps names with gguf-py's ``TensorNameMap`` and writes GPT-2's tied head twice.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

SAFETENSORS_DTYPES = {"float32": ("F32", 4), "float16": ("F16", 2), "bfloat16": ("BF16", 2)}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...]]],
                      metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file of ``{name: (torch dtype name, shape)}``, its data a hole."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, (dtype, shape) in tensors.items():
        code, size = SAFETENSORS_DTYPES[dtype]
        n = size
        for d in shape:
            n *= d
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
    os.truncate(path, 8 + len(raw) + offset)
    return path


def write_sharded(directory: Path, tensors: dict[str, tuple[str, tuple[int, ...]]], shards: int) -> Path:
    """``model-0000i-of-0000n.safetensors`` shards and their ``model.safetensors.index.json``, as save_pretrained."""
    directory.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    per = -(-len(names) // shards)
    weight_map = {}
    for i in range(shards):
        part = names[i * per:(i + 1) * per]
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(directory / file, {n: tensors[n] for n in part})
        weight_map.update(dict.fromkeys(part, file))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory


def gguf_name_map(arch: str, blocks: int) -> Any:
    import gguf

    which = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)
    return gguf.get_tensor_name_map(which, blocks)


def write_gguf(path: Path, arch: str, blocks: int, tensors: dict[str, tuple[str, tuple[int, ...]]], *,
               quant: str = "F16", transpose: tuple[str, ...] = (), copy_head: bool = False) -> Path:
    """A GGUF file as llama.cpp's converter lays out ``tensors`` (Hugging Face names): names mapped by gguf-py,
    2-D weights in ``quant`` (F16 or Q8_0), the rest F32, ``transpose`` suffixes transposed (GPT-2's Conv1D),
    ``output.weight`` written as a second copy of ``token_embd.weight`` with ``copy_head``; data a hole."""
    import gguf
    import numpy as np

    names = gguf_name_map(arch, blocks)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(blocks)
    total = 0
    entries = []
    for hf, (_, shape) in tensors.items():
        name = names.get_name(hf, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf
        if hf.endswith(transpose) and len(shape) == 2:
            shape = shape[::-1]
        entries.append((name, shape))
        if copy_head and name == "token_embd.weight":
            entries.append(("output.weight", shape))
    for name, shape in entries:
        qtype = gguf.GGMLQuantizationType[quant] if len(shape) == 2 else gguf.GGMLQuantizationType.F32
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        n = 1
        for d in shape:
            n *= d
        nbytes = n // block * size
        writer.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
        total += -(-nbytes // 32) * 32
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    start = -(-os.path.getsize(path) // 32) * 32
    os.truncate(path, start + total)
    return path
