"""The asyncio adapter on real sockets between two chime-ha daemons (system tests).

TTL / hop limit 255 is sent (the peer requires it) and required: a forged
packet with 254 is dropped and counted, IPv4 and IPv6; the source port is
in 49152-65535; SIGHUP with the same bfd_instance keeps the session.
"""

from __future__ import annotations

import sys
import time

import pytest

from bfd_lab import A, A6, B, B6, ChimePeer, bfd_block, eventually
from chimeha.lab.node import add_node

pytestmark = pytest.mark.system

FORGE = """
import socket, struct, sys
dst, ttl, discr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
v6 = ':' in dst
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
if v6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
else:
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
s.bind((sys.argv[4], 50000))
# version 1, state Down, mult 3, length 24, My Discr 77, Your Discr = the session's
pkt = struct.pack('!BBBBIIIII', 0x20, 0x40, 3, 24, 77, discr, 1000000, 1000000, 0)
for _ in range(5):
    s.sendto(pkt, (dst, 3784))
"""


@pytest.mark.parametrize("family", [4, 6])
def test_ttl_255_sent_and_required(family, topology, tmp_path):
    me, other = (A, B) if family == 4 else (A6, B6)
    a = add_node(topology, "a", f"{A}/24", f"{A6}/64")
    b = add_node(topology, "b", f"{B}/24", f"{B6}/64")
    pa = ChimePeer(a, bfd_block(me, other), tmp_path).start()
    pb = ChimePeer(b, bfd_block(other, me), tmp_path).start()
    try:
        eventually(pa, "Up", 15)
        eventually(pb, "Up", 15)
        s = pa.session()
        assert 49152 <= s["source_port"] <= 65535 and 49152 <= pb.session()["source_port"] <= 65535
        assert s["counters"]["drops_by_reason"] == {}  # every packet of the peer arrived with TTL 255
        discr = s["local_discriminator"]
        b.run([sys.executable, "-c", FORGE, me, "254", str(discr), other])
        eventually_drops(pa, "ttl", 5)
        assert pa.state() == "Up"  # forged Down packets with a bad TTL changed nothing

        # SIGHUP with an unchanged bfd_instance: the same session carries on
        up_before = pa.session()["counters"]["up"]
        pa.reload(bfd_block(me, other))
        eventually_drops(pa, "ttl", 5)
        time.sleep(1.0)
        s = pa.session()
        assert s["local_discriminator"] == discr and s["state"] == "Up" and s["counters"]["up"] == up_before
    finally:
        pa.stop()
        pb.stop()
        print(pa.log()[-4000:])


def eventually_drops(peer, reason, n):
    from chalab import wait_until

    wait_until(lambda: peer.session()["counters"]["drops_by_reason"].get(reason, 0) >= n, 5,
               f"{n} drops for {reason}")
