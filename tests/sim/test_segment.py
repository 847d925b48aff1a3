"""Scenarios on the simulated segment: elections and failovers timed exactly by the RFC formulas."""

import math

import pytest

from chimeha.sim import ScriptModel, Segment
from chimeha.vrrp.events import InstanceSpec, State, TrackSpec
from chimeha.vrrp.timing import master_down_interval, skew_time

VIP = "192.168.231.10"
A, B, C = "192.168.231.11", "192.168.231.12", "192.168.231.13"


def spec(prio, state="BACKUP", name="VI_1", vrid=51, vip=VIP, **kw):
    kw.setdefault("interface", "ens160")
    tracks = kw.pop("tracks", ()) + (TrackSpec("ens160", "interface"),)
    return InstanceSpec(name, vrid, prio, initial_state=state, advert_addresses=(vip,),
                        virtual_ipaddresses=(vip,), tracks=tracks, **kw)


def seed_segment():
    """The seed's active-standby pair: server1 owner 255, server2 254, chk_server every 2 s."""
    seg = Segment()
    chk = (TrackSpec("chk_server"),)
    kw = dict(auth_type="PASS", auth_pass="1111")
    seg.add_node("server1", A, [spec(255, "MASTER", tracks=chk, **kw)], scripts=[ScriptModel("chk_server", 2)])
    seg.add_node("server2", B, [spec(254, "BACKUP", tracks=chk, **kw)], scripts=[ScriptModel("chk_server", 2)])
    return seg


def moves(seg, vip=VIP):
    return [(round(r.at, 6), r.node) for r in seg.records("vip") if r.data["vip"] == vip and r.text.endswith("added")]


def test_seed_owner_is_master_at_zero_and_backup_stays():
    seg = seed_segment()
    seg.start(0.0)
    seg.run_until(30)
    assert seg.masters("VI_1") == ["server1"] and seg.holders(VIP) == {"server1"}
    assert moves(seg) == [(0.0, "server1")]
    assert seg.state("server2", "VI_1") is State.BACKUP
    assert seg.instance("server2", "VI_1").counters.adverts_received == 31  # t = 0..30


def test_seed_service_stop_moves_vip_at_next_check_plus_skew():
    seg = seed_segment()
    seg.start(0.0)
    seg.check_fail("server1", "chk_server", at=10.5)
    seg.run_until(20)
    # checks run at 0, 2, 4 ...; the failure is seen at 12, server1 sends priority 0,
    # server2 waits Skew_Time = 2/256 s.
    assert moves(seg)[-1] == (pytest.approx(12 + 2 / 256, abs=1e-6), "server2")
    assert seg.state("server1", "VI_1") is State.FAULT and seg.holders(VIP) == {"server2"}


def test_seed_service_recovery_moves_vip_back_after_owner_down_interval():
    seg = seed_segment()
    seg.start(0.0)
    seg.check_fail("server1", "chk_server", at=10.5)
    seg.check_ok("server1", "chk_server", at=20.1)
    seg.run_until(40)
    # recovery seen at 22; server1 re-enters BACKUP and preempts after 3 + 1/256 s
    assert moves(seg)[-1] == (pytest.approx(22 + 3 + 1 / 256, abs=1e-6), "server1")
    assert seg.holders(VIP) == {"server1"}


def test_seed_link_cut_takes_master_down_interval_from_last_advert():
    seg = seed_segment()
    seg.start(0.0)
    seg.link_down("server1", at=10.5)
    seg.run_until(20)
    assert moves(seg)[-1] == (pytest.approx(10 + master_down_interval(254, 1.0), abs=1e-6), "server2")
    assert seg.records("state")[-2].text == "MASTER -> FAULT: track_interface ens160 failed"
    assert "no advertisement from 192.168.231.11 for 3.008 s" in seg.records("state")[-1].text
    seg.link_up("server1", at=25.0)
    seg.run_until(35)
    assert moves(seg)[-1] == (pytest.approx(25 + 3 + 1 / 256, abs=1e-6), "server1")
    assert seg.holders(VIP) == {"server1"}


