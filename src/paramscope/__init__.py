"""paramscope: exactly how many parameters a model has, where they sit and what they cost.

>>> import paramscope
>>> paramscope.count(model)                 # tie-aware sum(p.numel() for p in model.parameters())
>>> report = paramscope.inspect(model)      # or a checkpoint path, or "file.py:Name"
>>> print(report)                           # the module tree

Importing paramscope does not import torch; torch is imported when a torch object or a Python spec
is inspected. How the package is laid out (sources -> records -> rules -> report -> renderers ->
commands, one way only): README.md, "Architecture".

The names below are imported on first use (:func:`__getattr__`): ``import paramscope`` loads only the report's
views (:mod:`paramscope.report_views`), so that ``python -m paramscope`` imports the rest with its collector
settings in place (:mod:`paramscope.__main__`) and ``paramscope --version`` none of it.
"""

from __future__ import annotations

from paramscope.errors import ParamscopeError
from paramscope.renderers import views as _views  # noqa: F401  (fills Report's views: str(), to_dict(), ...)
from paramscope.version import __version__ as __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from paramscope.pipeline import count, inspect
    from paramscope.records import Inventory, QuantInfo, Role, TensorRecord
    from paramscope.report import NON_EMBEDDING_RULE, Report

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

_LAZY = {
    "count": "paramscope.pipeline", "inspect": "paramscope.pipeline",
    "Inventory": "paramscope.records", "QuantInfo": "paramscope.records", "Role": "paramscope.records",
    "TensorRecord": "paramscope.records",
    "NON_EMBEDDING_RULE": "paramscope.report", "Report": "paramscope.report",
}
"""Each public name not imported above, and the module it is imported from on first use."""


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'paramscope' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: the next use finds it without this call
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
