"""Weights vs architecture: would these weights load into the model a ``config.json`` describes?

:func:`fit` compares the architecture with the tensors of a checkpoint as ``load_state_dict(strict=True)``
would, through :func:`paramscope.diff.compare` (ties, non-persistent buffers and the ``model.`` prefix
handled there), after stripping the model's ``base_model_prefix`` (``transformer.``, ``bert.``, ``model.``)
from whichever side alone carries it, since a base-class checkpoint lacks it and a head-class one has it; the
head's own tensors in a head-class checkpoint loaded into a base class are "unused", not unexpected. Ties the
weights' files or the config declare (:mod:`paramscope.ties`) are applied to the weights first.
:func:`with_fit` returns the architecture's inventory with the result in ``metadata["fit"]`` and a note.

The weights are read by the sources (the config reader only names their directory); the pipeline runs
this stage (:func:`paramscope.pipeline.settle`).
"""

from __future__ import annotations

import os

from paramscope import ties
from paramscope.diff import compare
from paramscope.report import Report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from paramscope.records import Inventory

NOTE_NAMES = 3
"""Names of missing/unexpected/mismatched tensors quoted in the fit note (all are in metadata["fit"])."""


def fit(architecture: Inventory, weights: Inventory) -> dict[str, list[Any]]:
    """What ``load_state_dict(strict=True)`` of ``weights`` into ``architecture`` would report.

    ``{"missing": [...], "unexpected": [...], "mismatched": [(name, arch_shape, file_shape), ...]}``, and
    ``"unused"`` (a head class's own tensors loaded into its base class) where there are any;
    names normalised as in the module docstring, tied heads absent from the file not missing.
    """
    weights = ties.apply(weights, architecture.pending.get("config"))
    prefix = architecture.metadata.get("base_model_prefix") or ""
    arch, file, head = _strip_one_sided_prefix(architecture, weights, prefix)
    result = compare(Report(arch), Report(file))
    unexpected = [n for n in result.unexpected_keys if n not in head]
    out: dict[str, list[Any]] = {
        "missing": list(result.missing_keys),
        "unexpected": unexpected,
        "mismatched": [(c.name, _tuple(c.a), _tuple(c.b)) for c in result.shape_mismatches],
    }
    unused = [n for n in result.unexpected_keys if n in head]
    if unused:  # only where there are some: the three keys above are the fit's whole story otherwise
        out["unused"] = unused
    return out


def _tuple(shape: list[int] | None) -> tuple[int, ...] | None:
    return None if shape is None else tuple(shape)


def _strip_one_sided_prefix(a: Inventory, b: Inventory, prefix: str) -> tuple[Inventory, Inventory, set[str]]:
    """Drop ``prefix.`` from the side that alone has it (a head class's checkpoint vs a base class's), and the
    names of checkpoint ``b`` outside the prefix when the architecture ``a`` is the base class: the head's
    weights, which ``from_pretrained`` of a base class leaves unused (transformers ``modeling_utils``: a head
    checkpoint loads into its base model, the prefix removed and the rest reported as not used)."""
    if not prefix:
        return a, b, set()
    lead = prefix + "."
    has = [any(r.name.startswith(lead) for r in inv.tensors) for inv in (a, b)]
    if has[0] == has[1]:
        return a, b, set()
    sides = [a, b]
    i = 0 if has[0] else 1
    if prefix != "model":  # "model." is paramscope.diff's own rule
        sides[i] = sides[i].replace(tensors=[r.replace(name=r.name[len(lead):]) if r.name.startswith(lead) else r
                                             for r in sides[i].tensors])
    head = {r.name for r in b.tensors if not r.name.startswith(lead)} if i == 1 else set()
    return sides[0], sides[1], head


def with_fit(inventory: Inventory, weights: Inventory, directory: Path) -> Inventory:
    """``inventory`` with the fit of ``weights`` in ``metadata["fit"]`` and one sentence first in its notes."""
    result = fit(inventory, weights)
    metadata = {**inventory.metadata, "fit": result, "weights": weights.source}
    where = os.fspath(directory)
    if not (result["missing"] or result["unexpected"] or result["mismatched"]):
        count = sum(1 for r in weights.tensors if r.role.value in ("parameter", "buffer"))
        note = f"weights in {where} fit the architecture: {count:,} tensors"
        unused = result.get("unused")
        if unused:
            names = ", ".join(_quote(n) for n in unused[:NOTE_NAMES]) + (", ..." if len(unused) > NOTE_NAMES else "")
            note += f" ({len(unused):,} head tensors the base model does not use: {names})"
    else:
        parts = []
        for key, label in (("missing", "missing"), ("unexpected", "unexpected"), ("mismatched", "shape-mismatched")):
            items = result[key]
            if items:
                names = [i[0] if isinstance(i, tuple) else i for i in items[:NOTE_NAMES]]
                more = ", ..." if len(items) > NOTE_NAMES else ""
                parts.append(f"{len(items):,} {label} ({', '.join(_quote(n) for n in names)}{more})")
        note = f"weights in {where} do not fit the architecture: {'; '.join(parts)}"
    return inventory.replace(metadata=metadata, notes=[note, *inventory.notes])


def _quote(name: str) -> str:
    from paramscope.text import safe

    return repr(safe(name[:200]))
