"""use_vmac in network namespaces (issue 10 item 4): the macvlan, its MAC, the VIP on it, the client's ARP entry.

The last test pairs chime-ha with a real keepalived 2.2.7 (also use_vmac)
and fails over both ways: the client's neighbour entry for the VIP must
stay the virtual MAC 00:00:5e:00:01:VRID throughout, which is the point of
a VMAC (no client has to learn a new MAC at a failover).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
from nodeproc import NodeDaemon, start_tcpdump, wait_until  # noqa: E402

pytestmark = [pytest.mark.system]

# The VIP's subnet is not the base interface's: the node's replies to the client then leave by the
# VMAC too. With the VIP in eth0's subnet, keepalived 2.2.7 and chime-ha alike answer from eth0
# (its prefix route comes first) and their ARP requests teach the client eth0's MAC (docs/vrrp.md).
VIP = "10.78.0.100"
CLIENT = "10.78.0.50/24"
VRID = 77
VMAC = "00:00:5e:00:01:4d"  # 77 = 0x4d


# Not timing tests: VRRPv3 at 0.5 s halves every Master_Down_Interval (~1.8 s instead of ~3.6 s).
# V2 where the test reads VRRPv2 adverts off the wire, paces GARPs, or quotes a config line number.
FAST = "    version 3\n    advert_int 0.5\n"
V2 = "    advert_int 1\n"


def conf(prio: int, extra: str = "", vmac: str = "use_vmac", timers: str = FAST) -> str:
    return f"""vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id {VRID}
    priority {prio}
{timers}    {vmac}
    garp_master_delay 1
{extra}    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"""


def links(node) -> dict[str, dict]:
    return {d["ifname"]: d for d in json.loads(node.run(["ip", "-j", "-d", "link"]).stdout)}


def sysctl(node, path: str) -> str:
    return node.run(["cat", f"/proc/sys/net/{path}"]).stdout.strip()


def client_mac(client) -> str | None:
    out = client.run(["ip", "neigh", "show", VIP, "dev", "eth0"], check=False).stdout
    m = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return m.group(1) if m else None


def start_keepalived(node, text: str, log: Path):
    node.write_file("/etc/keepalived/ka.conf", text)
    fh = open(log, "ab")
    proc = node.popen(["keepalived", "-n", "-l", "-D", "-f", "/etc/keepalived/ka.conf", "-p", "/run/ka.pid",
                       "-r", "/run/ka-vrrp.pid", "-c", "/run/ka-chk.pid"], stdout=fh, stderr=subprocess.STDOUT)
    return proc, fh


def test_master_holds_the_vip_on_a_private_macvlan_with_the_virtual_mac(topology, tmp_path):
    from chimeha.lab.node import add_node

    node = add_node(topology, "ch", "10.77.0.11/24")
    client = topology.add_host("cl", CLIENT)
    before = {k: sysctl(node, f"ipv4/conf/eth0/{k}") for k in ("arp_ignore", "arp_filter")}
    ch = NodeDaemon(node, conf(200), tmp_path / "ch.log").start()
    try:
        wait_until(lambda: VIP in node.addresses_on("vrrp.77"), 15, "the VIP on vrrp.77")
        link = links(node)["vrrp.77"]
        assert link["address"] == VMAC and link["link"] == "eth0"
        info = link["linkinfo"]
        assert info["info_kind"] == "macvlan" and info["info_data"]["mode"] == "private"
        assert "UP" in link["flags"]
        assert VIP not in node.addresses_on("eth0")
        # keepalived's sysctls: only the VMAC answers ARP for the VIP
        assert [sysctl(node, f"ipv4/conf/vrrp.77/{k}") for k in ("arp_ignore", "accept_local", "rp_filter")] \
            == ["1", "1", "0"]
        assert [sysctl(node, f"ipv4/conf/eth0/{k}") for k in ("arp_ignore", "arp_filter")] == ["1", "1"]
        assert sysctl(node, "ipv6/conf/vrrp.77/disable_ipv6") == "1"
        client.run(["ping", "-c", "2", "-i", "0.2", "-W", "1", VIP])
        assert client_mac(client) == VMAC
        # deleted under us: re-created, the VIP back on it
        node.run(["ip", "link", "del", "vrrp.77"])
        wait_until(lambda: VIP in node.addresses_on("vrrp.77"), 15, "vrrp.77 re-created with the VIP")
        assert links(node)["vrrp.77"]["address"] == VMAC
        client.run(["ping", "-c", "2", "-i", "0.2", "-W", "1", VIP])
        # a reload keeps it (same index: not re-created)
        index = links(node)["vrrp.77"]["ifindex"]
        ch.signal(1)
        wait_until(lambda: "reloaded" in ch.log(), 10, "reload")
        assert links(node)["vrrp.77"]["ifindex"] == index and VIP in node.addresses_on("vrrp.77")
        assert 'oifname "vrrp.77" ip protocol igmp dup to ip daddr device "eth0" drop' in \
            node.run(["nft", "list", "table", "ip", "chimeha_vmac"]).stdout
        took = ch.terminate(10)
        assert took is not None
        assert "vrrp.77" not in links(node)  # removed at stop
        assert "chimeha_vmac" not in node.run(["nft", "list", "tables"]).stdout
        assert {k: sysctl(node, f"ipv4/conf/eth0/{k}") for k in ("arp_ignore", "arp_filter")} == before
    finally:
        ch.kill()


def test_missing_interface_is_a_file_line_error(topology, tmp_path):
    from chimeha.lab.node import add_node

    node = add_node(topology, "ch", "10.77.0.11/24")
    good = conf(200, timers=V2).replace("VI_1", "VI_0").replace(f"virtual_router_id {VRID}", "virtual_router_id 76")
    ch = NodeDaemon(node, good + conf(200, timers=V2).replace("interface eth0", "interface eth9"),
                    tmp_path / "ch.log").start()
    try:
        ch.proc.wait(timeout=15)
        assert re.search(r"keepalived.conf:13: vrrp_instance VI_1: vrrp\.77: cannot create the macvlan: its interface "
                         r"eth9 does not exist", ch.log()), ch.log()
        assert "Traceback" not in ch.log()
        assert "vrrp.76" not in links(node)  # VI_0's VMAC, made first, is not left behind
    finally:
        ch.kill()


def test_ipvlan_reports_what_the_kernel_says(topology, tmp_path):
    """This machine's kernel has no ipvlan: chime-ha must say so at FILE:LINE and not start (no traceback)."""
    from chimeha.lab.node import add_node

    node = add_node(topology, "ch", "10.77.0.11/24")
    probe = node.run(["ip", "link", "add", "link", "eth0", "name", "ipvprobe", "type", "ipvlan"], check=False)
    if probe.returncode == 0:
        node.run(["ip", "link", "del", "ipvprobe"])
        pytest.skip("this kernel has ipvlan; the failure path cannot be shown")
    ch = NodeDaemon(node, conf(200, vmac="use_ipvlan ipv.77 10.77.0.21/24", timers=V2), tmp_path / "ch.log").start()
    try:
        ch.proc.wait(timeout=15)
        assert re.search(r"keepalived.conf:1: vrrp_instance VI_1: ipv.77: cannot create the ipvlan on eth0: "
                         r"Operation not supported", ch.log()), ch.log()
    finally:
        ch.kill()


