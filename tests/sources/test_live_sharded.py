"""True counts of sharded models: real torch.distributed runs, gloo on CPU, 2 and 3 ranks.

One group of processes per world size (tests/_dist_worker.py) runs every scenario: FSDP1 with
use_orig_params False and True (flat, nested, tied, partly frozen), FSDP2 ``fully_shard``, DTensor
tensor parallelism, DDP, and (2 ranks, when DeepSpeed imports) real DeepSpeed ZeRO-3. Each rank writes
what paramscope saw; the tests check every rank against the unsharded model's own ``parameters()``
(taken before wrapping) and against hand calculations.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parents[1] / "_dist_worker.py"
TIMEOUT_S = 180
TWO_LINEARS = 10 * 20 + 20 + 20 * 3 + 3  # 283, the model
SHAPES_283 = {"0.weight": [20, 10], "0.bias": [20], "1.weight": [3, 20], "1.bias": [3]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_group(world: int, outdir: Path, extra: list[str]) -> list[dict]:
    """Start ``world`` ranks, wait (bounded), and read each rank's JSON; kill the group on timeout."""
    port = _free_port()
    env_base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(outdir), *extra],
                         env={**env_base, "RANK": str(r), "LOCAL_RANK": str(r)},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for r in range(world)
    ]
    errors = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=TIMEOUT_S)
            if p.returncode != 0:
                errors.append(err.decode(errors="replace")[-3000:])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"{world}-rank group did not finish in {TIMEOUT_S}s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert not errors, errors[0]
    return [json.loads((outdir / f"rank{r}.json").read_text()) for r in range(world)]


@pytest.fixture(scope="module", params=[2, 3], ids=["2ranks", "3ranks"])
def ranks(request, tmp_path_factory) -> list[dict]:
    world = request.param
    extra = ["zero3"] if world == 2 else []  # deepspeed is in the test extra: a missing one fails, not skips
    return _run_group(world, tmp_path_factory.mktemp(f"dist{world}"), extra)


def _scenario(ranks: list[dict], name: str) -> list[dict]:
    results = [r[name] for r in ranks]
    for rank, result in enumerate(results):
        assert "error" not in result, f"rank {rank}: {result['error']}"
    return results


def _even_flat_shares(total: int, world: int) -> list[int]:
    """FSDP1 pads the flat parameter to a multiple of the world size and gives each rank one slice."""
    chunk = math.ceil(total / world)
    return [max(0, min(chunk, total - r * chunk)) for r in range(world)]


def _dim0_shares(shapes: list[list[int]], world: int) -> list[int]:
    """FSDP2 (Shard(0)) and ZeRO-3-like row chunking: ceil-sized chunks of dim 0, the last one short."""
    shares = [0] * world
    for shape in shapes:
        rest = math.prod(shape[1:])
        chunk = math.ceil(shape[0] / world)
        for r in range(world):
            shares[r] += max(0, min(chunk, shape[0] - r * chunk)) * rest
    return shares


@pytest.mark.parametrize("scenario", ["fsdp1_flat", "fsdp1_orig", "fsdp2", "ddp"])
def test_every_rank_reports_the_unsharded_count_and_original_names(ranks, scenario):
    for result in _scenario(ranks, scenario):
        assert result["expected"] == TWO_LINEARS == 283
        assert result["total"] == result["count"] == result["all_ranks_total"] == 283
        assert result["trainable"] == 283
        assert result["shapes"] == SHAPES_283 == result["expected_shapes"]
        assert result["owner_types"] == dict.fromkeys(SHAPES_283, "Linear")


def test_naive_count_is_wrong_under_fsdp1_flat_parameters(ranks):
    """The issue's measurement: parameters() sees one padded slice of one flat parameter per rank
    (torch 2.13 counts the padding too: every rank reports ceil(283 / world), and even their sum is wrong)."""
    results = _scenario(ranks, "fsdp1_flat")
    world = len(results)
    assert [r["naive"] for r in results] == [math.ceil(283 / world)] * world
    assert sum(r["naive"] for r in results) != 283
    assert all(r["naive_names"] == ["_fsdp_wrapped_module._flat_param"] for r in results)


