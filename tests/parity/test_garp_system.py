"""Split brain heals, the surviving master re-announces: against real keepalived 2.2.7 (issue 10 item 2).

chime-ha (priority 200) and keepalived (priority 100) share a VIP; a client
namespace talks to it. VRRP between them is cut (nftables in chime-ha's
node drops protocol 112 both ways): keepalived takes over and its gratuitous
ARPs point the client at its MAC. When the adverts flow again, chime-ha
hears a lower-priority master and, as keepalived does
(garp_lower_prio_repeat), sends gratuitous ARPs: the client's ARP entry
goes back to chime-ha's MAC. The partition heals one direction first
(keepalived's adverts reach chime-ha, chime-ha's do not yet reach it), so
those announcements are the only thing that can move the client back while
keepalived still claims the VIP; main's chime-ha leaves it on keepalived's
MAC.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from nodeproc import NodeDaemon, start_tcpdump, wait_until

pytestmark = [pytest.mark.system, pytest.mark.keepalived]

VIP = "10.76.0.100"


def conf(prio: int, extra: str = "") -> str:
    # Not timing tests: VRRPv3 at 0.5 s makes Master_Down_Interval ~1.8 s instead of ~3.6 s.
    return f"""vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 76
    priority {prio}
    version 3
    advert_int 0.5
{extra}    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"""


def mac(host) -> str:
    return host.run(["cat", "/sys/class/net/eth0/address"]).stdout.strip()


def client_mac(client) -> str | None:
    out = client.run(["ip", "neigh", "show", VIP, "dev", "eth0"], check=False).stdout
    m = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return m.group(1) if m else None


def nft(node, script: str) -> None:
    node.run(["nft", "-f", "-"], input=script)


def cut_vrrp(node) -> None:
    nft(node, "table inet part {\n chain in { type filter hook input priority 0; ip protocol vrrp drop; }\n"
              " chain out { type filter hook output priority 0; ip protocol vrrp drop; }\n}\n")


def test_surviving_master_reannounces_when_it_hears_the_lower_priority_master(topology, tmp_path):
    from chimeha.lab.node import add_node

    ch_node = add_node(topology, "ch", "10.76.0.11/24")
    ka_node = add_node(topology, "ka", "10.76.0.12/24")
    client = topology.add_host("cl", "10.76.0.50/24")
    ch = NodeDaemon(ch_node, conf(200, "    garp_master_delay 1\n"), tmp_path / "ch.log").start()
    ka_node.write_file("/etc/keepalived/ka.conf", conf(100, "    garp_master_delay 1\n"))
    ka_log = open(tmp_path / "ka.log", "ab")
    ka = None
    try:
        # keepalived starts once chime-ha is MASTER: it hears the adverts from its first
        # Master_Down_Interval on and never claims the VIP before the partition (with both
        # started at once keepalived, the faster to start, could win for a moment and its
        # delayed GARP burst would then point the client at it)
        wait_until(lambda: VIP in ch_node.addresses_on() and "-> MASTER" in ch.log(), 15, "chime-ha MASTER")
        ka = ka_node.popen(["keepalived", "-n", "-l", "-D", "-f", "/etc/keepalived/ka.conf", "-p", "/run/ka.pid",
                            "-r", "/run/ka-vrrp.pid", "-c", "/run/ka-chk.pid"], stdout=ka_log, stderr=subprocess.STDOUT)
        wait_until(lambda: "Entering BACKUP STATE" in (tmp_path / "ka.log").read_text(errors="replace"), 10,
                   "keepalived BACKUP")
        client.run(["ping", "-c", "1", "-W", "1", VIP])
        assert client_mac(client) == mac(ch_node)
        cut_vrrp(ch_node)
        wait_until(lambda: VIP in ka_node.addresses_on(), 10, "keepalived takes over during the partition")
        wait_until(lambda: client_mac(client) == mac(ka_node), 5, "the client follows keepalived's GARP")
        time.sleep(2.5)  # keepalived's second burst (garp_master_delay 1) is over
        assert client_mac(client) == mac(ka_node)
        # Heal keepalived -> chime-ha only: chime-ha hears the lower-priority master.
        nft(ch_node, "delete chain inet part in\n")
        wait_until(lambda: client_mac(client) == mac(ch_node), 3,
                   "chime-ha's gratuitous ARPs point the client back at it")
        assert VIP in ka_node.addresses_on()  # keepalived still claims the VIP: only our GARPs moved it
        assert "lower priority 100" in ch.log()
        nft(ch_node, "delete table inet part\n")
        wait_until(lambda: VIP not in ka_node.addresses_on(), 5, "keepalived yields once it hears us")
        client.run(["ping", "-c", "3", "-i", "0.2", "-W", "1", VIP])
        assert client_mac(client) == mac(ch_node) and VIP in ch_node.addresses_on()
    finally:
        ch.kill()
        if ka is not None:
            ka_node.stop(ka, grace=5)
        ka_log.close()


def test_higher_prio_send_advert_lets_keepalived_hear_the_yielding_master(topology, tmp_path):
    """chime-ha (100, higher_prio_send_advert) yields to keepalived (200) with one advert of its own, on the wire.

    The cut is in keepalived's node; its output heals first, so chime-ha hears
    priority 200 while chime-ha's answer cannot reach keepalived yet: the
    client namespace's capture must show that one answer, and then silence.
    """
    from chimeha.lab.node import add_node

    ka_node = add_node(topology, "ka", "10.76.0.11/24")
    ch_node = add_node(topology, "ch", "10.76.0.12/24")
    client = topology.add_host("cl", "10.76.0.50/24")
    ka_node.write_file("/etc/keepalived/ka.conf", conf(200))
    ka_log = open(tmp_path / "ka.log", "ab")
    ka = ka_node.popen(["keepalived", "-n", "-l", "-D", "-f", "/etc/keepalived/ka.conf", "-p", "/run/ka.pid",
                        "-r", "/run/ka-vrrp.pid", "-c", "/run/ka-chk.pid"], stdout=ka_log, stderr=subprocess.STDOUT)
    ch = NodeDaemon(ch_node, conf(100, "    higher_prio_send_advert\n"), tmp_path / "ch.log").start()
    cap = None
    try:
        wait_until(lambda: VIP in ka_node.addresses_on() and "-> BACKUP" in ch.log(), 15, "keepalived MASTER")
        cut_vrrp(ka_node)
        wait_until(lambda: VIP in ch_node.addresses_on(), 10, "chime-ha takes over during the partition")
        cap = client.popen(["tcpdump", "-l", "-n", "-tt", "-i", "eth0", "ip proto 112"], stdout=subprocess.PIPE,
                           text=True)
        time.sleep(1.5)
        nft(ka_node, "delete chain inet part out\n")  # keepalived's adverts flow, chime-ha's are still dropped there
        wait_until(lambda: VIP not in ch_node.addresses_on(), 5, "chime-ha yields to priority 200")
        time.sleep(1.5)  # three advert intervals of silence from us
        cap.terminate()
        out, _ = cap.communicate(timeout=5)
        seen = [(float(m.group(1)), m.group(2), int(m.group(3))) for m in
                re.finditer(r"^(\d+\.\d+) IP (\S+) > \S+ VRRPv3, Advertisement, vrid 76, prio (\d+)", out, re.M)]
        first_ka = next(t for t, src, prio in seen if src == "10.76.0.11" and prio == 200)
        ours_after = [(t - first_ka, prio) for t, src, prio in seen if src == "10.76.0.12" and t >= first_ka]
        # Exactly one advert of ours, at our priority, right after keepalived's first (then we are BACKUP).
        assert len(ours_after) == 1 and ours_after[0][1] == 100 and ours_after[0][0] < 0.1, (ours_after, out)
    finally:
        if cap is not None and cap.poll() is None:
            cap.kill()
        ch.kill()
        ka_node.stop(ka, grace=5)
        ka_log.close()


def test_vrrp_garp_interval_paces_the_burst_like_keepalived(topology, tmp_path):
    """vrrp_garp_interval 0.2, two VIPs, garp_master_repeat 3: GARPs at least 0.2 s apart, from either daemon."""
    from chimeha.lab.node import add_node

    text = ("global_defs {{\n    vrrp_garp_interval 0.2\n}}\nvrrp_instance VI_1 {{\n    state BACKUP\n"
            "    interface eth0\n    virtual_router_id {vrid}\n    priority 100\n    version 3\n    advert_int 0.5\n"
            "    garp_master_repeat 3\n    garp_master_delay 30\n    virtual_ipaddress {{\n        {a}/24\n"
            "        {b}/24\n    }}\n}}\n")
    ch_node = add_node(topology, "ch", "10.76.0.11/24")
    ka_node = add_node(topology, "ka", "10.76.0.12/24")
    client = topology.add_host("cl", "10.76.0.50/24")
    cap = start_tcpdump(client, ["-l", "-n", "-e", "-tt", "-i", "eth0", "arp"])
    ch = NodeDaemon(ch_node, text.format(vrid=81, a="10.76.0.101", b="10.76.0.102"), tmp_path / "ch.log").start()
    ka_node.write_file("/etc/keepalived/ka.conf", text.format(vrid=82, a="10.76.0.111", b="10.76.0.112"))
    ka_log = open(tmp_path / "ka.log", "ab")
    ka = ka_node.popen(["keepalived", "-n", "-l", "-D", "-f", "/etc/keepalived/ka.conf", "-p", "/run/ka.pid",
                        "-r", "/run/ka-vrrp.pid", "-c", "/run/ka-chk.pid"], stdout=ka_log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: {"10.76.0.101", "10.76.0.102"} <= ch_node.addresses_on()
                   and {"10.76.0.111", "10.76.0.112"} <= ka_node.addresses_on(), 15, "both MASTER")
        time.sleep(3.0)  # 6 x 0.2 s, with room
        cap.terminate()
        out, _ = cap.communicate(timeout=5)
        (tmp_path / "arp.txt").write_text(out)
        for node, vips in ((ch_node, ("10.76.0.101", "10.76.0.102")), (ka_node, ("10.76.0.111", "10.76.0.112"))):
            src = mac(node)
            times = [float(line.split()[0]) for line in out.splitlines()
                     if src in line and "Request who-has" in line and any(f"who-has {v} " in line for v in vips)]
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert min(gaps) >= 0.19, (node.name, gaps)
            # Measured: keepalived 2.2.7 keeps one pending GARP per address while paced, so the
            # repeats collapse (3 here: .111, .111, .112); chime-ha sends every repeat, paced.
            assert len(times) == (6 if node is ch_node else 3), (node.name, out)
    finally:
        if cap.poll() is None:
            cap.kill()
        ch.kill()
        ka_node.stop(ka, grace=5)
        ka_log.close()
