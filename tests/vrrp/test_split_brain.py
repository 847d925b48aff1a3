"""Split-brain episodes of one instance, driven with a fake clock.

An episode starts when a MASTER hears another master it does not yield to,
and ends once: the rival silent for a Master_Down_Interval (timer driven),
the rival sending priority 0, or this instance leaving MASTER.
"""

import pytest

from chimeha.vrrp.events import InstanceSpec, SplitBrain, State, StateChanged
from chimeha.vrrp.instance import VrrpInstance
from chimeha.vrrp.packet import Advertisement
from chimeha.vrrp.timing import master_down_interval

ME = "192.168.231.11"
R1, R2 = "192.168.231.12", "192.168.231.13"


def master(prio=255, **kw):
    kw.setdefault("advert_addresses", ("192.168.231.10",))
    kw.setdefault("primary_address", ME)
    kw.setdefault("garp_master_delay", 0)
    inst = VrrpInstance(InstanceSpec("VI_1", 51, prio, initial_state="MASTER", **kw))
    inst.start(0.0)
    if inst.state is not State.MASTER:
        inst.handle_timer(inst.get_timer())
    assert inst.state is State.MASTER
    inst.pop_actions()
    return inst


def adv(prio, src=R1, interval=1.0, version=2):
    return Advertisement(version, 51, prio, interval, ("192.168.231.10",), src)


def splits(actions):
    return [a for a in actions if isinstance(a, SplitBrain)]


def run_timers(inst, until):
    """Call handle_timer at every get_timer() up to ``until``; return the actions with their times."""
    out = []
    while inst.get_timer() is not None and inst.get_timer() <= until:
        t = inst.get_timer()
        inst.handle_timer(t)
        out += inst.pop_actions()
    return out


def test_one_way_rival_is_reported_once_and_ends_after_its_silence():
    inst = master(255)
    acts = []
    for t in (5.25, 6.25, 7.25, 8.25):  # the rival keeps advertising: it never hears our answers
        acts += run_timers(inst, t)
        inst.handle_advert(adv(254), t)
        acts += inst.pop_actions()
    starts = splits(acts)
    assert len(starts) == 1 and not starts[0].healing
    assert (starts[0].peer, starts[0].peer_priority, starts[0].local_priority, starts[0].at) == (R1, 254, 255, 5.25)
    assert inst.split_brain_peers == (R1,) and inst.counters.split_brain == 1
    assert inst.counters.lower_priority_received == 4
    mdi = master_down_interval(255, 1.0)
    acts = run_timers(inst, 20.0)
    ends = splits(acts)
    # Exactly at last advert + Master_Down_Interval: a time only get_timer() can produce
    # (our adverts run at 9.25, 10.25, ...).
    assert len(ends) == 1 and ends[0].healing and ends[0].at == pytest.approx(8.25 + mdi, abs=1e-9)
    assert ends[0].reason == f"split brain over: no advertisement from {R1} for {mdi:.3f} s"
    assert inst.state is State.MASTER and inst.split_brain_peers == ()
    assert inst.snapshot()["split_brain"] == {"active": False, "peers": [], "since": None}


def test_get_timer_includes_the_forget_deadline_when_we_do_not_answer():
    inst = master(255, lower_prio_no_advert=True, advert_int=5.0)
    inst.handle_advert(adv(100, interval=5.0), 1.0)
    assert splits(inst.pop_actions())[0].reason == f"{R1} is also MASTER at lower priority 100 (ours 255)"
    assert inst.snapshot()["split_brain"] == {"active": True, "peers": [R1], "since": 1.0}
    forget = 1.0 + master_down_interval(255, 5.0)
    assert inst.get_timer() == 5.0  # our next advert first
    for t in (5.0, 10.0, 15.0):
        inst.handle_timer(t)
    inst.pop_actions()
    assert inst.get_timer() == pytest.approx(forget)  # 16.004 < our next advert at 20
    inst.handle_timer(forget - 1e-6)
    assert splits(inst.pop_actions()) == []
    inst.handle_timer(forget)
    assert [a.healing for a in splits(inst.pop_actions())] == [True]
    assert inst.get_timer() == 20.0


