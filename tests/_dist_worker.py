"""One rank of the multi-process tests (tests/sources/test_live_sharded.py starts 2 or 3 of these).

Usage: ``python tests/_dist_worker.py OUTDIR [zero3]`` with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
set. Every scenario wraps a fresh model whose unsharded count is taken first (``expected``), runs
paramscope on the wrapped model, and writes what it found to ``OUTDIR/rank<r>.json``. A scenario that
fails records its error instead of stopping the others, so the test names the one that broke.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import torch
import torch.distributed as dist
from torch import nn

import paramscope
from paramscope.distributed import local_share, print_once, report_all_ranks


def two_linears() -> nn.Module:
    """The issue's model: 10*20+20 + 20*3+3 = 283 parameters."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 3))


class TiedLM(nn.Module):
    """Embedding(100, 16), LayerNorm(16), head tied to the embedding: 1,600 + 32 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 100, bias=False)
        self.head.weight = self.embed.weight


class Block(nn.Module):
    """A transformer MLP block: LayerNorm(12) 24 + Linear(12, 24) 312 + Linear(24, 12) 300 = 636."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(12)
        self.up = nn.Linear(12, 24)
        self.down = nn.Linear(24, 12)


def unsharded(model: nn.Module) -> dict:
    """The independent figures, taken before wrapping: PyTorch's own parameters()."""
    return {
        "expected": sum(p.numel() for p in model.parameters()),
        "expected_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "expected_shapes": {n: list(p.shape) for n, p in model.named_parameters()},
    }


def observe(wrapped: nn.Module, before: dict) -> dict:
    report = paramscope.inspect(wrapped)
    everyone = report_all_ranks(wrapped)
    return {
        **before,
        "naive": sum(p.numel() for p in wrapped.parameters()),
        "naive_names": [n for n, _ in wrapped.named_parameters()],
        "total": report.total,
        "count": paramscope.count(wrapped),
        "trainable": report.trainable,
        "shapes": {r.name: list(r.shape) for r in report.tensors},
        "ties": report.ties,
        "local": local_share(report),
        "local_per_name": {r.name: (r.extra or {}).get("local_numel") for r in report.tensors},
        "metadata": {k: v for k, v in everyone.metadata.items()},
        "all_ranks_total": everyone.total,
        "owner_types": {r.name: r.owner_type for r in report.tensors},
    }


def fsdp1(model: nn.Module, orig: bool) -> nn.Module:
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    return FSDP(model, use_orig_params=orig, device_id=torch.device("cpu"))


def s_fsdp1_flat() -> dict:
    m = two_linears()
    before = unsharded(m)
    return observe(fsdp1(m, False), before)


def s_fsdp1_orig() -> dict:
    m = two_linears()
    before = unsharded(m)
    return observe(fsdp1(m, True), before)


def s_fsdp1_nested() -> dict:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 20)), nn.Linear(20, 3))
    before = unsharded(m)
    m[0] = fsdp1(m[0], False)
    return observe(fsdp1(m, False), before)


def s_fsdp1_tied() -> dict:
    m = TiedLM()
    before = unsharded(m)
    return observe(fsdp1(m, False), before)


def s_fsdp1_frozen() -> dict:
    m = two_linears()
    for p in m[0].parameters():
        p.requires_grad_(False)
    before = unsharded(m)
    return observe(fsdp1(m, True), before)


def fsdp2(m: nn.Module) -> nn.Module:
    """FSDP2: the first layer its own unit, then the root."""
    from torch.distributed.fsdp import fully_shard

    fully_shard(m[0])
    fully_shard(m)
    return m


def s_fsdp2() -> dict:
    m = two_linears()
    before = unsharded(m)
    return observe(fsdp2(m), before)


def s_dtensor_tp() -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, SequenceParallel, parallelize_module

    torch.manual_seed(0)
    m = Block()
    before = unsharded(m)
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    parallelize_module(m, mesh, {"norm": SequenceParallel(), "up": ColwiseParallel(), "down": RowwiseParallel()})
    out = observe(m, before)
    out["placements"] = {n: (r.extra or {}).get("placements") for n, r in
                         ((r.name, r) for r in paramscope.inspect(m).tensors)}
    return out


def s_ddp() -> dict:
    from torch.nn.parallel import DistributedDataParallel as DDP

    m = two_linears()
    before = unsharded(m)
    return observe(DDP(m), before)


