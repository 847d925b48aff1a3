"""chimeha.net.rtnl's message framing, against hand-built kernel answers (no root needed)."""

from __future__ import annotations

import socket
import struct

import pytest

from chimeha.net import rtnl


def _msg(kind: int, seq: int, payload: bytes, flags: int = 0) -> bytes:
    body = struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload
    return body + b"\0" * (-len(body) % 4)


def _addr(family: int, prefixlen: int, flags: int, index: int, attrs: list[tuple[int, bytes]]) -> bytes:
    return struct.pack("=BBBBI", family, prefixlen, flags, 0, index) + b"".join(rtnl._attr(k, v) for k, v in attrs)


class FakeSock:
    """Records what was sent; answers with the queued datagrams (built for the next sequence number)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def recv(self, _n: int) -> bytes:
        return self.answers.pop(0)


def _client(answers) -> rtnl.Rtnl:
    r = rtnl.Rtnl.__new__(rtnl.Rtnl)
    r._sock = FakeSock(answers)
    r._seq = 0
    return r


def test_address_dump_is_parsed_filtered_and_ends_at_done():
    v4 = _addr(socket.AF_INET, 24, 0x80, 2, [(rtnl.IFA_ADDRESS, socket.inet_aton("10.1.0.1")),
                                            (rtnl.IFA_LOCAL, socket.inet_aton("10.1.0.1")),
                                            (rtnl.IFA_LABEL, b"eth0:v\0")])
    secondary = _addr(socket.AF_INET, 32, 0x01, 2, [(rtnl.IFA_ADDRESS, socket.inet_aton("10.1.0.10"))])
    other_if = _addr(socket.AF_INET, 8, 0, 1, [(rtnl.IFA_ADDRESS, socket.inet_aton("127.0.0.1"))])
    multi = rtnl.NLM_F_MULTI
    # stale answers to an older request come first and must be skipped
    first = _msg(rtnl.RTM_NEWADDR, 99, other_if, multi) + _msg(rtnl.RTM_NEWADDR, 1, v4, multi)
    second = _msg(rtnl.RTM_NEWADDR, 1, other_if, multi) + _msg(rtnl.RTM_NEWADDR, 1, secondary, multi)
    done = _msg(rtnl.NLMSG_DONE, 1, b"\0\0\0\0", multi)
    r = _client([first, second, done])
    got = r.get_addr(index=2, family=socket.AF_INET)
    assert [(m["IFA_ADDRESS"], m.get("IFA_LOCAL"), m["flags"] & 1, m["prefixlen"]) for m in got] == [
        ("10.1.0.1", "10.1.0.1", 0, 24), ("10.1.0.10", None, 1, 32)]
    assert got[0]["IFA_LABEL"] == "eth0:v"
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", r._sock.sent[0])
    assert kind == rtnl.RTM_GETADDR and flags & rtnl.NLM_F_DUMP == rtnl.NLM_F_DUMP and seq == 1
    assert length == len(r._sock.sent[0])


def test_a_refusal_raises_with_its_errno_and_an_ack_returns():
    refusal = _msg(rtnl.NLMSG_ERROR, 1, struct.pack("=i", -17) + b"\0" * 16)
    ack = _msg(rtnl.NLMSG_ERROR, 2, struct.pack("=i", 0) + b"\0" * 16)
    r = _client([refusal, ack])
    with pytest.raises(rtnl.NetlinkError) as info:
        r.addr("add", 2, "10.1.0.10", 32)
    assert info.value.code == 17
    r.addr("del", 2, "10.1.0.10", 32)
    # the delete carried IFA_ADDRESS and (IPv4) IFA_LOCAL, both the VIP
    sent = r._sock.sent[1]
    _len, kind, flags, _seq, _ = struct.unpack_from("=IHHII", sent)
    assert kind == rtnl.RTM_DELADDR and flags & rtnl.NLM_F_ACK
    attrs = rtnl._attrs(sent[16 + 8:])
    assert attrs[rtnl.IFA_ADDRESS] == attrs[rtnl.IFA_LOCAL] == socket.inet_aton("10.1.0.10")


def test_route_request_carries_table_type_and_protocol():
    r = _client([_msg(rtnl.NLMSG_ERROR, 1, struct.pack("=i", 0) + b"\0" * 16)])
    r.route("add", "10.66.0.0/16", table=1000, type="blackhole", priority=5)
    sent = r._sock.sent[0]
    family, dst_len, _s, _t, table, proto, scope, rtype, _f = struct.unpack_from("=BBBBBBBBI", sent, 16)
    assert (family, dst_len, table, proto, scope, rtype) == (socket.AF_INET, 16, 0, rtnl.RTPROT_STATIC, 0, 6)
    attrs = rtnl._attrs(sent[16 + 12:])
    assert struct.unpack("=I", attrs[rtnl.RTA_TABLE])[0] == 1000  # too big for the 8-bit header field
    assert attrs[rtnl.RTA_DST] == socket.inet_aton("10.66.0.0")
    assert struct.unpack("=I", attrs[rtnl.RTA_PRIORITY])[0] == 5


def test_unknown_operations_are_refused():
    r = _client([])
    with pytest.raises(ValueError):
        r.addr("replace", 2, "10.1.0.10")
    with pytest.raises(ValueError):
        r.route("flush", "10.1.0.0/24")
