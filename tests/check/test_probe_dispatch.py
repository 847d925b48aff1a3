"""The probe dispatcher and pure helpers: unsupported kinds, crashes, timeouts, ICMP encoding."""

from __future__ import annotations

import socket
import struct

import chimeha.check.dispatch as dispatch
from chimeha.check import SUPPORTED_KINDS, Target, probe
from chimeha.check.dispatch import attempt_timeout
from chimeha.check.ping import _is_reply, echo_request
from chimeha.check.spec import Timing, checker_kind
from chimeha.config.model import HttpCheck, MiscCheck, TcpCheck
from chimeha.vrrp.packet import checksum16


class Unknown:
    kind = "SNMP_CHECK"


async def test_unsupported_kind_is_a_clear_failure():
    assert "SNMP_CHECK" not in SUPPORTED_KINDS and "BFD_CHECK" in SUPPORTED_KINDS
    res = await probe(Unknown(), Target("127.0.0.1", 80))
    assert not res.ok and "SNMP_CHECK is not supported" in res.detail


async def test_a_crashing_probe_becomes_a_failure_not_an_exception(monkeypatch):
    async def boom(checker, target, timeout):
        raise ZeroDivisionError("bug")

    monkeypatch.setitem(dispatch._PROBES, "TCP_CHECK", boom)
    res = await probe(TcpCheck(), Target("127.0.0.1", 80))
    assert not res.ok and "internal error" in res.detail and "ZeroDivisionError" in res.detail


def test_attempt_timeout_per_kind():
    t = Timing(delay_loop=7, connect_timeout=2)
    assert attempt_timeout(TcpCheck(), t) == 2
    assert attempt_timeout(MiscCheck(), t) == 7           # misc_timeout defaults to delay_loop
    assert attempt_timeout(MiscCheck(misc_timeout=3), t) == 3


def test_checker_kind_of_model_checkers():
    assert checker_kind(HttpCheck(ssl=True)) == "SSL_GET"      # built by hand with ssl only
    assert checker_kind(HttpCheck(kind="SSL_GET", ssl=True)) == "SSL_GET"
    assert checker_kind(HttpCheck()) == "HTTP_GET"
    assert checker_kind(TcpCheck()) == "TCP_CHECK"


def test_icmp_echo_encoding_and_reply_matching():
    pkt = echo_request(socket.AF_INET, 0x1234, 7, b"abc")
    assert pkt[0] == 8 and checksum16(pkt) == 0              # a valid checksum sums to zero
    assert struct.unpack("!HH", pkt[4:8]) == (0x1234, 7)
    assert echo_request(socket.AF_INET6, 1, 2, b"")[0] == 128
    reply = bytes([0, 0, 0, 0]) + struct.pack("!HH", 0x1234, 7)
    ip_header = bytes([0x45]) + bytes(19)
    assert _is_reply(ip_header + reply, socket.AF_INET, True, 0x1234, 7)
    assert not _is_reply(ip_header + reply, socket.AF_INET, True, 0x1235, 7)   # someone else's ping
    assert not _is_reply(ip_header + reply, socket.AF_INET, True, 0x1234, 8)
    assert _is_reply(reply, socket.AF_INET, False, 0xFFFF, 7)                  # datagram: kernel owns the id
    assert not _is_reply(bytes([8]) + reply[1:], socket.AF_INET, False, 0, 7)  # our own request echoed
