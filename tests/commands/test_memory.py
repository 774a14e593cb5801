"""paramscope memory SOURCE: the estimate as a command; its choices are the estimator's own."""

from __future__ import annotations

import json

from paramscope.commands import build_parser, memory

from ._run import run, safetensors


def test_choices_match_the_estimator_and_its_renderer():
    # the parser lists them itself so that start-up need not import paramscope.memory
    from paramscope import memory as estimator
    from paramscope.renderers import memory_text

    assert tuple(estimator.OPTIMIZERS) == memory.OPTIMIZERS
    assert tuple(estimator.PRECISIONS) == memory.PRECISIONS
    assert memory.FORMATS == memory_text.FORMATS
    command = build_parser().commands["memory"]
    choices = {a.dest: a.choices for a in command._actions if a.choices}
    assert choices == {"optimizer": memory.OPTIMIZERS, "precision": memory.PRECISIONS, "zero": (1, 2, 3),
                       "format": memory.FORMATS, "recompute": memory.RECOMPUTE, "attention": memory.ATTENTION}


def test_a_checkpoint_by_hand(tmp_path):
    # 1,000 x 100 + 100 float32 parameters = 100,100; ZeRO-2 over 4 GPUs with Adam, mixed bf16:
    # weights 2 B (replicated), gradients 2 B / 4, fp32 master 4 B / 4, Adam m and v 8 B / 4.
    path = safetensors(tmp_path / "m.safetensors", {"fc.weight": (1000, 100), "fc.bias": (100,)})
    code, out, err = run("memory", path, "--optimizer", "adam", "--zero", "2", "--gpus", "4", "-f", "json")
    assert (code, err) == (0, "")
    doc = json.loads(out)["memory"]
    p = 100_100
    assert (doc["parameters"], doc["weights_stored"], doc["shard"], doc["gpus"]) == (p, 4 * p, "zero2", 4)
    assert doc["per_gpu"] == {"weights": 2 * p, "gradients": 2 * p // 4, "master": 4 * p // 4,
                              "optimizer_state": 8 * p // 4, "buffers": 0}


def test_no_source_is_the_example_and_defaults_are_adamw_mixed_bf16():
    code, out, _ = run("memory", "--format", "json")
    doc = json.loads(out)["memory"]
    p = 87_018
    assert (code, doc["parameters"], doc["optimizer"], doc["precision"], doc["shard"], doc["gpus"]) == (
        0, p, "adamw", "mixed-bf16", "none", 1)
    assert doc["training_total"] == (2 + 2 + 4 + 8) * p


def test_output_file(tmp_path):
    target = tmp_path / "memory.csv"
    code, out, err = run("memory", "-f", "csv", "-o", str(target))
    assert (code, out, err) == (0, "", "")
    assert target.read_text().startswith(run("memory", "-f", "csv")[1])


def test_unknown_frozen_width_is_bad_usage():
    code, out, err = run("memory", "--frozen-as", "int3")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("paramscope: error: unknown weight format 'int3'")
