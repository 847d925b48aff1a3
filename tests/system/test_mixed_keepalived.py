"""Mixed clusters: chime-ha and the real keepalived 2.2.7 on one VRID.

Each case elects a master, stops it with SIGTERM (priority 0: the backup must
take over), and starts it again (it must preempt back). The VIP is on exactly
one node after every settle.
"""

from __future__ import annotations

import time

import pytest

from chalab import Daemon, holders, settle_on, stopped_at_end, wait_until

pytestmark = [pytest.mark.system, pytest.mark.keepalived]


def conf(*, state: str, priority: int, version: int, family: int, unicast: bool, me: str, peer: str,
         vip: str, advert: str) -> str:
    lines = ["global_defs {", "    router_id node_" + me.replace(":", "_").replace(".", "_"), "}",
             "vrrp_instance VI_T {",
             f"    state {state}", "    interface eth0", "    virtual_router_id 42",
             f"    priority {priority}", f"    advert_int {advert}", f"    version {version}"]
    if version == 2:
        lines += ["    authentication {", "        auth_type PASS", "        auth_pass s3cret", "    }"]
    if unicast:
        lines += [f"    unicast_src_ip {me}", "    unicast_peer {", f"        {peer}", "    }"]
    lines += ["    virtual_ipaddress {", f"        {vip}", "    }", "}", ""]
    return "\n".join(lines)


CASES = [
    # version, family, unicast, chime-ha is the (higher priority) master
    pytest.param(2, 4, False, True, id="v2-ipv4-multicast-chimeha-master"),
    pytest.param(2, 4, False, False, id="v2-ipv4-multicast-keepalived-master"),
    pytest.param(3, 6, False, True, id="v3-ipv6-multicast-chimeha-master"),
    pytest.param(3, 6, False, False, id="v3-ipv6-multicast-keepalived-master"),
    pytest.param(3, 4, True, False, id="v3-ipv4-unicast-keepalived-master"),
    pytest.param(3, 6, True, True, id="v3-ipv6-unicast-chimeha-master"),
]


def _wait_ll(node) -> None:
    wait_until(lambda: "tentative" not in node.run(["ip", "-6", "addr", "show", "dev", "eth0"]).stdout,
               10, f"{node.name} IPv6 addresses usable")


@pytest.mark.parametrize("version,family,unicast,chime_master", CASES)
def test_mixed_cluster_election_stop_and_preempt(topology, tmp_path, version, family, unicast, chime_master):
    from chimeha.lab.node import add_node

    if family == 4:
        a_addr, b_addr, vip = "10.7.0.11", "10.7.0.12", "10.7.0.100"
        a = add_node(topology, "a", f"{a_addr}/24")
        b = add_node(topology, "b", f"{b_addr}/24")
        vip_line = f"{vip}/24"
    else:
        a_addr, b_addr, vip = "fd00:7::11", "fd00:7::12", "fd00:7::100"
        a = add_node(topology, "a", f"{a_addr}/64")
        b = add_node(topology, "b", f"{b_addr}/64")
        vip_line = f"{vip}/64"
        _wait_ll(a)
        _wait_ll(b)
    advert = "1" if version == 2 else "0.2"
    kinds = ("chime-ha", "keepalived") if chime_master else ("keepalived", "chime-ha")
    common = dict(version=version, family=family, unicast=unicast, vip=vip_line, advert=advert)
    master = Daemon(a, kinds[0], conf(state="MASTER", priority=200, me=a_addr, peer=b_addr, **common), tmp_path)
    backup = Daemon(b, kinds[1], conf(state="BACKUP", priority=100, me=b_addr, peer=a_addr, **common), tmp_path)
    nodes = [a, b]
    down = 3 * float(advert) + 1  # master down interval, rounded up
    # Long enough for a wrong second master to show up: the backup started first and
    # has been without (accepted) adverts for longer than Master_Down_Interval by the
    # time the VIP settles, so one more advert interval catches a late claim.
    hold = float(advert) + 0.5
    with stopped_at_end(master, backup):
        backup.start()
        master.start()
        settle_on(nodes, vip, "a", timeout=down + 8, hold=hold)
        master.stop()  # SIGTERM: priority 0, VIP removed; the backup takes over after skew time
        settle_on(nodes, vip, "b", timeout=down + 3, hold=float(advert))
        master.start()  # higher priority comes back and preempts
        settle_on(nodes, vip, "a", timeout=down + 8, hold=hold)
        assert master.alive() and backup.alive()
