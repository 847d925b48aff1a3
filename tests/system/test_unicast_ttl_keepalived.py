"""unicast_ttl and unicast_fault_no_peer against the real keepalived 2.2.7.

unicast_ttl: both nodes send unicast adverts with TTL 7 and accept a peer's
only with exactly TTL 7 (``unicast_peer { ADDR min_ttl 7 max_ttl 7 }``). If
either side sent its usual 255 the other would drop every advert and take
the VIP too; so one holder, a failover and a preempt prove the TTL both ways,
and a capture on the keepalived node shows chime-ha's adverts with TTL 7.

unicast_fault_no_peer: an instance with unicast configured and no peer goes
to FAULT in both daemons (keepalived logs it; chime-ha reports FAULT) and
neither takes the VIP.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from chalab import Daemon, captured, capturing, mixed_pair, settle_on, stopped_at_end, wait_until

pytestmark = [pytest.mark.system, pytest.mark.keepalived]

VIP = "10.8.1.100"


def conf(me: str, peer: str, priority: int, state: str, body: str | None = None) -> str:
    body = body if body is not None else (f"    unicast_src_ip {me}\n    unicast_ttl 7\n"
                                          f"    unicast_peer {{\n        {peer} min_ttl 7 max_ttl 7\n    }}\n")
    return (f"vrrp_instance VI_U {{\n    state {state}\n    interface eth0\n    virtual_router_id 71\n"
            f"    priority {priority}\n    advert_int 0.5\n    version 3\n{body}"
            f"    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n")


@pytest.mark.parametrize("chime_master", [True, False], ids=["chimeha-master", "keepalived-master"])
def test_unicast_ttl_both_ways(topology, tmp_path, chime_master):
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", "10.8.1.11/24")
    b = add_node(topology, "b", "10.8.1.12/24")
    master, backup = mixed_pair(a, b, chime_master, conf("10.8.1.11", "10.8.1.12", 200, "MASTER"),
                                conf("10.8.1.12", "10.8.1.11", 100, "BACKUP"), tmp_path)
    ka_node = b if chime_master else a
    capfile = tmp_path / "cap.jsonl"
    nodes = [a, b]
    with capturing(ka_node, capfile):
        with stopped_at_end(master, backup):
            backup.start()
            master.start()
            settle_on(nodes, VIP, "a", timeout=12, hold=1.5)  # a TTL mismatch would put the VIP on both
            master.stop()
            settle_on(nodes, VIP, "b", timeout=5, hold=0.5)
            master.start()
            settle_on(nodes, VIP, "a", timeout=12, hold=1.5)
    chime_addr = "10.8.1.11" if chime_master else "10.8.1.12"
    recs = captured(capfile)
    mine = [r for r in recs if r["src"] == chime_addr]
    assert mine and {r["ttl"] for r in mine} == {7}, mine[:3]
    assert {r["dst"] for r in mine} == {"10.8.1.11" if not chime_master else "10.8.1.12"}


def test_unicast_fault_no_peer_faults_in_both(topology, tmp_path):
    """Same FIFO lines from both daemons (keepalived: FAULT, then STOP; it logs no "Entering FAULT")."""
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", "10.8.1.11/24")
    b = add_node(topology, "b", "10.8.1.12/24")
    head = "global_defs {\n    vrrp_notify_fifo /run/vrrp.fifo\n}\n"
    body = "    unicast_src_ip {me}\n    unicast_fault_no_peer\n"
    readers = []
    for node in (a, b):
        node.run(["mkfifo", "/run/vrrp.fifo"])
        readers.append(node.popen(["cat", "/run/vrrp.fifo"], stdout=subprocess.PIPE, text=True))
    ch = Daemon(a, "chime-ha", head + conf("10.8.1.11", "", 200, "MASTER", body.format(me="10.8.1.11")), tmp_path)
    ka = Daemon(b, "keepalived", head + conf("10.8.1.12", "", 200, "MASTER", body.format(me="10.8.1.12")), tmp_path)
    try:
        with stopped_at_end(ch, ka):
            ch.start()
            ka.start()
            wait_until(lambda: "Cannot use unicast without any peers" in ka.log(), 10, "keepalived's FAULT message")
            wait_until(lambda: "-> FAULT" in ch.log(), 10, "chime-ha in FAULT")
            time.sleep(2.5)  # longer than the Master_Down_Interval: nobody takes the VIP
            assert VIP not in a.addresses_on() and VIP not in b.addresses_on()
            ch.stop()
            ka.stop()
            got = [r.stdout.read().splitlines() for r in readers]
            assert got[1] == ['INSTANCE "VI_U" FAULT 200', 'INSTANCE "VI_U" STOP 200'], got
            assert got[0] == got[1], got
    finally:
        for node, r in zip((a, b), readers):
            node.stop(r)
