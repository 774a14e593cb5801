"""Pause the cyclic garbage collector while building many small objects.

Building records or a module tree for a model with tens of thousands of tensors allocates as many
objects, and each allocation burst triggers collections that walk the whole model graph as well
(every module, parameter and Python object reachable from it). Those passes, not our code,
dominated the time; nothing built here forms cycles, so pausing collection loses nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
