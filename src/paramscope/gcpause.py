"""Pause the cyclic garbage collector while building many small objects.

Building records or a module tree for a model with tens of thousands of tensors allocates as many
objects, and each allocation burst triggers collections that walk the whole model graph as well
(every module, parameter and Python object reachable from it). Those passes, not our code,
dominated the time; nothing built here forms cycles, so pausing collection loses nothing.

Resuming has a cost of its own: every object made while paused is still counted as young, so the first
allocation after it starts a young-generation collection that walks all of them (a 20,000-record live
report: ~4 ms, twice per report, measured by bench/bench_live.py) and finds nothing, since they are acyclic
and live as long as the report. Where a burst left more than :data:`YOUNG_OBJECTS_TO_PROMOTE` young objects,
they are moved to the oldest generation instead, without being walked (``gc.freeze()`` then
``gc.unfreeze()``: two list splices that also reset the young count). So that only the burst is moved, the
program's own young objects are collected when the pause starts (``gc.collect(1)``: what the collector would
soon do anyway, and cheap, the young generations being small); promoted with them, the program's cyclic garbage
would wait for a full collection, which promotions never bring nearer (measured: 300 reports of a 10,000-record
model, each followed by 2,000 garbage cycles, kept 190,000 more objects alive). A program that froze objects itself
(``gc.get_freeze_count()``) is left as it is: unfreezing would release its objects too.

A process that reads one source and ends (``python -m paramscope``: :func:`one_shot`) skips that first collection:
its young objects are what its imports made (module contents, living until it ends), a walk of all of them finds
nothing (1 ms of a small file's 35, issue 12), and the little garbage they hold waits for the process's end.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

YOUNG_OBJECTS_TO_PROMOTE = 500
"""Young objects left by a pause above which they are promoted rather than walked: below it a collection is
cheap and the collector's usual rhythm for the program's own objects is kept. Above it, the walk costs more than it
can ever find: Llama-2-70B's report (on the meta device) leaves 936, whose walk was 3% of the report's instructions
(0.68M of 22.9M under callgrind, bench/bench_live.py's "paramscope report")."""

_collect_first = True
"""Whether a pause starts with a young collection (False in a one-shot process: :func:`one_shot`)."""


def one_shot() -> None:
    """Say that this process reads one source and ends (:mod:`paramscope.__main__`): pauses start without
    collecting the program's young objects, which are promoted with a burst instead."""
    global _collect_first
    _collect_first = False


@contextmanager
def paused_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    if was_enabled and _collect_first and not gc.get_freeze_count():
        gc.collect(1)  # the program's young objects collected as usual now, so a promotion after is of ours alone
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_count()[0] > YOUNG_OBJECTS_TO_PROMOTE and not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()
