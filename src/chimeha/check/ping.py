"""PING_CHECK: one ICMP echo request (RFC 792; ICMPv6 RFC 4443 4.1), up on the matching reply.

An unprivileged ICMP datagram socket is used when ``net.ipv4.ping_group_range``
allows it (the kernel then owns the identifier and routes replies to us);
otherwise a raw socket (root / CAP_NET_RAW), which sees every ICMP packet and
so filters replies by source, identifier and sequence number.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct

from chimeha.check._net import describe_oserror, endpoint, family_of, new_socket
from chimeha.check.spec import CheckResult, Target
from chimeha.config.model import PingCheck
from chimeha.vrrp.packet import checksum16  # the same RFC 1071 sum VRRP uses

_dgram_allowed: dict[int, bool] = {}


def echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An echo request; the v6 checksum is left to the kernel (it needs the pseudo-header)."""
    kind = 128 if family == socket.AF_INET6 else 8
    body = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    if family == socket.AF_INET6:
        return body
    return body[:2] + struct.pack("!H", checksum16(body)) + body[4:]


def _open(checker: PingCheck, family: int) -> tuple[socket.socket, bool]:
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    if _dgram_allowed.get(family, True):
        try:
            return new_socket(checker, family, socket.SOCK_DGRAM, proto), True
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EPROTONOSUPPORT):
                raise
            _dgram_allowed[family] = False
    return new_socket(checker, family, socket.SOCK_RAW, proto), False


def _is_reply(packet: bytes, family: int, raw: bool, ident: int, seq: int) -> bool:
    if raw and family == socket.AF_INET:
        if len(packet) < 20:
            return False
        packet = packet[(packet[0] & 0x0F) * 4:]
    if len(packet) < 8:
        return False
    kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", packet[:8])
    want = 129 if family == socket.AF_INET6 else 0
    # A datagram socket's identifier is rewritten by the kernel, which already
    # delivered only our replies; a raw socket must check it.
    return kind == want and rseq == seq and (not raw or rid == ident)


async def probe_ping(checker: PingCheck, target: Target, timeout: float) -> CheckResult:
    """Send one echo request to the target and wait up to ``timeout`` for its reply."""
    host, _ = endpoint(checker, target, need_port=False)
    family = family_of(host)
    loop = asyncio.get_running_loop()
    try:
        sock, dgram = _open(checker, family)
    except OSError as exc:
        return CheckResult(False, f"PING {host}: cannot open ICMP socket: {describe_oserror(exc)}")
    ident = int.from_bytes(os.urandom(2), "big")
    seq = int.from_bytes(os.urandom(2), "big")
    try:
        async with asyncio.timeout(timeout):
            # Connecting a datagram/raw socket is immediate (no handshake) and makes
            # the kernel drop ICMP from other hosts; loop.sock_connect would try
            # to resolve a service for a raw socket type and fail.
            sock.connect((host, 0))
            await loop.sock_sendall(sock, echo_request(family, ident, seq, b"chime-ha-ping" + os.urandom(8)))
            while True:
                packet = await loop.sock_recv(sock, 2048)
                if _is_reply(packet, family, not dgram, ident, seq):
                    break
    except TimeoutError:
        return CheckResult(False, f"PING {host}: no echo reply within {timeout:g} s")
    except OSError as exc:
        return CheckResult(False, f"PING {host}: {describe_oserror(exc)}")
    finally:
        sock.close()
    return CheckResult(True, f"PING {host}: echo reply ({'datagram' if dgram else 'raw'} ICMP socket)")
