"""VRRP codec and receive checks (pure: crafted byte strings, no sockets)."""

import struct

import pytest

from chimeha.vrrp import packet
from chimeha.vrrp.packet import Advertisement, Drop, DropReason, Expectation, PacketError

VIP = "192.168.231.10"
SRC = "192.168.231.11"


def v2_seed(prio=255, **kw):
    return packet.encode(2, 51, prio, [VIP], 1, auth_type="PASS", auth_pass="1111", **kw)


def exp_seed(**kw):
    base = dict(vrid=51, version=2, family=4, interval=1.0, auth_type="PASS", auth_pass="1111", addresses=(VIP,))
    base.update(kw)
    return Expectation(**base)


def test_checksum16_matches_rfc1071_example():
    # RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 -> checksum 220d.
    assert packet.checksum16(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert packet.checksum16(b"\x01") == (~0x0100) & 0xFFFF


def test_v2_layout_field_by_field():
    raw = v2_seed()
    assert len(raw) == 8 + 4 + 8
    ver_type, vrid, prio, count, atype, adv = struct.unpack("!6B", raw[:6])
    assert (ver_type, vrid, prio, count, atype, adv) == (0x21, 51, 255, 1, 1, 1)
    assert raw[8:12] == bytes([192, 168, 231, 10])
    assert raw[12:] == b"1111\0\0\0\0"
    # v2 checksum covers the VRRP message alone: re-summing gives zero.
    assert packet.checksum16(raw) == 0


def test_v2_without_auth_still_carries_eight_zero_bytes():
    raw = packet.encode(2, 7, 100, ["10.0.0.1", "10.0.0.2"], 3)
    assert len(raw) == 8 + 8 + 8 and raw[-8:] == b"\0" * 8 and raw[4] == 0 and raw[5] == 3


def test_v2_long_password_truncated_to_eight_bytes():
    raw = packet.encode(2, 1, 100, [VIP], 1, auth_type="PASS", auth_pass="0123456789")
    assert raw[-8:] == b"01234567"


def test_v3_ipv4_checksum_includes_pseudo_header():
    raw = packet.encode(3, 51, 200, [VIP], 0.1, source=SRC)
    assert raw[0] == 0x31 and struct.unpack("!H", raw[4:6])[0] == 10
    pseudo = bytes([192, 168, 231, 11, 224, 0, 0, 18, 0, 112, 0, len(raw)])
    assert packet.checksum16(pseudo + raw) == 0
    # Without the pseudo-header (the old, v2-style sum) it does not verify.
    assert packet.checksum16(raw) != 0


def test_v3_ipv6_checksum_and_roundtrip():
    vips = ["fe80::10", "2001:db8::10"]
    raw = packet.encode(3, 9, 150, vips, 1.0, family=6, source="fe80::1")
    assert len(raw) == 8 + 32
    adv = packet.decode(raw, family=6, source="fe80::1")
    assert adv.addresses == ("fe80::10", "2001:db8::10") and adv.interval == 1.0 and adv.priority == 150
    assert packet.verify_checksum(raw, adv, source="fe80::1", destination="ff02::12")
    assert not packet.verify_checksum(raw, adv, source="fe80::2", destination="ff02::12")


def test_v3_interval_is_centiseconds_twelve_bits():
    raw = packet.encode(3, 1, 100, [VIP], 40.95, source=SRC)
    assert struct.unpack("!H", raw[4:6])[0] == 4095
    raw = bytearray(packet.encode(3, 1, 100, [VIP], 1, source=SRC))
    raw[4] |= 0xF0  # reserved bits must be ignored by receivers
    assert packet.decode(bytes(raw)).interval == 1.0


def test_decode_roundtrip_v2():
    adv = packet.decode(v2_seed(prio=254), source=SRC)
    assert adv == Advertisement(2, 51, 254, 1.0, (VIP,), SRC, 4, packet.AUTH_PASS, b"1111\0\0\0\0",
                                adv.checksum, 1)


@pytest.mark.parametrize("data,msg", [
    (b"", "shorter"),
    (b"\x21\x01\x64", "shorter"),
    (bytes.fromhex("2101640201010000") + bytes(4) + bytes(8), "needed"),  # count 2, only 1 address
    (bytes.fromhex("4101640000010000"), "version 4"),
])
def test_decode_raises_only_packet_error(data, msg):
    with pytest.raises(PacketError, match=msg):
        packet.decode(data)


def test_encode_rejects_local_misuse():
    with pytest.raises(ValueError):
        packet.encode(2, 0, 100, [VIP], 1)
    with pytest.raises(ValueError):
        packet.encode(2, 1, 100, ["fe80::1"], 1, family=6)
    with pytest.raises(ValueError):
        packet.encode(3, 1, 100, [VIP], 1)  # no source for the pseudo-header


def _validate(raw, ttl=255, source=SRC, dest=packet.MCAST_V4, expect=None, family=4):
    return packet.validate(raw, source=source, destination=dest, ttl=ttl, family=family,
                           expect=expect or exp_seed())


def test_validate_accepts_the_seed_advert():
    res = _validate(v2_seed())
    assert isinstance(res, Advertisement) and res.priority == 255 and res.source == SRC


def _reason(res):
    assert isinstance(res, Drop), res
    return res.reason


def test_each_receive_check_drops_with_its_reason():
    good = v2_seed()
    assert _reason(_validate(good, ttl=254)) is DropReason.TTL
    assert _reason(_validate(good[:10])) is DropReason.LENGTH
    assert _reason(_validate(bytes([0x51]) + good[1:])) is DropReason.VERSION
    bad_type = bytearray(good); bad_type[0] = 0x22
    assert _reason(_validate(bytes(bad_type))) is DropReason.TYPE
    bad_sum = bytearray(good); bad_sum[7] ^= 0xFF
    assert _reason(_validate(bytes(bad_sum))) is DropReason.CHECKSUM
    assert _reason(_validate(good, expect=exp_seed(vrid=52))) is DropReason.VRID_UNKNOWN
    assert _reason(_validate(good, expect={52: exp_seed(vrid=52)})) is DropReason.VRID_UNKNOWN
    assert _reason(_validate(good, expect=exp_seed(auth_pass="2222"))) is DropReason.AUTH
    assert _reason(_validate(good, expect=exp_seed(auth_type=None))) is DropReason.AUTH
    assert _reason(_validate(good, expect=exp_seed(interval=2.0))) is DropReason.ADVERT_INTERVAL
    assert _reason(_validate(good, expect=exp_seed(addresses=(VIP, "192.168.231.20")))) is DropReason.ADDRESS_COUNT
    assert _reason(_validate(good, expect=exp_seed(addresses=("192.168.231.99",)))) is DropReason.ADDRESS_LIST
    uni = exp_seed(unicast_peers=("192.168.231.12",), check_unicast_src=True)
    assert _reason(_validate(good, dest="192.168.231.12", expect=uni)) is DropReason.UNICAST_SOURCE
    assert _reason(_validate(good, expect=exp_seed(version=3))) is DropReason.VERSION
    assert _reason(_validate(good, expect=exp_seed(local_addresses=(SRC,)))) is DropReason.OWN_PACKET


def test_validate_unicast_ttl_not_checked_and_known_peer_accepted():
    uni = exp_seed(unicast_peers=(SRC,), check_unicast_src=True)
    res = _validate(v2_seed(), ttl=64, dest="192.168.231.12", expect=uni)
    assert isinstance(res, Advertisement)


def test_unicast_peer_ttl_range():
    uni = exp_seed(unicast_peers=(SRC,), check_unicast_src=True, unicast_peer_ttl=((SRC, 250, None),))
    assert _reason(_validate(v2_seed(), ttl=64, dest="192.168.231.12", expect=uni)) is DropReason.TTL
    assert isinstance(_validate(v2_seed(), ttl=254, dest="192.168.231.12", expect=uni), Advertisement)


def test_validate_skip_check_adv_addr():
    res = _validate(v2_seed(), expect=exp_seed(addresses=("10.9.9.9",), skip_check_adv_addr=True))
    assert isinstance(res, Advertisement)


def test_validate_v3_interval_mismatch_is_accepted_and_checksum_uses_real_destination():
    raw = packet.encode(3, 51, 100, [VIP], 0.5, source=SRC, destination="192.168.231.12")
    exp = exp_seed(version=3, auth_type=None, interval=1.0)
    res = _validate(raw, dest="192.168.231.12", expect=exp)
    assert isinstance(res, Advertisement) and res.interval == 0.5
    assert _reason(_validate(raw, dest=packet.MCAST_V4, expect=exp)) is DropReason.CHECKSUM


def test_validate_v2_over_ipv6_is_a_family_drop():
    raw = packet.encode(3, 1, 100, ["fe80::10"], 1, family=6, source="fe80::1")
    v2ish = bytes([0x21]) + raw[1:]
    res = packet.validate(v2ish, source="fe80::1", destination="ff02::12", ttl=255, family=6,
                          expect=Expectation(vrid=1, version=3, family=6, addresses=("fe80::10",)))
    assert _reason(res) is DropReason.FAMILY


def test_drop_str_is_operator_readable():
    d = _validate(v2_seed(), ttl=1)
    assert str(d) == f"dropped (ttl): TTL 1 from {SRC}, must be 255"
