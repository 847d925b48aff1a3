"""keepalived's split-brain repair in the pure core: GARP bursts on a lower-priority advert,
higher_prio_send_advert, GARP/NA pacing, vrrp_startup_delay (fake clock)."""

import pytest

from chimeha.config import loads
from chimeha.vrrp import packet
from chimeha.vrrp.events import InstanceSpec, LowerPriorityHeard, SendAdvert, SendGratuitous, State, StateChanged
from chimeha.vrrp.from_config import instance_specs
from chimeha.vrrp.instance import VrrpInstance
from chimeha.vrrp.node import VrrpNode
from chimeha.vrrp.packet import Advertisement
from chimeha.vrrp.timing import master_down_interval

ME, PEER, VIP = "10.0.0.1", "10.0.0.2", "10.0.0.100"


def make(prio=200, state="MASTER", name="VI_1", vrid=51, **kw):
    kw.setdefault("garp_master_delay", 0.0)
    return VrrpInstance(InstanceSpec(name, vrid, prio, initial_state=state, primary_address=ME, interface="eth0",
                                     advert_addresses=(VIP,), virtual_ipaddresses=(VIP + "/24",), **kw))


def adv(prio, src=PEER, vrid=51):
    return Advertisement(2, vrid, prio, 1.0, (VIP,), src)


def master(inst, now=0.0):
    """Drive ``inst`` to MASTER (no advert heard) and drop what that queued."""
    inst.start(now)
    while inst.state is not State.MASTER:
        inst.handle_timer(inst.get_timer())
    inst.pop_actions()
    return inst


def garps(actions):
    return [(a.why, a.count, a.at) for a in actions if isinstance(a, SendGratuitous)]


def run_until(inst, until):
    out = []
    while inst.get_timer() is not None and inst.get_timer() <= until:
        inst.handle_timer(inst.get_timer())
        out.extend(inst.pop_actions())
    return out


def test_lower_priority_advert_triggers_a_burst_now_and_another_after_the_delay():
    i = master(make(garp_lower_prio_repeat=3, garp_lower_prio_delay=2.0, garp_interval=0.01, gna_interval=0.02))
    t0 = i.get_timer()
    i.handle_advert(adv(100), t0 + 0.2)
    acts = i.pop_actions()
    burst = [a for a in acts if isinstance(a, SendGratuitous)]
    assert garps(acts) == [("lower-priority", 3, t0 + 0.2)]
    assert burst[0].interval == 0.01 and burst[0].na_interval == 0.02 and burst[0].interface == "eth0"
    assert [a for a in acts if isinstance(a, LowerPriorityHeard)] == [LowerPriorityHeard("VI_1", PEER, 100, t0 + 0.2)]
    # The delayed burst comes garp_lower_prio_delay later, not earlier.
    assert garps(run_until(i, t0 + 2.1)) == []
    assert garps(run_until(i, t0 + 2.2 + 1e-9)) == [("lower-priority-delay", 3, pytest.approx(t0 + 2.2))]


def test_each_lower_priority_advert_stacks_its_own_delayed_burst_like_keepalived():
    i = master(make(garp_lower_prio_repeat=2, garp_lower_prio_delay=5.0))
    i.handle_advert(adv(100), 1.0)
    i.handle_advert(adv(100), 2.0)
    assert garps(i.pop_actions()) == [("lower-priority", 2, 1.0), ("lower-priority", 2, 2.0)]
    assert garps(run_until(i, 7.5)) == [("lower-priority-delay", 2, 6.0), ("lower-priority-delay", 2, 7.0)]


def test_equal_priority_from_a_lower_address_is_a_lower_priority_master_too():
    i = master(make(prio=100, garp_lower_prio_repeat=1))
    i.handle_advert(adv(100, src="10.0.0.0"), 1.0)  # same priority, lower address: we win
    assert garps(i.pop_actions()) == [("lower-priority", 1, 1.0)]


