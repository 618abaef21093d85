"""Root-only namespace tests: each test gets its own pair of namespaces, always deleted."""

from __future__ import annotations

import os

import pytest

from tests.netns.topology import new_topology


@pytest.fixture
def topo():
    assert os.geteuid() == 0, "the namespace tests run as root"
    t = new_topology()
    try:
        yield t
    finally:
        t.destroy()
