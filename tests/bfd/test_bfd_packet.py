"""BFD Control packet codec and the RFC 5880 6.8.6 / RFC 5881 section 5 receive checks."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from chimeha.bfd.node import BfdNode
from chimeha.bfd.packet import (ControlPacket, Drop, DropReason, PacketError, SessionState, decode, encode,
                                validate)
from chimeha.bfd.session import SessionSpec
from chimeha.errors import RemoteError


def pkt(**kw) -> ControlPacket:
    base = dict(state=SessionState.UP, my_discr=7, your_discr=9, diag=0, detect_mult=3, desired_min_tx=0.05,
                required_min_rx=0.05)
    base.update(kw)
    return ControlPacket(**base)


def test_encode_layout_matches_rfc5880_section_4_1():
    data = encode(pkt(diag=3, poll=True, desired_min_tx=0.05, required_min_rx=0.3, required_min_echo_rx=0))
    assert len(data) == 24
    b0, b1, mult, length, mine, yours, tx, rx, echo = struct.unpack("!BBBBIIIII", data)
    assert b0 == (1 << 5) | 3          # version 1, diag 3
    assert b1 == (3 << 6) | 0x20       # state Up, Poll
    assert (mult, length, mine, yours) == (3, 24, 7, 9)
    assert (tx, rx, echo) == (50_000, 300_000, 0)  # microseconds


def test_round_trip_keeps_every_field():
    p = pkt(state=SessionState.INIT, final=True, demand=True, cpi=True, diag=8, required_min_echo_rx=0.001)
    assert decode(encode(p)) == p


def test_poll_and_final_together_are_refused():
    with pytest.raises(ValueError):
        encode(pkt(poll=True, final=True))


def test_short_payload_is_a_remote_error():
    with pytest.raises(PacketError) as exc:
        decode(b"\x20" * 23)
    assert isinstance(exc.value, RemoteError)


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b[:20], DropReason.SHORT),
    (lambda b: bytes([(2 << 5)]) + b[1:], DropReason.VERSION),
    (lambda b: b[:3] + bytes([23]) + b[4:], DropReason.LENGTH),
    (lambda b: b[:3] + bytes([40]) + b[4:], DropReason.LENGTH),       # longer than the datagram
    (lambda b: b[:2] + bytes([0]) + b[3:], DropReason.MULTIPLIER),
    (lambda b: b[:1] + bytes([b[1] | 0x01]) + b[2:], DropReason.MULTIPOINT),
    (lambda b: b[:4] + b"\0\0\0\0" + b[8:], DropReason.MY_DISCR),
    (lambda b: b[:8] + b"\0\0\0\0" + b[12:], DropReason.YOUR_DISCR),  # state Up, Your Discriminator 0
    (lambda b: b[:1] + bytes([b[1] | 0x04]) + b[2:3] + bytes([26]) + b[4:] + b"\x01\x02", DropReason.AUTH),
])
def test_each_reception_check(mutate, reason):
    verdict = validate(mutate(encode(pkt())))
    assert isinstance(verdict, Drop) and verdict.reason is reason


def test_zero_your_discriminator_is_fine_while_down():
    assert isinstance(validate(encode(pkt(state=SessionState.DOWN, your_discr=0))), ControlPacket)


def test_ttl_must_be_255_single_hop():
    data = encode(pkt())
    assert isinstance(validate(data, ttl=255), ControlPacket)
    v = validate(data, ttl=254)
    assert isinstance(v, Drop) and v.reason is DropReason.TTL
    assert isinstance(validate(data, ttl=250, min_ttl=250), ControlPacket)


def test_node_demultiplexes_and_counts_drops_by_reason():
    node = BfdNode([SessionSpec("p", "192.0.2.2", "192.0.2.1", max_hops=2)], random=lambda: 0.5)
    node.start(0.0)
    sess = node.sessions["p"]
    down = encode(pkt(state=SessionState.DOWN, your_discr=0, my_discr=44))
    assert node.receive(down, "192.0.2.9", "192.0.2.1", 255, 0.1).reason is DropReason.UNKNOWN_SESSION
    assert node.receive(down, "192.0.2.2", "192.0.2.1", 252, 0.1).reason is DropReason.TTL  # 255 - 2 = 253
    assert node.receive(down, "192.0.2.2", "192.0.2.1", 253, 0.1) is sess
    assert sess.remote_discr == 44 and sess.state is SessionState.INIT
    bad = encode(pkt(state=SessionState.INIT, your_discr=sess.local_discr + 1, my_discr=44))
    assert node.receive(bad, "192.0.2.2", "192.0.2.1", 255, 0.2).reason is DropReason.UNKNOWN_SESSION
    other = encode(pkt(state=SessionState.INIT, your_discr=sess.local_discr, my_discr=44))
    assert node.receive(other, "192.0.2.3", "192.0.2.1", 255, 0.2).reason is DropReason.WRONG_ADDRESS
    assert node.receive(b"junk", "192.0.2.2", "192.0.2.1", 255, 0.2).reason is DropReason.SHORT
    assert node.drops == {"unknown-session": 2, "ttl": 1, "wrong-address": 1, "short": 1}
    assert sess.counters.drops == {"ttl": 1}
    # an IPv4-mapped source (dual-stack socket) is the same neighbour
    assert node.receive(other, "::ffff:192.0.2.2", "192.0.2.1", 255, 0.3) is sess


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 255))
def test_fuzz_validate_and_node_never_raise(data, ttl):
    verdict = validate(data, ttl=ttl)
    assert isinstance(verdict, (Drop, ControlPacket))
    node = BfdNode([SessionSpec("p", "192.0.2.2")], random=lambda: 0.5)
    node.start(0.0)
    out = node.receive(data, "192.0.2.2", "192.0.2.1", ttl, 0.5)
    assert out is node.sessions["p"] or isinstance(out, Drop)
    if isinstance(out, Drop):
        assert out.reason is not DropReason.INTERNAL
        assert sum(node.drops.values()) == 1


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(SessionState)), st.integers(1, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.integers(0, 31), st.integers(1, 255), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.booleans(), st.booleans(), st.booleans())
def test_fuzz_round_trip(state, mine, yours, diag, mult, tx_us, rx_us, poll, demand, cpi):
    p = ControlPacket(state=state, my_discr=mine, your_discr=yours, diag=diag, detect_mult=mult,
                      desired_min_tx=tx_us / 1e6, required_min_rx=rx_us / 1e6, poll=poll, demand=demand, cpi=cpi)
    q = decode(encode(p))
    assert (q.state, q.my_discr, q.your_discr, q.diag, q.detect_mult, q.poll, q.demand, q.cpi) == \
        (state, mine, yours, diag, mult, poll, demand, cpi)
    assert round(q.desired_min_tx * 1e6) == tx_us and round(q.required_min_rx * 1e6) == rx_us
