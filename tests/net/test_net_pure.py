"""net helpers that need no privileges: config mapping and packet building."""

from __future__ import annotations

import socket
import struct
from types import SimpleNamespace

import pytest

from chimeha.net.addresses import Vip, parse_scope, route_from_config, vip_from_config
from chimeha.net.garp import build_garp, build_unsolicited_na
from chimeha.net.vrrpsock import IP_PKTINFO, IP_TTL, IPV6_HOPLIMIT, IPV6_PKTINFO, VrrpSocket

MAC = bytes.fromhex("020000000001")


def test_route_from_config_reads_keepalived_route_words():
    from types import SimpleNamespace

    from chimeha.net.addresses import route_from_config

    vr = SimpleNamespace(words=("src", "10.1.0.1", "to", "10.77.0.0/16", "via", "10.1.0.254", "dev", "eth0",
                                "metric", "5", "table", "100"),
                         destination="10.77.0.0/16", via="10.1.0.254", dev="eth0")
    r = route_from_config(vr)
    assert (r.dst, r.gateway, r.dev, r.src, r.metric, r.table) == (
        "10.77.0.0/16", "10.1.0.254", "eth0", "10.1.0.1", 5, 100)
    bh = route_from_config(SimpleNamespace(words=("blackhole", "10.66.0.0/16"), destination="10.66.0.0/16",
                                           via=None, dev=None), "eth0")
    assert bh.type == "blackhole" and bh.dev is None and bh.dst == "10.66.0.0/16"
    host = route_from_config(SimpleNamespace(words=("10.5.5.5", "dev", "eth1"), destination="10.5.5.5",
                                             via=None, dev="eth1"))
    assert host.dst == "10.5.5.5/32" and host.dev == "eth1"


def test_vip_from_config_defaults_and_options():
    va = SimpleNamespace(address="192.168.231.10/32", dev=None, label=None, scope=None, broadcast=None,
                         peer=None, nodad=False)
    assert vip_from_config(va, "ens160") == Vip("192.168.231.10", 32, "ens160")
    va6 = SimpleNamespace(address="fd00::10/64", dev="eth1", label=None, scope="link", broadcast=None,
                          peer=None, nodad=False)
    v6 = vip_from_config(va6, "ens160")
    # IPv6 VIPs always skip duplicate address detection so they work at once after failover
    assert (v6.address, v6.prefixlen, v6.dev, v6.scope, v6.nodad, v6.family) == ("fd00::10", 64, "eth1", 253, True, 6)


def test_parse_scope_words_numbers_and_errors():
    assert [parse_scope(w) for w in ("global", "site", "link", "host", "nowhere", "200", None)] == [
        0, 200, 253, 254, 255, 200, None]
    with pytest.raises(ValueError, match="unknown address scope"):
        parse_scope("galaxy")


def test_gratuitous_arp_frame_layout():
    frame = build_garp(MAC, "10.1.0.10")
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == MAC and frame[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    sha, spa, tha, tpa = frame[22:28], frame[28:32], frame[32:38], frame[38:42]
    assert sha == MAC and spa == tpa == socket.inet_aton("10.1.0.10") and tha == bytes(6)


def test_unsolicited_na_layout():
    na = build_unsolicited_na(MAC, "fd00::10")
    typ, code, _csum, flags = struct.unpack("!BBHI", na[:8])
    assert (typ, code) == (136, 0)
    assert flags == 0x20000000  # Override only: unsolicited, not a router
    assert na[8:24] == socket.inet_pton(socket.AF_INET6, "fd00::10")
    assert na[24:] == b"\x02\x01" + MAC


def _bare(family):
    s = VrrpSocket.__new__(VrrpSocket)
    s.family = family
    return s


def test_parse_ipv4_uses_ancillary_ttl_and_destination():
    header = bytes([0x45, 0, 0, 40]) + bytes(4) + bytes([255, 112, 0, 0]) + socket.inet_aton("10.0.0.1") \
        + socket.inet_aton("224.0.0.18")
    payload = b"\x31\x01\x64\x01\x00\x64\x00\x00" + socket.inet_aton("10.0.0.9")
    anc = [(socket.IPPROTO_IP, IP_TTL, struct.pack("=i", 254)),
           (socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 3, bytes(4), socket.inet_aton("224.0.0.18")))]
    rx = _bare(4).parse(header + payload, anc, ("10.0.0.1", 0))
    assert (rx.payload, rx.src, rx.dst, rx.ttl, rx.ifindex) == (payload, "10.0.0.1", "224.0.0.18", 254, 3)


def test_parse_ipv4_falls_back_to_the_header_and_survives_runts():
    header = bytes([0x46, 0, 0, 44]) + bytes(4) + bytes([7, 112, 0, 0]) + socket.inet_aton("10.0.0.1") \
        + socket.inet_aton("10.0.0.2") + bytes(4)  # IHL 6: one option word
    rx = _bare(4).parse(header + b"\x31", [], ("10.0.0.1", 0))
    assert (rx.payload, rx.ttl, rx.dst) == (b"\x31", 7, "10.0.0.2")
    runt = _bare(4).parse(b"\x45\x00", [], ("10.0.0.1", 0))
    assert runt.payload == b"" and runt.ttl is None


def test_parse_ipv6_hop_limit_and_scope_suffix():
    anc = [(socket.IPPROTO_IPV6, IPV6_HOPLIMIT, struct.pack("=i", 255)),
           (socket.IPPROTO_IPV6, IPV6_PKTINFO, socket.inet_pton(socket.AF_INET6, "ff02::12") + struct.pack("=I", 2))]
    rx = _bare(6).parse(b"\x31\x01", anc, ("fe80::1%eth0", 0, 0, 2))
    assert (rx.src, rx.dst, rx.ttl, rx.ifindex, rx.payload) == ("fe80::1", "ff02::12", 255, 2, b"\x31\x01")