def test_stop_sends_priority_zero_backup_takes_over_after_skew():
    seg = seed_segment()
    seg.start(0.0)
    seg.stop_node("server1", at=5.25)
    seg.run_until(10)
    assert moves(seg)[-1] == (pytest.approx(5.25 + skew_time(254, 1.0), abs=1e-6), "server2")
    assert "received priority 0 from 192.168.231.11" in seg.records("state")[-1].text


def test_crash_without_priority_zero_takes_the_full_interval():
    seg = seed_segment()
    seg.start(0.0)
    seg.crash_node("server1", at=5.25)
    seg.run_until(15)
    assert moves(seg)[-1] == (pytest.approx(5 + master_down_interval(254, 1.0), abs=1e-6), "server2")


def test_three_node_election_highest_priority_wins_and_each_backup_times_by_its_own_skew():
    seg = Segment()
    seg.add_node("a", A, [spec(100)])
    seg.add_node("b", B, [spec(150)])
    seg.add_node("c", C, [spec(120)])
    seg.start(0.0)
    seg.run_until(10)
    assert seg.masters("VI_1") == ["b"]
    assert moves(seg) == [(pytest.approx(master_down_interval(150, 1.0), abs=1e-6), "b")]
    seg.crash_node("b", at=10.1)
    seg.run_until(20)
    t_b = master_down_interval(150, 1.0)
    t_b_last = t_b + math.floor(10.1 - t_b)  # b advertised every 1 s from its takeover
    assert moves(seg)[-1] == (pytest.approx(t_b_last + master_down_interval(120, 1.0), abs=1e-6), "c")


def test_higher_priority_node_joining_preempts():
    seg = Segment()
    seg.add_node("low", A, [spec(100)])
    seg.add_node("high", B, [spec(200)])
    seg.start_node("low", at=0.0)
    seg.start_node("high", at=20.0)
    seg.run_until(40)
    assert moves(seg) == [(pytest.approx(master_down_interval(100, 1.0), abs=1e-6), "low"),
                          (pytest.approx(20 + master_down_interval(200, 1.0), abs=1e-6), "high")]
    assert seg.holders(VIP) == {"high"}
    assert seg.records("state")[-1].text.endswith("higher priority 200 from 192.168.231.12")


def test_nopreempt_higher_node_joining_stays_backup():
    seg = Segment()
    seg.add_node("low", A, [spec(100, nopreempt=True)])
    seg.add_node("high", B, [spec(200, nopreempt=True)])
    seg.start_node("low", at=0.0)
    seg.start_node("high", at=20.0)
    seg.run_until(60)
    assert seg.masters("VI_1") == ["low"] and len(moves(seg)) == 1


def test_preempt_delay_postpones_takeover():
    seg = Segment()
    seg.add_node("low", A, [spec(100)])
    seg.add_node("high", B, [spec(200, preempt_delay=10.0)])
    seg.start_node("low", at=0.0)
    seg.start_node("high", at=20.5)
    seg.run_until(60)
    # low (master since its down interval) advertises every second; the last advert
    # inside high's window [20.5, 30.5) re-arms high's timer one last time.
    t_low = master_down_interval(100, 1.0)
    last_in_window = t_low + math.floor(30.5 - t_low)
    assert last_in_window < 30.5 < last_in_window + 1
    assert moves(seg)[-1] == (pytest.approx(last_in_window + master_down_interval(200, 1.0), abs=1e-6), "high")


@pytest.mark.parametrize("order,winner", [(("a", "b"), "b"), (("b", "a"), "b")])
def test_equal_priority_higher_address_wins_after_simultaneous_start(order, winner):
    # With a delivery delay both time out before hearing the other: two masters.
    seg = Segment(latency=0.001)
    addrs = {"a": A, "b": B}
    for n in order:
        seg.add_node(n, addrs[n], [spec(100)])
    seg.start(0.0)
    seg.run_until(10)
    # Both time out at the same instant, both become MASTER, the lower address yields.
    assert seg.masters("VI_1") == [winner]
    assert seg.holders(VIP) == {winner}
    assert seg.records("split-brain")


