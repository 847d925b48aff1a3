"""The node's interface input: missing at start, deleted, re-created with a new index, no link-local (fake clock)."""

import pytest

from chimeha.vrrp import packet
from chimeha.vrrp.events import (AddAddresses, InstanceSpec, InterfaceChanged, RemoveAddresses, SendAdvert, State,
                                 StateChanged)
from chimeha.vrrp.node import VrrpNode
from chimeha.vrrp.timing import master_down_interval

VIP = "10.0.0.100"


def spec(name="VI_1", vrid=51, prio=100, iface="eth0", family=4, src="10.0.0.1", **kw):
    return InstanceSpec(name, vrid, prio, interface=iface, family=family, primary_address=src,
                        advert_addresses=(VIP,), virtual_ipaddresses=(VIP,), garp_master_delay=0, **kw)


def to_master(node, name="VI_1"):
    while node.state(name) is not State.MASTER:
        node.handle_timer(node.get_timer())
    return node.pop_actions()


def test_interface_missing_at_start_waits_in_fault_and_recovers_when_it_appears():
    node = VrrpNode([spec()])
    node.set_interface("eth0", False, None, 0.0)
    node.start(0.0)
    acts = node.pop_actions()
    change = next(a for a in acts if isinstance(a, StateChanged))
    assert change.new is State.FAULT and change.reason == "interface eth0 does not exist at start"
    assert node.get_timer() is None and not [a for a in acts if isinstance(a, (SendAdvert, AddAddresses))]
    assert node.instance_status("VI_1").faults == ("interface eth0 does not exist",)
    node.set_interface("eth0", True, 7, 5.0, sources={4: "10.0.0.1"})
    acts = node.pop_actions()
    # The socket is (re)built before the instance may send: the event comes first.
    assert isinstance(acts[0], InterfaceChanged) and (acts[0].ifindex, acts[0].old_ifindex) == (7, None)
    assert [(a.old, a.new) for a in acts if isinstance(a, StateChanged)] == [(State.FAULT, State.BACKUP)]
    assert node.get_timer() == pytest.approx(5.0 + master_down_interval(100, 1.0))
    to_master(node)
    assert node.owned_vips() == {VIP}


def test_deleted_interface_releases_master_and_recreated_one_with_a_new_index_recovers():
    node = VrrpNode([spec(prio=200)])
    node.set_interface("eth0", True, 3, 0.0, sources={4: "10.0.0.1"})
    node.start(0.0)
    assert not [a for a in node.pop_actions() if isinstance(a, InterfaceChanged)]  # first report: recorded only
    to_master(node)
    node.set_interface("eth0", False, None, 10.0)
    acts = node.pop_actions()
    assert isinstance(acts[0], InterfaceChanged) and (acts[0].present, acts[0].old_ifindex) == (False, 3)
    assert [(a.old, a.new) for a in acts if isinstance(a, StateChanged)] == [(State.MASTER, State.FAULT)]
    assert any(isinstance(a, RemoveAddresses) for a in acts) and node.owned_vips() == frozenset()
    node.set_interface("eth0", False, None, 10.5)  # the same news twice: nothing
    assert node.pop_actions() == []
    node.set_interface("eth0", True, 9, 12.0, sources={4: "10.0.0.1"})
    acts = node.pop_actions()
    assert isinstance(acts[0], InterfaceChanged) and (acts[0].ifindex, acts[0].old_ifindex) == (9, None)
    assert node.state("VI_1") is State.BACKUP and node.interface_index("eth0") == 9
    # A peer's advert reaches the node again: it stays BACKUP (one VIP holder).
    node.receive_datagram(packet.encode(2, 51, 250, [VIP], 1.0, source="10.0.0.2"), "10.0.0.2", packet.MCAST_V4,
                          255, 4, "eth0", 12.5)
    node.handle_timer(12.5 + master_down_interval(200, 1.0) - 0.1)
    assert node.state("VI_1") is State.BACKUP and node.owned_vips() == frozenset()


