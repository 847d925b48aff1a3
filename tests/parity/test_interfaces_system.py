"""The interface lifecycle against real keepalived 2.2.7, in lab namespaces (issue 10 item 3).

The measured bug: delete the VRRP interface under a running chime-ha and
create it again with the same name. The socket stayed bound to the old
ifindex, every advert failed with "No such device", the node became MASTER
and added the VIP, and both nodes held it for good. Here a veth in the
node's namespace is deleted and re-created (same name, new index) and the
pair must end with exactly one VIP holder; an instance whose interface is
missing at start (dynamic_interfaces) waits in FAULT and joins once the
interface appears.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from nodeproc import NodeDaemon, wait_until

pytestmark = [pytest.mark.system, pytest.mark.keepalived]

VIP = "10.77.0.100"


# Not a timing test (but for vrrp_startup_delay, which keeps VRRPv2's 1 s): VRRPv3 at
# 0.5 s makes Master_Down_Interval ~1.8 s instead of ~3.6 s, and every wait below with it.
FAST = "    version 3\n    advert_int 0.5\n"
SLOW = "    advert_int 1\n"


def conf(prio: int, iface: str = "eth0", globals_: str = "", timers: str = FAST) -> str:
    return f"""global_defs {{
    router_id n{prio}
{globals_}}}
vrrp_instance VI_1 {{
    state BACKUP
    interface {iface}
    virtual_router_id 77
    priority {prio}
{timers}    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"""


class Keepalived:
    """keepalived 2.2.7 in a lab node, by PID."""

    def __init__(self, node, text: str, logfile):
        self.node = node
        node.write_file("/etc/keepalived/ka.conf", text)
        self._log = open(logfile, "ab")
        self.logfile = logfile
        self.proc = node.popen(["keepalived", "-n", "-l", "-D", "-f", "/etc/keepalived/ka.conf",
                                "-p", "/run/ka.pid", "-r", "/run/ka-vrrp.pid", "-c", "/run/ka-chk.pid"],
                               stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None:
            self.node.stop(self.proc, grace=5)
            self.proc = None
        self._log.close()


def holds(node, iface: str = "eth0") -> bool:
    return VIP in node.addresses_on(iface)


def holders(*nodes) -> list[str]:
    return [n.name for n in nodes if holds(n)]


def recreate(topology, node, address: str, ifname: str = "eth0", port: str = "rx0") -> None:
    """Create ``ifname`` in ``node`` again as a fresh veth on the lab bridge (a new ifindex)."""
    sw = topology.switch_ns
    subprocess.run(["ip", "link", "add", "name", ifname, "netns", node.netns, "type", "veth", "peer", "name", port,
                    "netns", sw], check=True)
    for args in (["-n", sw, "link", "set", port, "master", "br0"], ["-n", sw, "link", "set", port, "up"],
                 ["-n", node.netns, "addr", "add", address, "dev", ifname],
                 ["-n", node.netns, "link", "set", ifname, "up"]):
        subprocess.run(["ip", *args], check=True)


def ifindex(node, ifname: str = "eth0") -> int:
    return int(node.run(["cat", f"/sys/class/net/{ifname}/ifindex"]).stdout)


def steady(cond, seconds: float, what: str) -> None:
    """``cond`` holds at every sample for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert cond(), what
        time.sleep(0.1)


def test_backup_interface_deleted_and_recreated_keeps_one_vip_holder(topology, tmp_path):
    from chimeha.lab.node import add_node

    ka_node = add_node(topology, "ka", "10.77.0.11/24")
    ch_node = add_node(topology, "ch", "10.77.0.12/24")
    ka = Keepalived(ka_node, conf(200), tmp_path / "ka.log")
    ch = NodeDaemon(ch_node, conf(100), tmp_path / "ch.log").start()
    try:
        wait_until(lambda: holds(ka_node) and "-> BACKUP" in ch.log(), 15, "keepalived MASTER, chime-ha BACKUP")
        before = ifindex(ch_node)
        subprocess.run(["ip", "-n", ch_node.netns, "link", "del", "eth0"], check=True)
        wait_until(lambda: "-> FAULT" in ch.log(), 5, "chime-ha in FAULT without its interface")
        time.sleep(1.0)
        recreate(topology, ch_node, "10.77.0.12/24")
        assert ifindex(ch_node) != before
        time.sleep(1.0)
        # Longer than a Master_Down_Interval (1.8 s): with a dead socket chime-ha would take the VIP here.
        steady(lambda: holders(ka_node, ch_node) == ["ka"], 3.0, "exactly one VIP holder, keepalived")
        assert "VRRP sockets opened on interface index" in ch.log() and ch.log().count("-> BACKUP") >= 2
        assert "No such device" not in ch.log() and "Traceback" not in ch.log()
    finally:
        ch.kill()
        ka.stop()


def test_master_interface_deleted_and_recreated_takes_back_over_alone(topology, tmp_path):
    from chimeha.lab.node import add_node

    ch_node = add_node(topology, "ch", "10.77.0.11/24")
    ka_node = add_node(topology, "ka", "10.77.0.12/24")
    ch = NodeDaemon(ch_node, conf(200), tmp_path / "ch.log").start()
    ka = Keepalived(ka_node, conf(100), tmp_path / "ka.log")
    try:
        wait_until(lambda: holds(ch_node) and not holds(ka_node), 15, "chime-ha MASTER")
        subprocess.run(["ip", "-n", ch_node.netns, "link", "del", "eth0"], check=True)
        wait_until(lambda: holds(ka_node), 10, "keepalived takes over while chime-ha's interface is gone")
        recreate(topology, ch_node, "10.77.0.11/24")
        # Priority 200 preempts again; keepalived must hear the rebuilt socket's adverts to let go.
        wait_until(lambda: holders(ch_node, ka_node) == ["ch"], 15, "chime-ha the only VIP holder again")
        steady(lambda: holders(ch_node, ka_node) == ["ch"], 2.5, "exactly one VIP holder, chime-ha")
        # The GARP sender was re-opened on the new interface too (the old one was bound to the dead index).
        assert "gratuitous announcement" not in ch.log() and "Traceback" not in ch.log()
    finally:
        ch.kill()
        ka.stop()


def test_interface_missing_at_start_waits_in_fault_then_joins(topology, tmp_path):
    from chimeha.lab.node import add_node

    ka_node = add_node(topology, "ka", "10.77.0.11/24")
    ch_node = add_node(topology, "ch", "10.78.0.12/24")  # its eth0 is not the VRRP interface
    ka = Keepalived(ka_node, conf(200), tmp_path / "ka.log")
    ch = NodeDaemon(ch_node, conf(100, iface="eth1", globals_="    dynamic_interfaces\n"),
                    tmp_path / "ch.log").start()
    try:
        wait_until(lambda: "interface eth1 does not exist at start" in ch.log(), 15, "chime-ha waits in FAULT")
        wait_until(lambda: holds(ka_node), 15, "keepalived MASTER")
        time.sleep(1.0)
        assert "started 1 VRRP instance(s)" in ch.log()  # it did not refuse to start
        recreate(topology, ch_node, "10.77.0.12/24", ifname="eth1", port="rx1")
        wait_until(lambda: "-> BACKUP" in ch.log(), 10, "chime-ha BACKUP once eth1 exists")
        steady(lambda: holders(ka_node) == ["ka"] and not holds(ch_node, "eth1"), 2.5, "keepalived the only holder")
        ka.stop()  # priority 0 from keepalived: chime-ha takes over on its new interface
        wait_until(lambda: holds(ch_node, "eth1"), 10, "chime-ha MASTER on eth1")
    finally:
        ch.kill()
        ka.stop()


def test_vrrp_startup_delay_holds_the_takeover_like_keepalived(topology, tmp_path):
    """Alone on the link, with vrrp_startup_delay 3: neither daemon holds the VIP before 3 s, both soon after."""
    from chimeha.lab.node import add_node

    ch_node = add_node(topology, "ch", "10.77.0.11/24")
    ka_node = add_node(topology, "ka", "10.77.0.12/24")
    delay = "    vrrp_startup_delay 3\n"
    t0 = time.monotonic()
    ch = NodeDaemon(ch_node, conf(100, globals_=delay, timers=SLOW).replace("virtual_router_id 77", "virtual_router_id 78")
                    .replace(VIP, "10.77.0.101"), tmp_path / "ch.log").start()
    ka = Keepalived(ka_node, conf(100, globals_=delay, timers=SLOW), tmp_path / "ka.log")
    try:
        wait_until(lambda: "delaying start-up for 3 s" in ch.log(), 10, "chime-ha announces the delay")
        seen = {}
        while time.monotonic() - t0 < 3.0 + 3.6 + 3.0 and len(seen) < 2:
            for name, node, vip in (("ch", ch_node, "10.77.0.101"), ("ka", ka_node, VIP)):
                if name not in seen and vip in node.addresses_on():
                    seen[name] = time.monotonic() - t0
            time.sleep(0.05)
        assert set(seen) == {"ch", "ka"}, (seen, ch.log(), ka.log())
        # Master_Down_Interval (3.61 s) counted from the end of the 3 s delay, for both.
        assert all(v > 3.0 + 3.0 for v in seen.values()), seen
        assert abs(seen["ch"] - seen["ka"]) < 1.5, seen
    finally:
        ch.kill()
        ka.stop()


def test_ipv6_instance_without_link_local_waits_in_fault_and_recovers(tmp_path, topology):
    from chimeha.lab.node import add_node

    ch_node = add_node(topology, "ch", "10.77.0.11/24")
    ch_node.run(["ip", "-6", "addr", "flush", "dev", "eth0", "scope", "link"])
    v6 = """vrrp_instance VI_6 {
    state BACKUP
    interface eth0
    virtual_router_id 79
    priority 100
    version 3
    advert_int 0.5
    virtual_ipaddress {
        fd77::100/64
    }
}
"""
    ch = NodeDaemon(ch_node, v6, tmp_path / "ch.log").start()
    try:
        wait_until(lambda: "interface eth0 has no IPv6 link-local address at start" in ch.log(), 15,
                   "chime-ha waits in FAULT without a link-local address")
        time.sleep(1.0)
        assert "fd77::100" not in ch_node.addresses_on() and "started 1 VRRP instance(s)" in ch.log()
        ch_node.run(["ip", "-6", "addr", "add", "fe80::11/64", "dev", "eth0", "nodad"])
        wait_until(lambda: "FAULT -> BACKUP" in ch.log(), 10, "BACKUP once the link-local address exists")
        wait_until(lambda: "fd77::100" in ch_node.addresses_on(), 10, "MASTER with the IPv6 VIP")
        assert "cannot send" not in ch.log() and "Traceback" not in ch.log()
    finally:
        ch.kill()