def test_equal_priority_running_master_is_not_preempted_by_a_higher_address():
    seg = Segment()
    seg.add_node("a", A, [spec(100)])
    seg.add_node("b", B, [spec(100)])
    seg.start_node("a", at=0.0)
    seg.start_node("b", at=10.0)
    seg.run_until(30)
    assert seg.masters("VI_1") == ["a"]


def test_weighted_track_failure_lowers_priority_below_backup_and_vip_moves():
    seg = Segment()
    seg.add_node("a", A, [spec(100, tracks=(TrackSpec("chk", weight=-20),))], scripts=[ScriptModel("chk", 1)])
    seg.add_node("b", B, [spec(90)])
    seg.start(0.0)
    seg.run_until(10)
    assert seg.masters("VI_1") == ["a"]
    t_a = master_down_interval(100, 1.0)
    seg.check_fail("a", "chk", at=10.5)
    seg.run_until(30)
    # seen at 11 -> a advertises 80; b ignores lower adverts, last valid was at t_a + 7
    assert moves(seg)[-1] == (pytest.approx(t_a + 7 + master_down_interval(90, 1.0), abs=1e-6), "b")
    assert seg.instance("a", "VI_1").priority == 80
    seg.check_ok("a", "chk", at=40.2)
    seg.run_until(60)
    assert seg.masters("VI_1") == ["a"]


def test_positive_weight_track_decides_the_master():
    seg = Segment()
    seg.add_node("a", A, [spec(100, tracks=(TrackSpec("chk", weight=50),))], scripts=[ScriptModel("chk", 1)])
    seg.add_node("b", B, [spec(120)])
    seg.start(0.0)
    seg.run_until(10)
    assert seg.masters("VI_1") == ["a"]  # 150 > 120
    seg.check_fail("a", "chk", at=10.5)
    seg.run_until(30)
    assert seg.masters("VI_1") == ["b"]


def test_rise_fall_delay_detection():
    seg = Segment()
    chk = (TrackSpec("chk"),)
    seg.add_node("a", A, [spec(255, "MASTER", tracks=chk)], scripts=[ScriptModel("chk", 2, rise=2, fall=3)])
    seg.add_node("b", B, [spec(254)])
    seg.start(0.0)
    seg.check_fail("a", "chk", at=10.5)
    seg.run_until(30)
    # failing runs at 12, 14, 16: FAULT at the third
    assert moves(seg)[-1] == (pytest.approx(16 + 2 / 256, abs=1e-6), "b")
    fault = [r for r in seg.records("state") if r.node == "a"][-1]
    assert (fault.at, fault.text) == (16.0, "MASTER -> FAULT: track_script chk failed 3/3 times")
    seg.check_ok("a", "chk", at=30.5)
    seg.run_until(40)
    back = [r for r in seg.records("state") if r.node == "a" and r.data["new"] == "BACKUP"][-1]
    assert (back.at, back.text) == (34.0, "FAULT -> BACKUP: track_script chk succeeded 2/2 times")


def partitioned_pair():
    seg = Segment()
    seg.add_node("a", A, [spec(200)])
    seg.add_node("b", B, [spec(100)])
    seg.start(0.0)
    seg.run_until(10)
    # A partition that leaves both carriers up: a's traffic is lost, no FAULT.
    seg.nodes["a"].link_up = False
    seg.run_until(20)
    assert sorted(seg.masters("VI_1")) == ["a", "b"]
    assert seg.holders(VIP) == {"a", "b"}
    t_a = master_down_interval(200, 1.0)
    t_b = t_a + math.floor(10 - t_a) + master_down_interval(100, 1.0)  # b: last advert heard + MDI
    assert moves(seg)[-1] == (pytest.approx(t_b, abs=1e-6), "b")
    return seg, t_a, t_b


