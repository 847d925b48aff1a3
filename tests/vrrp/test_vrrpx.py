"""Issue 10 item 5 in the pure core (fake clock): multicast group, unicast_fault_no_peer, priority events, removal.

Specs come from real configuration text through ``vrrp.from_config`` so the
keyword -> spec glue is covered too.
"""

from __future__ import annotations

from dataclasses import replace

from chimeha.config import loads
from chimeha.sim.segment import Segment
from chimeha.vrrp import packet
from chimeha.vrrp.events import InstanceRemoved, PacketDropped, PriorityChanged, State, StateChanged
from chimeha.vrrp.from_config import instance_specs, sync_groups
from chimeha.vrrp.instance import VrrpInstance
from chimeha.vrrp.node import VrrpNode


def inst(name="VI_1", vrid=51, extra="", prio=100, vip="10.0.0.100/24", state="BACKUP") -> str:
    return (f"vrrp_instance {name} {{\n state {state}\n interface eth0\n virtual_router_id {vrid}\n"
            f" priority {prio}\n advert_int 1\n version 3\n mcast_src_ip 10.0.0.1\n{extra}"
            f" virtual_ipaddress {{\n  {vip}\n }}\n}}\n")


def specs(text: str):
    res = loads(text, "node.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    return res.config, instance_specs(res.config)


# -- the group in the spec -----------------------------------------------------------------
def test_group_comes_from_mcast_dst_ip_then_global_then_standard():
    _, (a, b, c) = specs("global_defs {\n vrrp_mcast_group4 224.0.0.77\n}\n"
                         + inst("A", 1, " mcast_dst_ip 224.0.0.99\n") + inst("B", 2)
                         + inst("C", 3, " unicast_peer {\n  10.0.0.2\n }\n"))
    assert (a.mcast_group, b.mcast_group, c.mcast_group) == ("224.0.0.99", "224.0.0.77", "")
    _, (d,) = specs(inst("D", 4))
    assert d.mcast_group == ""  # the standard group


def test_ipv6_group_from_global_defs():
    _, (a,) = specs("global_defs {\n vrrp_mcast_group6 ff02::99\n}\n"
                    + inst("A", 1, vip="fd00::100/64").replace(" mcast_src_ip 10.0.0.1\n", ""))
    assert (a.family, a.mcast_group) == (6, "ff02::99")


def test_invalid_groups_leave_the_standard_group():
    _, (a, b) = specs("global_defs {\n vrrp_mcast_group4 10.1.2.3\n}\n"
                      + inst("A", 1, " mcast_dst_ip 10.9.9.9\n") + inst("B", 2, " mcast_dst_ip ff02::5\n"))
    assert (a.mcast_group, b.mcast_group) == ("", "")


# -- the group on the wire (sans I/O) ------------------------------------------------------
def _advert_to(group: str, src="10.0.0.2", prio=200) -> bytes:
    return packet.encode(3, 51, prio, ("10.0.0.100",), 1.0, family=4, source=src, destination=group)


def test_node_accepts_its_group_and_drops_the_standard_one():
    _, (s,) = specs(inst(extra=" mcast_dst_ip 224.0.0.99\n"))
    node = VrrpNode([s])
    node.start(0.0)
    node.pop_actions()
    node.receive_datagram(_advert_to("224.0.0.18"), "10.0.0.2", "224.0.0.18", 255, 4, "eth0", 0.5)
    drops = [a for a in node.pop_actions() if isinstance(a, PacketDropped)]
    assert [d.reason for d in drops] == ["group"] and "224.0.0.99" in drops[0].detail
    node.receive_datagram(_advert_to("224.0.0.99"), "10.0.0.2", "224.0.0.99", 255, 4, "eth0", 0.6)
    assert not [a for a in node.pop_actions() if isinstance(a, PacketDropped)]
    assert node.instance_status("VI_1").received == 1


def test_v3_checksum_covers_the_group():
    _, (s,) = specs(inst(extra=" mcast_dst_ip 224.0.0.99\n"))
    exp = packet.expectation_for(s)
    wrong_sum = _advert_to("224.0.0.18")  # summed over the standard group, sent to ours
    res = packet.validate(wrong_sum, source="10.0.0.2", destination="224.0.0.99", ttl=255, family=4, expect=exp)
    assert isinstance(res, packet.Drop) and res.reason is packet.DropReason.CHECKSUM


def test_standard_group_instance_still_drops_other_groups():
    _, (s,) = specs(inst())
    res = packet.validate(_advert_to("224.0.0.99"), source="10.0.0.2", destination="224.0.0.99", ttl=255,
                          family=4, expect=packet.expectation_for(s))
    assert isinstance(res, packet.Drop) and res.reason is packet.DropReason.GROUP


def test_socket_keys_list_the_groups_to_join():
    _, sp = specs(inst("A", 1, " mcast_dst_ip 224.0.0.99\n") + inst("B", 2)
                  + inst("C", 3, " unicast_peer {\n  10.0.0.2\n }\n").replace("eth0", "eth1"))
    keys = VrrpNode(sp).socket_keys()
    assert keys == {("eth0", 4): frozenset({"224.0.0.99", "224.0.0.18"}), ("eth1", 4): frozenset()}
    assert not keys[("eth1", 4)]  # unicast only: no group (falsy, as the old True/False was)


def test_simulated_pair_on_a_custom_group_elects_one_master():
    base = "global_defs {\n vrrp_mcast_group4 224.0.0.77\n}\n"
    seg = Segment()
    for name, prio, addr in (("a", 200, "10.0.0.1"), ("b", 100, "10.0.0.2")):
        _, (s,) = specs(base + inst(prio=prio).replace("mcast_src_ip 10.0.0.1", f"mcast_src_ip {addr}"))
        seg.add_node(name, addr, [s])
    seg.start()
    seg.run_until(5.0)
    assert (seg.state("a", "VI_1"), seg.state("b", "VI_1")) == (State.MASTER, State.BACKUP)
    assert not any(reason == "group" for (_n, reason) in seg.drops)


# -- unicast_fault_no_peer ---------------------------------------------------------------------
def test_unicast_fault_no_peer_without_peers_holds_fault_for_good():
    _, (s,) = specs(inst(extra=" unicast_src_ip 10.0.0.1\n unicast_fault_no_peer\n"))
    assert s.config_fault and "unicast_fault_no_peer" in s.config_fault
    i = VrrpInstance(s)
    i.start(0.0)
    changes = [a for a in i.pop_actions() if isinstance(a, StateChanged)]
    assert [(c.old, c.new) for c in changes] == [(State.INIT, State.FAULT)]
    assert "unicast_fault_no_peer" in changes[0].reason
    i.handle_timer(100.0)
    i.set_link(None, 101.0)  # nothing else can lift it
    assert i.state is State.FAULT and i.in_fault and s.config_fault in i.faults


def test_unicast_fault_no_peer_with_peers_runs_normally():
    _, (s,) = specs(inst(extra=" unicast_fault_no_peer\n unicast_peer {\n  10.0.0.2\n }\n"))
    assert s.config_fault is None
    i = VrrpInstance(s)
    i.start(0.0)
    i.handle_timer(10.0)
    assert i.state is State.MASTER


def test_unicast_ttl_reaches_the_spec_only_with_peers():
    _, (a, b) = specs(inst("A", 1, " unicast_ttl 7\n unicast_peer {\n  10.0.0.2\n }\n")
                      + inst("B", 2, " unicast_ttl 7\n"))
    assert (a.unicast_ttl, b.unicast_ttl) == (7, None)


# -- priority change as an event ------------------------------------------------------------------
def test_priority_changed_carries_the_state_it_happened_in():
    text = "vrrp_script chk {\n script /bin/true\n weight -30\n}\n" + inst(extra=" track_script {\n  chk\n }\n")
    _, (s,) = specs(text)
    i = VrrpInstance(s)
    i.start(0.0)
    i.set_tracked("chk", False, 1.0)
    (pc,) = [a for a in i.pop_actions() if isinstance(a, PriorityChanged)]
    assert (pc.old, pc.new, pc.state) == (100, 70, State.BACKUP)
    i.set_tracked("chk", True, 2.0)
    i.handle_timer(10.0)
    assert i.state is State.MASTER
    i.pop_actions()
    i.set_tracked("chk", False, 11.0)
    (pc,) = [a for a in i.pop_actions() if isinstance(a, PriorityChanged)]
    assert (pc.new, pc.state) == (70, State.MASTER)


# -- removal by a reload ----------------------------------------------------------------------------
def test_reload_removal_is_reported_after_the_shutdown_with_the_state_before():
    _, both = specs(inst("A", 1) + inst("B", 2, vip="10.0.0.101/24"))
    node = VrrpNode(both)
    node.start(0.0)
    node.handle_timer(10.0)
    node.pop_actions()
    plan = node.plan_reload([both[0]])
    node.apply_reload(plan, 20.0)
    acts = node.pop_actions()
    removed = [a for a in acts if isinstance(a, InstanceRemoved)]
    assert removed == [InstanceRemoved("B", State.MASTER, 100, 20.0)]
    stop = next(k for k, a in enumerate(acts) if isinstance(a, StateChanged) and a.instance == "B")
    assert acts.index(removed[0]) > stop
    assert node.state("B") is None


def test_sync_group_config_reaches_groups():
    cfg, _ = specs("vrrp_sync_group G {\n group {\n  A\n }\n notify_priority_changes\n}\n" + inst("A", 1))
    assert cfg.sync_groups["G"].notify_priority_changes is True and sync_groups(cfg) == {"G": ("A",)}
    assert replace(cfg.instances["A"]).notify_priority_changes is None
