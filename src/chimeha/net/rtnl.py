"""A minimal rtnetlink client: the few address and route requests chime-ha makes.

Why not pyroute2: ``import pyroute2`` loads its whole package (NDB, sqlite3,
IPDB, plan9, wireless, tc...), about 200 modules and 10 MiB of resident
memory, more than the rest of the daemon together, for four message types.
This module speaks the protocol of rtnetlink(7) / netlink(7) directly:

* a request is an ``nlmsghdr`` (length, type, flags, sequence, port id)
  followed by a fixed family header (``ifaddrmsg`` or ``rtmsg``) and a list
  of attributes (``rtattr``: length, type, value padded to 4 bytes);
* a change request carries ``NLM_F_ACK`` and is answered by one
  ``NLMSG_ERROR`` message whose ``error`` is 0 (success) or ``-errno``;
* a dump (``NLM_F_DUMP``) is answered by any number of messages, ending with
  ``NLMSG_DONE``.

Errors raise :class:`NetlinkError` with ``code`` set to the positive errno,
so callers can tell "already there" (EEXIST) from real failures.

:class:`Rtnl` mirrors the slice of pyroute2's ``IPRoute`` that
:class:`chimeha.net.addresses.AddressManager` uses (``addr``, ``route``,
``get_addr``, ``link_lookup``, ``close``) with the same keyword names and the
same defaults (routes: main table, protocol ``static``, scope universe, type
unicast), so either can back the manager. It is blocking and not thread-safe:
the daemon uses it from its one netlink worker thread.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

NETLINK_ROUTE = 0

NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE = 24, 25

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST = 1, 2, 3, 4
IFA_FLAGS = 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15

RT_TABLE_MAIN = 254
RTPROT_STATIC = 4  # what pyroute2 (and `ip route add` with proto static) uses
RT_SCOPE_UNIVERSE = 0
ROUTE_TYPES = {"unicast": 1, "local": 2, "broadcast": 3, "anycast": 4, "multicast": 5, "blackhole": 6,
               "unreachable": 7, "prohibit": 8, "throw": 9, "nat": 10}

_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")


class NetlinkError(OSError):
    """The kernel refused a request; ``code`` is the (positive) errno."""

    def __init__(self, code: int, message: str | None = None):
        super().__init__(code, message or os.strerror(code))
        self.code = code


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, value: bytes) -> bytes:
    length = _RTATTR.size + len(value)
    return _RTATTR.pack(length, kind) + value + b"\0" * (_align(length) - length)


def _attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 0
    while pos + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, pos)
        if length < _RTATTR.size:
            break
        out[kind & 0x3FFF] = data[pos + _RTATTR.size:pos + length]  # without NLA_F_* bits
        pos += _align(length)
    return out


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _packed(address: str) -> bytes:
    return socket.inet_pton(_family(address), address)


def _unpacked(family: int, raw: bytes) -> str:
    return socket.inet_ntop(family, raw)


class AddrMessage(dict):
    """One address as the kernel reports it: ``msg["flags"]``, ``msg.get("IFA_LOCAL")``...

    The keys follow pyroute2's names (``family``, ``prefixlen``, ``flags``,
    ``scope``, ``index`` and ``IFA_*`` attributes) so code written against
    either reads the same.
    """

    def get_attr(self, name: str, default=None):
        return self.get(name, default)


def _parse_addr(payload: bytes) -> AddrMessage:
    family, prefixlen, flags, scope, index = _IFADDRMSG.unpack_from(payload)
    msg = AddrMessage(family=family, prefixlen=prefixlen, flags=flags, scope=scope, index=index)
    for kind, value in _attrs(payload[_IFADDRMSG.size:]).items():
        if kind in (IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST) and len(value) in (4, 16):
            key = {IFA_ADDRESS: "IFA_ADDRESS", IFA_LOCAL: "IFA_LOCAL", IFA_BROADCAST: "IFA_BROADCAST"}[kind]
            msg[key] = _unpacked(family, value)
        elif kind == IFA_LABEL:
            msg["IFA_LABEL"] = value.split(b"\0", 1)[0].decode(errors="replace")
        elif kind == IFA_FLAGS and len(value) >= 4:
            # The 32-bit flags supersede the 8-bit header field (which cannot hold all of them).
            msg["IFA_FLAGS"] = struct.unpack("=I", value[:4])[0]
    return msg


class Rtnl:
    """A NETLINK_ROUTE socket for address and route requests (blocking)."""

    def __init__(self, timeout: float = 5.0):
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self._sock.settimeout(timeout)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport -----------------------------------------------------------
    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, self._seq, 0)
                        + body)
        return self._seq

    def _replies(self, seq: int):
        """Yield (type, payload) of the replies to ``seq`` until the request is answered."""
        while True:
            data = self._sock.recv(1 << 16)
            pos = 0
            while pos + _NLMSGHDR.size <= len(data):
                length, kind, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, pos)
                if length < _NLMSGHDR.size:
                    return
                payload = data[pos + _NLMSGHDR.size:pos + length]
                pos += _align(length)
                if mseq != seq:
                    continue  # a stale answer to an earlier request that timed out
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else errno.EIO
                    if code:
                        raise NetlinkError(code)
                    return  # the ACK
                yield kind, payload
                if not flags & NLM_F_MULTI:
                    return

    def _request(self, kind: int, flags: int, body: bytes) -> None:
        for _ in self._replies(self._send(kind, flags | NLM_F_ACK, body)):
            pass

    # -- the IPRoute subset ----------------------------------------------------
    def link_lookup(self, ifname: str) -> list[int]:
        """``[index]`` of interface ``ifname`` in this namespace, ``[]`` if there is none."""
        try:
            return [socket.if_nametoindex(ifname)]
        except OSError:
            return []

    def get_addr(self, index: int | None = None, family: int = socket.AF_UNSPEC) -> list[AddrMessage]:
        """Every address (of ``family``, on interface ``index`` when given)."""
        body = _IFADDRMSG.pack(family, 0, 0, 0, 0)
        out = []
        for kind, payload in self._replies(self._send(RTM_GETADDR, NLM_F_DUMP, body)):
            if kind != RTM_NEWADDR or len(payload) < _IFADDRMSG.size:
                continue
            msg = _parse_addr(payload)
            if index is not None and msg["index"] != index:
                continue
            if family and msg["family"] != family:
                continue
            out.append(msg)
        return out

    def addr(self, op: str, index: int, address: str, prefixlen: int | None = None, *, local: str | None = None,
             label: str | None = None, broadcast: str | None = None, scope: int | None = None,
             flags: int = 0) -> None:
        """``op`` "add" (fails with EEXIST if present) or "del" one address on ``index``."""
        family = _family(local or address)
        if prefixlen is None:
            prefixlen = 32 if family == socket.AF_INET else 128
        if family == socket.AF_INET and local is None:
            local = address  # as `ip addr add`: IFA_LOCAL is the address itself
        body = _IFADDRMSG.pack(family, prefixlen, 0, scope or 0, index)
        body += _attr(IFA_ADDRESS, _packed(address))
        if local is not None:
            body += _attr(IFA_LOCAL, _packed(local))
        if op == "add":
            if label:
                body += _attr(IFA_LABEL, label.encode() + b"\0")
            if broadcast:
                body += _attr(IFA_BROADCAST, _packed(broadcast))
            if flags:
                body += _attr(IFA_FLAGS, struct.pack("=I", flags))
            self._request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)
        elif op in ("del", "delete", "remove"):
            self._request(RTM_DELADDR, 0, body)
        else:
            raise ValueError(f"unknown address operation {op!r}")

    def route(self, op: str, dst: str = "0.0.0.0/0", *, gateway: str | None = None, oif: int | None = None,
              prefsrc: str | None = None, priority: int | None = None, table: int | None = None,
              scope: int | None = None, type: str | int | None = None) -> None:  # noqa: A002 - pyroute2's name
        """``op`` "add" (EEXIST if present) or "del" one route; ``dst`` is CIDR or "default"."""
        if dst in ("default", "", None):
            dst = "0.0.0.0/0"
        addr, _, plen = str(dst).partition("/")
        family = _family(addr)
        dst_len = int(plen) if plen else (32 if family == socket.AF_INET else 128)
        table = RT_TABLE_MAIN if table is None else int(table)
        rtype = ROUTE_TYPES[type] if isinstance(type, str) else (type or ROUTE_TYPES["unicast"])
        proto = RTPROT_STATIC if op == "add" else 0
        body = _RTMSG.pack(family, dst_len, 0, 0, table if table < 256 else 0, proto,
                           RT_SCOPE_UNIVERSE if scope is None else scope, rtype, 0)
        body += _attr(RTA_TABLE, struct.pack("=I", table))
        if dst_len:
            body += _attr(RTA_DST, _packed(addr))
        if gateway:
            body += _attr(RTA_GATEWAY, _packed(gateway))
        if oif is not None:
            body += _attr(RTA_OIF, struct.pack("=i", oif))
        if prefsrc:
            body += _attr(RTA_PREFSRC, _packed(prefsrc))
        if priority is not None:
            body += _attr(RTA_PRIORITY, struct.pack("=I", priority))
        if op == "add":
            self._request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body)
        elif op in ("del", "delete", "remove"):
            self._request(RTM_DELROUTE, 0, body)
        else:
            raise ValueError(f"unknown route operation {op!r}")