def test_split_brain_heals_at_the_higher_masters_next_advert():
    seg, t_a, t_b = partitioned_pair()
    a_next = t_a + math.ceil(20 - t_a)  # a's first advert after the restore at 20
    b_next = t_b + math.ceil(20 - t_b)
    assert a_next < b_next
    seg.nodes["a"].link_up = True
    seg.run_until(30)
    assert seg.masters("VI_1") == ["a"] and seg.holders(VIP) == {"a"}
    gone = [r for r in seg.records("vip") if r.node == "b" and r.text.endswith("removed")]
    assert gone[-1].at == pytest.approx(a_next, abs=1e-6)
    assert not seg.records("split-brain")  # b yielded before a ever heard it


def test_split_brain_reported_when_the_lower_master_is_heard_first():
    seg, t_a, t_b = partitioned_pair()
    a_next = t_a + math.ceil(20 - t_a)
    b_next = t_b + math.ceil(a_next - t_b)  # b's first advert after a's
    assert a_next < b_next < a_next + 1
    seg.run_until(a_next + 0.001)  # restore between a's advert and b's
    seg.nodes["a"].link_up = True
    seg.run_until(40)
    sb = seg.records("split-brain")
    assert seg.masters("VI_1") == ["a"] and seg.holders(VIP) == {"a"}
    assert len(sb) == 1 and sb[0].node == "a"
    assert sb[0].text == "split brain: 192.168.231.12 is also MASTER at lower priority 100 (ours 200)"
    # a answers at once, b yields at that same instant.
    assert [r for r in seg.records("state") if r.node == "b"][-1].at == pytest.approx(sb[0].at, abs=1e-6)
    # b is silent from then on: a forgets it after a's Master_Down_Interval, once.
    end = seg.records("split-brain-end")
    mdi = master_down_interval(200, 1.0)
    assert [(r.node, round(r.at, 6)) for r in end] == [("a", pytest.approx(sb[0].at + mdi, abs=1e-6))]
    assert end[0].text == f"split brain over: no advertisement from {B} for {mdi:.3f} s"
    assert seg.instance("a", "VI_1").split_brain_peers == ()


def test_v2_advert_int_mismatch_is_dropped_and_both_become_master():
    seg = Segment()
    seg.add_node("a", A, [spec(200, advert_int=1.0)])
    seg.add_node("b", B, [spec(100, advert_int=2.0)])
    seg.start(0.0)
    seg.run_until(20)
    assert sorted(seg.masters("VI_1")) == ["a", "b"]
    assert seg.drops[("b", "advert-interval")] > 0


def test_v3_backup_adopts_faster_master_interval_for_failover():
    seg = Segment()
    seg.add_node("a", A, [spec(200, version=3, advert_int=0.1)])
    seg.add_node("b", B, [spec(100, version=3, advert_int=1.0)])
    seg.start(0.0)
    seg.run_until(5)
    t_a = master_down_interval(200, 0.1, 3)
    assert moves(seg) == [(pytest.approx(t_a, abs=1e-6), "a")]
    seg.crash_node("a", at=5.05)
    seg.run_until(10)
    last = t_a + 0.1 * int((5.05 - t_a) / 0.1 + 1e-9)
    assert moves(seg)[-1] == (pytest.approx(last + master_down_interval(100, 0.1, 3), abs=1e-5), "b")


