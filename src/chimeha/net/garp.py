"""Gratuitous ARP (IPv4) and unsolicited neighbour advertisements (IPv6).

A new master announces each VIP so that switches and neighbours update their
caches at once instead of waiting for them to expire (RFC 5798 section 6.4.1:
"broadcast a gratuitous ARP request ... for each IP address"; for IPv6 an
unsolicited Neighbor Advertisement, RFC 4861 section 7.2.6, with the Override
flag set and the target link-layer address option).
"""

from __future__ import annotations

import socket
import struct

ETH_P_ARP = 0x0806
ETH_P_ALL = 0x0003
_BROADCAST = b"\xff" * 6


def interface_mac(ifname: str) -> bytes:
    """The hardware address of ``ifname`` (6 bytes)."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((ifname, ETH_P_ARP))
        return s.getsockname()[4][:6]


def build_garp(mac: bytes, ip: str) -> bytes:
    """An Ethernet frame holding a broadcast gratuitous ARP request for ``ip``."""
    addr = socket.inet_aton(ip)
    eth = _BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    # htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4, op 1 (request);
    # sender and target protocol addresses are both the VIP.
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + addr + b"\x00" * 6 + addr
    return eth + arp


def build_unsolicited_na(mac: bytes, ip: str) -> bytes:
    """The ICMPv6 body of an unsolicited NA for ``ip`` (checksum left to the kernel)."""
    target = socket.inet_pton(socket.AF_INET6, ip)
    flags = 0x20000000  # Override; not Solicited (unsolicited), not Router
    icmp = struct.pack("!BBHI", 136, 0, 0, flags) + target
    option = struct.pack("!BB", 2, 1) + mac  # target link-layer address, 8 bytes
    return icmp + option


class Announcer:
    """Sends GARPs / unsolicited NAs on one interface. Cheap to create per burst."""

    def __init__(self, ifname: str):
        self.ifname = ifname
        self.ifindex = socket.if_nametoindex(ifname)
        self._packet: socket.socket | None = None
        self._icmp6: socket.socket | None = None
        self.mac = interface_mac(ifname)

    def announce(self, ip: str) -> None:
        """Send one announcement for ``ip`` (v4: GARP, v6: unsolicited NA)."""
        if ":" in ip:
            if self._icmp6 is None:
                s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
                self._icmp6 = s
            self._icmp6.sendto(build_unsolicited_na(self.mac, ip), ("ff02::1", 0, 0, self.ifindex))
        else:
            if self._packet is None:
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
                s.bind((self.ifname, ETH_P_ARP))
                self._packet = s
            self._packet.send(build_garp(self.mac, ip))

    def close(self) -> None:
        for s in (self._packet, self._icmp6):
            if s is not None:
                s.close()
        self._packet = self._icmp6 = None
