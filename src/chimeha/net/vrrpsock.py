"""Raw VRRP sockets (IP protocol 112) for IPv4 and IPv6, multicast and unicast.

RFC 5798 section 5.1.1.3 / 5.1.2.3 require the TTL (IPv4) or hop limit (IPv6) of
every advertisement to be 255 and receivers to drop anything else, which proves
the sender is on the link. So the socket sends with TTL/hop limit 255 and asks
the kernel for each packet's received TTL (``IP_RECVTTL``) or hop limit
(``IPV6_RECVHOPLIMIT``) and its destination address (``IP_PKTINFO`` /
``IPV6_RECVPKTINFO``); the VRRP checks themselves are the pure codec's job.

On IPv4 a raw socket hands us the whole IP datagram (header included); on
IPv6 only the payload, so :class:`Received` always carries the VRRP payload
plus the addressing facts the validator needs.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

IPPROTO_VRRP = 112
IPPROTO_AH = 51
VRRP_GROUP_V4 = "224.0.0.18"
VRRP_GROUP_V6 = "ff02::12"

from chimeha.net.sockopt import (IP_HDRINCL, IP_MULTICAST_ALL, IP_PKTINFO, IP_RECVTTL, IP_TTL,  # noqa: F401
                                 IPV6_HOPLIMIT, IPV6_MULTICAST_ALL, IPV6_PKTINFO, IPV6_RECVHOPLIMIT,
                                 IPV6_RECVPKTINFO, SO_BINDTODEVICE)


def _ipv4_receive_options(sock: socket.socket, ifindex: int, src_addr: str | None) -> None:
    """No loopback of our own packets, the TTL and destination of each received one, only the
    groups this socket joined, and multicast sent out of ``ifindex`` (from ``src_addr``)."""
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    except OSError:
        pass
    mreqn = struct.pack("=4s4si", socket.inet_aton(VRRP_GROUP_V4), socket.inet_aton(src_addr or "0.0.0.0"),
                        ifindex)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)


class VrrpSocketError(OSError):
    """Opening or configuring a VRRP socket failed (bad interface, no privilege...)."""


@dataclass(frozen=True)
class Received:
    """One datagram received on a VRRP socket."""

    payload: bytes  # the VRRP message (IPv4 header stripped)
    src: str  # source IP address
    dst: str | None  # destination address (multicast group or our unicast address)
    ttl: int | None  # TTL / hop limit as received, None if the kernel did not say
    ifindex: int | None
    family: int  # 4 or 6
    ip_header: bytes = b""  # IPv4 only: the raw header, for length checks
    ah: bool = False  # came in as IPsec AH (protocol 51): ``payload`` is then the whole datagram


def _ifindex(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except OSError as exc:
        raise VrrpSocketError(f"interface {ifname!r} does not exist") from exc


class VrrpSocket:
    """A raw socket for VRRP on one interface and one address family.

    It receives every VRRP packet arriving on the interface (multicast when
    ``join_group``, and unicast to any local address); the caller dispatches
    by VRID. ``src_addr`` is the default source address of sent packets.
    """

    def __init__(self, ifname: str, family: int = 4, *, join_group: bool = True,
                 src_addr: str | None = None):
        if family not in (4, 6):
            raise ValueError("family must be 4 or 6")
        self.ifname = ifname
        self.family = family
        self.ifindex = _ifindex(ifname)
        self.src_addr = src_addr
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        try:
            sock = socket.socket(af, socket.SOCK_RAW, IPPROTO_VRRP)
        except PermissionError as exc:
            raise VrrpSocketError("raw sockets need root or CAP_NET_RAW") from exc
        try:
            sock.setblocking(False)
            # Bound to the device so that two instances on different interfaces
            # (or namespaces sharing nothing) never see each other's traffic.
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
            if family == 4:
                sock.setsockopt(socket.IPPROTO_IP, IP_TTL, 255)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
                _ipv4_receive_options(sock, self.ifindex, src_addr)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
                try:
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)
                except OSError:
                    pass
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
        except OSError as exc:
            sock.close()
            raise VrrpSocketError(f"cannot set up VRRP socket on {ifname}: {exc}") from exc
        self.sock = sock
        self.ah_sock: socket.socket | None = None
        self._ah_first = False
        self.joined = False
        self.groups: set[str] = set()  # multicast groups joined
        if join_group:
            try:
                self.join()
            except OSError as exc:
                sock.close()
                raise VrrpSocketError(f"cannot join the VRRP group on {ifname}: {exc}") from exc

    def _membership(self, group: str, add: bool, sock: socket.socket | None = None) -> None:
        sock = sock or self.sock
        if self.family == 4:
            mreqn = struct.pack("=4s4si", socket.inet_aton(group), bytes(4), self.ifindex)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP if add else socket.IP_DROP_MEMBERSHIP, mreqn)
        else:
            mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("=I", self.ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP if add else socket.IPV6_LEAVE_GROUP, mreq)

    def join(self, group: str | None = None) -> None:
        """Join ``group`` (default: the standard VRRP group) on the interface (idempotent).

        The kernel then reports the membership (IGMP / MLD) as for any
        socket; with ``IP_MULTICAST_ALL`` off only joined groups are received.
        """
        group = str(ipaddress.ip_address(group or (VRRP_GROUP_V4 if self.family == 4 else VRRP_GROUP_V6)))
        if group in self.groups:
            return
        self._membership(group, True)
        if self.ah_sock is not None:
            self._membership(group, True, self.ah_sock)
        self.groups.add(group)
        self.joined = True

    def leave_others(self, keep) -> None:
        """Leave every joined group not in ``keep`` (a reload changed mcast_dst_ip / vrrp_mcast_group)."""
        keep = {str(ipaddress.ip_address(g)) for g in keep}
        for group in sorted(self.groups - keep):
            for sock in (self.sock, self.ah_sock):
                if sock is not None:
                    try:
                        self._membership(group, False, sock)
                    except OSError:
                        pass
            self.groups.discard(group)
        self.joined = bool(self.groups)

    def enable_ah(self) -> int:
        """Also receive and send IPsec AH (IP protocol 51) adverts; returns the new socket's fd.

        keepalived's ``auth_type AH`` adverts are protocol 51, so the VRRP
        socket (112) never sees them. The sender builds the IPv4 header itself
        (``IP_HDRINCL``): the header is covered by the AH ICV, so the kernel
        must not choose its identification. Idempotent.
        """
        if self.family != 4:
            raise VrrpSocketError("IPsec AH is IPv4 only (keepalived refuses AH with IPv6)")
        if self.ah_sock is not None:
            return self.ah_sock.fileno()
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_AH)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.ifname.encode())
            sock.setsockopt(socket.IPPROTO_IP, IP_HDRINCL, 1)
            _ipv4_receive_options(sock, self.ifindex, None)
            for group in self.groups:
                self._membership(group, True, sock)
        except OSError as exc:
            sock.close()
            raise VrrpSocketError(f"cannot set up the IPsec AH socket on {self.ifname}: {exc}") from exc
        self.ah_sock = sock
        return sock.fileno()

    # -- sending -----------------------------------------------------------
    def send_datagram(self, datagram: bytes, dst: str | None = None) -> None:
        """Send a whole IPv4 datagram built by the caller (an AH advert) on the AH socket."""
        if self.ah_sock is None:
            raise VrrpSocketError(f"IPsec AH is not enabled on {self.ifname}")
        self.ah_sock.sendto(datagram, (dst or VRRP_GROUP_V4, 0))

    def send(self, payload: bytes, dst: str | None = None, src: str | None = None, *,
             ttl: int | None = None) -> None:
        """Send one VRRP message to ``dst`` (default: the VRRP multicast group).

        ``src`` (default: the socket's ``src_addr``) is set per packet with
        IP_PKTINFO / IPV6_PKTINFO rather than bind(): a raw socket bound to a
        unicast address would stop receiving the multicast adverts. ``ttl``
        (unicast_ttl) overrides the TTL / hop limit 255 of this one packet.
        """
        src = src or self.src_addr
        if self.family == 4:
            anc = []
            if src:
                anc = [(socket.IPPROTO_IP, IP_PKTINFO,
                        struct.pack("=i4s4s", self.ifindex, socket.inet_aton(src), bytes(4)))]
            if ttl is not None:
                anc.append((socket.IPPROTO_IP, IP_TTL, struct.pack("=i", ttl)))
            self.sock.sendmsg([payload], anc, 0, (dst or VRRP_GROUP_V4, 0))
        else:
            target = dst or VRRP_GROUP_V6
            ip = ipaddress.IPv6Address(target)
            scope = self.ifindex if (ip.is_link_local or ip.is_multicast) else 0
            anc = []
            if src:
                anc = [(socket.IPPROTO_IPV6, IPV6_PKTINFO,
                        socket.inet_pton(socket.AF_INET6, src) + struct.pack("=I", self.ifindex))]
            if ttl is not None:
                anc.append((socket.IPPROTO_IPV6, IPV6_HOPLIMIT, struct.pack("=i", ttl)))
            self.sock.sendmsg([payload], anc, 0, (target, 0, 0, scope))

    # -- receiving ---------------------------------------------------------
    def recv(self) -> Received | None:
        """Read one datagram without blocking; None if nothing is queued."""
        socks = [(self.sock, False)]
        if self.ah_sock is not None:
            # Alternate which socket is read first, so a flood on one never starves the other.
            self._ah_first = not self._ah_first
            socks.insert(0 if self._ah_first else 1, (self.ah_sock, True))
        for sock, ah in socks:
            try:
                data, anc, _flags, addr = sock.recvmsg(65535, 256)
            except (BlockingIOError, InterruptedError):
                continue
            return self.parse(data, anc, addr, ah=ah)
        return None

    def parse(self, data: bytes, anc: list, addr: tuple, *, ah: bool = False) -> Received | None:
        ttl = dst = ifindex = None
        for level, ctype, cdata in anc:
            if level == socket.IPPROTO_IP and ctype == IP_TTL and len(cdata) >= 4:
                ttl = struct.unpack("=i", cdata[:4])[0]
            elif level == socket.IPPROTO_IP and ctype == IP_PKTINFO and len(cdata) >= 12:
                ifindex, _spec, daddr = struct.unpack("=i4s4s", cdata[:12])
                dst = socket.inet_ntoa(daddr)
            elif level == socket.IPPROTO_IPV6 and ctype == IPV6_HOPLIMIT and len(cdata) >= 4:
                ttl = struct.unpack("=i", cdata[:4])[0]
            elif level == socket.IPPROTO_IPV6 and ctype == IPV6_PKTINFO and len(cdata) >= 20:
                dst = socket.inet_ntop(socket.AF_INET6, cdata[:16])
                ifindex = struct.unpack("=I", cdata[16:20])[0]
        if self.family == 4:
            if len(data) < 20:
                return Received(b"", addr[0], dst, ttl, ifindex, 4, data)
            ihl = (data[0] & 0x0F) * 4
            header = data[:ihl]
            if ttl is None and len(header) >= 9:
                ttl = header[8]
            if dst is None and len(header) >= 20:
                dst = socket.inet_ntoa(header[16:20])
            if ah:  # the node checks the AH envelope itself (chimeha.vrrp.ah)
                return Received(data, addr[0], dst, ttl, ifindex, 4, header, ah=True)
            return Received(data[ihl:], addr[0], dst, ttl, ifindex, 4, header)
        src = addr[0].split("%", 1)[0]
        return Received(data, src, dst, ttl, ifindex, 6)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
        if self.ah_sock is not None:
            self.ah_sock.close()

    def __enter__(self) -> "VrrpSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