def test_sync_group_follows_fault_and_master():
    seg = Segment()
    groups = {"G": ("VI_1", "VI_2")}
    chk = (TrackSpec("chk"),)
    seg.add_node("a", A, [spec(200, tracks=chk), spec(200, name="VI_2", vrid=52, vip="192.168.231.20")],
                 groups=groups, scripts=[ScriptModel("chk", 1)])
    seg.add_node("b", B, [spec(100), spec(100, name="VI_2", vrid=52, vip="192.168.231.20")], groups=groups)
    seg.start(0.0)
    seg.run_until(10)
    assert seg.masters("VI_1") == ["a"] and seg.masters("VI_2") == ["a"]
    seg.check_fail("a", "chk", at=10.5)  # only VI_1 tracks chk
    seg.run_until(20)
    assert seg.state("a", "VI_2") is State.FAULT
    assert seg.masters("VI_1") == ["b"] and seg.masters("VI_2") == ["b"]
    vi2 = [r for r in seg.records("state") if r.node == "a" and r.instance == "VI_2"][-1]
    assert vi2.text == "MASTER -> FAULT: sync group G: VI_1 is FAULT (track_script chk failed 1/1 times)"
    seg.check_ok("a", "chk", at=20.5)
    seg.run_until(40)
    assert seg.masters("VI_1") == ["a"] and seg.masters("VI_2") == ["a"]


def test_sync_group_member_becoming_master_pulls_the_others():
    seg = Segment()
    groups = {"G": ("VI_1", "VI_2")}
    seg.add_node("a", A, [spec(100), spec(200, name="VI_2", vrid=52, vip="192.168.231.20")], groups=groups)
    seg.add_node("b", B, [spec(90), spec(150, name="VI_2", vrid=52, vip="192.168.231.20")], groups=groups)
    seg.start(0.0)
    seg.run_until(20)
    took = [r for r in seg.records("state") if r.text.startswith("BACKUP -> MASTER")]
    # a's VI_2 (priority 200) times out first and drags a's VI_1 along at the same instant,
    # before VI_1's own (longer) down interval.
    t = master_down_interval(200, 1.0)
    assert sorted((r.node, r.instance) for r in took) == [("a", "VI_1"), ("a", "VI_2")]
    assert all(r.at == pytest.approx(t, abs=1e-6) for r in took)
    by_inst = {r.instance: r.text for r in took}
    assert by_inst["VI_1"] == "BACKUP -> MASTER: sync group G: VI_2 became MASTER"
    assert by_inst["VI_2"].startswith("BACKUP -> MASTER: no advertisement received")
    assert seg.masters("VI_1") == ["a"] and seg.masters("VI_2") == ["a"]


def test_ipv6_v3_instances_on_ipv4_addressed_nodes_get_link_local_sources():
    seg = Segment()
    v6 = dict(version=3, family=6, vip="2001:db8::10")
    seg.add_node("a", A, [spec(200, **v6)])
    seg.add_node("b", B, [spec(100, **v6)])
    seg.start(0.0)
    seg.run_until(10)
    assert seg.masters("VI_1") == ["a"] and not seg.drops
    assert seg.instance("b", "VI_1").master == "fe80::e70b"  # from 192.168.231.11
    assert seg.holders("2001:db8::10") == {"a"}


def test_one_way_loss_split_brain_lasts_until_the_rival_is_silent():
    # b's incoming VRRP is dropped (a firewall rule): b takes over and keeps advertising,
    # a hears it all along. One start, a steady episode, one end.
    seg = Segment()
    seg.add_node("a", A, [spec(255, "MASTER")])
    seg.add_node("b", B, [spec(254)])
    seg.start(0.0)
    seg.cut_input("b", at=5.5)
    seg.run_until(12.0)
    b_master = 5.0 + master_down_interval(254, 1.0)  # a's last advert b heard was at 5.0
    assert sorted(seg.masters("VI_1")) == ["a", "b"]
    assert [round(r.at, 6) for r in seg.records("split-brain")] == [pytest.approx(b_master, abs=1e-6)]
    assert seg.instance("a", "VI_1").split_brain_peers == (B,) and not seg.records("split-brain-end")
    seg.restore_input("b", at=12.5)
    seg.run_until(30.0)
    assert seg.masters("VI_1") == ["a"] and seg.holders(VIP) == {"a"}
    yielded = [r for r in seg.records("state") if r.node == "b"][-1]
    assert yielded.text == f"MASTER -> BACKUP: higher priority 255 from {A}"
    # a's adverts run at b_master + k (restarted by each answer); b's at b_master + k too, so b's
    # last one is the one just before it yields, and a forgets b its Master_Down_Interval later.
    b_last = yielded.at - 1.0
    end = seg.records("split-brain-end")
    assert len(seg.records("split-brain")) == 1 and len(end) == 1
    assert end[0].at == pytest.approx(b_last + master_down_interval(255, 1.0), abs=1e-6)
    assert seg.instance("a", "VI_1").counters.split_brain == 1


