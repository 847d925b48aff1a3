"""Stand-in services: named exactly like the real ones, answering with the node's name."""

import socket
import subprocess
import sys
import time

import pytest

from chimeha.lab.standins import body_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, deadline: float = 5.0) -> bytes:
    end = time.monotonic() + deadline
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                chunks = []
                while data := s.recv(4096):
                    chunks.append(data)
                return b"".join(chunks)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize("kind,comm", [("server", "chime-server"), ("portal", "chime-portal")])
def test_standin_process_name_and_answer(kind, comm):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "chimeha.lab.standins", kind, "--name", "node7",
                             "--port", str(port), "--bind", "127.0.0.1"])
    try:
        answer = _get(port)
        assert answer.startswith(b"HTTP/1.0 200 OK")
        assert b"X-Chime-Node: node7" in answer
        assert b"node7" in answer.split(b"\r\n\r\n", 1)[1]
        # pgrep matches the kernel's comm; that is what the seed's check script sees.
        with open(f"/proc/{proc.pid}/comm") as fh:
            assert fh.read().strip() == comm
        found = subprocess.run(["pgrep", "-x", comm], capture_output=True, text=True).stdout.split()
        assert str(proc.pid) in found
    finally:
        proc.terminate()
        proc.wait(5)
    assert proc.returncode == 0  # SIGTERM is a clean stop, like systemctl stop


def test_bad_port_is_a_clear_error():
    out = subprocess.run([sys.executable, "-m", "chimeha.lab.standins", "server", "--name", "x", "--port", "0"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 2
    assert "--port 0" in out.stderr and "Traceback" not in out.stderr


def test_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "chimeha.lab.standins", "portal", "--name", "x",
                              "--port", str(port), "--bind", "127.0.0.1"],
                             capture_output=True, text=True, timeout=20)
    assert out.returncode == 1
    assert "cannot listen" in out.stderr and "Traceback" not in out.stderr


def test_bodies_name_the_node():
    ctype, body = body_for("portal", "server2", 8033)
    assert ctype.startswith("text/html") and "server2" in body
    ctype, body = body_for("server", "server1", 8801)
    assert '"node": "server1"' in body and '"port": 8801' in body
