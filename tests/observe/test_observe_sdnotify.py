import socket

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
