"""Packed tensors in the tabular and tree renderers show what is stored AND what it stands for."""

from __future__ import annotations

import re

import numpy as np
from safetensors.numpy import save_file

from paramscope.hf_config import apply_config
from paramscope.renderers import RenderOptions, render
from paramscope.report import Report
from paramscope.sources.files import read_path

IN, OUT, GROUP = 256, 64, 128


def _gptq_report(tmp_path) -> Report:
    """One AutoGPTQ 4-bit QuantLinear: qweight int32 [in/8, out], qzeros [groups, out/8], scales, g_idx."""
    save_file({
        "layer.qweight": np.zeros((IN // 8, OUT), np.int32),
        "layer.qzeros": np.zeros((IN // GROUP, OUT // 8), np.int32),
        "layer.scales": np.zeros((IN // GROUP, OUT), np.float16),
        "layer.g_idx": np.zeros((IN,), np.int32),
        "layer.bias": np.zeros((OUT,), np.float16),
    }, tmp_path / "model.safetensors")
    return Report(apply_config(read_path(tmp_path / "model.safetensors"), None))


def test_csv_tensor_rows_name_the_scheme(tmp_path):
    out = render(_gptq_report(tmp_path), "csv", RenderOptions(by="tensor"))
    # numel = 32 x 64 int32 words x 8 weights each = 256 x 64; bytes = what is stored
    assert out.splitlines() == [
        "name,shape,dtype,role,trainable,numel,bytes,tied_to",
        "layer.g_idx,256,int32,quant_aux,,256,1024,",
        "layer.qweight,32x64,int32 → gptq 4-bit,parameter,,16384,8192,",
        "layer.qzeros,2x8,int32,quant_aux,,16,64,",
        "layer.bias,64,float16,parameter,,64,128,",
        "layer.scales,2x64,float16,quant_aux,,128,256,",
    ]


def test_markdown_and_table_rows(tmp_path):
    report = _gptq_report(tmp_path)
    md = render(report, "markdown", RenderOptions(by="tensor"))
    assert "| layer.qweight | [32, 64] | int32 → gptq 4-bit | parameter | - | 16,384 | 8.0 KiB | - |" in md
    table = render(report, "table", RenderOptions(by="tensor", width=200))
    assert "int32 → gptq 4-bit" in table
    tree = render(report, "tree", RenderOptions(width=200))
    # the column widths follow the (tmp) root path: the cells, in order, one row
    assert re.search(r"qweight +\[32, 64\] int32 → gptq 4-bit +16,384 +99\.6% +8\.0 KiB\n", tree)


def test_unquantized_rows_are_unchanged(tmp_path):
    save_file({"layer.weight": np.zeros((4, 8), np.float32)}, tmp_path / "plain.safetensors")
    out = render(Report(read_path(tmp_path / "plain.safetensors")), "csv", RenderOptions(by="tensor"))
    assert out.splitlines()[1] == "layer.weight,4x8,float32,parameter,,32,128,"
