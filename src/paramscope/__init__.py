"""paramscope: exactly how many parameters a model has, where they sit and what they cost.

>>> import paramscope
>>> paramscope.count(model)                 # tie-aware sum(p.numel() for p in model.parameters())
>>> report = paramscope.inspect(model)      # or a checkpoint path, or "file.py:Name"
>>> print(report)                           # the module tree

Importing paramscope does not import torch; torch is imported when a torch object or a Python spec
is inspected.
"""

from __future__ import annotations

from paramscope.errors import ParamscopeError
from paramscope.records import Inventory, QuantInfo, Role, TensorRecord
from paramscope.report import NON_EMBEDDING_RULE, Report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

__version__ = "0.1.0"
__all__ = [
    "NON_EMBEDDING_RULE",
    "Inventory",
    "ParamscopeError",
    "QuantInfo",
    "Report",
    "Role",
    "TensorRecord",
    "count",
    "inspect",
]


def count(model: Any, *, trainable_only: bool = False) -> int:
    """``sum(p.numel() for p in model.parameters() [if p.requires_grad])``, each shared tensor once.

    Lazy modules' uninitialized parameters count 0 (see :func:`inspect` with ``input_shape``).
    """
    from paramscope.sources.live import from_module

    report = Report(from_module(model))
    return report.trainable if trainable_only else report.total  # type: ignore[return-value]


def inspect(
    source: Any,
    *,
    example_input: Any = None,
    input_shape: Sequence[int] | None = None,
    device: str = "meta",
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    filter: str | None = None,
    trainable_only: bool = False,
    include_buffers: bool = True,
    exclude_embeddings: bool = False,
    progress: Callable[..., None] | None = None,
) -> Report:
    """A :class:`Report` on ``source``: an ``nn.Module``, a checkpoint path, ``"file.py:Name"`` or
    ``"package.module:Name"`` (built on ``device``, meta by default, with ``args``/``kwargs``).

    ``example_input`` or ``input_shape`` materialise lazy modules by a dry run on the meta device.
    ``filter`` (a glob on tensor names), ``trainable_only``, ``include_buffers`` and
    ``exclude_embeddings`` narrow the report; see :meth:`Report.filter`.
    """
    from paramscope.sources import open_source

    inventory = open_source(
        source,
        example_input=example_input if example_input is not None else (tuple(input_shape) if input_shape else None),
        device=device,
        args=args,
        kwargs=kwargs,
        progress=progress,
    )
    report = Report(inventory)
    if filter is not None or trainable_only or not include_buffers or exclude_embeddings:
        report = report.filter(
            pattern=filter,
            trainable_only=trainable_only,
            include_buffers=include_buffers,
            exclude_embeddings=exclude_embeddings,
        )
    return report
