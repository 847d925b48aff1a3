"""UDP_CHECK: send a datagram; down on an ICMP error, or on a missing/wrong reply when required.

Without ``require_reply`` the probe waits the whole ``connect_timeout`` for an
ICMP error (port/host unreachable, seen as an error on the connected socket)
and is up if none came, as keepalived.conf(5) describes. With it, a reply must
arrive whose length is within ``min_reply_length``..``max_reply_length`` and,
if ``require_reply`` has a hex pattern, whose bytes match it up to the shorter
length (``X`` nibbles match anything).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from typing import NamedTuple

from chimeha.check._net import describe_oserror, endpoint, family_of, fmt, new_socket
from chimeha.check.spec import CheckResult, Target
from chimeha.config.model import UdpCheck


def parse_hex(text: str, *, wildcards: bool = False) -> list[tuple[int, int]]:
    """keepalived's free-form hex: ``(value, mask)`` per byte.

    Groups are separated by blanks; each group is read two digits at a time and
    a lone last digit is a byte of its own ("Ab12f 3" is AB 12 0F 03). With
    ``wildcards``, an ``X`` digit has mask 0 (ignored in comparisons).
    """
    out: list[tuple[int, int]] = []
    digit = r"[0-9a-fA-FxX]" if wildcards else r"[0-9a-fA-F]"
    for group in text.split():
        if not re.fullmatch(f"{digit}+", group):
            raise ValueError(f"bad hex string {group!r}")
        for i in range(0, len(group), 2):
            pair = group[i:i + 2].rjust(2, "0")
            value = mask = 0
            for ch in pair:
                value <<= 4
                mask <<= 4
                if ch not in "xX":
                    value |= int(ch, 16)
                    mask |= 0xF
            out.append((value, mask))
    return out


def reply_matches(reply: bytes, pattern: list[tuple[int, int]]) -> bool:
    """Whether ``reply`` matches ``pattern`` up to the shorter of the two."""
    return all((b & m) == (v & m) for b, (v, m) in zip(reply, pattern))


class UdpSettings(NamedTuple):
    """``UdpCheck``'s hex text decoded and its defaults applied."""

    payload: bytes | None  # None: send 16 random bytes
    need_reply: bool
    pattern: list[tuple[int, int]]  # empty: any content
    min_len: int
    max_len: int


def udp_settings(checker: UdpCheck) -> UdpSettings:
    """Decode ``payload``/``require_reply`` (keepalived's hex text; ``require_reply``
    without a value is True) and default the reply lengths to 0..255. ValueError
    on bad hex."""
    payload = bytes(v for v, _ in parse_hex(checker.payload)) if checker.payload else None
    require = checker.require_reply
    pattern = parse_hex(require, wildcards=True) if isinstance(require, str) else []
    lo = 0 if checker.min_reply_length is None else checker.min_reply_length
    hi = 255 if checker.max_reply_length is None else checker.max_reply_length
    return UdpSettings(payload, require not in (None, False), pattern, lo, hi)


async def probe_udp(checker: UdpCheck, target: Target, timeout: float) -> CheckResult:
    """One datagram exchange with the target."""
    host, port = endpoint(checker, target)
    where = fmt(host, port)
    payload, need_reply, pattern, lo, hi = udp_settings(checker)
    data = payload if payload is not None else os.urandom(16)
    loop = asyncio.get_running_loop()
    sock = new_socket(checker, family_of(host), socket.SOCK_DGRAM)
    try:
        await loop.sock_connect(sock, (host, port))
        await loop.sock_sendall(sock, data)
        try:
            async with asyncio.timeout(timeout):
                reply = await loop.sock_recv(sock, 65535)
        except TimeoutError:
            if need_reply:
                return CheckResult(False, f"UDP {where} no reply within {timeout:g} s")
            return CheckResult(True, f"UDP {where} no ICMP error within {timeout:g} s")
    except OSError as exc:
        return CheckResult(False, f"UDP {where}: {describe_oserror(exc)}")
    finally:
        sock.close()
    if need_reply:
        if not lo <= len(reply) <= hi:
            return CheckResult(False, f"UDP {where} reply of {len(reply)} bytes, want {lo}..{hi}")
        if pattern and not reply_matches(reply, pattern):
            return CheckResult(False, f"UDP {where} reply {reply[:16].hex()} does not match")
    return CheckResult(True, f"UDP {where} replied {len(reply)} bytes")
