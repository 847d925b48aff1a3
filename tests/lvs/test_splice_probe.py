"""bench/dataplane/splice_probe.py relays byte-exact, so its benchmark figure means something.

The probe (kernel splicing with a BPF sockhash, not a product: it has no back-pressure)
runs here on loopback against a sink that hashes what it gets: an upload that the client
ends with a half-close (the reply comes after the client's FIN), and a 20 MB download that
the server ends with its close, each spliced in the kernel at least twice. A bug in its FIN
ordering or a lost or reordered segment fails these.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

PROBE = Path(__file__).resolve().parents[2] / "bench" / "dataplane" / "splice_probe.py"


def load_probe():
    spec = importlib.util.spec_from_file_location("splice_probe", PROBE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sink(server: socket.socket, download: bytes) -> None:
    """b"u": hash everything up to the client's FIN and answer the hex digest; b"d": send ``download``."""
    while True:
        try:
            c, _ = server.accept()
        except OSError:
            return
        with c:
            if c.recv(1) == b"u":
                h = hashlib.sha256()
                while data := c.recv(65536):
                    h.update(data)
                c.sendall(h.hexdigest().encode())
            else:
                c.sendall(download)


def read_all(s: socket.socket) -> bytes:
    out = bytearray()
    while data := s.recv(1 << 20):
        out += data
    return bytes(out)


def test_uploads_with_half_close_and_downloads_arrive_byte_exact():
    probe = load_probe()
    upload, download = os.urandom(3_000_000), os.urandom(20_000_000)
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=sink, args=(server, download), daemon=True).start()
    relay = probe.Relay(("127.0.0.1", 0), [server.getsockname()])
    threading.Thread(target=relay.run, daemon=True).start()
    front = relay.lsock.getsockname()
    try:
        for pause in (0.0, 0.05, 0.0, 0.05):
            with socket.create_connection(front, timeout=10) as c:
                # no pause: the FIN may come before the real server accepted (then the probe
                # relays in userspace); a pause: the rest goes through the kernel's splice
                c.sendall(b"u" + upload[:1000])
                time.sleep(pause)
                c.sendall(upload[1000:])
                c.shutdown(socket.SHUT_WR)
                assert read_all(c).decode() == hashlib.sha256(upload).hexdigest()
            with socket.create_connection(front, timeout=10) as c:
                c.sendall(b"d")
                assert read_all(c) == download
        assert relay.counts["spliced"] >= 4  # the downloads and paused uploads at least
    finally:
        server.close()