def test_no_burst_when_repeat_is_zero_and_no_second_when_delay_is_zero():
    off = master(make(garp_lower_prio_repeat=0))
    off.handle_advert(adv(100), 1.0)
    assert garps(off.pop_actions()) == []
    once = master(make(garp_lower_prio_repeat=4, garp_lower_prio_delay=0.0))
    once.handle_advert(adv(100), 1.0)
    assert garps(once.pop_actions()) == [("lower-priority", 4, 1.0)]
    assert garps(run_until(once, 30.0)) == []


def test_pending_delayed_burst_is_dropped_when_we_leave_master():
    i = master(make(garp_lower_prio_repeat=2, garp_lower_prio_delay=3.0))
    i.handle_advert(adv(100), 1.0)
    i.handle_advert(adv(250), 1.5)  # a higher master: we yield
    assert i.state is State.BACKUP
    i.pop_actions()
    acts = []
    for t in (2.0, 4.0, 4.5):
        i.handle_timer(t)
        acts.extend(i.pop_actions())
    assert garps(acts) == []


def test_higher_prio_send_advert_sends_our_advert_before_yielding():
    plain = master(make())
    plain.handle_advert(adv(250), 1.0)
    assert not [a for a in plain.pop_actions() if isinstance(a, SendAdvert)]
    eager = master(make(higher_prio_send_advert=True))
    eager.handle_advert(adv(250), 1.0)
    acts = eager.pop_actions()
    sent = [a for a in acts if isinstance(a, SendAdvert)]
    assert [a.priority for a in sent] == [200]
    change = next(a for a in acts if isinstance(a, StateChanged))
    assert acts.index(sent[0]) < acts.index(change) and change.new is State.BACKUP
    # Equal priority from a higher address also makes us yield, so it also gets the advert.
    tie = master(make(prio=100, higher_prio_send_advert=True))
    tie.handle_advert(adv(100, src="10.0.0.9"), 1.0)
    assert [a.priority for a in tie.pop_actions() if isinstance(a, SendAdvert)] == [100]


def test_sync_group_sibling_reannounces_when_a_member_hears_a_lower_priority_master():
    a = InstanceSpec("A", 51, 200, interface="eth0", primary_address=ME, advert_addresses=(VIP,),
                     virtual_ipaddresses=(VIP,), garp_master_delay=0, garp_lower_prio_repeat=0)
    b = InstanceSpec("B", 52, 200, interface="eth0", primary_address=ME, advert_addresses=("10.0.0.101",),
                     virtual_ipaddresses=("10.0.0.101",), garp_master_delay=0, garp_lower_prio_repeat=2,
                     garp_lower_prio_delay=1.0)
    node = VrrpNode([a, b], {"G": ("A", "B")})
    node.start(0.0)
    while node.state("A") is not State.MASTER:
        node.handle_timer(node.get_timer())
    node.pop_actions()
    node.receive_datagram(packet.encode(2, 51, 100, [VIP], 1.0, source=PEER), PEER, packet.MCAST_V4, 255, 4,
                          "eth0", 10.0)
    acts = node.pop_actions()
    # A itself has repeat 0; B (its sibling) re-announces its own VIP, as keepalived does.
    assert [(g.instance, g.why, g.count) for g in acts if isinstance(g, SendGratuitous)] == [("B", "lower-priority", 2)]
    node.handle_timer(11.0)
    assert [(g.instance, g.why) for g in node.pop_actions() if isinstance(g, SendGratuitous)] == [
        ("B", "lower-priority-delay")]


def test_startup_delay_holds_takeover_and_times_the_down_timer_from_its_end():
    i = make(prio=100, state="BACKUP")
    i.start(0.0, startup_delay=10.0)
    assert i.state is State.BACKUP and "vrrp_startup_delay 10" in i.last_change.reason
    mdi = master_down_interval(100, 1.0)
    assert i.get_timer() == pytest.approx(10.0 + mdi)
    i.handle_advert(adv(200), 4.0)  # a master heard during the delay: still timed from the delay's end
    assert i.get_timer() == pytest.approx(10.0 + mdi)
    i.handle_advert(Advertisement(2, 51, 0, 1.0, (VIP,), PEER), 5.0)  # even priority 0 waits for the end
    assert i.get_timer() > 10.0
    i.handle_advert(adv(200), 11.0)  # after the delay: the usual rule
    assert i.get_timer() == pytest.approx(11.0 + mdi)
    owner = make(prio=255, state="MASTER")
    owner.start(0.0, startup_delay=3.0)
    assert owner.state is State.BACKUP
    owner.handle_timer(owner.get_timer())
    # keepalived: the owner's down timer is 1 us, counted from the end of the delay.
    assert owner.state is State.MASTER and owner.last_change.at == pytest.approx(3.0)
    assert owner.last_change.reason == "address owner (priority 255) starting as MASTER after vrrp_startup_delay"