def test_a_new_index_without_a_gap_is_reported():
    node = VrrpNode([spec()])
    node.set_interface("eth0", True, 3, 0.0)
    node.start(0.0)
    node.pop_actions()
    node.set_interface("eth0", True, 4, 1.0)  # deleted and re-created between two netlink reads
    acts = node.pop_actions()
    assert acts == [InterfaceChanged("eth0", True, 4, 3, 1.0)]
    assert node.state("VI_1") is State.BACKUP


def test_ipv6_instance_without_link_local_waits_in_fault_and_learns_the_address():
    node = VrrpNode([spec(family=6, src="", vrid=52)])
    node.set_interface("eth0", True, 3, 0.0, sources={6: None})
    node.start(0.0)
    acts = node.pop_actions()
    assert next(a for a in acts if isinstance(a, StateChanged)).reason == (
        "interface eth0 has no IPv6 link-local address at start")
    node.set_interface("eth0", True, 3, 2.0, sources={6: "fe80::1"})
    acts = node.pop_actions()
    assert not [a for a in acts if isinstance(a, InterfaceChanged)]  # same index: the sockets stay
    assert node.state("VI_1") is State.BACKUP and node.spec("VI_1").primary_address == "fe80::1"
    assert node.instance_status("VI_1").faults == ()


def test_configured_source_needs_no_interface_address_and_other_interfaces_are_untouched():
    node = VrrpNode([spec(source_configured=True), spec("B", vrid=52, iface="eth1")])
    node.set_interface("eth0", True, 3, 0.0, sources={4: None})
    node.start(0.0)
    assert node.state("VI_1") is State.BACKUP and node.spec("VI_1").primary_address == "10.0.0.1"
    assert node.set_interface("eth1", False, None, 1.0) == ("B",)
    assert node.state("B") is State.FAULT and node.state("VI_1") is State.BACKUP


def test_interface_fault_and_track_fault_both_must_clear():
    from chimeha.vrrp.events import TrackSpec

    node = VrrpNode([spec(tracks=(TrackSpec("eth0", "interface", 0, False),))])
    node.set_interface("eth0", True, 3, 0.0)
    node.start(0.0)
    node.set_tracked("eth0", False, 1.0, kind="interface")
    node.set_interface("eth0", False, None, 1.0)
    node.set_interface("eth0", True, 4, 2.0)
    assert node.state("VI_1") is State.FAULT  # carrier still down
    node.set_tracked("eth0", True, 3.0, kind="interface")
    assert node.state("VI_1") is State.BACKUP


def test_reload_adds_an_instance_on_a_missing_interface_in_fault():
    node = VrrpNode([spec()])
    node.set_interface("eth1", False, None, 0.0)
    node.start(0.0)
    node.apply_reload(node.plan_reload([spec(), spec("B", vrid=52, iface="eth1")]), 1.0)
    assert node.state("B") is State.FAULT and node.state("VI_1") is State.BACKUP
    node.set_interface("eth1", True, 5, 2.0)
    assert node.state("B") is State.BACKUP


def test_dynamic_interfaces_takes_keepalived_s_allow_if_changes_option():
    from chimeha.config import loads

    for text, warned in (("dynamic_interfaces", False), ("dynamic_interfaces allow_if_changes", False),
                         ("dynamic_interfaces bogus", True)):
        res = loads(f"global_defs {{\n  {text}\n}}\n", "k.conf")
        assert res.ok and res.config.global_defs.dynamic_interfaces is True
        msgs = [str(d) for d in res.diagnostics]
        assert bool(msgs) is warned, msgs
        if warned:
            assert msgs == ["k.conf:2: warning: unknown dynamic_interfaces option 'bogus' (keepalived knows only "
                            "allow_if_changes); ignored [invalid-value]"]
