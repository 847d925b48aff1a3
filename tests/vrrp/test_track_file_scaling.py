"""The instance with a scaling track_file: set_tracked(..., value=)."""

import pytest

from chimeha.vrrp.events import InstanceSpec, PriorityChanged, State, StateChanged, TrackSpec
from chimeha.vrrp.instance import VrrpInstance
from chimeha.vrrp.timing import master_down_interval


def make(prio=100, state="BACKUP", tracks=()):
    return VrrpInstance(InstanceSpec("VI_1", 51, prio, initial_state=state, advert_addresses=("192.168.231.10",),
                                     virtual_ipaddresses=("192.168.231.10/32",),
                                     primary_address="192.168.231.12", tracks=tuple(tracks)))


def prio_changes(actions):
    return [(a.old, a.new, a.reason) for a in actions if isinstance(a, PriorityChanged)]


def test_priority_follows_the_file_value():
    i = make(100, tracks=[TrackSpec("tf", "file", 10)])
    i.start(0.0)
    i.pop_actions()
    i.set_tracked("tf", False, 1.0, value=2)
    assert i.priority == 120
    assert prio_changes(i.pop_actions()) == [(110, 120, "track_file tf value 2 x weight 10 = +20")]
    i.set_tracked("tf", False, 2.0, value=5)  # still "non-zero": must rescale
    assert prio_changes(i.pop_actions()) == [(120, 150, "track_file tf value 5 x weight 10 = +50")]
    i.set_tracked("tf", False, 3.0, value=5)  # unchanged value: nothing to say
    assert i.pop_actions() == []
    i.set_tracked("tf", True, 4.0, value=0)
    assert i.priority == 100
    i.set_tracked("tf", False, 5.0, value=-3)
    assert i.priority == 70 and i.state is State.BACKUP


def test_reverse_negates_and_zero_clamps_to_one_without_fault():
    i = make(100, tracks=[TrackSpec("tf", "file", 10, reverse=True)])
    i.start(0.0)
    i.set_tracked("tf", False, 1.0, value=3)
    assert i.priority == 70
    i.set_tracked("tf", False, 2.0, value=25)  # -250: 100 - 250 < 1
    assert i.priority == 1 and i.state is State.BACKUP and not i.in_fault


def test_result_below_minus_253_faults_and_recovers():
    i = make(100, "MASTER", tracks=[TrackSpec("tf", "file", -100)])
    i.start(0.0)
    i.handle_timer(i.get_timer())
    assert i.state is State.MASTER
    i.pop_actions()
    i.set_tracked("tf", False, 5.0, value=3)  # -300
    acts = i.pop_actions()
    assert i.state is State.FAULT
    reasons = [a.reason for a in acts if isinstance(a, StateChanged)]
    assert reasons == ["track_file tf value 3 x weight -100 = -300 (below -253)"]
    i.set_tracked("tf", False, 6.0, value=1)  # -100
    assert i.state is State.BACKUP and i.priority == 1
    assert i.get_timer() == pytest.approx(6.0 + master_down_interval(1, 1.0))


def test_weight_zero_ignores_the_value_and_uses_ok():
    i = make(100, tracks=[TrackSpec("tf", "file", 0)])
    i.start(0.0)
    i.set_tracked("tf", False, 1.0, value=7)
    assert i.state is State.FAULT and i.priority == 100
    i.set_tracked("tf", True, 2.0, value=0)
    assert i.state is State.BACKUP


def test_value_is_ignored_by_other_kinds_and_old_callers_still_work():
    i = make(100, tracks=[TrackSpec("chk", "script", 10), TrackSpec("tf", "file", 10)])
    i.start(0.0)
    i.set_tracked("chk", True, 1.0, value=9)
    assert i.priority == 120  # script +10, file +10 (OK, no value yet)
    i.set_tracked("tf", False, 2.0)
    assert i.priority == 110
    i.set_tracked("tf", True, 3.0, value=4)
    assert i.priority == 150
    i.set_tracked("tf", False, 4.0)  # an OK/failed report replaces the value
    assert i.priority == 110


def test_start_in_fault_when_file_already_below_limit():
    i = make(100, tracks=[TrackSpec("tf", "file", 1)])
    i.set_tracked("tf", False, 0.0, value=-500)
    i.start(0.0)
    assert i.state is State.FAULT
    assert [a.reason for a in i.pop_actions() if isinstance(a, StateChanged)] == [
        "track_file tf value -500 x weight 1 = -500 (below -253) at start"]