@pytest.mark.parametrize("scenario", ["fsdp1_flat", "fsdp1_orig", "fsdp1_frozen"])
def test_fsdp1_local_shares(ranks, scenario):
    results = _scenario(ranks, scenario)
    world = len(results)
    expected = _even_flat_shares(283, world)  # 2 ranks: [142, 141]; 3 ranks: [95, 95, 93]
    assert [r["local"] for r in results] == expected
    assert sum(expected) == 283
    for r in results:
        assert r["metadata"]["local_numel_per_rank"] == expected
        assert r["metadata"]["world_size"] == world
        assert sum(v for v in r["local_per_name"].values()) == r["local"]


def test_fsdp1_frozen_backbone_keeps_trainable_split(ranks):
    for r in _scenario(ranks, "fsdp1_frozen"):
        assert (r["total"], r["trainable"]) == (283, 63) == (r["expected"], r["expected_trainable"])


def test_fsdp1_nested_units(ranks):
    # Linear(10,20) 220 + Linear(20,20) 420 + Linear(20,3) 63 = 703
    for r in _scenario(ranks, "fsdp1_nested"):
        assert r["total"] == r["expected"] == 220 + 420 + 63 == 703
        assert r["shapes"] == r["expected_shapes"]
        assert not any("_fsdp_wrapped_module" in n or "_flat_param" in n for n in r["shapes"])
    results = _scenario(ranks, "fsdp1_nested")
    world = len(results)
    inner, outer = _even_flat_shares(640, world), _even_flat_shares(63, world)
    assert [r["local"] for r in results] == [a + b for a, b in zip(inner, outer, strict=True)]


def test_fsdp1_tied_weights_counted_once(ranks):
    for r in _scenario(ranks, "fsdp1_tied"):
        assert r["total"] == r["expected"] == 1600 + 32
        assert r["ties"] == [["embed.weight", "head.weight"]]
        assert r["shapes"]["head.weight"] == [100, 16]
    results = _scenario(ranks, "fsdp1_tied")
    assert [r["local"] for r in results] == _even_flat_shares(1632, len(results))


def test_fsdp2_global_shapes_and_local_shards(ranks):
    results = _scenario(ranks, "fsdp2")
    world = len(results)
    expected = _dim0_shares(list(SHAPES_283.values()), world)  # 2 ranks: [152, 131]; 3: [98, 98, 87]
    assert [r["local"] for r in results] == expected
    assert sum(expected) == 283
    for r in results:
        assert r["naive"] == 283  # DTensor.numel() is global: parameters() happens to be right here
        assert "DTensor (FSDP2 fully_shard / tensor parallel)" in r["metadata"]["sharding"]


