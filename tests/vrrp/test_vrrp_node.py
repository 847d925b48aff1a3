"""The pure VrrpNode: dispatch, drops, failover timing, split brain, groups, reload plans (fake clock)."""

import pytest

from chimeha.errors import ConfigError, RemoteError
from chimeha.vrrp import packet
from chimeha.vrrp.events import (AddAddresses, GroupStateChanged, InstanceSpec, PacketDropped, RemoveAddresses,
                                 SendAdvert, SendGratuitous, State, StateChanged, TrackSpec, VipsChanged)
from chimeha.vrrp.node import NodeConfigError, VrrpNode
from chimeha.vrrp.timing import advert_centiseconds, wire_interval

MC = packet.MCAST_V4


def spec(name="VI_1", vrid=51, prio=100, iface="eth0", vip="10.0.0.100", src="10.0.0.1", **kw):
    return InstanceSpec(name, vrid, prio, interface=iface, primary_address=src, advert_addresses=(vip,),
                        virtual_ipaddresses=(vip,), **kw)


def advert(vrid=51, prio=200, vip="10.0.0.100", src="10.0.0.2", version=2):
    return packet.encode(version, vrid, prio, [vip], 1.0, source=src)


def kinds(actions):
    return [type(a).__name__ for a in actions]


def test_vrid_clash_is_a_config_error_naming_both_instances():
    with pytest.raises(NodeConfigError) as exc:
        VrrpNode([spec("A", where="x.conf:3: "), spec("B", where="x.conf:9: ")])
    assert isinstance(exc.value, ConfigError)
    assert str(exc.value) == "x.conf:9: vrrp_instance B: virtual_router_id 51 is already used by A on eth0 (IPv4)"
    VrrpNode([spec("A"), spec("B", iface="eth1")])  # the same VRID on another interface is fine


def test_dispatch_by_interface_and_vrid_and_drop_counting():
    node = VrrpNode([spec("A", iface="eth0"), spec("B", iface="eth1", vip="10.0.1.100")])
    node.start(0.0)
    node.pop_actions()
    node.receive_datagram(advert(), "10.0.0.2", MC, 255, 4, "eth0", 0.5)
    assert node.instance("A").master == "10.0.0.2" and node.instance("B").master is None
    node.receive_datagram(advert(), "10.0.0.2", MC, 255, 4, "eth1", 0.6)  # B has another VIP
    node.receive_datagram(advert(), "10.0.0.2", MC, 64, 4, "eth0", 0.7)   # TTL
    node.receive_datagram(b"\x00", "10.0.0.2", MC, 255, 4, "eth0", 0.8)   # too short: no VRID to blame
    node.receive_datagram(advert(vrid=9), "10.0.0.2", MC, 255, 4, "eth0", 0.9)
    drops = [a for a in node.pop_actions() if isinstance(a, PacketDropped)]
    assert [(d.instance, d.interface, d.reason) for d in drops] == [
        ("B", "eth1", "address-list"), ("A", "eth0", "ttl"), ("", "eth0", "length"), ("", "eth0", "vrid-unknown")]
    st = {s.name: s for s in node.status()}
    assert st["A"].drops == {"ttl": 1} and st["A"].received == 1
    assert st["B"].drops == {"address-list": 1} and st["B"].received == 0
    assert dict(node.drops) == {"length": 1, "vrid-unknown": 1}


def test_packet_error_is_remote_and_carries_its_reason():
    with pytest.raises(packet.PacketError) as exc:
        packet.decode(b"\x41" + b"\0" * 7)
    assert isinstance(exc.value, RemoteError) and exc.value.reason is packet.DropReason.VERSION
    with pytest.raises(packet.PacketError) as exc:
        packet.decode(b"\x21\x01", family=4)
    assert exc.value.reason is packet.DropReason.LENGTH


def test_failover_duration_is_last_advert_heard_to_takeover_and_vips_before_advert():
    node = VrrpNode([spec(prio=100)])
    node.start(0.0)
    node.pop_actions()
    node.receive_datagram(advert(prio=200), "10.0.0.2", MC, 255, 4, "eth0", 1.0)
    assert node.get_timer() == pytest.approx(1.0 + 3 + (256 - 100) / 256)
    node.handle_timer(2.0)  # early: nothing
    assert node.pop_actions() == []
    node.handle_timer(node.get_timer())
    acts = node.pop_actions()
    change = next(a for a in acts if isinstance(a, StateChanged))
    assert change.new is State.MASTER and change.failover == pytest.approx(3.609375, abs=1e-4)
    order = [k for k in kinds(acts) if k in ("AddAddresses", "SendGratuitous", "SendAdvert")]
    assert order == ["AddAddresses", "SendGratuitous", "SendAdvert"]
    vips = next(a for a in acts if isinstance(a, VipsChanged))
    assert vips.owned == frozenset({"10.0.0.100"}) and node.owned_vips() == {"10.0.0.100"}
    s = node.instance_status("VI_1")
    assert s.failover_count == 1 and s.failovers == (change.failover,) and s.vips_owned
    assert s.master == "10.0.0.1"


