"""The control socket's limits: a connection cap, idle timeouts, bounded accept-error logging.

Measured before these limits: 1,100 idle root connections under a 1,024
descriptor limit starved the daemon's track script (no descriptor left for its
pipes), failed the node over and logged 37,000 accept tracebacks in 30 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chimeha.observe import attach
from chimeha.observe.control import ControlClient, ControlError

from observe_fakes import Event, FakeDaemon

HERE = Path(__file__).parent


@pytest.fixture
async def limited(tmp_path):
    obs = attach(FakeDaemon(), control_path=str(tmp_path / "ctl.sock"), metrics_addr=None, journal_path=None,
                 signals=False, control_max_connections=4, control_idle_timeout=0.4)
    await obs.start()
    try:
        yield obs
    finally:
        await obs.stop()


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


def _read_until_eof(s: socket.socket) -> list[dict]:
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return [json.loads(x) for x in buf.splitlines() if x.strip()]
        buf += chunk


async def _until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_a_full_server_evicts_the_longest_idle_and_still_answers_status(limited):
    server = limited.control
    idle = [await asyncio.to_thread(_connect, server.path) for _ in range(10)]
    try:
        await _until(lambda: server.stats["accepted"] == 10, 10, "10 accepts")
        assert server.connections == 4
        status = await asyncio.to_thread(ControlClient(server.path, timeout=5).status)
        assert status["instances"]["VI_1"]["state"] == "MASTER"
        assert server.stats["evicted"] == 7 and server.stats["refused"] == 0  # 6 for the flood, 1 for status
        # The first ones were told why and closed; the newest idle ones are still open.
        first = await asyncio.to_thread(_read_until_eof, idle[0])
        assert first == [{"ok": False, "error": "closing: too many control connections (limit 4)"}]
    finally:
        for s in idle:
            s.close()


async def test_idle_and_half_sent_requests_time_out(limited):
    server = limited.control
    quiet = await asyncio.to_thread(_connect, server.path)
    partial = await asyncio.to_thread(_connect, server.path)
    partial.sendall(b'{"cmd": "sta')  # never finished
    try:
        t0 = time.monotonic()
        answers = await asyncio.to_thread(_read_until_eof, quiet)
        waited = time.monotonic() - t0
        assert answers == [{"ok": False, "error": "no complete request within 0.4 s; closing"}]
        assert 0.3 <= waited < 5.0
        assert (await asyncio.to_thread(_read_until_eof, partial))[0]["error"].startswith("no complete request")
        await _until(lambda: server.connections == 0, 5, "every slot freed")
        assert server.stats["idle_closed"] == 2
    finally:
        quiet.close()
        partial.close()


async def test_a_connection_that_keeps_asking_is_not_idle(limited):
    s = await asyncio.to_thread(_connect, limited.control.path)
    try:
        for _ in range(4):  # 4 x 0.25 s > the 0.4 s idle timeout, but never 0.4 s without a request
            s.sendall(b'{"cmd": "journal"}\n')
            await asyncio.sleep(0.25)
        s.sendall(b'{"cmd": "status"}\n')
        s.shutdown(socket.SHUT_WR)
        answers = await asyncio.to_thread(_read_until_eof, s)
        assert [a["ok"] for a in answers] == [True] * 5
    finally:
        s.close()


async def test_followers_are_never_evicted_and_a_full_house_refuses_newcomers(limited):
    server = limited.control
    follows = [ControlClient(server.path).follow(limit=0, idle_timeout=20) for _ in range(4)]
    pending = [asyncio.ensure_future(asyncio.to_thread(next, f)) for f in follows]
    try:
        await _until(lambda: limited.journal.subscribers == 4, 10, "4 followers subscribed")
        s = await asyncio.to_thread(_connect, server.path)
        assert await asyncio.to_thread(_read_until_eof, s) == [
            {"ok": False, "error": "too many control connections (4 busy); try again"}]
        s.close()
        await asyncio.sleep(0.6)  # longer than the idle timeout: a follower waits for entries, it is not idle
        limited.on_transition(Event("VI_1", "BACKUP", "MASTER", "still following", None))
        entries = await asyncio.wait_for(asyncio.gather(*pending), 20)
        assert [e["reason"] for e in entries] == ["still following"] * 4
        assert server.stats["refused"] == 1 and server.stats["evicted"] == 0
    finally:
        for f in follows:
            f.close()


SERVER_UNDER_EMFILE = textwrap.dedent("""
    import asyncio, logging, os, signal, sys
    sys.path.insert(0, {here!r})
    from chimeha.observe import attach
    from observe_fakes import FakeDaemon

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    async def main():
        obs = attach(FakeDaemon(), control_path={path!r}, metrics_addr=None, journal_path=None, signals=False,
                     control_max_connections=1000, control_idle_timeout=30)
        await obs.start()
        hog = []  # whatever else in the process ate the descriptors
        try:
            while True:
                hog.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        for fd in hog[-2:]:
            os.close(fd)  # two left: one for a connection, one for the accept after it
        del hog[-2:]
        freed = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, freed.set)
        print("starved", obs.control.max_connections, flush=True)
        await freed.wait()
        for fd in hog:
            os.close(fd)
        print("freed", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
""")


def _lower_nofile(n: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def test_out_of_descriptors_backs_off_logs_a_few_lines_and_recovers(tmp_path):
    """A real control server in a process out of file descriptors (RLIMIT_NOFILE 256, all used)."""
    path = str(tmp_path / "ctl.sock")
    code = SERVER_UNDER_EMFILE.format(here=str(HERE), path=path)
    err = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err,
                            preexec_fn=_lower_nofile(256))
    err.close()
    clients = []
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("starved"), (tmp_path / "server.log").read_text()
        assert int(line.split()[1]) == 64  # 1000 asked, a quarter of the 256 descriptors given
        for _ in range(40):  # far more than the two descriptors left
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(path)  # queued in the listen backlog even when the server cannot accept
            clients.append(s)
        time.sleep(3.0)  # ~3 s of accept attempts failing with EMFILE
        os.kill(proc.pid, __import__("signal").SIGUSR1)
        assert proc.stdout.readline().decode().startswith("freed")
        answer = ControlClient(path, timeout=10).status()  # after the queued ones: the server serves again
        assert answer["instances"]["VI_1"]["state"] == "MASTER"
    finally:
        for s in clients:
            s.close()
        proc.kill()
        proc.wait(10)
    log = (tmp_path / "server.log").read_text()
    errors = [x for x in log.splitlines() if "cannot accept connections" in x]
    assert 1 <= len(errors) <= 2, log  # one line per 10 s, not one per attempt
    assert "Too many open files" in errors[0]
    assert "Traceback" not in log, log
    assert len(log.splitlines()) < 10, log


def test_the_client_waits_out_a_full_listen_backlog_then_gives_up_in_words(tmp_path):
    """A daemon busy accepting (its listen queue full: connect says EAGAIN) is waited for, up to the timeout."""
    import threading

    path = str(tmp_path / "busy.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    queued = []
    try:
        while True:  # fill the queue: nobody accepts
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                s.close()
                break
            queued.append(s)
        t0 = time.monotonic()
        with pytest.raises(ControlError, match="accepts no connection .*0.3 s"):
            ControlClient(path, timeout=0.3).status()
        assert 0.25 <= time.monotonic() - t0 < 3

        def serve_after_a_while():
            time.sleep(0.3)
            for _ in range(len(queued) + 1):
                conn, _ = listener.accept()
                conn.settimeout(5)
                if conn.recv(4096).startswith(b'{"cmd":"status"'):
                    conn.sendall(b'{"ok":true,"result":{"instances":{}}}\n')
                conn.close()
        for s in queued:
            s.sendall(b"\n")
        server = threading.Thread(target=serve_after_a_while)
        server.start()
        assert ControlClient(path, timeout=10).status() == {"instances": {}}
        server.join(10)
    finally:
        for s in queued:
            s.close()
        listener.close()
