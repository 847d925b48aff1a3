import asyncio
import socket

import pytest

from chimeha.observe import sdnotify


def _listener(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    return sock


def test_ready_reaches_the_notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with _listener(path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.ready("VI_1 MASTER") is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=VI_1 MASTER"
        assert sdnotify.reloading() is True
        lines = sock.recv(4096).decode().split("\n")
        assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=") and int(lines[1].split("=")[1]) > 0


def test_abstract_socket_and_newlines_in_status(tmp_path):
    name = f"chimeha-test-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert sdnotify.notify("STATUS=a\nb", env={"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"STATUS=a b"  # one line per field, whatever the caller passes


def test_without_systemd_it_is_a_no_op(tmp_path):
    assert sdnotify.notify("READY=1", env={}) is False
    assert sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


async def test_attach_running_reports_ready_only_once_the_daemon_started(tmp_path, monkeypatch):
    from chimeha.observe import attach_running

    from observe_fakes import FakeDaemon

    path = str(tmp_path / "notify")
    with _listener(path) as sock:
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        daemon = FakeDaemon()
        daemon.snap["node"]["started_at"] = None  # attached before daemon.start(), like `chime-ha run`
        daemon.state_hooks, daemon.event_hooks = [], []
        obs = await attach_running(daemon, control_path=None, metrics_addr=None, journal_path=None,
                                   signals=False, watch_interval=0.02)
        try:
            assert daemon.state_hooks == [obs.on_transition] and daemon.event_hooks == [obs.on_event]
            await asyncio.sleep(0.1)
            with pytest.raises(BlockingIOError):
                sock.recv(4096)  # not ready while the daemon has not started
            daemon.snap["node"]["started_at"] = 1.8e9
            for _ in range(200):
                try:
                    msg = sock.recv(4096)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            else:
                raise AssertionError("no READY=1 after the daemon started")
            assert msg == b"READY=1\nSTATUS=VI_1 MASTER; VI_2 BACKUP"
            await asyncio.sleep(0.1)
            with pytest.raises(BlockingIOError):
                sock.recv(4096)  # exactly once
        finally:
            await obs.close()
        assert daemon.state_hooks == [] and daemon.event_hooks == []
        assert sock.recv(4096).startswith(b"STOPPING=1")