def test_two_owners_measured_keepalived_timeline():
    # The measured keepalived 2.2.7 run (docs/vrrp.md), the seed's active-active VRRP part:
    # server2's input and server1's cut, server2 takes over; after the heal server2 (the HIGHER
    # address) hears server1's 255 first, lowers itself to 254 and yields; it later takes over at
    # 254 after a priority 0, and a reload restores 255.
    seg = Segment()
    seg.add_node("server1", A, [spec(255, "MASTER")])
    seg.add_node("server2", B, [spec(255, "BACKUP")])
    seg.start(0.0)
    seg.partition("server1", at=6.5)
    seg.heal("server1", at=12.5)
    seg.stop_node("server1", at=18.5)
    seg.reload("server2", at=24.5)
    seg.run_until(30.0)
    s2 = [(round(r.at, 6), r.text) for r in seg.records() if r.node == "server2" and r.kind in ("state", "priority")]
    assert s2 == [
        (0.0, "INIT -> BACKUP: started"),
        (pytest.approx(6 + master_down_interval(255, 1.0)), f"BACKUP -> MASTER: no advertisement from {A} for 3.004 s"),
        (13.0, f"priority 255 -> 254: CONFIGURATION ERROR: {A} is also an address owner (priority 255); "
               "lowered to 254 until the configuration is reloaded"),
        (13.0, f"MASTER -> BACKUP: higher priority 255 from {A} (ours lowered to 254: two address owners)"),
        (pytest.approx(18.5 + skew_time(254, 1.0)), f"BACKUP -> MASTER: received priority 0 from {A}"),
        (24.5, f"priority 254 -> 255: configuration reloaded: address owner priority restored (conflict with {A})"),
    ]
    assert [r.text for r in seg.records("state") if r.node == "server1"] == [
        "INIT -> MASTER: address owner (priority 255) starting as MASTER", "MASTER -> INIT: shutdown"]
    assert not seg.records("split-brain")  # server1 never heard server2: settled at once


def test_two_owners_hearing_each_other_at_once_both_yield_then_the_address_decides():
    seg = Segment(latency=0.001)  # both MASTER at start, each hears the other before any answer
    seg.add_node("a", A, [spec(255, "MASTER")])
    seg.add_node("b", B, [spec(255, "MASTER")])
    seg.start(0.0)
    seg.run_until(10.0)
    lowered = [(r.node, r.at) for r in seg.records("priority")]
    assert sorted(lowered) == [("a", 0.001), ("b", 0.001)]
    assert seg.masters("VI_1") == ["b"] and seg.holders(VIP) == {"b"}
    # Both BACKUP at 254, both time out together, then the ordinary equal-priority rule.
    again = 0.001 + master_down_interval(254, 1.0)
    a_states = [(round(r.at, 6), r.data["new"]) for r in seg.records("state") if r.node == "a"]
    assert a_states == [(0.0, "MASTER"), (0.001, "BACKUP"), (pytest.approx(again), "MASTER"),
                        (pytest.approx(again + 0.001), "BACKUP")]
    starts, ends = seg.records("split-brain"), seg.records("split-brain-end")
    assert [r.node for r in starts] == ["b"] and [r.node for r in ends] == ["b"]
    assert ends[0].at == pytest.approx(starts[0].at + master_down_interval(254, 1.0))
