"""pandas views of a report: ``report.to_pandas()`` -> ``Frames(tensors, modules)``.

``Frames`` is a named tuple, so both ``tensors, modules = report.to_pandas()`` and
``report.to_pandas().modules`` read naturally.

* ``tensors``: one row per name the source gave, aliases included, in source order. Columns: ``name``,
  ``module``, ``shape`` (a tuple, or None when uninitialized), ``dtype``, ``role``, ``trainable``
  (nullable boolean; missing for buffers and for files, which do not record it), ``numel`` (logical
  elements), ``bytes`` (stored), ``tied_to`` (the canonical name a tied alias is counted under, else
  missing), ``owner_type``, ``origin``. Counting the rows with ``tied_to`` missing and ``role ==
  "parameter"`` gives ``report.total``: the same rule as the report, each tie group once.
* ``modules``: the module tree in depth-first order, root first (``path`` ""). Columns: ``path``,
  ``name``, ``type``, ``depth``, ``parameters``, ``percent``, ``trainable``, ``buffers``, ``bytes``,
  ``tensors`` (held directly, each tie group once). Subtree totals, as :meth:`Report.modules` gives them.

Counts use pandas' nullable ``Int64``; a count beyond int64 (only a lying file could declare one) keeps
Python ints in an object column rather than being rounded.
"""

from __future__ import annotations

from collections import namedtuple

from paramscope.errors import require
from paramscope.records import Role
from paramscope.renderers.rows import percent

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from paramscope.report import Report

Frames = namedtuple("Frames", "tensors modules")
Frames.__doc__ = "The tensors and the modules of a report, as two pandas DataFrames."

TENSOR_COLUMNS = ("name", "module", "shape", "dtype", "role", "trainable", "numel", "bytes", "tied_to",
                  "owner_type", "origin")
MODULE_COLUMNS = ("path", "name", "type", "depth", "parameters", "percent", "trainable", "buffers", "bytes",
                  "tensors")
# Column -> pandas dtype; the others are left to pandas (object / float).
_TENSOR_DTYPES = {"trainable": "boolean", "numel": "Int64", "bytes": "Int64"}
_MODULE_DTYPES = {"depth": "Int64", "parameters": "Int64", "trainable": "Int64", "buffers": "Int64",
                  "bytes": "Int64", "tensors": "Int64"}


def _frame(pd: Any, columns: tuple[str, ...], data: dict[str, list[Any]], dtypes: dict[str, str]) -> Any:
    series = {}
    for column in columns:
        values = data[column]
        dtype = dtypes.get(column)
        if dtype is None:
            series[column] = pd.Series(values, dtype=object if column in ("shape", "tied_to") else None)
            continue
        try:
            series[column] = pd.array(values, dtype=dtype)
        except (OverflowError, TypeError, ValueError):  # beyond int64: exact Python ints, not rounded floats
            series[column] = pd.Series(values, dtype=object)
    return pd.DataFrame(series, columns=list(columns))


def to_pandas(report: Report) -> Frames:
    """``Frames(tensors, modules)`` for ``report``; needs the ``pandas`` extra."""
    pd = require("pandas", extra="pandas", source=report.source, purpose="Report.to_pandas()")
    canonical = report.canonical_name
    tensors: dict[str, list[Any]] = {c: [] for c in TENSOR_COLUMNS}
    for r in report.tensors:
        tied = canonical.get(r.name)
        row = (r.name, r.module, r.shape, r.dtype, r.role.value,
               r.trainable if r.role is Role.PARAMETER else None,
               r.numel if r.initialized else None, r.nbytes if r.initialized else None,
               tied if tied != r.name else None, r.owner_type, r.origin or None)
        for column, value in zip(TENSOR_COLUMNS, row, strict=True):
            tensors[column].append(value)
    modules: dict[str, list[Any]] = {c: [] for c in MODULE_COLUMNS}
    total = report.total
    for node in report.modules():
        row = (node.path, node.name, node.type, node.depth, node.parameters, percent(node.parameters, total),
               node.trainable, node.buffers, node.bytes, len(node.tensors))
        for column, value in zip(MODULE_COLUMNS, row, strict=True):
            modules[column].append(value)
    return Frames(_frame(pd, TENSOR_COLUMNS, tensors, _TENSOR_DTYPES),
                  _frame(pd, MODULE_COLUMNS, modules, _MODULE_DTYPES))
