"""The pure instance state machine, driven directly with a fake clock."""

import pytest

from chimeha.vrrp.events import (
    AddAddresses, InstanceSpec, PriorityChanged, RemoveAddresses, SendAdvert, SendGratuitous, SplitBrain,
    State, StateChanged, TrackSpec,
)
from chimeha.vrrp.instance import VrrpInstance
from chimeha.vrrp.packet import Advertisement
from chimeha.vrrp.timing import master_down_interval, skew_time

ME = "192.168.231.12"
PEER = "192.168.231.11"


def make(prio=100, state="BACKUP", **kw):
    kw.setdefault("advert_addresses", ("192.168.231.10",))
    kw.setdefault("virtual_ipaddresses", ("192.168.231.10/32",))
    kw.setdefault("primary_address", ME)
    return VrrpInstance(InstanceSpec("VI_1", 51, prio, initial_state=state, **kw))


def adv(prio, src=PEER, interval=1.0, version=2, vrid=51):
    return Advertisement(version, vrid, prio, interval, ("192.168.231.10",), src)


def kinds(actions):
    return [type(a).__name__ for a in actions]


def changes(actions):
    return [(a.old, a.new, a.reason) for a in actions if isinstance(a, StateChanged)]


def test_owner_with_state_master_is_master_at_once():
    i = make(255, "MASTER", garp_master_repeat=3)
    i.start(10.0)
    acts = i.pop_actions()
    assert i.state is State.MASTER
    assert kinds(acts) == ["StateChanged", "AddAddresses", "SendAdvert", "SendGratuitous"]
    assert acts[1] == AddAddresses("VI_1", ("192.168.231.10/32",), (), (), 10.0)
    assert acts[2] == SendAdvert("VI_1", 51, 2, 4, 255, 1.0, ("192.168.231.10",), None, None, 10.0)
    assert acts[3].count == 3 and acts[3].why == "master"
    assert i.get_timer() == 11.0


def test_owner_with_state_backup_waits_like_the_man_page_says():
    i = make(255, "BACKUP")
    i.start(0.0)
    assert i.state is State.BACKUP
    assert i.get_timer() == pytest.approx(3 + 1 / 256, abs=1e-6)


def test_non_owner_state_master_starts_backup_and_takes_over_after_down_interval():
    i = make(100, "MASTER")
    i.start(0.0)
    assert i.state is State.BACKUP
    mdi = master_down_interval(100, 1.0)
    assert i.get_timer() == mdi
    i.pop_actions()
    i.handle_timer(mdi - 0.001)
    assert i.state is State.BACKUP and i.pop_actions() == []
    i.handle_timer(mdi)
    acts = i.pop_actions()
    assert i.state is State.MASTER
    assert changes(acts) == [(State.BACKUP, State.MASTER, f"no advertisement received for {mdi:.3f} s (master down interval)")]


def test_backup_adverts_reset_the_down_timer_and_name_the_silent_master():
    i = make(100)
    i.start(0.0)
    i.handle_advert(adv(200), 1.0)
    i.handle_advert(adv(200), 2.0)
    mdi = master_down_interval(100, 1.0)
    assert i.get_timer() == pytest.approx(2.0 + mdi)
    i.handle_timer(2.0 + mdi)
    assert changes(i.pop_actions())[-1][2] == f"no advertisement from {PEER} for {mdi:.3f} s"


def test_priority_zero_gives_skew_only_takeover():
    i = make(254)
    i.start(0.0)
    i.handle_advert(adv(255), 1.0)
    i.handle_advert(adv(0), 1.5)
    assert i.get_timer() == pytest.approx(1.5 + skew_time(254, 1.0))
    i.handle_timer(1.5 + 2 / 256)
    assert i.state is State.MASTER
    assert changes(i.pop_actions())[-1][2] == f"received priority 0 from {PEER}"
    assert i.counters.priority_zero_received == 1


def test_preempt_ignores_lower_priority_master_then_takes_over():
    i = make(200)
    i.start(0.0)
    for t in range(1, 4):
        i.handle_advert(adv(100), float(t))
    mdi = master_down_interval(200, 1.0)
    assert i.get_timer() == mdi  # never re-armed by the lower adverts
    i.handle_timer(mdi)
    assert i.state is State.MASTER
    assert "preempting 192.168.231.11 (priority 100 < our 200)" in changes(i.pop_actions())[-1][2]


def test_nopreempt_accepts_lower_priority_master():
    i = make(200, nopreempt=True)
    i.start(0.0)
    for t in range(1, 20):
        i.handle_advert(adv(100), float(t))
        i.handle_timer(float(t))
    assert i.state is State.BACKUP


