"""VRRP advertisement codec and receive-side validation (pure, no sockets).

Theory of operation
-------------------
Wire formats:

* VRRPv2, RFC 3768 section 5.1: ``ver|type, vrid, priority, count, auth type,
  advert interval (whole seconds), checksum, IPv4 addresses, 8 bytes of
  authentication data``. The checksum covers the VRRP message only (no IP
  pseudo-header). ``auth_type PASS`` (type 1) carries the password, NUL padded,
  in the 8 authentication bytes; keepalived always sends those 8 bytes.
* VRRPv3, RFC 5798 / RFC 9568 section 5.1: ``ver|type, vrid, priority, count,
  4 reserved bits + 12-bit max advert interval (centiseconds), checksum,
  addresses``. The checksum includes the IPv4 or IPv6 pseudo-header (section
  5.2.8), so source and destination addresses are inputs to encode/verify.

:func:`validate` mirrors the receive checks of RFC 3768 section 7.1 / RFC 5798
section 7.1 and keepalived's own (TTL/hop limit 255 for multicast, version,
type, length, VRID, auth, v2 advert interval, address count and list,
checksum, unicast source), returning an :class:`Advertisement` or a
:class:`Drop` whose ``reason`` is a :class:`DropReason` the runtime counts.
Nothing here raises on hostile input except :func:`decode`, which raises only
:class:`PacketError`.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from enum import Enum
from typing import Mapping, Sequence

from chimeha.errors import RemoteError
from chimeha.vrrp.timing import advert_centiseconds, advert_seconds_v2

VRRP_PROTO = 112
TYPE_ADVERTISEMENT = 1
AUTH_NONE = 0
AUTH_PASS = 1
AUTH_AH = 2
MCAST_V4 = "224.0.0.18"
MCAST_V6 = "ff02::12"
_STANDARD = {4: MCAST_V4, 6: MCAST_V6}
REQUIRED_TTL = 255

_AUTH_NAMES = {None: AUTH_NONE, "NONE": AUTH_NONE, "PASS": AUTH_PASS, "AH": AUTH_AH}


class DropReason(str, Enum):
    """Why a received packet was discarded; a fixed set so it can be counted."""

    LENGTH = "length"
    TTL = "ttl"
    VERSION = "version"
    TYPE = "type"
    CHECKSUM = "checksum"
    VRID_UNKNOWN = "vrid-unknown"
    AUTH = "auth"
    ADVERT_INTERVAL = "advert-interval"
    ADDRESS_COUNT = "address-count"
    ADDRESS_LIST = "address-list"
    UNICAST_SOURCE = "unicast-source"
    FAMILY = "family"
    OWN_PACKET = "own-packet"
    GROUP = "group"  # multicast to a group the instance does not use (mcast_dst_ip / vrrp_mcast_group4/6)


class PacketError(RemoteError, ValueError):
    """A VRRP payload could not be decoded (a peer's bad packet); ``reason`` says which check failed."""

    def __init__(self, message: str, reason: DropReason = DropReason.LENGTH):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Advertisement:
    """A decoded VRRP advertisement (what the state machine consumes).

    ``interval`` is in seconds (v2: whole seconds on the wire; v3: centiseconds
    on the wire, converted). ``source`` is the IP source address, the peer's
    primary address used for tie-breaks and operator messages.
    """

    version: int
    vrid: int
    priority: int
    interval: float
    addresses: tuple[str, ...] = ()
    source: str = ""
    family: int = 4
    auth_type: int = AUTH_NONE
    auth_data: bytes = b""
    checksum: int = 0
    type: int = TYPE_ADVERTISEMENT


@dataclass(frozen=True)
class Drop:
    """A received packet rejected by :func:`validate`: ``reason`` plus words for the log."""

    reason: DropReason
    detail: str = ""
    vrid: int | None = None

    def __str__(self) -> str:
        return f"dropped ({self.reason.value}): {self.detail}" if self.detail else f"dropped ({self.reason.value})"


@dataclass(frozen=True)
class Expectation:
    """What the local instance for one VRID expects of a received advertisement."""

    vrid: int
    version: int = 2
    family: int = 4
    interval: float = 1.0
    auth_type: str | None = None
    auth_pass: str | None = None
    addresses: tuple[str, ...] = ()
    unicast_peers: tuple[str, ...] = ()
    check_unicast_src: bool = False
    unicast_peer_ttl: tuple[tuple[str, int | None, int | None], ...] = ()
    skip_check_adv_addr: bool = False
    local_addresses: tuple[str, ...] = field(default=())
    group: str = ""  # the instance's multicast group ("" = the standard one)


def checksum16(data: bytes) -> int:
    """Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def _addr_len(family: int) -> int:
    return 4 if family == 4 else 16


# Per-packet address parsing, cached: a node hears the same few peers, group
# and VIPs over and over, and ipaddress parsing is most of validate()'s cost.
# Bounded, so a flood of forged addresses cannot grow memory; exceptions
# (invalid text) are not cached and raise as before.
_ADDR_CACHE = 1024


@lru_cache(maxsize=_ADDR_CACHE)
def _packed(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed


@lru_cache(maxsize=_ADDR_CACHE)
def _addr_text(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _pseudo_header(family: int, source: str, destination: str, length: int) -> bytes:
    src = _packed(source)
    dst = _packed(destination)
    if family == 4:
        return src + dst + struct.pack("!BBH", 0, VRRP_PROTO, length)
    return src + dst + struct.pack("!I3xB", length, VRRP_PROTO)


def _pack_addresses(addresses: Sequence[str], family: int) -> bytes:
    out = []
    for a in addresses:
        ip = ipaddress.ip_address(str(a).split("/")[0])
        if ip.version != family:
            raise ValueError(f"address {a} is not IPv{family}")
        out.append(ip.packed)
    return b"".join(out)


def auth_bytes(auth_pass: str | None) -> bytes:
    """The 8 authentication bytes of a v2 PASS advert: password truncated/NUL padded."""
    raw = (auth_pass or "").encode()[:8]
    return raw + b"\0" * (8 - len(raw))


def encode(
    version: int,
    vrid: int,
    priority: int,
    addresses: Sequence[str],
    interval: float,
    *,
    family: int = 4,
    auth_type: str | int | None = None,
    auth_pass: str | None = None,
    source: str | None = None,
    destination: str | None = None,
) -> bytes:
    """Encode one advertisement; returns the VRRP payload (no IP header).

    v3 needs ``source`` (and ``destination``, default the VRRP multicast group)
    for the pseudo-header checksum. ``interval`` is seconds; v2 rounds it to
    whole seconds (minimum 1), v3 to centiseconds (1..4095). Raises
    ``ValueError`` on local misuse (these are our own parameters).
    """
    if not 1 <= vrid <= 255:
        raise ValueError(f"vrid {vrid} outside 1..255")
    if not 0 <= priority <= 255:
        raise ValueError(f"priority {priority} outside 0..255")
    addrs = _pack_addresses(addresses, family)
    count = len(addresses)
    if count > 255:
        raise ValueError("more than 255 addresses")
    atype = _AUTH_NAMES[auth_type] if not isinstance(auth_type, int) else auth_type
    if version == 2:
        if family != 4:
            raise ValueError("VRRPv2 is IPv4 only")
        secs = advert_seconds_v2(interval)
        adata = auth_bytes(auth_pass) if atype == AUTH_PASS else b"\0" * 8
        head = struct.pack("!BBBBBBH", 0x21, vrid, priority, count, atype, secs, 0)
        body = head + addrs + adata
        csum = checksum16(body)
    elif version == 3:
        if source is None:
            raise ValueError("VRRPv3 encoding needs the source address for the checksum")
        dst = destination or (MCAST_V4 if family == 4 else MCAST_V6)
        centis = max(1, min(4095, advert_centiseconds(interval)))
        head = struct.pack("!BBBBHH", 0x31, vrid, priority, count, centis, 0)
        body = head + addrs
        csum = checksum16(_pseudo_header(family, source, dst, len(body)) + body)
    else:
        raise ValueError(f"unsupported VRRP version {version}")
    return body[:6] + struct.pack("!H", csum) + body[8:]


def decode(data: bytes, *, family: int = 4, source: str = "") -> Advertisement:
    """Parse a VRRP payload into an :class:`Advertisement` without judging it.

    Raises :class:`PacketError` (and nothing else) if the bytes cannot be a
    VRRP v2/v3 message of the given family.
    """
    if family not in (4, 6):
        raise PacketError(f"unknown address family {family!r}", DropReason.FAMILY)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PacketError("payload is not bytes")
    data = bytes(data)
    if len(data) < 8:
        raise PacketError(f"{len(data)} bytes is shorter than the 8-byte VRRP header")
    ver, typ = data[0] >> 4, data[0] & 0x0F
    vrid, prio, count = data[1], data[2], data[3]
    alen = _addr_len(family)
    if ver == 2:
        if family != 4:
            raise PacketError("VRRPv2 over IPv6", DropReason.FAMILY)
        need = 8 + count * alen + 8
        if len(data) < need:
            raise PacketError(f"{len(data)} bytes, {need} needed for {count} addresses + auth")
        atype, secs = data[4], data[5]
        interval = float(secs)
        adata = data[8 + count * alen: 8 + count * alen + 8]
    elif ver == 3:
        need = 8 + count * alen
        if len(data) < need:
            raise PacketError(f"{len(data)} bytes, {need} needed for {count} addresses")
        atype, adata = AUTH_NONE, b""
        interval = (struct.unpack("!H", data[4:6])[0] & 0x0FFF) / 100.0
    else:
        raise PacketError(f"version {ver} (only 2 and 3 exist)", DropReason.VERSION)
    csum = struct.unpack("!H", data[6:8])[0]
    addrs = tuple(
        _addr_text(data[8 + i * alen: 8 + (i + 1) * alen]) for i in range(count)
    )
    return Advertisement(ver, vrid, prio, interval, addrs, source, family, atype, adata, csum, typ)


def verify_checksum(data: bytes, adv: Advertisement, *, source: str, destination: str) -> bool:
    """True when the checksum of the VRRP payload ``data`` is correct for its version."""
    alen = _addr_len(adv.family)
    if adv.version == 2:
        body = data[: 8 + len(adv.addresses) * alen + 8]
        return checksum16(body) == 0
    body = data[: 8 + len(adv.addresses) * alen]
    try:
        pseudo = _pseudo_header(adv.family, source, destination, len(body))
    except ValueError:
        return False
    return checksum16(pseudo + body) == 0


@lru_cache(maxsize=_ADDR_CACHE)
def _is_multicast(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_multicast
    except ValueError:
        return False


def validate(
    payload: bytes,
    *,
    source: str,
    destination: str,
    ttl: int,
    family: int,
    expect: Expectation | Mapping[int, Expectation],
) -> Advertisement | Drop:
    """Judge a received VRRP payload the way keepalived does.

    ``source``/``destination``/``ttl`` (hop limit for IPv6) come from the IP
    header; ``expect`` is the local instance for the VRID (or a mapping from
    VRID to instance, so an unknown VRID is reported as such). Returns the
    :class:`Advertisement` or a :class:`Drop`; never raises for any payload.
    """
    try:
        adv = decode(payload, family=family, source=source)
    except PacketError as exc:
        return Drop(exc.reason, str(exc))
    if isinstance(expect, Expectation):
        exp = expect if expect.vrid == adv.vrid else None
    else:
        exp = expect.get(adv.vrid)
    multicast = _is_multicast(destination)
    # RFC 3768 7.1 / RFC 5798 7.1: adverts must not have crossed a router.
    # keepalived applies this to multicast; unicast TTL is checked only when
    # a peer range is configured, which the runtime handles.
    if multicast and ttl != REQUIRED_TTL:
        return Drop(DropReason.TTL, f"TTL {ttl} from {source}, must be {REQUIRED_TTL}", adv.vrid)
    if multicast and exp is not None and _norm(destination) != _norm(exp.group or _STANDARD[family]):
        # keepalived's socket is bound to the instance's group: other groups never reach it.
        return Drop(DropReason.GROUP, f"advert from {source} to {destination}, the instance uses "
                    f"{exp.group or _STANDARD[family]}", adv.vrid)
    if adv.type != TYPE_ADVERTISEMENT:
        return Drop(DropReason.TYPE, f"type {adv.type} from {source}, only 1 (advertisement) exists", adv.vrid)
    if exp is None:
        return Drop(DropReason.VRID_UNKNOWN, f"VRID {adv.vrid} from {source} is not configured here", adv.vrid)
    if adv.version != exp.version:
        return Drop(DropReason.VERSION, f"VRRPv{adv.version} from {source}, instance runs v{exp.version}", adv.vrid)
    if exp.family != family:
        return Drop(DropReason.FAMILY, f"IPv{family} advert for an IPv{exp.family} instance", adv.vrid)
    if not verify_checksum(payload, adv, source=source, destination=destination):
        return Drop(DropReason.CHECKSUM, f"bad checksum 0x{adv.checksum:04x} from {source}", adv.vrid)
    if source in exp.local_addresses:
        return Drop(DropReason.OWN_PACKET, f"our own advert from {source}", adv.vrid)
    if exp.unicast_peers and exp.check_unicast_src and source not in exp.unicast_peers:
        return Drop(DropReason.UNICAST_SOURCE, f"{source} is not a configured unicast_peer", adv.vrid)
    for peer, lo, hi in exp.unicast_peer_ttl:
        # keepalived: unicast_peer { ADDR min_ttl N max_ttl M } bounds the received TTL.
        if peer == source and ((lo is not None and ttl < lo) or (hi is not None and ttl > hi)):
            return Drop(DropReason.TTL, f"TTL {ttl} from {source} outside {lo or 0}..{hi if hi is not None else 255}",
                        adv.vrid)
    if adv.version == 2:
        want = _AUTH_NAMES.get(exp.auth_type, AUTH_NONE)
        if adv.auth_type != want:
            return Drop(DropReason.AUTH, f"auth type {adv.auth_type} from {source}, expected {want}", adv.vrid)
        if want == AUTH_PASS and adv.auth_data != auth_bytes(exp.auth_pass):
            return Drop(DropReason.AUTH, f"wrong auth_pass from {source}", adv.vrid)
        if advert_seconds_v2(exp.interval) != int(adv.interval):
            return Drop(
                DropReason.ADVERT_INTERVAL,
                f"advert_int {adv.interval:g} s from {source}, ours is {exp.interval:g} s",
                adv.vrid,
            )
    if not exp.skip_check_adv_addr:
        if len(adv.addresses) != len(exp.addresses):
            return Drop(
                DropReason.ADDRESS_COUNT,
                f"{len(adv.addresses)} addresses from {source}, we have {len(exp.addresses)}",
                adv.vrid,
            )
        mine = _norm_set(tuple(exp.addresses))  # tuple(): a list given by a caller stays hashable
        theirs = _norm_set(adv.addresses)
        if mine != theirs:
            missing = ", ".join(sorted(mine - theirs)) or "-"
            return Drop(DropReason.ADDRESS_LIST, f"advert from {source} lacks {missing}", adv.vrid)
    return adv


@lru_cache(maxsize=_ADDR_CACHE)
def _norm(addr: str) -> str:
    return str(ipaddress.ip_address(str(addr).split("/")[0]))


@lru_cache(maxsize=_ADDR_CACHE)
def _norm_set(addresses: tuple[str, ...]) -> frozenset[str]:
    return frozenset(_norm(a) for a in addresses)


def expectation_for(spec) -> Expectation:
    """An :class:`Expectation` from an ``InstanceSpec`` (convenience for the runtime)."""
    return Expectation(
        vrid=spec.vrid,
        version=spec.version,
        family=spec.family,
        interval=spec.advert_int,
        auth_type=spec.auth_type,
        auth_pass=spec.auth_pass,
        addresses=tuple(spec.advert_addresses),
        unicast_peers=tuple(spec.unicast_peers),
        check_unicast_src=spec.check_unicast_src,
        unicast_peer_ttl=tuple(getattr(spec, "unicast_peer_ttl", ())),
        skip_check_adv_addr=bool(getattr(spec, "skip_check_adv_addr", False)),
        local_addresses=(spec.primary_address,) if spec.primary_address else (),
        group="" if spec.unicast_peers else getattr(spec, "mcast_group", ""),
    )
