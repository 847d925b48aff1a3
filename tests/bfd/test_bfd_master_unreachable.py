"""VrrpInstance.master_unreachable: a BFD Down to the master's address ends the wait (fake clock)."""

from __future__ import annotations

import pytest

from chimeha.vrrp.events import InstanceSpec, State, StateChanged, TrackSpec
from chimeha.vrrp.instance import VrrpInstance
from chimeha.vrrp.packet import Advertisement
from chimeha.vrrp.timing import skew_time

ME, MASTER = "192.168.231.12", "192.168.231.11"
WHY = "BFD to 192.168.231.11 down: control detection time expired, 150 ms"


def backup(prio=254, version=2, tracks=()):
    i = VrrpInstance(InstanceSpec("VI_1", 51, prio, version=version, primary_address=ME, tracks=tracks,
                                  advert_addresses=("192.168.231.10",), virtual_ipaddresses=("192.168.231.10/32",)))
    i.start(0.0)
    i.handle_advert(Advertisement(version, 51, 255, 1.0, ("192.168.231.10",), MASTER), 0.5)
    i.pop_actions()
    assert i.state is State.BACKUP and i.master == MASTER
    return i


def test_takeover_after_skew_time_not_master_down_interval():
    i = backup(254)
    assert i.get_timer() == pytest.approx(0.5 + 3 + skew_time(254, 1.0, 2))
    assert i.master_unreachable(MASTER, 1.0, WHY) is True
    assert i.get_timer() == pytest.approx(1.0 + (256 - 254) / 256)  # 7.8 ms
    i.handle_timer(1.0 + 2 / 256)
    ch = [a for a in i.pop_actions() if isinstance(a, StateChanged)]
    assert i.state is State.MASTER and ch[0].reason == WHY


def test_skew_time_still_orders_several_backups():
    hi, lo = backup(200), backup(150)
    hi.master_unreachable(MASTER, 1.0, WHY)
    lo.master_unreachable(MASTER, 1.0, WHY)
    assert hi.get_timer() < lo.get_timer()
    assert lo.get_timer() - 1.0 == pytest.approx((256 - 150) / 256, abs=1e-6)
    took = hi.get_timer()
    hi.handle_timer(took)
    assert hi.state is State.MASTER
    # the new master's advert reaches the lower backup before its skew runs out: it stays BACKUP
    lo.handle_advert(Advertisement(2, 51, 200, 1.0, ("192.168.231.10",), ME), took + 0.001)
    lo.handle_timer(1.0 + (256 - 150) / 256)
    assert lo.state is State.BACKUP


def test_false_alarm_an_advert_from_the_master_re_arms_the_timer():
    i = backup(254)
    i.master_unreachable(MASTER, 1.0, WHY)
    i.handle_advert(Advertisement(2, 51, 255, 1.0, ("192.168.231.10",), MASTER), 1.005)
    i.handle_timer(1.0 + 2 / 256)
    assert i.state is State.BACKUP
    assert i.get_timer() == pytest.approx(1.005 + 3 + 2 / 256)


def test_other_addresses_and_other_states_are_ignored():
    i = backup(254)
    before = i.get_timer()
    assert i.master_unreachable("192.168.231.99", 1.0, WHY) is False
    assert i.get_timer() == before
    m = VrrpInstance(InstanceSpec("VI_1", 51, 255, initial_state="MASTER", primary_address=MASTER))
    m.start(0.0)
    assert m.master_unreachable(ME, 1.0) is False and m.state is State.MASTER
    assert VrrpInstance(InstanceSpec("VI_1", 51, 100)).master_unreachable(MASTER, 0.0) is False  # INIT


def test_never_delays_an_earlier_takeover():
    i = backup(254)
    i.handle_advert(Advertisement(2, 51, 0, 1.0, ("192.168.231.10",), MASTER), 1.0)  # priority 0 already heard
    t = i.get_timer()
    assert i.master_unreachable(MASTER, 1.005, WHY) is False
    assert i.get_timer() == t


def test_v3_skew_uses_the_masters_interval():
    i = backup(254, version=3)
    i.master_unreachable(MASTER, 2.0)
    assert i.get_timer() == pytest.approx(2.0 + (256 - 254) * 1.0 / 256)


def test_with_a_weighted_track_the_new_priority_sets_the_skew():
    t = TrackSpec("peer", "bfd", 60, True, init_ok=False)  # track_bfd { peer weight 60 reverse }
    i = backup(150, tracks=(t,))
    i.set_tracked("peer", True, 0.6)
    assert i.priority == 90
    i.set_tracked("peer", False, 1.0, detail="(BFD to 192.168.231.11) down")
    assert i.priority == 150
    i.master_unreachable(MASTER, 1.0, WHY)
    assert i.get_timer() == pytest.approx(1.0 + (256 - 150) / 256)


def test_weight_zero_track_faults_instead():
    t = TrackSpec("peer", "bfd", 0, False, init_ok=False)
    i = VrrpInstance(InstanceSpec("VI_1", 51, 254, primary_address=ME, tracks=(t,)))
    i.start(0.0)
    assert i.state is State.FAULT  # a tracked session starts Down
    i.set_tracked("peer", True, 0.1)
    assert i.state is State.BACKUP