@pytest.mark.keepalived
def test_failover_with_keepalived_keeps_the_clients_arp_entry(topology, tmp_path):
    from chimeha.lab.node import add_node

    ch_node = add_node(topology, "ch", "10.77.0.11/24")
    ka_node = add_node(topology, "ka", "10.77.0.12/24")
    client = topology.add_host("cl", CLIENT)
    ch = NodeDaemon(ch_node, conf(200), tmp_path / "ch.log").start()
    ka, ka_log = start_keepalived(ka_node, conf(100), tmp_path / "ka.log")
    seen: list[str | None] = []

    def ping_and_look() -> str | None:
        client.run(["ping", "-c", "1", "-W", "1", VIP], check=False)
        mac = client_mac(client)
        seen.append(mac)
        return mac

    try:
        wait_until(lambda: VIP in ch_node.addresses_on("vrrp.77") and "vrrp.77" in links(ka_node), 20,
                   "chime-ha MASTER, keepalived's VMAC up")
        assert links(ka_node)["vrrp.77"]["address"] == VMAC
        assert ping_and_look() == VMAC
        # chime-ha -> keepalived
        ch.terminate(10)
        wait_until(lambda: VIP in ka_node.addresses_on("vrrp.77"), 10, "keepalived takes over")
        wait_until(lambda: ping_and_look() == VMAC and VIP in ka_node.addresses_on("vrrp.77"), 10,
                   "the client reaches keepalived")
        # the client talks to keepalived now, through the same MAC
        out = ka_node.run(["ip", "-s", "link", "show", "vrrp.77"]).stdout
        assert out
        # keepalived -> chime-ha (priority 200 preempts)
        ch = NodeDaemon(ch_node, conf(200), tmp_path / "ch2.log").start()
        wait_until(lambda: VIP in ch_node.addresses_on("vrrp.77") and VIP not in ka_node.addresses_on("vrrp.77"),
                   15, "chime-ha takes the VIP back")
        for _ in range(5):
            ping_and_look()
            time.sleep(0.2)
        assert [m for m in seen if m is not None] and all(m == VMAC for m in seen if m is not None), seen
        assert "-> MASTER" in ch.log()
    finally:
        ch.kill()
        ka_node.stop(ka, grace=5)
        ka_log.close()


