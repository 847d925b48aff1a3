"""The shared probe engine (chimeha.check.engine) against real sockets on loopback.

Each outcome is also compared with :func:`chimeha.check.probe` (the
per-attempt asyncio path) so that moving a checker into the engine changes
neither the verdict nor the operator's sentence.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket

from chimeha.check import CheckerRunner, RealServerMonitor, Target, probe
from chimeha.check import engine as eng
from chimeha.check.http import build_request
from chimeha.check.spec import Timing
from chimeha.config.model import HttpCheck, HttpUrl, TcpCheck

ONCE = Timing(delay_loop=30, connect_timeout=3, retry=0, delay_before_retry=30, warmup=0)
FAST = Timing(delay_loop=0.05, connect_timeout=3, retry=1, delay_before_retry=0.05, warmup=0)


async def first_result(checker, target, timing=ONCE):
    """Start a runner, wait for its first attempt, stop it: (engine result, probe() result)."""
    runner = CheckerRunner(checker, target, timing=timing)
    runner.start()
    assert runner._job is not None and runner._task is None  # really the engine path
    try:
        for _ in range(1000):
            if runner.schedule.probes:
                break
            await asyncio.sleep(0.01)
        assert runner.schedule.probes == 1
        mine = runner.last_result
    finally:
        await runner.stop()
    return mine, await probe(checker, target, timing)


async def listen(handler=lambda r, w: w.close(), port=0):
    server = await asyncio.start_server(handler, "127.0.0.1", port, reuse_address=True)
    return server, server.sockets[0].getsockname()[1]


def full_listener():
    """A listener whose accept queue is full: further SYNs are dropped, a connect hangs."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    return lsock, port, fillers


# --- TCP_CHECK -----------------------------------------------------------------


async def test_tcp_up_refused_and_timeout_match_probe(unused_port):
    server, port = await listen()
    try:
        mine, ref = await first_result(TcpCheck(), Target("127.0.0.1", port))
        assert mine.ok and mine == ref and mine.detail == f"connected to 127.0.0.1:{port}"
    finally:
        server.close()
    free = unused_port()
    mine, ref = await first_result(TcpCheck(), Target("127.0.0.1", free))
    assert not mine.ok and "refused" in mine.detail and mine == ref
    lsock, port, fillers = full_listener()
    try:
        await asyncio.sleep(0.05)
        mine, ref = await first_result(TcpCheck(), Target("127.0.0.1", port), Timing(delay_loop=30, connect_timeout=0.2,
                                                                                      retry=0, warmup=0))
        assert mine == ref and mine.detail == f"connect to 127.0.0.1:{port} timed out after 0.2 s"
    finally:
        for f in fillers:
            f.close()
        lsock.close()


async def test_tcp_bad_settings_are_failures_not_crashes():
    mine, ref = await first_result(TcpCheck(), Target("127.0.0.1", None))
    assert not mine.ok and "no port" in mine.detail and mine == ref
    mine, ref = await first_result(TcpCheck(), Target("not-an-ip", 80))
    assert not mine.ok and "not an IP address" in mine.detail and mine == ref
    mine, _ = await first_result(TcpCheck(bindto="192.0.2.1"), Target("127.0.0.1", 9))
    assert not mine.ok and "bind address not available" in mine.detail


async def test_retry_and_delay_before_retry_then_recovery(wait_for):
    server, port = await listen()
    changes = []
    runner = CheckerRunner(TcpCheck(), Target("127.0.0.1", port), changes.append,
                           timing=Timing(delay_loop=0.05, connect_timeout=3, retry=2, delay_before_retry=0.05, warmup=0))
    runner.start()
    try:
        await wait_for(lambda: runner.schedule.probes >= 3)
        assert changes == [] and runner.up
        server.close()
        await server.wait_closed()
        n = runner.schedule.probes
        await wait_for(lambda: changes)
        # the first failure and two retries, then down
        assert runner.schedule.probes - n == 3 and "after 2 retries" in changes[0].detail and not changes[0].ok
        server, _ = await listen(port=port)
        await wait_for(lambda: len(changes) == 2)
        assert changes[1].ok and runner.up
    finally:
        await runner.stop()
        server.close()


async def test_alpha_starts_down_and_one_success_brings_it_up(wait_for):
    server, port = await listen()
    changes = []
    runner = CheckerRunner(TcpCheck(), Target("127.0.0.1", port), changes.append,
                           timing=Timing(delay_loop=0.05, connect_timeout=3, retry=0, warmup=0, alpha=True))
    assert not runner.up
    runner.start()
    try:
        await wait_for(lambda: changes)
        assert changes[0].ok and runner.up and runner.schedule.probes == 1
    finally:
        await runner.stop()
        server.close()


