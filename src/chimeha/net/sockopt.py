"""Linux socket option numbers that Python's socket module lacks on some builds.

Shared by the raw VRRP sockets and the BFD sockets: both ask the kernel for
each packet's TTL / hop limit and destination, and set the TTL they send with.
"""

from __future__ import annotations

import socket

IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_TTL = getattr(socket, "IP_TTL", 2)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_HDRINCL = getattr(socket, "IP_HDRINCL", 3)
IP_MULTICAST_ALL = 49
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IPV6_MULTICAST_ALL = 29
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
