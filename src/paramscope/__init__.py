"""paramscope: exactly how many parameters a model has, where they sit and what they cost.

>>> import paramscope
>>> paramscope.count(model)                 # tie-aware sum(p.numel() for p in model.parameters())
>>> report = paramscope.inspect(model)      # or a checkpoint path, or "file.py:Name"
>>> print(report)                           # the module tree

Importing paramscope does not import torch; torch is imported when a torch object or a Python spec
is inspected. How the package is laid out (sources -> records -> rules -> report -> renderers ->
commands, one way only): README.md, "Architecture".
"""

from __future__ import annotations

from paramscope.errors import ParamscopeError
from paramscope.pipeline import count, inspect
from paramscope.records import Inventory, QuantInfo, Role, TensorRecord
from paramscope.renderers import views as _views  # noqa: F401  (fills Report's views: str(), to_dict(), ...)
from paramscope.report import NON_EMBEDDING_RULE, Report
from paramscope.version import __version__ as __version__

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
