"""Shared by the readers' fuzz tests: a valid file with a few bytes changed and perhaps cut short."""

from __future__ import annotations

from hypothesis import strategies as st


def mutated(data: st.DataObject, base: bytes) -> bytes:
    """``base`` with 1 to 8 bytes overwritten, then optionally truncated at a drawn offset."""
    raw = bytearray(base)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    if cut is not None:
        del raw[cut:]
    return bytes(raw)