def test_preempt_delay_window_counts_from_start():
    i = make(200, preempt_delay=5.0)
    i.start(0.0)
    for t in range(1, 10):
        while i.get_timer() is not None and i.get_timer() <= t and i.state is State.BACKUP:
            i.handle_timer(i.get_timer())
        i.handle_advert(adv(100), float(t))
    # adverts before t=5 re-armed the timer; the last one at t=4 -> takeover at 4 + MDI.
    assert i.state is State.MASTER
    assert i.last_change.at == pytest.approx(4 + master_down_interval(200, 1.0))


def test_master_steps_down_for_higher_priority_and_removes_addresses():
    i = make(255, "MASTER")
    i.start(0.0)
    i.pop_actions()
    i.handle_advert(adv(100), 0.5)  # lower: split brain, answered at once, VIPs re-announced (keepalived)
    acts = i.pop_actions()
    assert kinds(acts) == ["SplitBrain", "SendAdvert", "SendGratuitous", "LowerPriorityHeard"]
    assert i.get_timer() == pytest.approx(1.5)  # cadence restarts from the answer
    quiet = make(255, "MASTER", lower_prio_no_advert=True)
    quiet.start(0.0)
    quiet.pop_actions()
    quiet.handle_advert(adv(100), 0.5)
    # keepalived: lower_prio_no_advert silences the advert, not the GARP burst.
    assert kinds(quiet.pop_actions()) == ["SplitBrain", "SendGratuitous", "LowerPriorityHeard"]
    assert quiet.get_timer() == 1.0
    i2 = make(100, "MASTER")
    i2.start(0.0)
    i2.handle_timer(10.0)
    i2.pop_actions()
    i2.handle_advert(adv(150), 10.5)
    acts = i2.pop_actions()
    assert i2.state is State.BACKUP
    assert isinstance(acts[0], RemoveAddresses)
    assert changes(acts) == [(State.MASTER, State.BACKUP, f"higher priority 150 from {PEER}")]


@pytest.mark.parametrize("peer,steps_down", [("192.168.231.13", True), ("192.168.231.11", False)])
def test_equal_priority_tie_broken_by_higher_primary_address(peer, steps_down):
    i = make(100)
    i.start(0.0)
    i.handle_timer(10.0)
    assert i.state is State.MASTER
    i.pop_actions()
    i.handle_advert(adv(100, src=peer), 10.2)
    acts = i.pop_actions()
    assert (i.state is State.BACKUP) == steps_down
    if steps_down:
        assert changes(acts)[0][2] == f"equal priority 100 from higher address {peer}"
    else:
        assert isinstance(acts[0], SplitBrain) and acts[0].peer == peer


def test_master_answers_priority_zero_with_an_advert_at_once():
    i = make(255, "MASTER")
    i.start(0.0)
    i.pop_actions()
    i.handle_advert(adv(0), 0.3)
    acts = i.pop_actions()
    assert kinds(acts) == ["SendAdvert"] and i.get_timer() == pytest.approx(1.3)


def test_master_sends_adverts_on_schedule_without_drift():
    i = make(255, "MASTER", garp_master_delay=0)
    i.start(0.0)
    i.pop_actions()
    sent = []
    for now in (1.0, 2.05, 3.0, 4.2):
        i.handle_timer(now)
        sent += [a.at for a in i.pop_actions() if isinstance(a, SendAdvert)]
    assert sent == [1.0, 2.05, 3.0, 4.2]
    assert i.get_timer() == 5.0


def test_v3_backup_adopts_master_interval():
    i = make(100, version=3, advert_int=1.0)
    i.start(0.0)
    i.handle_advert(adv(200, interval=0.1, version=3), 1.0)
    assert i.master_adver_interval == 0.1
    assert i.get_timer() == pytest.approx(1.0 + 3 * 0.1 + 156 * 0.1 / 256, abs=1e-6)
    assert i.counters.interval_adopted == 1


def test_v2_never_adopts_interval():
    i = make(100, version=2)
    i.start(0.0)
    i.handle_advert(adv(200, interval=3.0), 1.0)
    assert i.master_adver_interval == 1.0


def test_track_failure_from_master_sends_priority_zero_and_goes_fault():
    i = make(255, "MASTER", tracks=(TrackSpec("chk_server"),))
    i.start(0.0)
    i.pop_actions()
    i.set_tracked("chk_server", False, 4.0)
    acts = i.pop_actions()
    assert kinds(acts) == ["SendAdvert", "RemoveAddresses", "StateChanged"]
    assert acts[0].priority == 0 and i.state is State.FAULT and i.get_timer() is None
    assert changes(acts)[0][2] == "track_script chk_server failed"
    i.handle_advert(adv(254), 5.0)
    assert i.state is State.FAULT
    i.set_tracked("chk_server", True, 6.0)
    assert i.state is State.BACKUP
    assert changes(i.pop_actions())[0][2] == "track_script chk_server recovered"
    assert i.get_timer() == pytest.approx(6.0 + master_down_interval(255, 1.0))