@pytest.mark.parametrize("xmit_base", [False, True])
def test_adverts_leave_from_the_vmac_or_with_vmac_xmit_base_from_the_base(topology, tmp_path, xmit_base):
    from chimeha.lab.node import add_node

    node = add_node(topology, "ch", "10.77.0.11/24")
    client = topology.add_host("cl", CLIENT)
    cap = start_tcpdump(client, ["-l", "-n", "-e", "-i", "eth0", "ip proto 112 or arp or igmp"])
    ch = NodeDaemon(node, conf(200, "    vmac_xmit_base\n" if xmit_base else "", timers=V2), tmp_path / "ch.log").start()
    try:
        wait_until(lambda: VIP in node.addresses_on("vrrp.77"), 15, "MASTER")
        time.sleep(2.5)
        base = node.run(["cat", "/sys/class/net/eth0/address"]).stdout.strip()
        cap.terminate()
        out, _ = cap.communicate(timeout=5)
        adverts = re.findall(r"^\S+ ([0-9a-f:]{17}) > 01:00:5e:00:00:12, .*10\.77\.0\.11 > 224\.0\.0\.18: VRRPv2, "
                             r"Advertisement, vrid 77", out, re.M)
        garps = re.findall(rf"^\S+ ([0-9a-f:]{{17}}) > ff:ff:ff:ff:ff:ff, .*Request who-has {VIP} tell {VIP}", out, re.M)
        assert adverts and set(adverts) == {base if xmit_base else VMAC}, out
        assert garps and set(garps) == {VMAC}, out  # always from the VMAC: the VIP's MAC
        # the join of 224.0.0.18 on the VMAC leaves by the base (keepalived's nftables dup), never as the VMAC
        igmp = re.findall(r"^\S+ ([0-9a-f:]{17}) > \S+, .*> 224\.0\.0\.(?:18|22): igmp", out, re.M)
        assert VMAC not in igmp, out
        if not xmit_base:
            assert base in igmp, out
    finally:
        if cap.poll() is None:
            cap.kill()
        ch.kill()


