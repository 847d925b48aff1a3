"""Fixtures for tests/observe (the doubles live in observe_fakes.py)."""

from __future__ import annotations

import pytest

from observe_fakes import FakeDaemon, ThreadedObserver


@pytest.fixture
def fake_daemon():
    return FakeDaemon()


@pytest.fixture
def running_observer(tmp_path, fake_daemon):
    """(ThreadedObserver, FakeDaemon) with a control socket and an HTTP listener on 127.0.0.1."""
    from chimeha.observe import attach
    from chimeha.observe.dumps import DumpPaths

    obs = attach(fake_daemon, control_path=str(tmp_path / "run" / "control.sock"), metrics_addr="127.0.0.1:0",
                 journal_path=str(tmp_path / "journal.jsonl"), signals=False, watch_interval=0.05,
                 dump_paths=DumpPaths(str(tmp_path / "k.data"), str(tmp_path / "k.stats"), str(tmp_path / "k.json")))
    with ThreadedObserver(obs) as threaded:
        yield threaded, fake_daemon