def qlora_base() -> nn.Module:
    """The FSDP-QLoRA setup: a bitsandbytes nf4 Linear(64, 64) stored in bf16 words (quant_storage, so FSDP can
    flatten it with the bf16 Linear(64, 8) beside it), frozen. Logical weights: 64*64 + 64*8 + 8 = 4,616."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes as bnb

    torch.manual_seed(0)
    m = nn.Sequential(bnb.nn.Linear4bit(64, 64, bias=False, quant_type="nf4", quant_storage=torch.bfloat16),
                      nn.Linear(64, 8, dtype=torch.bfloat16)).to("cpu")  # .to() quantizes
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def qlora_before(m: nn.Module) -> dict:
    """Independent figures from bitsandbytes itself: the quant_state's logical shape, before wrapping."""
    weight = m[0].weight
    state = weight.quant_state
    tables = {k: v for k, v in state.as_dict(packed=True).items() if isinstance(v, torch.Tensor)
              and not k.startswith("quant_state.")}
    return {
        "expected": state.shape.numel() + sum(p.numel() for p in m[1].parameters()),
        "expected_trainable": 0,
        "expected_shapes": {"0.weight": list(weight.shape), "1.weight": [8, 64], "1.bias": [8]},
        "packed_numel": weight.numel(),
        "aux_bytes": sum(v.numel() * v.element_size() for v in tables.values()),
        "aux_shapes": {f"0.weight.{k}": list(v.shape) for k, v in tables.items()},
    }


def observe_qlora(wrapped: nn.Module, before: dict) -> dict:
    out = observe(wrapped, before)
    report = paramscope.inspect(wrapped)
    out["quant_aux_bytes"] = report.quant_aux_bytes
    out["quantization"] = report.metadata.get("quantization")
    out["roles"] = {r.name: r.role.value for r in report.tensors}
    return out


def s_qlora_fsdp1_orig() -> dict:
    m = qlora_base()
    before = qlora_before(m)
    return observe_qlora(fsdp1(m, True), before)


def s_qlora_fsdp1_flat() -> dict:
    m = qlora_base()
    before = qlora_before(m)
    return observe_qlora(fsdp1(m, False), before)


def s_qlora_fsdp2() -> dict:
    m = qlora_base()
    before = qlora_before(m)
    return observe_qlora(fsdp2(m), before)


def s_fsdp1_orig_summoned() -> dict:
    """While the unit is unsharded, every rank's views are whole tensors: the shares must stay the sharded ones."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    m = two_linears()
    before = unsharded(m)
    wrapped = fsdp1(m, True)
    with FSDP.summon_full_params(wrapped):
        return observe(wrapped, before)


def s_rank_error() -> dict:
    """Rank 1 alone holds a parameter whose ZeRO-3 metadata lies: every rank must raise, none may hang."""
    m = two_linears()
    if dist.get_rank() == 1:
        w = nn.Parameter(torch.empty(0))
        w.ds_shape, w.ds_numel = torch.Size([20, 10]), 7  # 7 is not 20 * 10
        m[0].weight = w
    try:
        report_all_ranks(m)
    except paramscope.ParamscopeError as exc:
        return {"raised": str(exc)}
    return {"raised": None}


def s_zero3() -> dict:
    import deepspeed

    config = {"train_batch_size": dist.get_world_size(), "zero_optimization": {"stage": 3}}
    with deepspeed.zero.Init(config_dict_or_path=config, remote_device="cpu"):
        m = two_linears()
    before = {"expected": 10 * 20 + 20 + 20 * 3 + 3, "expected_trainable": 283,
              "expected_shapes": {n: list(p.ds_shape) for n, p in m.named_parameters()}}
    return observe(m, before)


SCENARIOS = {
    "fsdp1_flat": s_fsdp1_flat,
    "fsdp1_orig": s_fsdp1_orig,
    "fsdp1_nested": s_fsdp1_nested,
    "fsdp1_tied": s_fsdp1_tied,
    "fsdp1_frozen": s_fsdp1_frozen,
    "fsdp2": s_fsdp2,
    "dtensor_tp": s_dtensor_tp,
    "ddp": s_ddp,
    "qlora_fsdp1_orig": s_qlora_fsdp1_orig,
    "qlora_fsdp1_flat": s_qlora_fsdp1_flat,
    "qlora_fsdp2": s_qlora_fsdp2,
    "fsdp1_orig_summoned": s_fsdp1_orig_summoned,
    "rank_error": s_rank_error,
}


def main() -> None:
    outdir = sys.argv[1]
    want_zero3 = "zero3" in sys.argv[2:]
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=int(os.environ["WORLD_SIZE"]))
    results: dict = {}
    scenarios = dict(SCENARIOS)
    if want_zero3:
        os.environ.setdefault("LOCAL_RANK", str(rank))
        scenarios["zero3"] = s_zero3
    for name, scenario in scenarios.items():
        try:
            results[name] = scenario()
        except Exception:
            results[name] = {"error": traceback.format_exc()}
        dist.barrier()
    results["modules"] = {"torch.distributed.fsdp": "torch.distributed.fsdp" in sys.modules}
    import io

    buf = io.StringIO()
    results["printed"] = print_once("hello", file=buf)
    with open(os.path.join(outdir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
