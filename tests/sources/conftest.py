"""Fixtures the source tests share: a fake Hub (tests/sources/_fake_hub.py) on 127.0.0.1 for one test module,
and, per test, that server with its faults cleared and the Hub environment pointed at it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _fake_hub import FakeHub, hub_environment


@pytest.fixture(scope="module")
def server():
    hub = FakeHub().start()
    yield hub
    hub.stop()


@pytest.fixture
def hub(server, tmp_path, monkeypatch):
    """The server with faults cleared, /plain/ serving tmp_path, the Hub environment pointed at it."""
    server.clear_faults(plain=tmp_path)
    hub_environment(monkeypatch, tmp_path, server)
    return server
