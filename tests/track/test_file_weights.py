"""track_file scaling: value x weight (keepalived.conf(5), "track_file")."""

import pytest

from chimeha.track import effective_priority
from chimeha.track.weights import file_contribution, file_faults, scales
from chimeha.vrrp.events import TrackSpec


def f(weight, reverse=False, name="tf"):
    return TrackSpec(name, "file", weight, reverse)


@pytest.mark.parametrize("weight,reverse,value,expected", [
    (10, False, 0, 100),
    (10, False, 1, 110),
    (10, False, 3, 130),
    (10, False, -2, 80),
    (-5, False, 4, 80),
    (-5, False, -4, 120),
    (10, True, 3, 70),
    (-5, True, 4, 120),
    (1, False, 17, 117),
])
def test_value_times_weight_is_added_to_the_priority(weight, reverse, value, expected):
    eff = effective_priority(100, [f(weight, reverse)], {}, {"tf": value})
    assert (eff.priority, eff.fault) == (expected, False)


def test_several_files_and_a_script_add_up():
    tracks = [f(10, name="a"), f(-3, name="b"), TrackSpec("chk", weight=7)]
    eff = effective_priority(100, tracks, {"chk": True}, {"a": 2, "b": 5})
    assert eff.priority == 100 + 20 - 15 + 7


def test_result_clamps_to_1_and_254_without_fault():
    # keepalived.conf(5): results within -253..253 are added and the effective
    # priority "will be limited to the range [1,254]": reaching 0 is not FAULT.
    low = effective_priority(100, [f(-1)], {}, {"tf": 150})
    assert (low.priority, low.fault) == (1, False)
    at_limit = effective_priority(100, [f(1)], {}, {"tf": -253})
    assert (at_limit.priority, at_limit.fault) == (1, False)
    high = effective_priority(100, [f(10)], {}, {"tf": 50})
    assert (high.priority, high.fault) == (254, False)


def test_result_below_minus_253_is_fault():
    eff = effective_priority(100, [f(1)], {}, {"tf": -254})
    assert eff.fault and eff.faults == ("track_file tf",)
    assert file_faults(f(1), -254) and not file_faults(f(1), -253)
    assert file_faults(f(100, reverse=True), 3)  # -300
    assert not file_faults(f(100, reverse=True), -3)  # +300: capped, not a fault


def test_result_above_253_counts_as_253():
    eff = effective_priority(1, [f(1000)], {}, {"tf": 1})
    assert eff.priority == 254
    eff = effective_priority(1, [f(1000), f(-100, name="b")], {}, {"tf": 1, "b": 1})
    assert eff.priority == 1 + 253 - 100


def test_weight_zero_keeps_ok_fault_and_ignores_values():
    assert not scales(f(0))
    eff = effective_priority(100, [f(0)], {"tf": False}, {"tf": 5})
    assert eff.fault and eff.priority == 100
    eff = effective_priority(100, [f(0)], {"tf": True}, {"tf": 0})
    assert not eff.fault and eff.priority == 100


def test_without_a_value_a_file_track_uses_ok_failed_rules():
    assert effective_priority(100, [f(10)], {"tf": True}).priority == 110
    assert effective_priority(100, [f(10)], {"tf": False}).priority == 100


def test_owner_ignores_file_weights_and_other_kinds_never_scale():
    assert effective_priority(255, [f(10)], {}, {"tf": -100}).priority == 255
    assert not effective_priority(255, [f(10)], {}, {"tf": -100}).fault
    # Values are only for files: a weighted script ignores one.
    script = TrackSpec("tf", "script", 10)
    assert effective_priority(100, [script], {"tf": True}, {"tf": 4}).priority == 110


def test_file_contribution_sign():
    assert file_contribution(f(7), 3) == 21
    assert file_contribution(f(7, True), 3) == -21
    assert file_contribution(f(-7, True), 3) == 21