def test_ipv6_vmac_has_the_ipv6_virtual_mac_and_the_bases_link_local(topology, tmp_path):
    from chimeha.lab.node import add_node

    vip6 = "fd00:78::100"
    node = add_node(topology, "ch", "10.77.0.11/24")
    client = topology.add_host("cl", CLIENT)
    client.run(["ip", "-6", "addr", "add", "fd00:78::50/64", "dev", "eth0", "nodad"])
    text = conf(200).replace(f"{VIP}/24", f"{vip6}/64")
    ch = NodeDaemon(node, text, tmp_path / "ch.log").start()
    try:
        wait_until(lambda: vip6 in node.addresses_on("vrrp.77"), 20, "the IPv6 VIP on vrrp.77")
        assert links(node)["vrrp.77"]["address"] == "00:00:5e:00:02:4d"
        ll = {a for a in node.addresses_on("eth0") if a.startswith("fe80:")}
        on_vmac = {a for a in node.addresses_on("vrrp.77") if a.startswith("fe80:")}
        assert ll and on_vmac == ll  # the base's link-local, no EUI-64 one of the virtual MAC
        assert sysctl(node, "ipv6/conf/vrrp.77/disable_ipv6") == "0"
        client.run(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", vip6])
        out = client.run(["ip", "-6", "neigh", "show", vip6, "dev", "eth0"]).stdout
        assert "lladdr 00:00:5e:00:02:4d" in out, out
        # the adverts: from the VMAC's MAC, with the base's link-local as source (RFC 5798 7.4)
        cap = client.run(["timeout", "5", "tcpdump", "-l", "-n", "-e", "-c", "1", "-i", "eth0", "ip6 proto 112"],
                         check=False).stdout
        assert re.search(rf"00:00:5e:00:02:4d > 33:33:00:00:00:12, .* {ll.pop()} > ff02::12: VRRPv3, Advertisement",
                         cap), cap
    finally:
        ch.kill()


def test_reload_without_use_vmac_moves_the_vip_back_and_removes_the_link(topology, tmp_path):
    from chimeha.lab.node import add_node

    node = add_node(topology, "ch", "10.77.0.11/24")
    before = sysctl(node, "ipv4/conf/eth0/arp_ignore")
    ch = NodeDaemon(node, conf(200), tmp_path / "ch.log").start()
    try:
        wait_until(lambda: VIP in node.addresses_on("vrrp.77"), 15, "the VIP on vrrp.77")
        node.write_file(ch.conf, conf(200, vmac=""))
        ch.signal(1)
        wait_until(lambda: "vrrp.77" not in links(node) and VIP in node.addresses_on("eth0"), 10,
                   "the VIP back on eth0, the VMAC gone")
        assert sysctl(node, "ipv4/conf/eth0/arp_ignore") == before
        node.write_file(ch.conf, conf(200))
        ch.signal(1)
        wait_until(lambda: VIP in node.addresses_on("vrrp.77") and VIP not in node.addresses_on("eth0"), 10,
                   "the VIP on the VMAC again")
    finally:
        ch.kill()


def test_a_vips_use_vmac_and_use_vmac_addr_make_vmacs_of_their_own(topology, tmp_path):
    """No use_vmac on the instance: adverts from eth0, the flagged VIP on vrrp.77; an IPv6 eVIP with
    use_vmac_addr on an IPv4 instance gets vrrp6.77 with the IPv6 virtual MAC."""
    from chimeha.lab.node import add_node

    node = add_node(topology, "ch", "10.77.0.11/24")
    client = topology.add_host("cl", CLIENT)
    text = f"""vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id {VRID}
    priority 200
    version 3
    advert_int 0.5
    garp_master_delay 1
    virtual_ipaddress {{
        {VIP}/24 use_vmac
    }}
}}
vrrp_instance VI_2 {{
    state BACKUP
    interface eth0
    virtual_router_id 78
    priority 200
    version 3
    advert_int 0.5
    use_vmac
    use_vmac_addr
    virtual_ipaddress {{
        10.78.0.101/24
    }}
    virtual_ipaddress_excluded {{
        fd00:78::101/64
    }}
}}
"""
    # (VRRPv3 at 0.5 s: not a timing test, both instances are MASTER after ~1.7 s alone)
    ch = NodeDaemon(node, text, tmp_path / "ch.log").start()
    try:
        wait_until(lambda: VIP in node.addresses_on("vrrp.77") and "fd00:78::101" in node.addresses_on("vrrp6.78"),
                   20, "the VIPs on their VMACs")
        got = links(node)
        assert (got["vrrp.77"]["address"], got["vrrp.78"]["address"], got["vrrp6.78"]["address"]) == (
            VMAC, "00:00:5e:00:01:4e", "00:00:5e:00:02:4e")
        assert "10.78.0.101" in node.addresses_on("vrrp.78")
        client.run(["ping", "-c", "2", "-i", "0.2", "-W", "1", VIP])
        assert client_mac(client) == VMAC
        ch.terminate(10)
        assert not {"vrrp.77", "vrrp.78", "vrrp6.78"} & set(links(node))
    finally:
        ch.kill()


def test_garp_extra_if_refreshes_a_vip_vmac_that_sends_no_adverts(topology, tmp_path):
    from chimeha.lab.node import add_node

    node = add_node(topology, "ch", "10.77.0.11/24")
    client = topology.add_host("cl", CLIENT)
    text = conf(200, "    garp_extra_if 1\n", vmac="", timers=V2).replace(f"{VIP}/24", f"{VIP}/24 use_vmac")
    cap = start_tcpdump(client, ["-l", "-n", "-e", "-tt", "-i", "eth0", "arp"])
    ch = NodeDaemon(node, text, tmp_path / "ch.log").start()
    try:
        wait_until(lambda: VIP in node.addresses_on("vrrp.77"), 15, "the VIP on its own VMAC")
        time.sleep(4.5)
        cap.terminate()
        out, _ = cap.communicate(timeout=5)
        times = [float(m.group(1)) for m in re.finditer(
            rf"^(\d+\.\d+) {VMAC} > ff:ff:ff:ff:ff:ff, .*Request who-has {VIP} tell {VIP}", out, re.M)]
        # the takeover burst (5), the second one a second later (garp_master_delay 1, 5), then one a second
        singles = [b - a for a, b in zip(times, times[1:]) if b - a > 0.5]
        assert len(times) >= 13 and len(singles) >= 3 and all(0.9 < g < 1.2 for g in singles), (times, out)
    finally:
        if cap.poll() is None:
            cap.kill()
        ch.kill()