def test_node_start_passes_the_startup_delay_to_every_instance():
    node = VrrpNode([InstanceSpec("A", 1, 100, interface="eth0", primary_address=ME),
                     InstanceSpec("B", 2, 100, interface="eth0", primary_address=ME)])
    node.start(0.0, startup_delay=2.5)
    assert node.get_timer() == pytest.approx(2.5 + master_down_interval(100, 1.0))


CONF = """
global_defs {{
{glob}
}}
{groups}
vrrp_instance V {{
  interface eth0
  virtual_router_id 1
{inst}
  virtual_ipaddress {{
    10.0.0.100/24
  }}
}}
vrrp_instance W {{
  interface eth1
  virtual_router_id 2
  virtual_ipaddress {{
    10.0.1.100/24
  }}
}}
"""


def specs(glob="", inst="", groups=""):
    res = loads(CONF.format(glob=glob, inst=inst, groups=groups))
    assert res.ok, [str(d) for d in res.diagnostics]
    bad = [str(d) for d in res.diagnostics if d.code in ("not-implemented", "no-effect")
           and "strict_mode" not in d.message]  # strict mode as a whole is another item of issue 10
    assert not bad, bad
    return {s.name: s for s in instance_specs(res.config)}


def test_config_defaults_follow_keepalived():
    s = specs()["V"]
    # keepalived 2.2.7: lower-priority repeat/delay default to the global garp_master ones (5, 5 s).
    assert (s.garp_lower_prio_repeat, s.garp_lower_prio_delay, s.higher_prio_send_advert) == (5, 5.0, False)
    assert (s.garp_interval, s.gna_interval) == (0.0, 0.0)
    s = specs(glob="vrrp_garp_master_repeat 2\nvrrp_garp_master_delay 7", inst="garp_master_repeat 9")["V"]
    assert (s.garp_lower_prio_repeat, s.garp_lower_prio_delay) == (2, 7.0)  # the global, not the instance's


def test_config_global_and_instance_keywords():
    got = specs(glob="vrrp_garp_lower_prio_repeat 3\nvrrp_garp_lower_prio_delay 1.5\nvrrp_higher_prio_send_advert",
                inst="garp_lower_prio_repeat 1\nhigher_prio_send_advert off")
    assert (got["V"].garp_lower_prio_repeat, got["V"].garp_lower_prio_delay, got["V"].higher_prio_send_advert) == (
        1, 1.5, False)
    assert (got["W"].garp_lower_prio_repeat, got["W"].higher_prio_send_advert) == (3, True)


def test_strict_mode_turns_the_lower_priority_bursts_and_higher_prio_advert_off():
    s = specs(glob="vrrp_higher_prio_send_advert", inst="strict_mode on\ngarp_lower_prio_repeat 4")["V"]
    assert (s.garp_lower_prio_repeat, s.garp_lower_prio_delay, s.higher_prio_send_advert) == (0, 0.0, False)


def test_garp_group_paces_its_interfaces_and_the_global_interval_the_rest():
    groups = "garp_group {\n  garp_interval 0.02\n  gna_interval 0.03\n  interfaces {\n    eth0\n  }\n}\n"
    got = specs(glob="vrrp_garp_interval 0.5\nvrrp_gna_interval 0.25", groups=groups)
    assert (got["V"].garp_interval, got["V"].gna_interval) == (0.02, 0.03)
    assert (got["W"].garp_interval, got["W"].gna_interval) == (0.5, 0.25)
    one = specs(groups="garp_group {\n  garp_interval 0.1\n  interface eth1\n}\n")
    assert (one["W"].garp_interval, one["W"].gna_interval) == (0.1, 0.0) and one["V"].garp_interval == 0.0
