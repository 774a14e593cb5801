"""One report for a job that runs on many ranks, printed once.

Every rank can already count the whole model alone: the live source reads global shapes from the
sharding frameworks' own metadata (see :mod:`paramscope.sources.sharding`), so no weight is ever
gathered. What a rank cannot know alone is what the *other* ranks hold; :func:`report_all_ranks`
exchanges a handful of integers per rank (``all_gather_object``) and puts them in the report's
metadata, identical on every rank. :func:`print_once` prints from one rank only.

>>> from paramscope.distributed import report_all_ranks, print_once
>>> report = report_all_ranks(model)          # collective: call it on every rank
>>> print_once(report)                        # rank 0 prints the tree
>>> report.metadata["local_numel_per_rank"]   # [142, 141]

torch.distributed is imported only when these functions run.
"""

from __future__ import annotations

import sys

from paramscope.errors import ParamscopeError
from paramscope.report import Report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

FIGURES = ("total", "trainable", "buffers", "local_numel", "tensors")
"""The integers each rank contributes to :func:`combine`: small, whatever the model's size."""


def _dist() -> Any:
    """``torch.distributed`` if it is available and initialised, else None (a single process)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None


def rank_figures(report: Report) -> dict[str, int | None]:
    """This rank's figures: the global counts it computed and the parameter elements it holds itself."""
    from paramscope.sources.live import local_numel

    return {
        "total": report.total,
        "trainable": report.trainable,
        "buffers": report.buffers,
        "local_numel": local_numel(report.tensors),
        "tensors": len(report.tensors),
    }


def combine(per_rank: list[dict[str, Any]], *, source: str = "ranks") -> dict[str, Any]:
    """Fold the figures of every rank (index = rank) into the metadata of one report.

    Every rank must have found the same global count; if not, the model is not the same object on
    every rank (or a rank is mid-forward with unsharded parameters), and saying so beats a wrong sum.
    """
    if not per_rank:
        raise ParamscopeError(source, "no rank reported any figures")
    totals = {f["total"] for f in per_rank}
    if len(totals) != 1:
        detail = ", ".join(f"rank {i}: {f['total']:,}" for i, f in enumerate(per_rank))
        raise ParamscopeError(source, f"ranks disagree on the global parameter count ({detail})")
    locals_ = [int(f["local_numel"]) for f in per_rank]
    return {
        "world_size": len(per_rank),
        "local_numel_per_rank": locals_,
        "local_numel_sum": sum(locals_),
        "replication": round(sum(locals_) / per_rank[0]["total"], 4) if per_rank[0]["total"] else None,
    }


def report_all_ranks(model: Any, group: Any = None, *, source: str | None = None) -> Report:
    """A global report of ``model``, the same on every rank, with each rank's local share in its metadata.

    A collective: every rank of ``group`` must call it. Only :data:`FIGURES` travel between ranks.
    Without an initialised process group it is the single-process report.

    A rank whose own inspection fails still takes part in the exchange, sending its error instead of its
    figures, so no rank is left waiting in the collective (until the process group's timeout) for one that
    gave up: every rank then raises the same :class:`ParamscopeError`, naming the ranks that failed.
    """
    from paramscope.pipeline import settle
    from paramscope.sources.live import from_module

    dist = _dist()
    if dist is None:
        return Report(settle(from_module(model, source=source)))
    name = source or type(model).__name__
    failure: BaseException | None = None
    try:
        inventory = settle(from_module(model, source=source))
        report = Report(inventory)
        mine: dict[str, Any] = rank_figures(report)
    except Exception as exc:  # any failure: the others must hear of it, not wait for it
        failure = exc
        mine = {"error": str(exc) if isinstance(exc, ParamscopeError) else f"{type(exc).__name__}: {exc}"}
    world = dist.get_world_size(group)
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, mine, group=group)
    errors = [(i, f["error"]) for i, f in enumerate(gathered) if "error" in f]
    if errors:
        if failure is not None and not isinstance(failure, ParamscopeError):
            raise failure  # a bug on this rank: its own traceback (the other ranks get the one-line error)
        detail = "; ".join(f"rank {i}: {' '.join(str(e).split())}" for i, e in errors)
        raise ParamscopeError(name, f"inspection failed on {len(errors)} of {world} ranks ({detail})") from failure
    metadata = dict(inventory.metadata)
    metadata.pop("local_numel", None)  # this rank's own figure: replaced by every rank's, identical everywhere
    metadata.update(combine(gathered, source=inventory.source))
    notes = [n for n in inventory.notes if not n.startswith("parameters are sharded")]
    if "sharding" in metadata:
        shares = ", ".join(f"{n:,}" for n in metadata["local_numel_per_rank"])
        notes.append(
            f"parameters are sharded ({'; '.join(metadata['sharding'])}) over {world} ranks: counts are of the "
            f"whole model; the ranks hold {shares} parameter elements"
        )
    return Report(inventory.replace(metadata=metadata, notes=notes))


def local_shares(model: Any, group: Any = None) -> list[int]:
    """Parameter elements each rank holds (index = rank in ``group``); collective, like :func:`report_all_ranks`."""
    report = report_all_ranks(model, group)
    shares = report.metadata.get("local_numel_per_rank")
    return list(shares) if shares is not None else [local_share(report)]


def local_share(model_or_report: Any) -> int:
    """Parameter elements this process holds (no communication)."""
    from paramscope.sources.live import from_module, local_numel

    if isinstance(model_or_report, Report):
        return local_numel(model_or_report.tensors)
    return local_numel(from_module(model_or_report).tensors)


def is_printing_rank(rank: int = 0, group: Any = None) -> bool:
    """Whether this process is ``rank`` (always true without an initialised process group)."""
    dist = _dist()
    return dist is None or dist.get_rank(group) == rank


def print_once(obj: Any, rank: int = 0, *, group: Any = None, file: TextIO | None = None) -> bool:
    """Print ``obj`` (a Report prints its tree) on ``rank`` only; returns whether this process printed."""
    if not is_printing_rank(rank, group):
        return False
    print(obj, file=file if file is not None else sys.stdout, flush=True)
    return True