async def test_many_checkers_share_one_engine_released_after_the_last_stops(wait_for):
    servers = [await listen() for _ in range(20)]
    states = []
    mons = [RealServerMonitor([TcpCheck(), TcpCheck(connect_port=p)], Target("127.0.0.1", p),
                              lambda *a: states.append(a), timings=[FAST, FAST]) for _, p in servers]
    loop = asyncio.get_running_loop()
    for m in mons:
        m.start()
    try:
        engine = eng._ENGINES[loop]
        assert all(r._job.engine is engine for m in mons for r in m.runners)
        await wait_for(lambda: all(r.schedule.probes >= 3 for m in mons for r in m.runners))
        assert states == [] and all(m.up for m in mons)
        servers[0][0].close()
        await servers[0][0].wait_closed()
        await wait_for(lambda: states)
        assert states[0][0] is False and "refused" in states[0][2]
        assert [m.up for m in mons].count(False) == 1
    finally:
        for m in mons:
            await m.stop()
        for s, _ in servers:
            s.close()
    assert loop not in eng._ENGINES  # epoll and timer released


async def test_stop_during_an_attempt_closes_it_and_reports_nothing():
    lsock, port, fillers = full_listener()
    changes = []
    runner = CheckerRunner(TcpCheck(), Target("127.0.0.1", port), changes.append,
                           timing=Timing(delay_loop=0.05, connect_timeout=0.2, retry=0, warmup=0))
    try:
        await asyncio.sleep(0.05)
        runner.start()
        job = runner._job
        for _ in range(100):
            if job.sock is not None:
                break
            await asyncio.sleep(0.01)
        sock = job.sock
        assert sock is not None and runner.schedule.probes == 0  # the connect hangs
        await runner.stop()
        assert sock.fileno() == -1 and job.sock is None
        await asyncio.sleep(0.4)  # past the attempt's deadline
        assert changes == [] and runner.schedule.probes == 0
    finally:
        for f in fillers:
            f.close()
        lsock.close()


# --- HTTP_GET --------------------------------------------------------------------


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


async def test_http_status_digest_and_request_bytes(http_server):
    http_server.response = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"
    target = Target("127.0.0.1", http_server.port, virtualhost="rs.test")
    chk = HttpCheck(urls=(HttpUrl(path="/health", digest=md5(b"hello")),), http_protocol="1.1")
    mine, ref = await first_result(chk, target)
    assert mine.ok and mine == ref and mine.detail == f"GET from 127.0.0.1:{http_server.port}: /health 200"
    assert http_server.requests[0] == build_request("/health", "rs.test", "1.1") == http_server.requests[1]


async def test_http_wrong_status_digest_and_second_url(http_server):
    target = Target("127.0.0.1", http_server.port)
    http_server.response = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy"
    mine, ref = await first_result(HttpCheck(urls=(HttpUrl(path="/"),)), target)
    assert not mine.ok and mine == ref and "status 503 not expected" in mine.detail
    http_server.routes["/a"] = b"HTTP/1.0 200 OK\r\n\r\nA"
    http_server.routes["/b"] = b"HTTP/1.0 200 OK\r\n\r\nchanged"
    mine, ref = await first_result(HttpCheck(urls=(HttpUrl(path="/a"), HttpUrl(path="/b", digest=md5(b"B")))), target)
    assert not mine.ok and mine == ref and f"digest {md5(b'changed')} != {md5(b'B')}" in mine.detail
    mine, ref = await first_result(HttpCheck(urls=(HttpUrl(path="/a", regex="A"), HttpUrl(path="/b", regex="nope"))),
                                   target)
    assert not mine.ok and mine == ref and "/b" in mine.detail and "does not match regex" in mine.detail


async def test_http_refused_garbage_and_timeout(http_server, unused_port):
    chk = HttpCheck(urls=(HttpUrl(path="/"),))
    mine, ref = await first_result(chk, Target("127.0.0.1", unused_port()))
    assert not mine.ok and mine == ref and "connection refused" in mine.detail
    async def garbage(reader, writer):
        await reader.readuntil(b"\r\n\r\n")  # read first: closing with unread data would send a RST
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        writer.close()

    server, port = await listen(garbage)
    try:
        mine, ref = await first_result(chk, Target("127.0.0.1", port))
        assert not mine.ok and mine == ref and "bad status line" in mine.detail
    finally:
        server.close()
    http_server.delay = 20.0
    mine, ref = await first_result(chk, Target("127.0.0.1", http_server.port),
                                   Timing(delay_loop=30, connect_timeout=0.3, retry=0, warmup=0))
    assert mine == ref and mine.detail == f"GET / from 127.0.0.1:{http_server.port} timed out after 0.3 s"


