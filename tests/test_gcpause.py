"""paused_gc: collection paused inside, resumed after; a large burst promoted rather than walked."""

from __future__ import annotations

import gc
import weakref

import pytest

from paramscope import gcpause
from paramscope.gcpause import paused_gc


@pytest.fixture
def collector():
    """The collector enabled and nothing frozen, as a plain program has it; restored afterwards."""
    was_enabled = gc.isenabled()
    frozen = gc.get_freeze_count()
    gc.unfreeze()
    gc.enable()
    yield
    if frozen:
        gc.freeze()
    if not was_enabled:
        gc.disable()


def _burst(n: int) -> list[list[int]]:
    return [[i] for i in range(n)]  # n tracked objects (lists), none of them garbage


def test_collection_is_paused_inside_and_resumed_after(collector):
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled(collector):
    gc.disable()
    with paused_gc():
        kept = _burst(2 * gcpause.YOUNG_OBJECTS_TO_PROMOTE)  # well past it: deallocations elsewhere lower the count
    assert not gc.isenabled()
    assert gc.get_count()[0] > gcpause.YOUNG_OBJECTS_TO_PROMOTE  # nothing promoted: the program's collector is off
    assert len(kept) == 2 * gcpause.YOUNG_OBJECTS_TO_PROMOTE


def test_a_large_burst_is_promoted_to_the_oldest_generation_unwalked(collector):
    gc.collect()
    with paused_gc():
        kept = _burst(2 * gcpause.YOUNG_OBJECTS_TO_PROMOTE)  # well past it: deallocations elsewhere lower the count
        assert gc.get_count()[0] > gcpause.YOUNG_OBJECTS_TO_PROMOTE
    assert gc.get_count()[0] < 100  # the young count reset: no collection is due
    assert gc.get_freeze_count() == 0  # nothing left frozen
    assert gc.is_tracked(kept[0])
    referrers = {id(o) for o in gc.get_objects(generation=2)}
    assert id(kept[0]) in referrers and id(kept[-1]) in referrers
    assert gc.isenabled()


def test_a_small_burst_is_left_to_the_collector(collector):
    gc.collect()
    with paused_gc():
        kept = _burst(gcpause.YOUNG_OBJECTS_TO_PROMOTE // 5)
    young = {id(o) for o in gc.get_objects(generation=0)}
    assert id(kept[0]) in young  # still young: the usual collections take it


def test_a_program_that_froze_objects_keeps_them_frozen(collector):
    frozen_before = _burst(10)
    gc.freeze()
    count = gc.get_freeze_count()
    assert count >= 10
    with paused_gc():
        kept = _burst(2 * gcpause.YOUNG_OBJECTS_TO_PROMOTE)  # well past it: deallocations elsewhere lower the count
    assert gc.get_freeze_count() == count  # not unfrozen by us
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert id(kept[0]) not in oldest  # left to the young collections: promoting would have unfrozen theirs
    gc.unfreeze()
    assert frozen_before and kept


def test_garbage_cycles_promoted_are_still_collected(collector):
    gc.collect()

    class Node:
        pass

    with paused_gc():
        kept = _burst(2 * gcpause.YOUNG_OBJECTS_TO_PROMOTE)  # well past it: deallocations elsewhere lower the count
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle, unreachable once the names go
        del a, b
    assert gc.collect() >= 2  # a full collection finds it in the oldest generation
    assert kept


def test_the_programs_young_garbage_is_collected_when_the_pause_starts_not_promoted(collector):
    gc.collect()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # the program's cycle, garbage and still young when the pause starts
    probe = weakref.ref(a)
    del a, b
    with paused_gc():
        kept = _burst(2 * gcpause.YOUNG_OBJECTS_TO_PROMOTE)  # well past it: deallocations elsewhere lower the count
    assert probe() is None  # collected, not moved to the oldest generation with the burst to wait for a full one
    assert id(kept[0]) in {id(o) for o in gc.get_objects(generation=2)}


def test_a_one_shot_process_promotes_its_young_objects_with_the_burst_unwalked(collector, monkeypatch):
    monkeypatch.setattr(gcpause, "_collect_first", True)  # restored after: the test process is no one-shot
    gcpause.one_shot()
    assert gcpause._collect_first is False
    gc.collect()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # the program's young cycle: left for the process's end, not collected at the pause
    probe = weakref.ref(a)
    del a, b
    with paused_gc():
        kept = _burst(2 * gcpause.YOUNG_OBJECTS_TO_PROMOTE)  # well past it: deallocations elsewhere lower the count
    assert probe() is not None  # no collection when the pause started
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert id(probe()) in oldest and id(kept[0]) in oldest  # promoted with the burst
    assert gc.collect() >= 2  # a full collection still finds it
    assert probe() is None
