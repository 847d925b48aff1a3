"""A non-default VRRP multicast group, chime-ha beside the real keepalived 2.2.7.

Both nodes use one group that is not 224.0.0.18 / ff02::12, each configured
the other way round (``global_defs vrrp_mcast_group4/6`` on one node, the
instance's ``mcast_dst_ip`` on the other). They must elect one master, fail
over when it stops, and take it back; a third host on the bridge captures the
wire: every advert of either daemon goes to the configured group (VRRPv3:
the group is in the checksum's pseudo-header, so keepalived would drop an
advert summed over the standard group), none to the standard one, and the
chime-ha node has joined the group on its interface (``ip maddr``).
"""

from __future__ import annotations

import time

import pytest

from chalab import (Daemon, captured, capturing, mixed_pair, settle_on, stopped_at_end, wait_ipv6_usable,
                    wait_until)

from chimeha.vrrp import packet

pytestmark = [pytest.mark.system, pytest.mark.keepalived]

# Not a timing test: VRRPv3's shortest interval keepalived takes makes the elections and the
# failover quick (hold windows below are several intervals long).
ADVERT = 0.2


def conf(*, me: str, priority: int, state: str, vip: str, group: str, how: str, family: int) -> str:
    lines = ["global_defs {", "    router_id node_" + me.replace(":", "_").replace(".", "_")]
    if how == "global":
        lines.append(f"    vrrp_mcast_group{family} {group}")
    lines += ["}", "vrrp_instance VI_G {", f"    state {state}", "    interface eth0", "    virtual_router_id 61",
              f"    priority {priority}", f"    advert_int {ADVERT}", "    version 3"]
    if how == "instance":
        lines.append(f"    mcast_dst_ip {group}")
    lines += ["    virtual_ipaddress {", f"        {vip}", "    }", "}", ""]
    return "\n".join(lines)


CASES = [
    # family, group, chime-ha is the (higher priority) master, chime-ha's way of naming the group
    pytest.param(4, "224.0.0.99", True, "instance", id="ipv4-chimeha-master-mcast_dst_ip"),
    pytest.param(4, "239.1.2.3", False, "global", id="ipv4-keepalived-master-vrrp_mcast_group4"),
    pytest.param(6, "ff02::99", True, "global", id="ipv6-chimeha-master-vrrp_mcast_group6"),
    pytest.param(6, "ff02::1:5", False, "instance", id="ipv6-keepalived-master-mcast_dst_ip"),
]