def test_fault_at_start_when_init_fail():
    i = make(100, tracks=(TrackSpec("chk", init_ok=False),))
    i.start(0.0)
    assert i.state is State.FAULT
    assert changes(i.pop_actions())[0][2] == "track_script chk failed at start"


def test_weighted_track_changes_priority_and_reports_it():
    i = make(100, tracks=(TrackSpec("chk", weight=-30),))
    i.start(0.0)
    i.pop_actions()
    i.set_tracked("chk", False, 1.0)
    acts = i.pop_actions()
    assert acts == [PriorityChanged("VI_1", 100, 70, "track_script chk failed", 1.0)]
    assert i.state is State.BACKUP and i.priority == 70
    i.set_tracked("unknown", False, 1.0)
    assert i.pop_actions() == []


def test_shutdown_from_master_sends_priority_zero_then_init():
    i = make(255, "MASTER")
    i.start(0.0)
    i.pop_actions()
    i.shutdown(2.5)
    acts = i.pop_actions()
    assert kinds(acts) == ["SendAdvert", "RemoveAddresses", "StateChanged"]
    assert acts[0].priority == 0 and i.state is State.INIT and i.get_timer() is None
    assert i.counters.priority_zero_sent == 1


def test_shutdown_from_backup_sends_nothing():
    i = make(100)
    i.start(0.0)
    i.pop_actions()
    i.shutdown(1.0)
    assert kinds(i.pop_actions()) == ["StateChanged"]


def test_garp_schedule_delay_and_refresh():
    i = make(255, "MASTER", garp_master_delay=5, garp_master_repeat=2, garp_master_refresh=60,
             garp_master_refresh_repeat=3)
    i.start(0.0)
    garps = []
    t = 0.0
    while t <= 130:
        i.handle_timer(t)
        garps += [(a.at, a.count, a.why) for a in i.pop_actions() if isinstance(a, SendGratuitous)]
        t = i.get_timer()
    assert garps == [(0.0, 2, "master"), (5.0, 2, "master-delay"), (60.0, 3, "refresh"), (120.0, 3, "refresh")]


def test_adverts_for_other_vrids_are_ignored():
    i = make(100)
    i.start(0.0)
    i.handle_advert(adv(200, vrid=52), 1.0)
    assert i.counters.adverts_received == 0 and i.get_timer() == master_down_interval(100, 1.0)


def test_snapshot_is_plain_data():
    import json
    i = make(255, "MASTER")
    i.start(0.0)
    snap = json.loads(json.dumps(i.snapshot()))
    assert snap["state"] == "MASTER" and snap["counters"]["became_master"] == 1


def test_track_detail_words_in_fault_recovery_priority_and_sync_reasons():
    i = make(255, "MASTER", tracks=(TrackSpec("chk_server"), TrackSpec("ens160", "interface")))
    i.start(0.0)
    i.pop_actions()
    i.set_tracked("chk_server", False, 4.0, detail="failed 2/2 times")
    assert changes(i.pop_actions()) == [(State.MASTER, State.FAULT, "track_script chk_server failed 2/2 times")]
    i.set_tracked("ens160", False, 4.5)  # no detail: the plain word
    assert i._fault_reason() == "track_script chk_server failed 2/2 times and track_interface ens160 failed"
    i.set_tracked("ens160", True, 5.0)
    i.set_tracked("chk_server", True, 6.0, detail="succeeded 1/1 times")
    assert changes(i.pop_actions()) == [(State.FAULT, State.BACKUP, "track_script chk_server succeeded 1/1 times")]
    w = make(100, tracks=(TrackSpec("chk", weight=-30),))
    w.start(0.0)
    w.pop_actions()
    w.set_tracked("chk", False, 1.0, detail="failed 3/3 times")
    assert w.pop_actions() == [PriorityChanged("VI_1", 100, 70, "track_script chk failed 3/3 times", 1.0)]
    w.set_tracked("chk", True, 2.0)  # a later call without detail does not reuse the old words
    assert w.pop_actions() == [PriorityChanged("VI_1", 70, 100, "track_script chk recovered", 2.0)]


def test_reverse_weight_zero_track_says_why_it_faults():
    i = make(100, tracks=(TrackSpec("maint", "file", reverse=True),))
    i.start(0.0)
    i.pop_actions()
    i.set_tracked("maint", True, 1.0)
    i.set_tracked("maint", False, 2.0)
    i.set_tracked("maint", True, 3.0)
    assert changes(i.pop_actions())[-1] == (State.BACKUP, State.FAULT, "track_file maint recovered (reverse)")


def test_init_fail_detail_at_start():
    i = make(100, tracks=(TrackSpec("chk", init_ok=False),))
    i.set_tracked("chk", False, 0.0, detail="failed (init_fail)")
    i.start(0.0)
    assert changes(i.pop_actions())[0][2] == "track_script chk failed (init_fail) at start"