async def test_http_large_body_read_in_pieces(http_server):
    body = bytes(range(256)) * 4096  # 1 MiB: many recv() calls
    http_server.response = b"HTTP/1.0 200 OK\r\n\r\n" + body
    mine, ref = await first_result(HttpCheck(urls=(HttpUrl(path="/", digest=md5(body)),)),
                                   Target("127.0.0.1", http_server.port))
    assert mine.ok and mine == ref


def test_eligibility():
    assert eng.eligible(TcpCheck()) and eng.eligible(HttpCheck())
    assert not eng.eligible(HttpCheck(kind="SSL_GET", ssl=True)) and not eng.eligible(HttpCheck(ssl=True))


def test_engine_runs_on_uvloop(unused_port):
    uvloop = __import__("pytest").importorskip("uvloop")

    async def go():
        server, port = await listen()
        timing = Timing(delay_loop=0.05, connect_timeout=1, retry=0, warmup=0)
        up = CheckerRunner(TcpCheck(), Target("127.0.0.1", port), timing=timing)
        refused = CheckerRunner(TcpCheck(), Target("127.0.0.1", unused_port()), timing=timing)
        up.start()
        refused.start()
        try:
            for _ in range(500):
                if up.schedule.probes >= 3 and refused.schedule.probes >= 3:
                    break
                await asyncio.sleep(0.01)
            return up.last_result, refused.last_result
        finally:
            await up.stop()
            await refused.stop()
            server.close()

    ok, bad = uvloop.run(go())
    assert ok.ok and not bad.ok and "refused" in bad.detail


async def test_delay_loop_zero_with_a_bad_setting_keeps_the_loop_responsive():
    # Every attempt fails inside begin() (no port) and is due again at once:
    # the engine must still hand the loop back between batches.
    runner = CheckerRunner(TcpCheck(), Target("127.0.0.1", None),
                           timing=Timing(delay_loop=0, connect_timeout=1, retry=0, delay_before_retry=0, warmup=0))
    runner.start()
    try:
        await asyncio.wait_for(asyncio.sleep(0.1), 5)
        assert runner.schedule.probes >= 2 and not runner.last_result.ok
    finally:
        await runner.stop()


async def test_a_crashing_attempt_is_a_failure_and_the_schedule_goes_on(monkeypatch, wait_for):
    server, port = await listen()
    calls = []

    def broken_socket(*a, **kw):
        calls.append(a)
        if len(calls) == 1:
            raise RuntimeError("checker bug")
        return real(*a, **kw)

    real = eng.new_socket
    monkeypatch.setattr(eng, "new_socket", broken_socket)
    runner = CheckerRunner(TcpCheck(), Target("127.0.0.1", port),
                           timing=Timing(delay_loop=0.05, connect_timeout=1, retry=1, delay_before_retry=0.05, warmup=0))
    runner.start()
    try:
        await wait_for(lambda: runner.schedule.probes >= 3)
        assert runner.up and runner.last_result.ok  # the crash cost one attempt, retried
    finally:
        await runner.stop()
        server.close()


async def test_each_connect_timeout_keeps_its_own_deadlines(wait_for):
    lsock, port, fillers = full_listener()
    try:
        await asyncio.sleep(0.05)
        quick, slow = (CheckerRunner(TcpCheck(), Target("127.0.0.1", port),
                                     timing=Timing(delay_loop=30, connect_timeout=t, retry=0, warmup=0))
                       for t in (0.2, 1.0))
        slow.start()
        quick.start()
        try:
            await wait_for(lambda: quick.schedule.probes)
            assert slow.schedule.probes == 0  # its own, later deadline
            await wait_for(lambda: slow.schedule.probes)
            assert "timed out after 0.2 s" in quick.last_result.detail
            assert "timed out after 1 s" in slow.last_result.detail
        finally:
            await quick.stop()
            await slow.stop()
    finally:
        for f in fillers:
            f.close()
        lsock.close()


async def test_a_report_that_removes_the_last_job_closes_the_engine_cleanly(unused_port):
    from chimeha.check.schedule import CheckSchedule

    loop = asyncio.get_running_loop()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    engine = eng.engine_for(loop)
    timing = Timing(delay_loop=0.05, connect_timeout=1, retry=0, warmup=0)
    seen = []

    def report(tr, result):
        seen.append(result)
        engine.remove(job)  # synchronously, from inside the engine's own callback

    job = engine.add(TcpCheck(), Target("127.0.0.1", None), CheckSchedule(timing), timing, report)
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert len(seen) == 1 and not seen[0].ok and "no port" in seen[0].detail
    assert loop not in eng._ENGINES and errors == []
