"""IPsec AH for VRRPv2 (chimeha.vrrp.ah): the envelope, the ICV's coverage, anti-replay, node dispatch.

Interop with keepalived's own AH adverts is in tests/system/test_ah_keepalived.py;
these tests pin down each check so that a regression names the field it broke.
"""

import hashlib
import hmac
import struct

import pytest

from chimeha.vrrp import ah, packet
from chimeha.vrrp.events import InstanceSpec, PacketDropped, SendAdvert, State
from chimeha.vrrp.node import VrrpNode

MC = packet.MCAST_V4
KEY = ah.ah_key("s3cret")


def vrrp(prio=200, vrid=51, src="10.0.0.2"):
    return packet.encode(2, vrid, prio, ["10.0.0.100"], 1.0, auth_type="AH", source=src)


def sealed(counter=None, *, prio=200, src="10.0.0.2", dst=MC, key=KEY, unicast=False):
    return ah.seal(vrrp(prio, src=src), source=src, destination=dst, key=key,
                   counter=counter if counter is not None else ah.AhCounter(), unicast=unicast)


def test_key_is_the_password_truncated_and_nul_padded_to_8_bytes():
    assert ah.ah_key("abc") == b"abc\0\0\0\0\0"
    assert ah.ah_key("0123456789") == b"01234567"
    assert ah.ah_key(None) == bytes(8)


def test_sealed_datagram_layout_matches_keepalived():
    c = ah.AhCounter()
    data = sealed(c)
    ver_ihl, tos, total, ident, frag, ttl, proto, _csum, src, dst = ah.IPV4_HEADER.unpack_from(data)
    assert (ver_ihl, tos, frag, ttl, proto) == (0x45, 0xC0, 0, 255, 51)
    assert total == len(data) == 20 + 24 + len(vrrp())
    assert ident == 1 and src == bytes([10, 0, 0, 2]) and dst == bytes([224, 0, 0, 18])
    nh, plen, reserved, spi, seq = ah.AH_HEADER.unpack_from(data, 20)
    assert (nh, plen, reserved, seq) == (112, 4, 0, 1)
    assert spi == 0x0A000002  # the SPI is the sender's address
    assert data[44:] == vrrp()
    # the ICV, recomputed independently: HMAC-MD5-96 over the header with TOS,
    # fragment field and checksum zeroed, the AH header with a zero ICV, and VRRP.
    ip = bytearray(data[:20])
    ip[1] = 0
    ip[6:8] = ip[10:12] = b"\0\0"
    icv = hmac.new(KEY, bytes(ip) + data[20:32] + bytes(12) + data[44:], hashlib.md5).digest()[:12]
    assert data[32:44] == icv


def test_counter_increments_and_ip_id_is_never_zero():
    c = ah.AhCounter(seq=5, ip_id=0xFFFF)
    data = sealed(c)
    assert struct.unpack_from("!H", data, 4)[0] == 1  # wrapped past 0
    assert ah.AH_HEADER.unpack_from(data, 20)[4] == 6 == c.seq
    c = ah.AhCounter(seq=ah.SEQ_MAX)
    c.next_seq()
    assert c.seq == ah.SEQ_MAX  # keepalived stops at 0xFFFFFFFD rather than wrap to a replayed number


def test_verify_accepts_and_advances_then_refuses_the_replay():
    data = sealed(ah.AhCounter(seq=41))
    env, payload = ah.split(data)
    assert payload == vrrp() and env.seq == 42
    mine = ah.AhCounter(seq=10)
    ah.verify(env, payload, key=KEY, counter=mine, unicast=False)
    assert mine.seq == 42
    with pytest.raises(packet.PacketError, match="already seen") as exc:
        ah.verify(env, payload, key=KEY, counter=mine, unicast=False)
    assert exc.value.reason is packet.DropReason.AUTH


@pytest.mark.parametrize("offset,what", [(44 + 2, "priority in the VRRP message"),
                                         (12, "source address"), (16, "destination"),
                                         (24, "SPI"), (28, "sequence number")])
def test_any_covered_byte_changed_breaks_the_icv(offset, what):
    data = bytearray(sealed())
    data[offset] ^= 0x01
    env, payload = ah.split(bytes(data))
    with pytest.raises(packet.PacketError, match="HMAC") as exc:
        ah.verify(env, payload, key=KEY, counter=ah.AhCounter(), unicast=False)
    assert exc.value.reason is packet.DropReason.AUTH, what


def test_mutable_fields_are_not_covered_and_ttl_only_for_unicast():
    data = bytearray(sealed())
    data[1] = 0x00  # TOS rewritten by a switch
    data[6] = 0x40  # DF set
    data[10:12] = b"\x12\x34"  # checksum recomputed
    env, payload = ah.split(bytes(data))
    ah.verify(env, payload, key=KEY, counter=ah.AhCounter(), unicast=False)
    ttl_changed = bytearray(sealed())
    ttl_changed[8] = 64
    env, payload = ah.split(bytes(ttl_changed))
    with pytest.raises(packet.PacketError, match="HMAC"):
        ah.verify(env, payload, key=KEY, counter=ah.AhCounter(), unicast=False)
    uni = bytearray(sealed(dst="10.0.0.1", unicast=True))
    uni[8] = 64  # routed unicast peers: keepalived leaves the TTL out of the ICV
    env, payload = ah.split(bytes(uni))
    ah.verify(env, payload, key=KEY, counter=ah.AhCounter(), unicast=True)


