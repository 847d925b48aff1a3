"""BFD Control packet codec and stateless receive checks (pure, no sockets).

Theory of operation
-------------------
Wire format, RFC 5880 section 4.1 (the mandatory 24 bytes)::

    0: Vers(3) | Diag(5)      1: Sta(2) | P F C A D M     2: Detect Mult   3: Length
    4: My Discriminator       8: Your Discriminator
   12: Desired Min TX Interval (us)   16: Required Min RX Interval (us)
   20: Required Min Echo RX Interval (us)
   [24: optional authentication section, present when A is set]

:func:`validate` applies the checks of RFC 5880 section 6.8.6 that need no
session (version, length, detect multiplier, multipoint bit, discriminators,
authentication) and RFC 5881 section 5 (TTL / hop limit, the "GTSM" check:
255 unless ``max_hops`` allows less). It returns a :class:`ControlPacket` or
a :class:`Drop` whose ``reason`` is a :class:`DropReason` the node counts.
The checks that need a session (Your Discriminator naming no session, the
address of a zero-discriminator packet) are in :mod:`chimeha.bfd.node`.

Intervals are seconds (float) on the Python side and microseconds on the
wire; :func:`encode` rounds to the nearest microsecond.

Authentication (section 6.7) is not implemented: a packet with the A bit is
dropped (``auth-unsupported``), as keepalived 2.2.7 does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum

from chimeha.errors import RemoteError

VERSION = 1
HEADER = struct.Struct("!BBBBIIIII")
MIN_LENGTH = 24
MIN_LENGTH_AUTH = 26
CONTROL_PORT = 3784  # RFC 5881 section 4
SOURCE_PORTS = (49152, 65535)  # RFC 5881 section 4: the source port range
REQUIRED_TTL = 255  # RFC 5881 section 5
_MAX_US = 0xFFFFFFFF

FLAG_P, FLAG_F, FLAG_C, FLAG_A, FLAG_D, FLAG_M = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01


class SessionState(IntEnum):
    """bfd.SessionState values (RFC 5880 section 4.1, "Sta")."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3

    def __str__(self) -> str:
        return {0: "AdminDown", 1: "Down", 2: "Init", 3: "Up"}[self.value]


class Diag(IntEnum):
    """Diagnostic codes (RFC 5880 section 4.1, "Diag")."""

    NONE = 0
    DETECT_EXPIRED = 1
    ECHO_FAILED = 2
    NEIGHBOR_DOWN = 3
    FORWARDING_RESET = 4
    PATH_DOWN = 5
    CONCAT_PATH_DOWN = 6
    ADMIN_DOWN = 7
    REVERSE_CONCAT_PATH_DOWN = 8

    @property
    def text(self) -> str:
        """The RFC's words for this code, lower case (for operator messages)."""
        return _DIAG_TEXT.get(self.value, f"diagnostic {self.value}")


_DIAG_TEXT = {
    0: "no diagnostic",
    1: "control detection time expired",
    2: "echo function failed",
    3: "neighbor signaled session down",
    4: "forwarding plane reset",
    5: "path down",
    6: "concatenated path down",
    7: "administratively down",
    8: "reverse concatenated path down",
}


def diag_text(code: int) -> str:
    """Words for any diagnostic number (codes 9-31 are reserved)."""
    return _DIAG_TEXT.get(code, f"reserved diagnostic {code}")


class PacketError(RemoteError, ValueError):
    """A BFD payload could not be decoded (a peer's bad packet)."""


class DropReason(str, Enum):
    """Why a received packet was discarded; a fixed set so it can be counted."""

    SHORT = "short"  # fewer than 24 bytes
    VERSION = "version"
    LENGTH = "length"  # Length field < 24 (26 with A) or > the payload
    MULTIPLIER = "zero-multiplier"
    MULTIPOINT = "multipoint"
    MY_DISCR = "zero-my-discriminator"
    YOUR_DISCR = "zero-your-discriminator"  # zero while the sender's state is Init or Up
    AUTH = "auth-unsupported"
    TTL = "ttl"
    UNKNOWN_SESSION = "unknown-session"  # Your Discriminator names no session / no session for the address
    WRONG_ADDRESS = "wrong-address"  # the discriminator's session has another neighbor
    LOCAL_ADMIN_DOWN = "local-admin-down"  # RFC 5880 6.8.6: discarded while we are AdminDown
    INTERNAL = "internal-error"


