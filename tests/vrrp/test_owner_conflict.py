"""Two address owners (priority 255) MASTER at once: keepalived 2.2.7's rule, fake clock.

Measured (docs/vrrp.md): the MASTER owner that hears another 255 logs a
configuration error, lowers itself to 254 until reload and yields, whichever
address is higher. A BACKUP owner hearing 255 just stays BACKUP.
"""

import pytest

from chimeha.vrrp.events import InstanceSpec, PriorityChanged, SendAdvert, SplitBrain, State, StateChanged, TrackSpec
from chimeha.vrrp.instance import VrrpInstance
from chimeha.vrrp.packet import Advertisement
from chimeha.vrrp.timing import master_down_interval, skew_time

LOW, HIGH = "192.168.231.11", "192.168.231.12"


def owner(me, state="MASTER", **kw):
    spec = InstanceSpec("VI_1", 51, 255, initial_state=state, primary_address=me,
                        advert_addresses=("192.168.231.10",), garp_master_delay=0, **kw)
    inst = VrrpInstance(spec)
    inst.start(0.0)
    if inst.state is not State.MASTER and state == "MASTER":
        inst.handle_timer(inst.get_timer())
    inst.pop_actions()
    return inst


def adv(prio, src, interval=1.0):
    return Advertisement(2, 51, prio, interval, ("192.168.231.10",), src)


@pytest.mark.parametrize("me,other", [(HIGH, LOW), (LOW, HIGH)])
def test_master_owner_hearing_another_owner_lowers_itself_and_yields_whatever_the_addresses(me, other):
    inst = owner(me)
    inst.handle_advert(adv(255, other), 2.5)
    acts = inst.pop_actions()
    assert [type(a).__name__ for a in acts] == ["PriorityChanged", "RemoveAddresses", "StateChanged"]
    assert acts[0] == PriorityChanged(
        "VI_1", 255, 254, f"CONFIGURATION ERROR: {other} is also an address owner (priority 255); "
        "lowered to 254 until the configuration is reloaded", 2.5)
    assert (acts[2].old, acts[2].new) == (State.MASTER, State.BACKUP)
    assert acts[2].reason == f"higher priority 255 from {other} (ours lowered to 254: two address owners)"
    assert inst.priority == 254 and inst.snapshot()["owner_conflict"] == other
    assert inst.get_timer() == pytest.approx(2.5 + master_down_interval(254, 1.0))
    assert not [a for a in acts if isinstance(a, SplitBrain)]  # settled at once: no split brain


def test_lowered_owner_keeps_254_across_tracking_and_takeovers_until_reload():
    inst = owner(HIGH, tracks=(TrackSpec("chk", weight=-10),))
    inst.handle_advert(adv(255, LOW), 1.0)
    inst.handle_advert(adv(255, LOW), 2.0)
    inst.set_tracked("chk", False, 2.2)  # weights are ignored on an owner, the conflict is not
    inst.set_tracked("chk", True, 2.4)
    assert inst.priority == 254
    inst.pop_actions()
    inst.handle_advert(adv(0, LOW), 3.0)  # the other owner stops
    assert inst.get_timer() == pytest.approx(3.0 + skew_time(254, 1.0))  # 2/256 s, not 1/256
    inst.handle_timer(inst.get_timer())
    sent = [a for a in inst.pop_actions() if isinstance(a, SendAdvert)]
    assert inst.state is State.MASTER and [a.priority for a in sent] == [254]
    # The other owner comes back as MASTER at 255: we yield by the ordinary rule (still explained).
    inst.handle_advert(adv(255, LOW), 9.0)
    acts = inst.pop_actions()
    assert [c.reason for c in acts if isinstance(c, StateChanged)] == [
        f"higher priority 255 from {LOW} (ours lowered to 254: two address owners)"]
    assert not [a for a in acts if isinstance(a, PriorityChanged)]


def test_reload_restores_255_and_a_master_advertises_it_at_once():
    inst = owner(LOW)
    inst.handle_advert(adv(255, HIGH), 1.0)
    inst.handle_advert(adv(0, HIGH), 4.0)
    inst.handle_timer(inst.get_timer())
    inst.pop_actions()
    assert inst.state is State.MASTER and inst.priority == 254
    inst.on_reload(6.3)
    acts = inst.pop_actions()
    assert [type(a).__name__ for a in acts] == ["PriorityChanged", "SendAdvert"]
    assert (acts[0].old, acts[0].new) == (254, 255) and "configuration reloaded" in acts[0].reason
    assert acts[1].priority == 255 and acts[1].at == 6.3
    assert inst.get_timer() == pytest.approx(7.3)  # cadence restarted from the reload advert
    inst.on_reload(8.0)  # nothing to restore: nothing happens
    assert inst.pop_actions() == [] and inst.snapshot()["owner_conflict"] is None


def test_backup_owner_hearing_an_owner_stays_backup_at_255():
    inst = owner(HIGH, state="BACKUP")
    for t in (1.0, 2.0, 3.0, 4.0):
        inst.handle_advert(adv(255, LOW), t)
        inst.handle_timer(t)
    assert inst.state is State.BACKUP and inst.priority == 255 and inst.pop_actions() == []


def test_non_owner_at_254_hearing_an_owner_is_the_ordinary_case():
    spec = InstanceSpec("VI_1", 51, 254, primary_address=HIGH, advert_addresses=("192.168.231.10",))
    inst = VrrpInstance(spec)
    inst.start(0.0)
    inst.handle_timer(inst.get_timer())
    inst.pop_actions()
    inst.handle_advert(adv(255, LOW), 5.0)
    acts = inst.pop_actions()
    assert not [a for a in acts if isinstance(a, PriorityChanged)] and inst.priority == 254
    assert [c.reason for c in acts if isinstance(c, StateChanged)] == [f"higher priority 255 from {LOW}"]
