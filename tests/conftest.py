"""Shared test fixtures.

Tests marked ``system`` need root (network namespaces, raw sockets, nftables).
Without root they skip with the reason; under ``CI=true`` a missing capability
is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def _system_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, raw sockets, nftables or root-owned files)"
    if not shutil.which("ip"):
        return "needs iproute2 (`ip`)"
    return None


def require(condition_reason: str | None) -> None:
    """Skip (or, under CI=true, fail) when ``condition_reason`` is not None."""
    if condition_reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {condition_reason}", pytrace=False)
    pytest.skip(condition_reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("system"):
        require(_system_unavailable_reason())
    if item.get_closest_marker("keepalived"):
        require(None if shutil.which("keepalived") else "needs the keepalived binary (apt-get install keepalived)")


@pytest.fixture
def topology():
    """A fresh namespace topology (switch + hosts), torn down after the test."""
    from chimeha.lab.netns import Topology

    topo = Topology("t")
    topo.open()
    try:
        yield topo
    finally:
        topo.close()
