"""paramscope.distributed in one process: combining per-rank figures, printing once, staying light.

The multi-rank behaviour (every rank the same global report, per-rank shares gathered) is exercised by
real gloo runs in tests/sources/test_live_sharded.py.
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import paramscope
from paramscope.distributed import combine, local_share, local_shares, print_once, rank_figures, report_all_ranks
from paramscope.errors import ParamscopeError


def test_combine_folds_rank_figures():
    per_rank = [
        {"total": 283, "trainable": 283, "buffers": 0, "local_numel": 142, "tensors": 4},
        {"total": 283, "trainable": 283, "buffers": 0, "local_numel": 141, "tensors": 4},
    ]
    assert combine(per_rank) == {
        "world_size": 2, "local_numel_per_rank": [142, 141], "local_numel_sum": 283, "replication": 1.0,
    }


def test_combine_refuses_ranks_that_disagree():
    per_rank = [{"total": 283, "local_numel": 142}, {"total": 284, "local_numel": 142}]
    with pytest.raises(ParamscopeError, match="rank 0: 283, rank 1: 284"):
        combine(per_rank, source="model")
    with pytest.raises(ParamscopeError):
        combine([])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**12), min_size=1, max_size=16))
def test_combine_only_raises_paramscope_error(total, locals_):
    per_rank = [{"total": total, "local_numel": n} for n in locals_]
    out = combine(per_rank)
    assert out["world_size"] == len(locals_)
    assert out["local_numel_sum"] == sum(locals_)


def test_single_process_report_is_the_plain_report(frozen_backbone):
    report = report_all_ranks(frozen_backbone)
    assert (report.total, report.trainable) == (283, 63)
    assert report.metadata == {}
    assert local_share(frozen_backbone) == 283 == local_share(report)
    assert local_shares(frozen_backbone) == [283]
    assert rank_figures(report) == {"total": 283, "trainable": 63, "buffers": 0, "local_numel": 283, "tensors": 4}


def test_print_once_without_process_group_prints():
    buf = io.StringIO()
    assert print_once("hello", file=buf) is True
    assert buf.getvalue() == "hello\n"
    buf = io.StringIO()
    assert print_once("hello", rank=1, file=buf) is True  # no process group: this process is every rank
    report = paramscope.inspect(nn.Linear(2, 2))
    buf = io.StringIO()
    print_once(report, file=buf)
    assert "6" in buf.getvalue()


def test_single_rank_gloo_group():
    """A real process group of one: metadata carries the gathered (single) share."""
    code = (
        "import os, torch, torch.distributed as dist\n"
        "from paramscope.distributed import report_all_ranks\n"
        "dist.init_process_group('gloo', init_method='tcp://127.0.0.1:0', rank=0, world_size=1)\n"
        "r = report_all_ranks(torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 3)))\n"
        "assert r.total == 283, r.total\n"
        "assert r.metadata['local_numel_per_rank'] == [283], r.metadata\n"
        "dist.destroy_process_group()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_failing_rank_raises_after_the_exchange():
    """A rank whose inspection fails still joins the collective, then raises one line naming itself."""
    code = (
        "import torch, torch.distributed as dist, paramscope\n"
        "from paramscope.distributed import report_all_ranks\n"
        "dist.init_process_group('gloo', init_method='tcp://127.0.0.1:0', rank=0, world_size=1)\n"
        "m = torch.nn.Linear(2, 2)\n"
        "m.weight = torch.nn.Parameter(torch.empty(0))\n"
        "m.weight.ds_shape, m.weight.ds_numel = torch.Size([3]), 4\n"
        "try:\n"
        "    report_all_ranks(m)\n"
        "except paramscope.ParamscopeError as exc:\n"
        "    print(exc)\n"
        "dist.destroy_process_group()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, timeout=60, capture_output=True, text=True)
    assert out.stdout.strip() == (
        "Linear: inspection failed on 1 of 1 ranks (rank 0: weight: unreadable sharding/quantization metadata: "
        "ds_numel 4 is not the product of ds_shape [3])"
    )