def test_v3_rival_is_timed_by_its_own_interval():
    inst = master(150, version=3, advert_int=1.0)
    inst.handle_advert(adv(150, src="192.168.231.5", interval=0.2, version=3), 2.0)  # equal, lower address
    start = splits(inst.pop_actions())[0]
    assert start.reason == "192.168.231.5 is also MASTER at equal priority 150; we win on the higher address"
    end_at = 2.0 + 3 * 0.2 + (256 - 150) * 0.2 / 256
    ends = splits(run_timers(inst, 10.0))
    assert [e.at for e in ends] == [pytest.approx(end_at, abs=1e-6)]


def test_rival_sending_priority_zero_ends_the_episode_at_once():
    inst = master(255)
    inst.handle_advert(adv(100), 1.5)
    inst.pop_actions()
    inst.handle_advert(adv(0), 1.7)
    acts = inst.pop_actions()
    assert [(a.healing, a.at, a.reason) for a in splits(acts)] == [
        (True, 1.7, f"split brain over: {R1} left MASTER (sent priority 0)")]
    assert inst.get_timer() == pytest.approx(2.7)  # only our own advert is left
    # A priority 0 from someone not in the episode is no end.
    inst.handle_advert(adv(100), 3.0)
    inst.handle_advert(adv(0, src=R2), 3.1)
    assert [a.healing for a in splits(inst.pop_actions())] == [False]


def test_leaving_master_ends_the_episode_before_the_state_change():
    inst = master(200)
    inst.handle_advert(adv(100), 1.0)
    inst.pop_actions()
    inst.handle_advert(adv(250, src=R2), 1.5)
    acts = inst.pop_actions()
    kinds = [type(a).__name__ for a in acts]
    assert kinds == ["RemoveAddresses", "SplitBrain", "StateChanged"]
    assert acts[1].healing and acts[1].peer == R1 and acts[1].at == 1.5
    assert acts[1].reason == f"split brain over: we left MASTER for BACKUP: higher priority 250 from {R2}"
    assert inst.split_brain_peers == ()
    # No second end from the old deadline, as a BACKUP.
    assert splits(run_timers(inst, 1.5 + master_down_interval(200, 1.0) - 0.01)) == []


@pytest.mark.parametrize("leave", ["fault", "shutdown"])
def test_fault_or_shutdown_ends_the_episode(leave):
    from chimeha.vrrp.events import TrackSpec
    inst = master(200, tracks=(TrackSpec("chk"),))
    inst.handle_advert(adv(100), 1.0)
    inst.pop_actions()
    if leave == "fault":
        inst.set_tracked("chk", False, 2.0)
    else:
        inst.shutdown(2.0)
    acts = inst.pop_actions()
    ends = splits(acts)
    change = [a for a in acts if isinstance(a, StateChanged)][0]
    assert len(ends) == 1 and ends[0].healing and acts.index(ends[0]) < acts.index(change)
    assert f"we left MASTER for {change.new}" in ends[0].reason


def test_two_rivals_one_episode_ends_with_the_last():
    inst = master(255)
    inst.handle_advert(adv(100, src=R1), 1.0)
    inst.handle_advert(adv(120, src=R2), 2.0)
    inst.handle_advert(adv(100, src=R1), 2.5)  # same rival again: no new report
    starts = splits(inst.pop_actions())
    assert [(s.peer, s.healing) for s in starts] == [(R1, False), (R2, False)]
    assert inst.counters.split_brain == 1  # one episode
    mdi = master_down_interval(255, 1.0)
    acts = run_timers(inst, 2.0 + mdi + 0.001)  # R2 (last heard at 2.0) is forgotten first, silently
    assert splits(acts) == [] and inst.split_brain_peers == (R1,)
    acts = run_timers(inst, 30.0)
    ends = splits(acts)
    assert [(e.peer, e.at) for e in ends] == [(R1, pytest.approx(2.5 + mdi, abs=1e-9))]
    # A new rival later is a new episode.
    inst.handle_advert(adv(100, src=R2), 40.0)
    assert [s.healing for s in splits(inst.pop_actions())] == [False]
    assert inst.counters.split_brain == 2 and inst.snapshot()["split_brain"]["since"] == 40.0


def test_backup_hearing_masters_has_no_split_brain():
    inst = VrrpInstance(InstanceSpec("VI_1", 51, 100, primary_address=ME))
    inst.start(0.0)
    inst.handle_advert(adv(200), 1.0)
    inst.handle_advert(adv(150, src=R2), 1.2)
    assert splits(inst.pop_actions()) == [] and inst.split_brain_peers == ()
