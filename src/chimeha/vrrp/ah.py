"""IPsec AH authentication of VRRPv2 adverts, as keepalived puts it on the wire.

VRRPv2 (RFC 2338 section 5.3.6) allowed ``auth_type AH``: the advert travels
as IP protocol 51 (RFC 2402 AH) whose next header is VRRP (112), and the AH
Integrity Check Value is HMAC-MD5-96 (RFC 2403) keyed with the 8-byte
``auth_pass``. There is no IKE: keepalived's conventions, which every peer of
a mixed cluster must follow, are (measured against keepalived 2.2.7's wire
format and its documented behaviour):

* the IPv4 header is built by the sender (``IP_HDRINCL``): TOS 0xc0, TTL 255,
  an identification that is never 0 (the kernel would fill a 0 in *after* the
  ICV was computed); the AH header is 24 bytes: next header 112, payload
  length 4 (32-bit words minus 2), SPI = the sender's IPv4 address, a sequence
  number, 12 bytes of ICV;
* the ICV covers the IPv4 header with its mutable fields zeroed (TOS, flags
  and fragment offset, header checksum, and the TTL when the instance is
  unicast), the AH header with a zero ICV, and the whole VRRP message;
* anti-replay: one sequence counter per instance serves both directions. A
  receiver takes an advert only if its sequence number is above the counter
  and then raises the counter to it; a sender increments the counter before
  each advert. So a backup that becomes master continues above the last
  sequence number it heard, and the old master, now backup, accepts it.
  keepalived starts a non-owner AH instance as BACKUP for that reason (it
  must hear the master's counter before it may speak).

Pure functions and one small counter object: no sockets, no clock.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass

from chimeha.vrrp.packet import DropReason, PacketError

IPPROTO_AH = 51
IPPROTO_VRRP = 112
AH_LEN = 24  # next header, payload len, reserved(2), SPI(4), sequence(4), ICV(12)
ICV_LEN = 12  # HMAC-MD5 truncated to 96 bits (RFC 2403 section 2)
AH_PAYLOAD_LEN = 4  # AH length in 32-bit words minus 2: (24 / 4) - 2
IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
AH_HEADER = struct.Struct("!BBHII")  # ICV follows
TOS_NETWORK_CONTROL = 0xC0
SEQ_MAX = 0xFFFFFFFD  # keepalived stops incrementing here (136 years at 1 advert/s)


def ah_key(auth_pass: str | None) -> bytes:
    """The HMAC key: ``auth_pass`` truncated / NUL padded to 8 bytes, as keepalived keeps it."""
    return (auth_pass or "").encode()[:8].ljust(8, b"\0")


@dataclass
class AhCounter:
    """The anti-replay sequence counter of one instance (shared by send and receive)."""

    seq: int = 0  # highest sequence number sent or accepted
    ip_id: int = 0  # last IPv4 identification sent (never 0 on the wire)

    def next_seq(self) -> int:
        if self.seq < SEQ_MAX:
            self.seq += 1
        return self.seq

    def next_ip_id(self) -> int:
        self.ip_id = self.ip_id % 0xFFFF + 1  # 1..65535: a 0 would be replaced by the kernel
        return self.ip_id


@dataclass(frozen=True)
class Envelope:
    """The IPv4 and AH headers that carried one received VRRP message."""

    ip_header: bytes  # as received, options included
    ah_header: bytes  # 24 bytes, ICV included

    @property
    def spi(self) -> int:
        return AH_HEADER.unpack_from(self.ah_header)[3]

    @property
    def seq(self) -> int:
        return AH_HEADER.unpack_from(self.ah_header)[4]


def _icv(key: bytes, ip_header: bytes, ah_header: bytes, vrrp: bytes, *, unicast: bool) -> bytes:
    ip = bytearray(ip_header)
    ip[1] = 0  # TOS
    ip[6:8] = b"\0\0"  # flags + fragment offset
    ip[10:12] = b"\0\0"  # header checksum
    if unicast:
        ip[8] = 0  # TTL (keepalived treats it as mutable for unicast peers)
    ah = bytearray(ah_header)
    ah[12:AH_LEN] = bytes(ICV_LEN)
    return hmac.new(key, bytes(ip) + bytes(ah) + vrrp, hashlib.md5).digest()[:ICV_LEN]


def seal(vrrp: bytes, *, source: str, destination: str, key: bytes, counter: AhCounter,
         unicast: bool, ttl: int = 255) -> bytes:
    """The whole IPv4 datagram (header, AH, VRRP) for one advert; advances ``counter``."""
    src = ipaddress.IPv4Address(source).packed
    dst = ipaddress.IPv4Address(destination).packed
    total = IPV4_HEADER.size + AH_LEN + len(vrrp)
    ip_header = IPV4_HEADER.pack(0x45, TOS_NETWORK_CONTROL, total, counter.next_ip_id(), 0, ttl,
                                 IPPROTO_AH, 0, src, dst)
    spi = int.from_bytes(src, "big")
    ah_header = AH_HEADER.pack(IPPROTO_VRRP, AH_PAYLOAD_LEN, 0, spi, counter.next_seq()) + bytes(ICV_LEN)
    icv = _icv(key, ip_header, ah_header, vrrp, unicast=unicast)
    return ip_header + ah_header[:12] + icv + vrrp


def split(datagram: bytes) -> tuple[Envelope, bytes]:
    """Cut a received AH datagram into its envelope and the VRRP message.

    Raises :class:`PacketError` (reason ``auth``) when it is not AH over VRRP.
    """
    if len(datagram) < IPV4_HEADER.size:
        raise PacketError(f"{len(datagram)} bytes: shorter than an IPv4 header", reason=DropReason.LENGTH)
    ihl = (datagram[0] & 0x0F) * 4
    if ihl < IPV4_HEADER.size or len(datagram) < ihl + AH_LEN:
        raise PacketError(f"{len(datagram)} bytes: no room for an AH header", reason=DropReason.LENGTH)
    if datagram[9] != IPPROTO_AH:
        raise PacketError(f"IP protocol {datagram[9]}, not AH", reason=DropReason.AUTH)
    ah = datagram[ihl:ihl + AH_LEN]
    next_header, plen = ah[0], ah[1]
    if next_header != IPPROTO_VRRP:
        raise PacketError(f"AH next header {next_header}, not VRRP", reason=DropReason.AUTH)
    if plen != AH_PAYLOAD_LEN:
        raise PacketError(f"AH payload length {plen}, expected {AH_PAYLOAD_LEN} (HMAC-MD5-96)",
                          reason=DropReason.AUTH)
    return Envelope(datagram[:ihl], ah), datagram[ihl + AH_LEN:]


def verify(envelope: Envelope, vrrp: bytes, *, key: bytes, counter: AhCounter, unicast: bool) -> None:
    """Check the ICV, the SPI and the sequence number; advance ``counter`` when accepted.

    Raises :class:`PacketError` with reason ``auth`` saying which check failed.
    Constant-time ICV comparison: a forger learns nothing from the timing.
    """
    want = _icv(key, envelope.ip_header, envelope.ah_header, vrrp, unicast=unicast)
    if not hmac.compare_digest(want, envelope.ah_header[12:AH_LEN]):
        raise PacketError("AH: invalid HMAC-MD5 (wrong auth_pass, or a field changed in flight)",
                          reason=DropReason.AUTH)
    source = int.from_bytes(envelope.ip_header[12:16], "big")
    if envelope.spi != source:
        raise PacketError(f"AH: SPI {ipaddress.IPv4Address(envelope.spi)} is not the source address",
                          reason=DropReason.AUTH)
    if envelope.seq <= counter.seq:
        raise PacketError(f"AH: sequence number {envelope.seq} already seen (counter {counter.seq}): replay",
                          reason=DropReason.AUTH)
    counter.seq = envelope.seq


def uses_ah(spec) -> bool:
    """Whether an instance spec authenticates with AH (VRRPv2 over IPv4 only, as keepalived)."""
    return spec.auth_type == "AH" and spec.version == 2 and spec.family == 4


class AhGuard:
    """The AH state of one node: a sequence counter per AH instance.

    Counters survive a reload for instances that keep AH (a reset would make
    the peers drop our adverts as replays until they time out).
    """

    def __init__(self) -> None:
        self._counters: dict[str, AhCounter] = {}

    def retain(self, specs) -> None:
        """Keep (or create) a counter for every AH spec; forget the rest."""
        self._counters = {s.name: self._counters.get(s.name) or AhCounter() for s in specs if uses_ah(s)}

    def expects(self, name: str) -> bool:
        return name in self._counters

    def sequence(self, name: str) -> int | None:
        c = self._counters.get(name)
        return c.seq if c else None

    def check(self, spec, envelope: Envelope | None, vrrp: bytes) -> None:
        """Judge one received advert for ``spec``; raises :class:`PacketError` (reason auth)."""
        counter = self._counters.get(spec.name)
        if counter is None:
            if envelope is not None:
                raise PacketError(f"IPsec AH advert, but {spec.name} is not auth_type AH", reason=DropReason.AUTH)
            return
        if envelope is None:
            raise PacketError(f"{spec.name} is auth_type AH, the advert has no AH header", reason=DropReason.AUTH)
        verify(envelope, vrrp, key=ah_key(spec.auth_pass), counter=counter, unicast=bool(spec.unicast_peers))

    def seal(self, spec, vrrp: bytes, *, source: str, destination: str) -> bytes:
        """The IPv4 + AH datagram carrying ``vrrp`` for ``spec`` (advances its counter)."""
        counter = self._counters.setdefault(spec.name, AhCounter())
        return seal(vrrp, source=source, destination=destination, key=ah_key(spec.auth_pass),
                    counter=counter, unicast=bool(spec.unicast_peers))