@pytest.mark.parametrize("family,group,chime_master,how", CASES)
def test_custom_group_election_failover_and_capture(topology, tmp_path, family, group, chime_master, how):
    from chimeha.lab.node import add_node

    if family == 4:
        a_addr, b_addr, l_addr, vip, plen = "10.8.0.11", "10.8.0.12", "10.8.0.13", "10.8.0.100", 24
        standard = "224.0.0.18"
    else:
        a_addr, b_addr, l_addr, vip, plen = "fd00:8::11", "fd00:8::12", "fd00:8::13", "fd00:8::100", 64
        standard = "ff02::12"
    a = add_node(topology, "a", f"{a_addr}/{plen}")
    b = add_node(topology, "b", f"{b_addr}/{plen}")
    lis = topology.add_host("lis", f"{l_addr}/{plen}")
    if family == 6:
        wait_ipv6_usable(a)
        wait_ipv6_usable(b)
    other = {"global": "instance", "instance": "global"}[how]
    hows = (how, other) if chime_master else (other, how)  # chime-ha's node names the group `how`
    master, backup = mixed_pair(
        a, b, chime_master,
        conf(me=a_addr, priority=200, state="MASTER", vip=f"{vip}/{plen}", group=group, how=hows[0], family=family),
        conf(me=b_addr, priority=100, state="BACKUP", vip=f"{vip}/{plen}", group=group, how=hows[1], family=family),
        tmp_path)
    chime = master if chime_master else backup
    for d in (master, backup):
        text = d.node.read_file(d.conf)
        check = d.node.run(["keepalived", "-t", "-f", d.conf], check=False)
        assert check.returncode == 0, (text, check.stdout + check.stderr)
    capfile = tmp_path / "capture.jsonl"
    nodes = [a, b]
    with capturing(lis, capfile):
        with stopped_at_end(master, backup):
            # The master first, the backup once the master holds the VIP: with 0.2 s adverts a
            # backup started at the same time could time out just as the master comes up, and
            # the brief double master would fail the settle below. The hold outlasts the
            # backup's start (~1 s) plus its Master_Down_Interval (0.72 s): a backup deaf to
            # the group would claim the VIP within it.
            master.start()
            wait_until(lambda: vip in a.addresses_on(), 12, f"{vip} on a")
            backup.start()
            settle_on(nodes, vip, "a", timeout=12, hold=2.0)
            maddr = chime.node.run(["ip", "maddr", "show", "dev", "eth0"]).stdout
            assert group in maddr, maddr  # the kernel holds the membership (and reports it: IGMP / MLD)
            master.stop()  # priority 0: the backup takes over after Skew_Time
            settle_on(nodes, vip, "b", timeout=5, hold=0.5)
            master.start()  # the higher priority preempts back
            settle_on(nodes, vip, "a", timeout=12, hold=1.0)
            assert master.alive() and backup.alive()
            time.sleep(0.3)
    recs = [r for r in captured(capfile) if r["family"] == family]
    by_src: dict[str, set[str]] = {}
    prios: dict[str, set[int]] = {}
    for r in recs:
        by_src.setdefault(r["src"], set()).add(r["dst"])
        prios.setdefault(r["src"], set()).add(bytes.fromhex(r["payload"])[2])
    senders = set(by_src)
    # Both daemons advertised (IPv6 adverts come from the link-local address).
    assert len(senders) == 2, by_src
    assert all(dsts == {group} for dsts in by_src.values()), by_src
    assert not any(r["dst"] == standard for r in recs)
    # Each daemon was master at some point (a twice, b after the stop) and a sent priority 0 when stopped.
    assert any(0 in p for p in prios.values()), prios
    # Every advert on the wire, keepalived's and ours, passes our receive checks for that group (v3 checksum
    # over the group), and an advert summed over the standard group would not.
    exp = packet.Expectation(vrid=61, version=3, family=family, interval=ADVERT, addresses=(vip,), group=group)
    for r in recs:
        raw = bytes.fromhex(r["payload"])
        ok = packet.validate(raw, source=r["src"], destination=r["dst"], ttl=r["ttl"], family=family, expect=exp)
        assert isinstance(ok, packet.Advertisement), (r, ok)
        assert not packet.verify_checksum(raw, ok, source=r["src"], destination=standard)


def test_reload_moves_the_membership_to_the_new_group(topology, tmp_path):
    """SIGHUP with another mcast_dst_ip: the socket joins the new group and leaves the old one."""
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", "10.8.2.11/24")
    text = conf(me="10.8.2.11", priority=200, state="MASTER", vip="10.8.2.100/24", group="224.0.0.99",
                how="instance", family=4)
    d = Daemon(a, "chime-ha", text, tmp_path)

    def groups() -> str:
        return a.run(["ip", "maddr", "show", "dev", "eth0"]).stdout

    try:
        d.start()
        wait_until(lambda: "224.0.0.99" in groups(), 10, "joined 224.0.0.99")
        a.write_file(d.conf, text.replace("224.0.0.99", "224.0.0.98"))
        d.signal("HUP")
        wait_until(lambda: "224.0.0.98" in groups() and "224.0.0.99" not in groups(), 10,
                   f"moved to 224.0.0.98 ({groups()})")
        assert "224.0.0.18" not in groups()  # the standard group was never needed
    except BaseException:
        print(d.log()[-4000:])
        raise
    finally:
        d.stop()
