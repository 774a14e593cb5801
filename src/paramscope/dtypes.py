"""Every element type paramscope knows, in one table.

A dtype is described by how many logical elements one storage *block* holds and how many bytes that
block takes. Plain types are blocks of one element (float32: 1 element in 4 bytes); packed and
quantized types are bigger blocks (float4_e2m1fn: 2 elements in 1 byte; GGML Q4_K: 256 elements
in 144 bytes). Byte sizes and bits per weight follow from that alone, so no reader needs an if-chain.

Canonical names are PyTorch's (``float32``, ``bfloat16``, ``float8_e4m3fn``) for the types PyTorch
has, and GGML's own names (``Q4_K``, ``IQ2_XXS``) for the block-quantized types of llama.cpp. Readers
map their format's spelling (``BF16``, ``<f4``, GGML type ids) onto these names with their own tables.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    Kind = Literal["float", "complex", "int", "uint", "bool", "quantized", "bits"]


class DType:
    """An element type: ``block_elements`` logical elements are stored in ``block_bytes`` bytes."""

    __slots__ = ("block_bytes", "block_elements", "kind", "name")

    def __init__(self, name: str, kind: Kind, block_elements: int, block_bytes: int) -> None:
        self.name = name
        self.kind = kind
        self.block_elements = block_elements
        self.block_bytes = block_bytes

    def __repr__(self) -> str:
        return f"DType({self.name!r}, {self.kind!r}, {self.block_elements}, {self.block_bytes})"

    def nbytes(self, numel: int) -> int:
        """Bytes taken by ``numel`` elements, rounding a partial block up to a whole one."""
        blocks = -(-numel // self.block_elements)
        return blocks * self.block_bytes


def _plain(kind: Kind, itemsize: int, *names: str) -> list[DType]:
    return [DType(name, kind, 1, itemsize) for name in names]


_TABLE: list[DType] = [
    *_plain("float", 8, "float64"),
    *_plain("float", 4, "float32"),
    *_plain("float", 2, "float16", "bfloat16"),
    *_plain(
        "float", 1,
        "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
    ),
    # Sub-byte floats: safetensors F6_* packs four 6-bit values in three bytes, F4 two per byte.
    DType("float6_e2m3fn", "float", 4, 3),
    DType("float6_e3m2fn", "float", 4, 3),
    DType("float4_e2m1fn", "float", 2, 1),  # safetensors F4, ONNX FLOAT4E2M1: shapes count 4-bit values
    # PyTorch's float4_e2m1fn_x2 is a one-byte element holding two values: shapes count bytes.
    *_plain("float", 1, "float4_e2m1fn_x2"),
    *_plain("complex", 16, "complex128"),
    *_plain("complex", 8, "complex64"),
    *_plain("complex", 4, "complex32"),
    *_plain("int", 8, "int64"),
    *_plain("int", 4, "int32"),
    *_plain("int", 2, "int16"),
    *_plain("int", 1, "int8"),
    *_plain("uint", 8, "uint64"),
    *_plain("uint", 4, "uint32"),
    *_plain("uint", 2, "uint16"),
    *_plain("uint", 1, "uint8"),
    *_plain("bool", 1, "bool"),
    # PyTorch's sub-byte integer dtypes exist as names; each element still occupies one byte.
    *_plain("int", 1, "int1", "int2", "int3", "int4", "int5", "int6", "int7"),
    *_plain("uint", 1, "uint1", "uint2", "uint3", "uint4", "uint5", "uint6", "uint7"),
    # PyTorch's legacy quantized tensors: one byte per element (quint4x2's byte packs two values, but
    # PyTorch's shapes count the bytes, as with float4_e2m1fn_x2).
    *_plain("quantized", 1, "qint8", "quint8", "quint4x2", "quint2x4"),
    *_plain("quantized", 4, "qint32"),
    *_plain("bits", 1, "bits8", "bits1x8", "bits2x4", "bits4x2"),
    *_plain("bits", 2, "bits16"),
    # GGML block types (llama.cpp ggml-common.h): elements per block, bytes per block. Checked against the
    # block structs' static_asserts in ggml-common.h and gguf-py's GGML_QUANT_SIZES (gguf 0.19).
    DType("Q4_0", "quantized", 32, 18),
    DType("Q4_1", "quantized", 32, 20),
    DType("Q5_0", "quantized", 32, 22),
    DType("Q5_1", "quantized", 32, 24),
    DType("Q8_0", "quantized", 32, 34),
    DType("Q8_1", "quantized", 32, 36),
    DType("Q2_K", "quantized", 256, 84),
    DType("Q3_K", "quantized", 256, 110),
    DType("Q4_K", "quantized", 256, 144),
    DType("Q5_K", "quantized", 256, 176),
    DType("Q6_K", "quantized", 256, 210),
    DType("Q8_K", "quantized", 256, 292),
    DType("IQ2_XXS", "quantized", 256, 66),
    DType("IQ2_XS", "quantized", 256, 74),
    DType("IQ3_XXS", "quantized", 256, 98),
    DType("IQ1_S", "quantized", 256, 50),
    DType("IQ4_NL", "quantized", 32, 18),
    DType("IQ3_S", "quantized", 256, 110),
    DType("IQ2_S", "quantized", 256, 82),
    DType("IQ4_XS", "quantized", 256, 136),
    DType("IQ1_M", "quantized", 256, 56),
    DType("TQ1_0", "quantized", 256, 54),
    DType("TQ2_0", "quantized", 256, 66),
    DType("MXFP4", "quantized", 32, 17),
    DType("NVFP4", "quantized", 64, 36),
    DType("Q1_0", "quantized", 128, 18),
    DType("Q2_0", "quantized", 64, 18),
]

DTYPES: dict[str, DType] = {d.name: d for d in _TABLE}


def get(name: str) -> DType:
    """The DType called ``name``; KeyError for a name paramscope does not know."""
    return DTYPES[name]


def nbytes(dtype: str, numel: int) -> int | None:
    """Bytes for ``numel`` elements of ``dtype``, or None when the dtype is unknown."""
    known = DTYPES.get(dtype)
    return None if known is None else known.nbytes(numel)
