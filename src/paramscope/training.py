"""The figures a fine-tuning run prints first: trainable versus all parameters.

PEFT's ``print_trainable_parameters()`` line is what people paste and compare, so
:func:`trainable_line` prints the very same format. The counts come from paramscope's rules, which
agree with PEFT's ``get_nb_trainable_parameters()`` where PEFT is right (each shared tensor once,
ZeRO-3's ``ds_numel`` for emptied parameters, a bitsandbytes ``Params4bit`` as its logical weights,
which PEFT gets by doubling the packed bytes) and stay right where ``sum(p.numel())`` is not: FSDP1
flat parameters, DTensor shards (see :mod:`paramscope.sources.sharding`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paramscope.errors import ParamscopeError
from paramscope.report import Report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from paramscope.activations import ActivationEstimate
    from paramscope.architecture import Architecture
    from paramscope.flops import ComputeEstimate
    from paramscope.memory import MemoryEstimate

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


# ---- training cost: model states + activations + compute ---------------------------------------

ACTIVATION_WIDTH = {"fp32": 4, "mixed-bf16": 2, "mixed-fp16": 2}
"""Bytes per activation element under each precision of :data:`paramscope.memory.PRECISIONS`."""


@dataclass(frozen=True)
class TrainingCost:
    """Per-GPU peak memory of one training step and its compute: built by :func:`training_cost`.

    ``peak`` = model states per GPU (:mod:`paramscope.memory`, divided over ``tp`` tensor-parallel
    ranks) + the activation peak of one micro-batch (:mod:`paramscope.activations`, which includes
    the fp32 loss buffer of ``b·s·V`` log-probabilities and their gradients).
    """

    memory: MemoryEstimate
    activations: ActivationEstimate
    compute: ComputeEstimate
    states_per_gpu: int
    peak: int
    notes: list[str] = field(default_factory=list)


def training_cost(report: Report, card: Architecture, *, seq: int, micro_batch: int = 1,
                  recompute: str = "none", attention: str = "flash", tp: int = 1, sp: bool = False,
                  optimizer: str = "adamw", precision: str = "mixed-bf16", shard: str = "none", gpus: int = 1,
                  frozen_as: str = "precision", tokens: int | None = None, gpu_flops: float | None = None,
                  gpu_source: str | None = None, mfu: float | None = None) -> TrainingCost:
    """Peak memory per GPU and compute of training ``report``'s model, shaped as ``card`` says."""
    from paramscope.activations import estimate as activations
    from paramscope.flops import DEFAULT_MFU
    from paramscope.flops import estimate as compute
    from paramscope.memory import estimate as states

    memory = states(report, optimizer=optimizer, precision=precision, shard=shard, gpus=gpus, frozen_as=frozen_as)
    acts = activations(card, seq=seq, micro_batch=micro_batch, recompute=recompute, attention=attention,
                       width=ACTIVATION_WIDTH[precision], tp=tp, sp=sp)
    flops = compute(card, seq=seq, recompute=recompute, attention=attention, tokens=tokens, gpus=gpus * tp,
                    gpu_flops=gpu_flops, gpu_source=gpu_source, mfu=DEFAULT_MFU if mfu is None else mfu)
    notes: list[str] = []
    per_gpu = -(-memory.per_gpu_total // tp)
    if tp > 1:
        notes.append(f"tensor parallelism: model states taken as split evenly over {tp} ranks")
    return TrainingCost(memory=memory, activations=acts, compute=flops, states_per_gpu=per_gpu,
                        peak=per_gpu + acts.peak, notes=notes)