def test_wrong_password_and_forged_spi_are_refused():
    env, payload = ah.split(sealed(key=ah.ah_key("other")))
    with pytest.raises(packet.PacketError, match="HMAC"):
        ah.verify(env, payload, key=KEY, counter=ah.AhCounter(), unicast=False)
    # A correct ICV over a forged SPI (a sender claiming another's SA): refused.
    raw = bytearray(sealed())
    raw[24:28] = bytes([10, 0, 0, 9])
    ip = bytearray(raw[:20])
    ip[1] = 0
    ip[6:8] = ip[10:12] = b"\0\0"
    raw[32:44] = hmac.new(KEY, bytes(ip) + bytes(raw[20:32]) + bytes(12) + bytes(raw[44:]),
                          hashlib.md5).digest()[:12]
    env, payload = ah.split(bytes(raw))
    with pytest.raises(packet.PacketError, match="SPI"):
        ah.verify(env, payload, key=KEY, counter=ah.AhCounter(), unicast=False)


@pytest.mark.parametrize("cut,match", [(10, "IPv4 header"), (30, "no room"), (None, "next header")])
def test_split_refuses_what_is_not_ah_over_vrrp(cut, match):
    data = bytearray(sealed())
    if cut is None:
        data[20] = 17  # AH over UDP: not ours
        data = bytes(data)
    else:
        data = bytes(data[:cut])
    with pytest.raises(packet.PacketError, match=match):
        ah.split(data)


# -- the node -------------------------------------------------------------------

def spec(prio=100, auth="AH", src="10.0.0.1", **kw):
    return InstanceSpec("VI_1", 51, prio, interface="eth0", primary_address=src, advert_addresses=("10.0.0.100",),
                        virtual_ipaddresses=("10.0.0.100",), auth_type=auth, auth_pass="s3cret", **kw)


def drops(actions):
    return [(a.reason, a.detail) for a in actions if isinstance(a, PacketDropped)]


def test_node_takes_sealed_adverts_and_drops_the_rest_as_auth():
    node = VrrpNode([spec()])
    node.start(0.0)
    node.pop_actions()
    peer = ah.AhCounter()
    node.receive_datagram(sealed(peer), "10.0.0.2", MC, 255, 4, "eth0", 0.5, ah=True)
    assert drops(node.pop_actions()) == []
    assert node.instance_status("VI_1").received == 1
    # the same advert again is a replay; a plain VRRP advert (no AH) and a wrong key are refused
    node.receive_datagram(sealed(ah.AhCounter(seq=0)), "10.0.0.2", MC, 255, 4, "eth0", 0.6, ah=True)
    node.receive_datagram(vrrp(), "10.0.0.2", MC, 255, 4, "eth0", 0.7)
    node.receive_datagram(sealed(peer, key=ah.ah_key("nope")), "10.0.0.2", MC, 255, 4, "eth0", 0.8, ah=True)
    got = drops(node.pop_actions())
    assert [r for r, _ in got] == ["auth"] * 3
    assert "already seen" in got[0][1] and "no AH header" in got[1][1] and "HMAC" in got[2][1]
    assert node.instance_status("VI_1").received == 1


def test_node_without_ah_refuses_ah_adverts():
    node = VrrpNode([spec(auth="PASS")])
    node.start(0.0)
    node.pop_actions()
    node.receive_datagram(sealed(), "10.0.0.2", MC, 255, 4, "eth0", 0.5, ah=True)
    assert [r for r, _ in drops(node.pop_actions())] == ["auth"]


def test_backup_turned_master_continues_above_the_sequence_it_heard():
    node = VrrpNode([spec(prio=100)])
    node.start(0.0)
    node.pop_actions()
    node.receive_datagram(sealed(ah.AhCounter(seq=700)), "10.0.0.2", MC, 255, 4, "eth0", 0.5, ah=True)
    node.handle_timer(10.0)  # the master went silent: Master_Down_Timer
    sends = [a for a in node.pop_actions() if isinstance(a, SendAdvert)]
    assert node.state("VI_1") is State.MASTER and sends
    out = node.seal_ah("VI_1", vrrp(100, src="10.0.0.1"), source="10.0.0.1", destination=MC)
    env, _ = ah.split(out)
    assert env.seq == 702 and env.spi == 0x0A000001  # 701 was the last heard
    assert node.ah_socket_keys() == frozenset({("eth0", 4)})


def test_reload_keeps_the_counter_of_an_instance_that_stays_ah():
    node = VrrpNode([spec()])
    node.start(0.0)
    node.receive_datagram(sealed(ah.AhCounter(seq=50)), "10.0.0.2", MC, 255, 4, "eth0", 0.5, ah=True)
    plan = node.plan_reload([spec(prio=120)])
    node.apply_reload(plan, 1.0)
    node.pop_actions()
    node.receive_datagram(sealed(ah.AhCounter(seq=10)), "10.0.0.2", MC, 255, 4, "eth0", 1.5, ah=True)
    assert "already seen" in drops(node.pop_actions())[0][1]  # no reset to 0 on reload


def test_ah_is_only_for_v2_over_ipv4():
    assert ah.uses_ah(spec())
    assert not ah.uses_ah(spec(version=3))
    assert not ah.uses_ah(spec(auth="PASS"))
