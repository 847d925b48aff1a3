"""TCP_CHECK, HTTP_GET and SSL_GET against real servers on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket

import pytest

from chimeha.check import Target, probe
from chimeha.check.http import build_request, parse_response, status_ok
from chimeha.config.model import HttpCheck, HttpUrl, TcpCheck


# --- TCP_CHECK --------------------------------------------------------------


async def test_tcp_up_then_refused_after_listener_closes():
    seen = []
    server = await asyncio.start_server(lambda r, w: (seen.append(w.get_extra_info("peername")), w.close()),
                                        "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    res = await probe(TcpCheck(connect_timeout=2), Target("127.0.0.1", port))
    assert res.ok, res.detail
    server.close()
    await server.wait_closed()
    res = await probe(TcpCheck(connect_timeout=2), Target("127.0.0.1", port))
    assert not res.ok and "refused" in res.detail and str(port) in res.detail


async def test_tcp_slow_server_times_out():
    # A listener whose accept queue is full drops further SYNs: the connect hangs.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        res = await probe(TcpCheck(connect_timeout=0.3), Target("127.0.0.1", port))
        assert not res.ok and "timed out" in res.detail
        assert loop.time() - t0 < 5.0  # generous: only proves the attempt was cut short
    finally:
        for f in fillers:
            f.close()
        lsock.close()


async def test_tcp_connect_ip_port_and_bindto_override_target(unused_port):
    peers = []
    server = await asyncio.start_server(lambda r, w: (peers.append(w.get_extra_info("peername")), w.close()),
                                        "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        bind_port = unused_port()
        chk = TcpCheck(connect_ip="127.0.0.1", connect_port=port, bindto="127.0.0.2", bind_port=bind_port)
        res = await probe(chk, Target("10.255.255.1", 9))  # the target itself is never contacted
        assert res.ok, res.detail
        for _ in range(100):
            if peers:
                break
            await asyncio.sleep(0.01)
        assert peers[0] == ("127.0.0.2", bind_port)
    finally:
        server.close()


async def test_tcp_missing_port_and_bad_address_are_clear_failures():
    res = await probe(TcpCheck(), Target("127.0.0.1", None))
    assert not res.ok and "no port" in res.detail
    res = await probe(TcpCheck(), Target("not-an-ip", 80))
    assert not res.ok and "not an IP address" in res.detail


# --- HTTP_GET -----------------------------------------------------------------


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


async def test_http_status_and_digest_match(http_server):
    body = b"<html>health ok</html>\n"
    http_server.response = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    chk = HttpCheck(urls=(HttpUrl(path="/health", digest=md5(body)),), connect_timeout=2)
    res = await probe(chk, Target("127.0.0.1", http_server.port))
    assert res.ok, res.detail
    req = http_server.requests[-1]
    assert req.startswith(b"GET /health HTTP/1.0\r\n")
    assert b"\r\nHost: 127.0.0.1:%d\r\n" % http_server.port in req


async def test_http_wrong_digest_fails(http_server):
    http_server.response = b"HTTP/1.0 200 OK\r\n\r\nchanged page"
    want = md5(b"original page")
    res = await probe(HttpCheck(urls=(HttpUrl(path="/", digest=want),)), Target("127.0.0.1", http_server.port))
    assert not res.ok and "digest" in res.detail and md5(b"changed page") in res.detail


async def test_http_wrong_status_fails_and_configured_ranges_accept(http_server):
    http_server.response = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy"
    target = Target("127.0.0.1", http_server.port)
    res = await probe(HttpCheck(urls=(HttpUrl(path="/"),)), target)
    assert not res.ok and "503" in res.detail
    res = await probe(HttpCheck(urls=(HttpUrl(path="/", status_code=("200-299", "500-503")),)), target)
    assert res.ok, res.detail
    res = await probe(HttpCheck(urls=(HttpUrl(path="/", status_code=("200", "504-599")),)), target)
    assert not res.ok


async def test_http_all_urls_must_pass(http_server):
    http_server.routes["/a"] = b"HTTP/1.0 200 OK\r\n\r\nA"
    http_server.routes["/b"] = b"HTTP/1.0 404 Not Found\r\n\r\nB"
    target = Target("127.0.0.1", http_server.port)
    res = await probe(HttpCheck(urls=(HttpUrl(path="/a"), HttpUrl(path="/b"))), target)
    assert not res.ok and "/b" in res.detail and "404" in res.detail
    http_server.routes["/b"] = b"HTTP/1.0 200 OK\r\n\r\nB"
    res = await probe(HttpCheck(urls=(HttpUrl(path="/a", digest=md5(b"A")), HttpUrl(path="/b", digest=md5(b"B")))), target)
    assert res.ok, res.detail


async def test_http_virtualhost_precedence_and_protocol(http_server):
    target = Target("127.0.0.1", http_server.port, virtualhost="from-rs.test")
    await probe(HttpCheck(urls=(HttpUrl(path="/"),)), target)
    assert b"\r\nHost: from-rs.test\r\n" in http_server.requests[-1]
    await probe(HttpCheck(urls=(HttpUrl(path="/"),), virtualhost="checker.test", http_protocol="1.1"), target)
    req = http_server.requests[-1]
    assert req.startswith(b"GET / HTTP/1.1\r\n") and b"Host: checker.test\r\n" in req
    assert b"Connection: close" in req
    await probe(HttpCheck(urls=(HttpUrl(path="/", virtualhost="url.test"),), virtualhost="checker.test"), target)
    assert b"Host: url.test\r\n" in http_server.requests[-1]


async def test_http_slow_server_times_out(http_server):
    http_server.delay = 20.0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    res = await probe(HttpCheck(urls=(HttpUrl(path="/"),), connect_timeout=0.3), Target("127.0.0.1", http_server.port))
    assert not res.ok and "timed out" in res.detail
    assert loop.time() - t0 < 10.0  # generous: the server would have taken 20 s


async def test_http_refused_and_garbage(unused_port):
    res = await probe(HttpCheck(urls=(HttpUrl(path="/"),)), Target("127.0.0.1", unused_port()))
    assert not res.ok and "refused" in res.detail
    server = await asyncio.start_server(lambda r, w: (w.write(b"SSH-2.0-OpenSSH\r\n"), w.close()), "127.0.0.1", 0)
    try:
        res = await probe(HttpCheck(urls=(HttpUrl(path="/"),)), Target("127.0.0.1", server.sockets[0].getsockname()[1]))
        assert not res.ok and "HTTP" in res.detail
    finally:
        server.close()


def test_http_pure_helpers():
    assert build_request("/x", "h:1", "1.0C") == b"GET /x HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: h:1\r\n\r\n"
    assert parse_response(b"HTTP/1.1 204 No Content\r\nA: b\r\n\r\n") == (204, b"")
    with pytest.raises(ValueError):
        parse_response(b"HTTP/1.1 200 OK\r\nno end")
    assert status_ok(200, ()) and not status_ok(300, ())
    assert status_ok(418, ["418"]) and not status_ok(419, ["400-418"])


# --- SSL_GET --------------------------------------------------------------------


async def test_ssl_get_with_and_without_sni(https_server):
    body = b"secure ok"
    https_server.response = b"HTTP/1.0 200 OK\r\n\r\n" + body
    target = Target("127.0.0.1", https_server.port)
    res = await probe(HttpCheck(ssl=True, urls=(HttpUrl(path="/", digest=md5(body)),), virtualhost="portal.test",
                                enable_sni=True), target)
    assert res.ok, res.detail
    assert https_server.sni[-1] == "portal.test"
    res = await probe(HttpCheck(ssl=True, urls=(HttpUrl(path="/"),), virtualhost="portal.test"), target)
    assert res.ok, res.detail
    assert https_server.sni[-1] is None
    assert b"Host: portal.test" in https_server.requests[-1]


async def test_ssl_get_against_plain_http_fails(http_server):
    # The plain server waits for a request line that never comes: the
    # handshake fails or times out, either way the server is down.
    res = await probe(HttpCheck(ssl=True, urls=(HttpUrl(path="/"),), connect_timeout=0.5),
                      Target("127.0.0.1", http_server.port))
    assert not res.ok and ("TLS" in res.detail or "timed out" in res.detail), res.detail


# --- digests agree with keepalived's genhash ------------------------------------


@pytest.mark.keepalived
async def test_digest_matches_genhash_including_chunked_bodies(http_server):
    if not shutil.which("genhash"):
        pytest.skip("genhash not installed")
    http_server.response = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    proc = await asyncio.create_subprocess_exec(
        "genhash", "-s", "127.0.0.1", "-p", str(http_server.port), "-u", "/page",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    digest = out.decode().strip().split()[-1]
    assert len(digest) == 32
    assert (await probe(HttpCheck(urls=(HttpUrl(path="/page", digest=digest),)), Target("127.0.0.1", http_server.port))).ok
    assert not (await probe(HttpCheck(urls=(HttpUrl(path="/page", digest=md5(b"hello world")),)),
                            Target("127.0.0.1", http_server.port))).ok


async def test_http_status_words_and_regex(http_server):
    http_server.response = b"HTTP/1.0 302 Found\r\n\r\nstatus: GREEN build 42"
    target = Target("127.0.0.1", http_server.port)
    assert (await probe(HttpCheck(urls=(HttpUrl(path="/", status_code=("200", "300-302")),)), target)).ok
    assert not (await probe(HttpCheck(urls=(HttpUrl(path="/", status_code=("200", "303-399")),)), target)).ok
    ok = await probe(HttpCheck(urls=(HttpUrl(path="/", status_code=("302",), regex=r"GREEN build \d+"),)), target)
    assert ok.ok, ok.detail
    res = await probe(HttpCheck(urls=(HttpUrl(path="/", status_code=("302",), regex="RED"),)), target)
    assert not res.ok and "does not match regex" in res.detail
    res = await probe(HttpCheck(urls=(HttpUrl(path="/", status_code=("302",), regex="GREEN", regex_no_match=True),)),
                      target)
    assert not res.ok and "matches regex" in res.detail
    res = await probe(HttpCheck(urls=(HttpUrl(path="/", status_code=("2xx",)),)), target)
    assert not res.ok and "status_code" in res.detail


async def test_tcp_over_ipv6_loopback():
    import os
    if not os.path.exists("/proc/net/if_inet6"):
        pytest.skip("no IPv6")
    server = await asyncio.start_server(lambda r, w: w.close(), "::1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        res = await probe(TcpCheck(), Target("::1", port))
        assert res.ok and "[::1]" in res.detail, res.detail
        server.close()
        await server.wait_closed()
        res = await probe(TcpCheck(), Target("::1", port))
        assert not res.ok and "refused" in res.detail
    finally:
        server.close()