def test_split_brain_status_follows_the_core_events():
    node = VrrpNode([spec(prio=200)])
    node.start(0.0)
    node.handle_timer(node.get_timer())
    node.pop_actions()
    node.receive_datagram(advert(prio=100), "10.0.0.2", MC, 255, 4, "eth0", 5.0)
    s = node.instance_status("VI_1")
    assert s.split_brain and s.split_brain_peer == "10.0.0.2" and s.split_brain_since == 5.0
    gen = node.generation
    node.handle_timer(20.0)  # the rival fell silent
    assert not node.instance_status("VI_1").split_brain and node.generation > gen


def test_sync_group_moves_together_and_is_reported_once_agreed():
    a = spec("A", vrid=1, tracks=(TrackSpec("chk", "script", 0),))
    b = spec("B", vrid=2, vip="10.0.0.101")
    node = VrrpNode([a, b], {"G": ("A", "B")})
    node.start(0.0)
    assert [a for a in node.pop_actions() if isinstance(a, GroupStateChanged)] == [GroupStateChanged("G", "BACKUP", 0.0)]
    touched = node.set_tracked("chk", False, 1.0, kind="script")
    assert touched == ("A",)
    assert node.state("A") is State.FAULT and node.state("B") is State.FAULT
    groups = [a for a in node.pop_actions() if isinstance(a, GroupStateChanged)]
    assert groups == [GroupStateChanged("G", "FAULT", 1.0)]
    assert node.set_tracked("chk", False, 1.5, kind="interface") == ()


def test_send_feedback_is_counted():
    node = VrrpNode([spec()])
    node.note_send("VI_1", True)
    node.note_send("VI_1", False)
    node.note_send("nope", True)
    s = node.instance_status("VI_1")
    assert (s.sent, s.send_errors) == (1, 1)


def _master(node, now=0.0):
    node.start(now)
    for n in node.names:
        if node.state(n) is State.BACKUP:
            node.handle_timer(node.get_timer())
    node.pop_actions()


def test_reload_plan_changes_nothing_and_apply_keeps_changes_removes_adds():
    one, two = spec("VI_1", vrid=1, vip="10.0.0.1/32"), spec("VI_2", vrid=2, vip="10.0.0.2/32")
    node = VrrpNode([one, two])
    _master(node)
    assert node.state("VI_1") is State.MASTER and node.state("VI_2") is State.MASTER
    moved = spec("VI_1", vrid=1, vip="10.0.0.1/32", where="other.conf:40: ")
    three = spec("VI_3", vrid=3, vip="10.0.0.3/32")
    plan = node.plan_reload([moved, three])
    assert (plan.kept, plan.changed, plan.added, plan.removed) == (("VI_1",), (), ("VI_3",), ("VI_2",))
    assert node.pop_actions() == [] and node.state("VI_2") is State.MASTER  # planning is pure
    with pytest.raises(NodeConfigError):
        node.plan_reload([moved, spec("VI_3", vrid=1, vip="10.0.0.3/32")])
    node.apply_reload(plan, 10.0)
    acts = node.pop_actions()
    assert node.names == ("VI_1", "VI_3") and node.state("VI_1") is State.MASTER
    sent0 = [a for a in acts if isinstance(a, SendAdvert) and a.instance == "VI_2"]
    assert [a.priority for a in sent0] == [0]
    assert any(isinstance(a, RemoveAddresses) and a.instance == "VI_2" for a in acts)
    assert node.state("VI_3") is State.BACKUP


def test_reload_changed_master_stays_master_and_drops_only_lost_vips():
    node = VrrpNode([spec("VI_1", vrid=1, vip="10.0.0.1/32")])
    _master(node)
    new = InstanceSpec("VI_1", 1, 120, interface="eth0", primary_address="10.0.0.1",
                       advert_addresses=("10.0.0.5",), virtual_ipaddresses=("10.0.0.5/32",))
    plan = node.plan_reload([new])
    assert plan.changed == ("VI_1",) and plan.vips_removed == (("VI_1", ("10.0.0.1/32",)),)
    node.apply_reload(plan, 5.0)
    acts = node.pop_actions()
    assert node.state("VI_1") is State.MASTER
    assert not any(isinstance(a, SendAdvert) and a.priority == 0 for a in acts)
    rem = [a for a in acts if isinstance(a, RemoveAddresses)]
    assert [r.addresses for r in rem] == [("10.0.0.1/32",)]
    assert [a.addresses for a in acts if isinstance(a, AddAddresses)] == [("10.0.0.5/32",)]
    assert node.owned_vips() == {"10.0.0.5"}


def test_shutdown_sends_priority_zero_and_clears_the_timer():
    node = VrrpNode([spec()])
    _master(node)
    node.shutdown(3.0)
    acts = node.pop_actions()
    assert [a.priority for a in acts if isinstance(a, SendAdvert)] == [0]
    assert node.get_timer() is None and node.owned_vips() == frozenset()
    assert not [a for a in acts if isinstance(a, SendGratuitous)]


@pytest.mark.parametrize("seconds,cs", [(1.0, 100), (0.05, 5), (1.005, 101), (0.125, 13), (0.004, 0), (0.015, 2)])
def test_advert_centiseconds_rounds_half_up(seconds, cs):
    assert advert_centiseconds(seconds) == cs


def test_wire_interval_uses_the_same_rounding():
    assert wire_interval(1.005, 3) == 1.01
    assert wire_interval(2.5, 2) == 3.0  # half up, not banker's rounding
    assert wire_interval(0.001, 3) == 0.01