@dataclass(frozen=True)
class Drop:
    """A rejected packet and why."""

    reason: DropReason
    detail: str = ""

    def __str__(self) -> str:
        return f"dropped BFD packet: {self.reason.value}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class ControlPacket:
    """One BFD Control packet; intervals in seconds."""

    state: SessionState
    my_discr: int
    your_discr: int = 0
    diag: int = 0
    detect_mult: int = 3
    desired_min_tx: float = 1.0
    required_min_rx: float = 1.0
    required_min_echo_rx: float = 0.0
    poll: bool = False
    final: bool = False
    cpi: bool = False  # Control Plane Independent
    auth: bool = False
    demand: bool = False
    multipoint: bool = False
    version: int = VERSION
    length: int = MIN_LENGTH


def _us(seconds: float) -> int:
    v = int(round(seconds * 1_000_000))
    return max(0, min(_MAX_US, v))


def encode(p: ControlPacket) -> bytes:
    """The 24-byte wire form of ``p`` (no authentication section)."""
    if p.poll and p.final:
        raise ValueError("a BFD Control packet must not have both Poll and Final set (RFC 5880 6.8.7)")
    flags = ((int(p.state) & 0x3) << 6) | (FLAG_P if p.poll else 0) | (FLAG_F if p.final else 0) \
        | (FLAG_C if p.cpi else 0) | (FLAG_A if p.auth else 0) | (FLAG_D if p.demand else 0) \
        | (FLAG_M if p.multipoint else 0)
    return HEADER.pack(((p.version & 0x7) << 5) | (p.diag & 0x1F), flags, p.detect_mult & 0xFF, MIN_LENGTH,
                       p.my_discr & _MAX_US, p.your_discr & _MAX_US, _us(p.desired_min_tx),
                       _us(p.required_min_rx), _us(p.required_min_echo_rx))


def decode(data: bytes) -> ControlPacket:
    """Parse the fixed part of a Control packet; :class:`PacketError` if under 24 bytes.

    Field values are not judged here (see :func:`validate`).
    """
    if len(data) < MIN_LENGTH:
        raise PacketError(f"{len(data)} bytes, a BFD Control packet has at least {MIN_LENGTH}")
    b0, b1, mult, length, mine, yours, tx, rx, echo = HEADER.unpack_from(data)
    return ControlPacket(
        state=SessionState((b1 >> 6) & 0x3), my_discr=mine, your_discr=yours, diag=b0 & 0x1F,
        detect_mult=mult, desired_min_tx=tx / 1e6, required_min_rx=rx / 1e6, required_min_echo_rx=echo / 1e6,
        poll=bool(b1 & FLAG_P), final=bool(b1 & FLAG_F), cpi=bool(b1 & FLAG_C), auth=bool(b1 & FLAG_A),
        demand=bool(b1 & FLAG_D), multipoint=bool(b1 & FLAG_M), version=b0 >> 5, length=length)


def validate(data: bytes, ttl: int | None = REQUIRED_TTL, min_ttl: int = REQUIRED_TTL) -> ControlPacket | Drop:
    """RFC 5880 6.8.6 session-independent checks and RFC 5881 section 5 TTL check.

    ``ttl`` is the received IP TTL / hop limit (None: unknown, not checked);
    ``min_ttl`` the lowest accepted (255 - max_hops). Never raises.
    """
    try:
        p = decode(data)
    except PacketError as exc:
        return Drop(DropReason.SHORT, str(exc))
    if p.version != VERSION:
        return Drop(DropReason.VERSION, f"version {p.version}")
    if p.length < (MIN_LENGTH_AUTH if p.auth else MIN_LENGTH) or p.length > len(data):
        return Drop(DropReason.LENGTH, f"length field {p.length}, {len(data)} bytes received")
    if p.detect_mult == 0:
        return Drop(DropReason.MULTIPLIER)
    if p.multipoint:
        return Drop(DropReason.MULTIPOINT)
    if p.my_discr == 0:
        return Drop(DropReason.MY_DISCR)
    if p.your_discr == 0 and p.state not in (SessionState.DOWN, SessionState.ADMIN_DOWN):
        return Drop(DropReason.YOUR_DISCR, f"state {p.state}")
    if p.auth:
        return Drop(DropReason.AUTH, "authentication is not implemented")
    # RFC 5881 section 5: without authentication the TTL must be 255 (GTSM).
    if ttl is not None and ttl < min_ttl:
        return Drop(DropReason.TTL, f"TTL {ttl} < {min_ttl}")
    return p
