"""SMTP_CHECK, DNS_CHECK and UDP_CHECK against real servers on loopback."""

from __future__ import annotations

import asyncio

import dns.rdatatype
import pytest

from chimeha.check import Target, probe
from chimeha.config.model import DnsCheck, SmtpCheck, UdpCheck
from chimeha.check.udp import parse_hex, reply_matches


# --- SMTP_CHECK -----------------------------------------------------------------


async def test_smtp_greeting_and_helo(smtp_server):
    smtp_server.greeting = [b"220-mail.test first line", b"220-second", b"220 ready"]
    res = await probe(SmtpCheck(helo_name="director.test"), Target("127.0.0.1", smtp_server.port))
    assert res.ok, res.detail
    for _ in range(100):
        if any(l.startswith(b"QUIT") for l in smtp_server.received):
            break
        await asyncio.sleep(0.01)
    assert smtp_server.received[0] == b"HELO director.test\r\n"
    assert smtp_server.received[1] == b"QUIT\r\n"


async def test_smtp_bad_greeting(smtp_server):
    smtp_server.greeting = [b"554 no service for you"]
    res = await probe(SmtpCheck(), Target("127.0.0.1", smtp_server.port))
    assert not res.ok and "greeting" in res.detail and "554" in res.detail


async def test_smtp_helo_rejected(smtp_server):
    smtp_server.helo_reply = b"501 bad hostname"
    res = await probe(SmtpCheck(helo_name="x"), Target("127.0.0.1", smtp_server.port))
    assert not res.ok and "HELO" in res.detail and "501" in res.detail


async def test_smtp_not_smtp_slow_and_refused(unused_port):
    server = await asyncio.start_server(lambda r, w: (w.write(b"HTTP/1.0 400 Bad\r\n"), w.close()), "127.0.0.1", 0)
    try:
        res = await probe(SmtpCheck(), Target("127.0.0.1", server.sockets[0].getsockname()[1]))
        assert not res.ok and "not an SMTP reply" in res.detail
    finally:
        server.close()
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    try:
        res = await probe(SmtpCheck(connect_timeout=0.3), Target("127.0.0.1", silent.sockets[0].getsockname()[1]))
        assert not res.ok and "timed out" in res.detail
    finally:
        silent.close()
    res = await probe(SmtpCheck(), Target("127.0.0.1", unused_port()))
    assert not res.ok and "refused" in res.detail


# --- DNS_CHECK ------------------------------------------------------------------


async def test_dns_answer_ok_and_query_defaults(dns_server):
    res = await probe(DnsCheck(), Target("127.0.0.1", dns_server.port))
    assert res.ok, res.detail
    q = dns_server.queries[-1]
    assert q.question[0].rdtype == dns.rdatatype.SOA and q.question[0].name.to_text() == "."
    res = await probe(DnsCheck(type="A", name="www.example.test"), Target("127.0.0.1", dns_server.port))
    assert res.ok, res.detail
    assert dns_server.queries[-1].question[0].name.to_text() == "www.example.test."


@pytest.mark.parametrize("mode,words", [("nxdomain", "NXDOMAIN"), ("wrongtype", "no A record"),
                                        ("wrongid", "no answer"), ("silent", "no answer")])
async def test_dns_wrong_answers(dns_server, mode, words):
    dns_server.mode = mode
    res = await probe(DnsCheck(type="A", name="www.example.test", connect_timeout=0.3),
                      Target("127.0.0.1", dns_server.port))
    assert not res.ok and words in res.detail, res.detail


async def test_dns_refused_port_and_bad_type(unused_port):
    import socket
    res = await probe(DnsCheck(connect_timeout=2), Target("127.0.0.1", unused_port(socket.SOCK_DGRAM)))
    assert not res.ok and "refused" in res.detail
    res = await probe(DnsCheck(type="BOGUS"), Target("127.0.0.1", 53))
    assert not res.ok and "BOGUS" in res.detail


# --- UDP_CHECK ------------------------------------------------------------------


def test_hex_parsing_as_documented():
    # keepalived.conf(5): "Ab12f 3 456 546443123" is AB 12 0F 03 45 06 54 64 43 12 03
    assert bytes(v for v, _ in parse_hex("Ab12f 3 456 546443123")) == bytes.fromhex("AB120F0345065464431203")
    pat = parse_hex("41x2 XX", wildcards=True)
    assert pat == [(0x41, 0xFF), (0x02, 0x0F), (0, 0)]
    assert reply_matches(b"\x41\x52\x99", pat) and not reply_matches(b"\x41\x53\x99", pat)
    with pytest.raises(ValueError):
        parse_hex("zz")


async def test_udp_reply_required_and_matched(udp_server):
    srv = await udp_server(lambda data: b"PONG" + data[:4])
    target = Target("127.0.0.1", srv.port)
    res = await probe(UdpCheck(payload="50494e47", require_reply="504f4e47 50XX"), target)
    assert res.ok, res.detail
    assert srv.received[-1] == b"PING"
    res = await probe(UdpCheck(payload="50494e47", require_reply="504f4e47 51"), target)
    assert not res.ok and "does not match" in res.detail
    res = await probe(UdpCheck(payload="50494e47", require_reply=True, min_reply_length=9), target)
    assert not res.ok and "8 bytes" in res.detail
    res = await probe(UdpCheck(payload="50494e47", require_reply=True, max_reply_length=8), target)
    assert res.ok


async def test_udp_no_reply(udp_server):
    srv = await udp_server(None)
    target = Target("127.0.0.1", srv.port)
    res = await probe(UdpCheck(require_reply=True, connect_timeout=0.3), target)
    assert not res.ok and "no reply" in res.detail
    # Without require_reply silence is success: only an ICMP error means down.
    res = await probe(UdpCheck(connect_timeout=0.3), target)
    assert res.ok, res.detail
    assert len(srv.received[-1]) == 16  # a random payload was sent


async def test_udp_closed_port_is_down(unused_port):
    import socket
    res = await probe(UdpCheck(connect_timeout=2), Target("127.0.0.1", unused_port(socket.SOCK_DGRAM)))
    assert not res.ok and "refused" in res.detail


async def test_smtp_legacy_host_blocks_all_must_pass(smtp_server, unused_port):
    ok_host = SmtpCheck(connect_ip="127.0.0.1", connect_port=smtp_server.port)
    bad_host = SmtpCheck(connect_ip="127.0.0.1", connect_port=unused_port())
    target = Target("10.255.255.1", 25)  # never contacted: every host block has its own address
    res = await probe(SmtpCheck(helo_name="dir.test", hosts=(ok_host, ok_host)), target)
    assert res.ok, res.detail
    assert smtp_server.received.count(b"HELO dir.test\r\n") == 2
    res = await probe(SmtpCheck(hosts=(ok_host, bad_host)), target)
    assert not res.ok and "refused" in res.detail
