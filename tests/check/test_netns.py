"""Checkers across a real lab network: the prober runs inside a namespace (system tests).

The director side runs in a thread that has entered the director's network
namespace (setns), with its own event loop, so the checker code is exactly the
daemon's and its sockets live in the lab; nothing touches the host namespace.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import threading
import time

import pytest

from chimeha.check import Target, probe
from chimeha.config.model import HttpCheck, HttpUrl, PingCheck, TcpCheck

pytestmark = pytest.mark.system

CLONE_NEWNET = 0x40000000


def in_netns(netns: str, coro_factory):
    """Run ``coro_factory()`` on a fresh event loop in a thread inside ``netns``; return its result."""
    box = {}

    def target():
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                box["error"] = OSError(ctypes.get_errno(), "setns failed")
                return
        finally:
            os.close(fd)
        try:
            box["result"] = asyncio.run(coro_factory())
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join(60)
    if "error" in box:
        raise box["error"]
    return box["result"]


def wait_listening(host, port, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        out = host.run(["ss", "-Htln", f"sport = :{port}"], check=False).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port} in {host.netns}")


SERVER = ("import http.server, sys\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        body = b'real server ' + self.path.encode()\n"
          "        self.send_response(200 if self.path != '/bad' else 500)\n"
          "        self.send_header('Content-Length', str(len(body)))\n"
          "        self.end_headers(); self.wfile.write(body)\n"
          "    def log_message(self, *a): pass\n"
          "http.server.HTTPServer(('0.0.0.0', 8801), H).serve_forever()\n")


def test_ping_tcp_http_across_namespaces(topology):
    director = topology.add_host("dir", "192.168.231.10/24")
    rs = topology.add_host("rs1", "192.168.231.11/24")
    proc = rs.popen([sys.executable, "-c", SERVER])
    wait_listening(rs, 8801)
    import hashlib
    good = hashlib.md5(b"real server /health").hexdigest()

    async def round_():
        t = Target("192.168.231.11", 8801)
        return [
            await probe(PingCheck(connect_timeout=3), t),
            await probe(TcpCheck(connect_timeout=3), t),
            await probe(HttpCheck(urls=(HttpUrl(path="/health", digest=good),), connect_timeout=3), t),
            await probe(HttpCheck(urls=(HttpUrl(path="/bad"),), connect_timeout=3), t),
            await probe(PingCheck(connect_timeout=0.5), Target("192.168.231.99")),   # nobody there
            await probe(TcpCheck(connect_timeout=0.5), Target("192.168.231.99", 80)),
            await probe(TcpCheck(connect_timeout=2), Target("192.168.231.11", 8033)),  # closed port
        ]

    ping_ok, tcp_ok, http_ok, http_bad, ping_none, tcp_none, tcp_closed = in_netns(director.netns, round_)
    assert ping_ok.ok, ping_ok.detail
    assert tcp_ok.ok, tcp_ok.detail
    assert http_ok.ok, http_ok.detail
    assert not http_bad.ok and "500" in http_bad.detail
    assert not ping_none.ok and "no echo reply" in ping_none.detail
    assert not tcp_none.ok and ("timed out" in tcp_none.detail or "unreachable" in tcp_none.detail)
    assert not tcp_closed.ok and "refused" in tcp_closed.detail

    # The real server's link goes down: every checker now fails.
    rs.link_down()

    async def after():
        t = Target("192.168.231.11", 8801)
        return [await probe(PingCheck(connect_timeout=0.5), t), await probe(TcpCheck(connect_timeout=0.5), t)]

    ping_down, tcp_down = in_netns(director.netns, after)
    assert not ping_down.ok and not tcp_down.ok
    proc.kill()


def test_ping_loopback_and_ipv6():
    async def go():
        return (await probe(PingCheck(connect_timeout=2), Target("127.0.0.1")),
                await probe(PingCheck(connect_timeout=2), Target("::1")))
    v4, v6 = asyncio.run(go())
    assert v4.ok, v4.detail
    if not os.path.exists("/proc/net/if_inet6"):
        pytest.skip("no IPv6")
    assert v6.ok, v6.detail


def test_ping_uses_unprivileged_datagram_socket_when_allowed(topology):
    from chimeha.check import ping
    director = topology.add_host("dir", "192.168.231.10/24")
    topology.add_host("rs1", "192.168.231.11/24")
    # ping_group_range is per network namespace: this changes only the lab's.
    director.run(["sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647"])
    saved = dict(ping._dgram_allowed)
    ping._dgram_allowed.clear()
    try:
        res = in_netns(director.netns, lambda: probe(PingCheck(connect_timeout=3), Target("192.168.231.11")))
    finally:
        ping._dgram_allowed.clear()
        ping._dgram_allowed.update(saved)
    assert res.ok and "datagram" in res.detail, res.detail


def test_fwmark_and_bind_if_apply_to_checker_sockets():
    import socket

    from chimeha.check._net import new_socket
    s = new_socket(TcpCheck(fwmark=0x2a, bind_if="lo"), socket.AF_INET, socket.SOCK_STREAM)
    try:
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_MARK) == 0x2a
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0") == b"lo"
    finally:
        s.close()
    res = asyncio.run(probe(TcpCheck(connect_timeout=1, bind_if="nope0"), Target("127.0.0.1", 9)))
    assert not res.ok and "no such interface (bind_if)" in res.detail, res.detail


def test_probe_engine_across_namespaces_down_by_timeout_and_back(topology):
    """TCP_CHECK and HTTP_GET in the shared probe engine: a pulled cable drops the
    probes (no RST), so each attempt ends by its deadline; the real server goes
    down after its retry and comes back up when the cable is back."""
    from chimeha.check import CheckerRunner
    from chimeha.check.spec import Timing

    director = topology.add_host("dir", "192.168.231.10/24")
    rs = topology.add_host("rs1", "192.168.231.11/24")
    proc = rs.popen([sys.executable, "-c", SERVER])
    wait_listening(rs, 8801)

    async def scenario():
        timing = Timing(delay_loop=0.2, connect_timeout=0.4, retry=1, delay_before_retry=0.1, warmup=0)
        t = Target("192.168.231.11", 8801)
        changes = {"tcp": [], "http": []}
        runners = {"tcp": CheckerRunner(TcpCheck(), t, changes["tcp"].append, timing=timing),
                   "http": CheckerRunner(HttpCheck(urls=(HttpUrl(path="/health", status_code=("200",)),)), t,
                                         changes["http"].append, timing=timing)}
        for r in runners.values():
            r.start()
        try:
            async def until(cond, deadline=20.0):
                end = asyncio.get_running_loop().time() + deadline
                while not cond():
                    assert asyncio.get_running_loop().time() < end, changes
                    await asyncio.sleep(0.05)
            await until(lambda: all(r.schedule.probes >= 3 for r in runners.values()))
            assert all(r.up and r.last_result.ok for r in runners.values()), changes
            await asyncio.get_running_loop().run_in_executor(None, rs.link_down)
            await until(lambda: all(changes[k] for k in changes))
            down = {k: v[0] for k, v in changes.items()}
            await asyncio.get_running_loop().run_in_executor(None, rs.link_up)
            await until(lambda: all(len(changes[k]) == 2 for k in changes))
            return down, {k: v[1] for k, v in changes.items()}
        finally:
            for r in runners.values():
                await r.stop()

    try:
        down, back = in_netns(director.netns, scenario)
    finally:
        proc.kill()
    assert not down["tcp"].ok and "timed out after 0.4 s" in down["tcp"].detail and "after 1 retry" in down["tcp"].detail
    assert not down["http"].ok and "GET /health" in down["http"].detail and "timed out" in down["http"].detail
    assert back["tcp"].ok and back["http"].ok and "/health 200" in back["http"].detail