def test_dtensor_tensor_parallel_replicated_counted_once(ranks):
    results = _scenario(ranks, "dtensor_tp")
    world = len(results)
    # LayerNorm(12) 24 and RowwiseParallel's bias 12 are replicated; up (312) and down.weight (288) are split.
    assert [r["local"] for r in results] == [24 + 12 + (312 + 288) // world] * world
    for r in results:
        assert r["total"] == r["expected"] == 24 + 312 + 300 == 636
        assert r["shapes"] == r["expected_shapes"]
        assert r["placements"]["norm.weight"] == ["Replicate()"]
        assert r["placements"]["up.weight"] == ["Shard(dim=0)"]
        assert r["placements"]["down.weight"] == ["Shard(dim=1)"]


def test_ddp_names_have_no_module_prefix(ranks):
    for r in _scenario(ranks, "ddp"):
        assert all(n.startswith("module.") for n in r["naive_names"])
        assert list(r["shapes"]) == list(SHAPES_283)
        assert r["metadata"]["local_numel_per_rank"] == [283] * len(ranks)  # DDP replicates everything
        assert r["metadata"]["wrappers"] == ["DistributedDataParallel"]


def test_print_once_prints_on_rank_zero_only(ranks):
    assert [r["printed"] for r in ranks] == [True] + [False] * (len(ranks) - 1)


@pytest.mark.parametrize("ranks", [2], indirect=True, ids=["2ranks"])  # ZeRO-3 runs in the 2-rank group only
def test_deepspeed_zero3_real(ranks):
    results = _scenario(ranks, "zero3")
    # ZeRO-3 pads each parameter to a multiple of the world size and gives each rank an equal window
    expected = [0, 0]
    for numel in (200, 20, 60, 3):
        size = math.ceil(numel / 2)
        for rank in range(2):
            expected[rank] += max(0, min(size, numel - rank * size))
    assert expected == [142, 141]
    for r in results:
        assert r["naive"] == 0  # param.data is emptied: parameters() counts nothing
        assert r["total"] == r["count"] == 283
        assert r["shapes"] == SHAPES_283 == r["expected_shapes"]
        assert r["metadata"]["local_numel_per_rank"] == expected
    assert [r["local"] for r in results] == expected


# ---- FSDP + QLoRA: bitsandbytes 4-bit weights in bf16 storage, sharded -----------------------------------

QLORA_TOTAL = 64 * 64 + 64 * 8 + 8  # 4,616 logical weights: nf4 Linear(64, 64) + bf16 Linear(64, 8)
QLORA_STORED = [1024, 512, 8]  # the flat layout: packed weight (64*64 nibbles in 1,024 bf16 words), 1.weight, 1.bias
QLORA_PER_WORD = 4  # 16-bit storage word / 4-bit weight


def _qlora_flat_shares(world: int) -> list[int]:
    """FSDP1: each rank holds one window of the padded flat parameter; a packed word there is 4 weights."""
    total = sum(QLORA_STORED)
    chunk = math.ceil(total / world)
    shares = []
    for r in range(world):
        lo, hi = r * chunk, min((r + 1) * chunk, total)
        packed = max(0, min(hi, QLORA_STORED[0]) - lo)
        rest = max(0, hi - max(lo, QLORA_STORED[0]))
        shares.append(QLORA_PER_WORD * packed + rest)
    return shares


@pytest.mark.parametrize("scenario", ["qlora_fsdp1_orig", "qlora_fsdp1_flat", "qlora_fsdp2"])
def test_fsdp_qlora_counts_logical_weights(ranks, scenario):
    """The count is bitsandbytes' logical weights (quant_state.shape), not the packed bf16 words FSDP shards."""
    results = _scenario(ranks, scenario)
    world = len(results)
    for r in results:
        assert r["expected"] == QLORA_TOTAL == 4616
        assert r["packed_numel"] == QLORA_STORED[0]
        assert r["total"] == r["count"] == r["all_ranks_total"] == QLORA_TOTAL
        assert r["trainable"] == r["expected_trainable"] == 0
        assert r["shapes"] == {**r["expected_shapes"], **r["aux_shapes"]}
        assert r["quantization"] == {"scheme": "bitsandbytes-nf4", "bits": 4, "quantized_tensors": 1,
                                     "bookkeeping_tensors": len(r["aux_shapes"]), "from": "module"}
        assert r["quant_aux_bytes"] == r["aux_bytes"] > 0  # absmax, quant map, nested ones: bnb's own tensors
        assert {r["roles"][n] for n in r["aux_shapes"]} == {"quant_aux"}
    if scenario == "qlora_fsdp2":  # Shard(0) rows of the packed (1024, 1) weight, 4 weights a word
        expected = [QLORA_PER_WORD * a + b for a, b in
                    zip(_dim0_shares([[1024, 1]], world), _dim0_shares([[8, 64], [8]], world), strict=True)]
    else:
        expected = _qlora_flat_shares(world)
    assert sum(expected) == QLORA_TOTAL
    assert [r["local"] for r in results] == expected
    assert all(r["metadata"]["local_numel_per_rank"] == expected for r in results)


def test_fsdp1_shares_while_unsharded_are_the_sharded_ones(ranks):
    """Inside summon_full_params each rank's views are whole tensors; its share is still its flat-shard window."""
    results = _scenario(ranks, "fsdp1_orig_summoned")
    expected = _even_flat_shares(283, len(results))
    for r in results:
        assert r["naive"] == 283  # the views are whole on every rank: param.numel() is no share now
        assert r["total"] == r["expected"] == 283
        assert r["metadata"]["local_numel_per_rank"] == expected
    assert [r["local"] for r in results] == expected


def test_one_failing_rank_raises_on_every_rank(ranks):
    """Rank 1's metadata lies; the group still finishes (no rank waits in the collective) and all raise alike."""
    results = _scenario(ranks, "rank_error")
    messages = [r["raised"] for r in results]
    assert all(m is not None for m in messages), messages
    assert len(set(messages)) == 1
    assert "rank 1: " in messages[0] and "ds_numel 7 is not the product of ds_shape [20, 10]" in messages[0]
    assert "rank 0" not in messages[0]
    assert f"1 of {len(results)} ranks" in messages[0]
