"""Small real servers on loopback for the checker tests (each bound to port 0)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess

import dns.message
import dns.rcode
import dns.rrset
import pytest


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on right now (bound then closed)."""
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class HttpServer:
    """Answers each request with ``self.response`` (bytes) after ``self.delay`` seconds."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.tls = tls
        self.response = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"
        self.routes: dict[str, bytes] = {}
        self.delay = 0.0
        self.requests: list[bytes] = []
        self.sni: list[str | None] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> "HttpServer":
        if self.tls is not None:
            self.tls.sni_callback = lambda sslobj, name, ctx: self.sni.append(name)
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader, writer):
        try:
            req = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(req)
            if self.delay:
                await asyncio.sleep(self.delay)
            path = req.split(b" ")[1].decode()
            writer.write(self.routes.get(path, self.response))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def close(self):
        self.server.close()


class SmtpServer:
    """A scripted SMTP server: ``greeting`` lines, then ``helo_reply`` to HELO."""

    def __init__(self):
        self.greeting = [b"220 mail.test ESMTP ready"]
        self.helo_reply = b"250 mail.test hello"
        self.received: list[bytes] = []
        self.port = 0

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader, writer):
        try:
            for line in self.greeting:
                writer.write(line + b"\r\n")
            while line := await reader.readline():
                self.received.append(line)
                if line.upper().startswith(b"HELO"):
                    writer.write(self.helo_reply + b"\r\n")
                elif line.upper().startswith(b"QUIT"):
                    writer.write(b"221 bye\r\n")
                    break
        except OSError:
            pass
        finally:
            writer.close()

    async def close(self):
        self.server.close()


class _DatagramServer(asyncio.DatagramProtocol):
    """A UDP endpoint on 127.0.0.1 (a free port); subclasses answer in ``datagram_received``."""

    def connection_made(self, transport):
        self.transport = transport

    async def start(self):
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    async def close(self):
        self.transport.close()


class DnsServer(_DatagramServer):
    """Answers queries per ``mode``: ok, nxdomain, wrongtype, wrongid, silent."""

    def __init__(self):
        self.mode = "ok"
        self.queries: list[dns.message.Message] = []

    def datagram_received(self, data, addr):
        q = dns.message.from_wire(data)
        self.queries.append(q)
        if self.mode == "silent":
            return
        r = dns.message.make_response(q)
        name, rdtype = q.question[0].name, q.question[0].rdtype
        if self.mode == "nxdomain":
            r.set_rcode(dns.rcode.NXDOMAIN)
        elif self.mode == "wrongtype":
            r.answer.append(dns.rrset.from_text(name, 60, "IN", "TXT", '"not what you asked"'))
        else:
            if rdtype == dns.rdatatype.SOA:
                rr = dns.rrset.from_text(name, 60, "IN", "SOA", "ns.test. root.test. 1 2 3 4 5")
            else:
                rr = dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.1")
            r.answer.append(rr)
        if self.mode == "wrongid":
            r.id = (q.id + 1) % 65536
        self.transport.sendto(r.to_wire(), addr)


class UdpServer(_DatagramServer):
    """Replies ``reply(data)`` to each datagram, or nothing when ``reply`` is None."""

    def __init__(self, reply=None):
        self.reply = reply
        self.received: list[bytes] = []

    def datagram_received(self, data, addr):
        self.received.append(data)
        if self.reply is not None:
            self.transport.sendto(self.reply(data), addr)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A self-signed certificate and key made with the openssl CLI."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=rs.test",
                    "-days", "2", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
async def http_server():
    srv = await HttpServer().start()
    yield srv
    await srv.close()


@pytest.fixture
async def https_server(tls_files):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*map(str, tls_files))
    srv = await HttpServer(tls=ctx).start()
    yield srv
    await srv.close()


@pytest.fixture
async def smtp_server():
    srv = await SmtpServer().start()
    yield srv
    await srv.close()


@pytest.fixture
async def dns_server():
    srv = await DnsServer().start()
    yield srv
    await srv.close()


async def _wait_for(cond, deadline=10.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not cond():
        assert loop.time() < end, "condition not reached before the deadline"
        await asyncio.sleep(0.01)


@pytest.fixture
def wait_for():
    """``await wait_for(cond, deadline=10.0)``: poll ``cond()`` until true; fail after the deadline."""
    return _wait_for


@pytest.fixture
def unused_port():
    """A function returning a port nobody listens on (see :func:`free_port`)."""
    return free_port


@pytest.fixture
async def udp_server():
    """A function starting a :class:`UdpServer` with a reply function; all closed after the test."""
    servers = []

    async def make(reply=None):
        srv = await UdpServer(reply).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        await srv.close()
