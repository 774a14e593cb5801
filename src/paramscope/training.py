"""The figures a fine-tuning run prints first: trainable versus all parameters.

PEFT's ``print_trainable_parameters()`` line is what people paste and compare, so
:func:`trainable_line` prints the very same format. The counts come from paramscope's rules, which
agree with PEFT's ``get_nb_trainable_parameters()`` where PEFT is right (each shared tensor once,
ZeRO-3's ``ds_numel`` for emptied parameters, a bitsandbytes ``Params4bit`` as its logical weights,
which PEFT gets by doubling the packed bytes) and stay right where ``sum(p.numel())`` is not: FSDP1
flat parameters, DTensor shards (see :mod:`paramscope.sources.sharding`).
"""

from __future__ import annotations

from paramscope.errors import ParamscopeError
from paramscope.report import Report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LINE = "trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {percent:.4f}"
"""PEFT's ``print_trainable_parameters`` format (peft/peft_model.py), character for character."""


def _report(model_or_report: Any) -> Report:
    if isinstance(model_or_report, Report):
        return model_or_report
    from paramscope.pipeline import settle
    from paramscope.sources.live import from_module

    return Report(settle(from_module(model_or_report)))


def trainable_counts(model_or_report: Any) -> tuple[int, int]:
    """(trainable, all) parameters, as PEFT's ``get_nb_trainable_parameters()`` returns them."""
    report = _report(model_or_report)
    if report.trainable is None:
        raise ParamscopeError(report.source, "a checkpoint file does not record which parameters were trainable")
    return report.trainable, report.total


def trainable_line(model_or_report: Any) -> str:
    """``trainable params: 4,194,304 || all params: 6,742,609,920 || trainable%: 0.0622``."""
    trainable, total = trainable_counts(model_or_report)
    if total == 0:
        raise ParamscopeError(_report(model_or_report).source, "no parameters: the trainable share is undefined")
    return LINE.format(trainable=trainable, total=total, percent=100 * trainable / total)


ADAPTER_MARKERS = ("lora_", "adapter", "modules_to_save", "prompt_encoder", "ia3_", "oft_", "boft_", "vera_")
"""Substrings PEFT puts in the names of the tensors it adds to a base model."""


def adapter_tensors(model_or_report: Any, markers: tuple[str, ...] = ADAPTER_MARKERS) -> list[str]:
    """Names of adapter tensors (LoRA ``lora_A``/``lora_B``/``lora_embedding_*``, other PEFT adapters)."""
    report = _report(model_or_report)
    return [r.name for r in report.tensors if any(m in r.name for m in markers)]
