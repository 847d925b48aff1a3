"""Rise/fall hysteresis and tracking weight arithmetic."""

import pytest

from chimeha.track import Hysteresis, effective_priority, transition_detail
from chimeha.track.weights import adjustment, causes_fault
from chimeha.vrrp.events import TrackSpec


def test_fall_needs_consecutive_failures():
    h = Hysteresis(rise=2, fall=3)
    assert [h.feed(x) for x in (False, False, True, False, False)] == [None] * 5
    assert h.ok
    assert h.feed(False) is False and not h.ok


def test_rise_needs_consecutive_successes_and_init_fail_starts_failed():
    h = Hysteresis(rise=2, fall=1, init_fail=True)
    assert not h.ok
    assert h.feed(True) is None and h.feed(False) is None and h.feed(True) is None
    assert h.feed(True) is True and h.ok
    assert h.feed(True) is None


def test_hysteresis_rejects_zero():
    with pytest.raises(ValueError):
        Hysteresis(rise=0)


def test_positive_weight_added_while_ok_negative_while_failed():
    up, down = TrackSpec("a", weight=10), TrackSpec("b", weight=-20)
    assert effective_priority(100, [up, down], {}).priority == 110
    assert effective_priority(100, [up, down], {"a": False}).priority == 100
    assert effective_priority(100, [up, down], {"b": False}).priority == 90
    assert effective_priority(100, [up, down], {"a": False, "b": False}).priority == 80


def test_reverse_flips_the_direction():
    assert adjustment(TrackSpec("a", weight=10, reverse=True), True) == -10
    assert adjustment(TrackSpec("a", weight=10, reverse=True), False) == 0
    assert adjustment(TrackSpec("a", weight=-10, reverse=True), False) == 10
    assert causes_fault(TrackSpec("a", weight=0, reverse=True), True)
    assert not causes_fault(TrackSpec("a", weight=0, reverse=True), False)


def test_weight_zero_failure_is_a_fault_named_for_the_operator():
    eff = effective_priority(100, [TrackSpec("chk_server"), TrackSpec("ens160", "interface")], {"ens160": False})
    assert eff.fault and eff.faults == ("track_interface ens160",)


def test_clamped_to_1_254_for_non_owners():
    assert effective_priority(250, [TrackSpec("a", weight=50)], {}).priority == 254
    assert effective_priority(10, [TrackSpec("a", weight=-50)], {"a": False}).priority == 1


def test_owner_keeps_255_whatever_the_weights():
    eff = effective_priority(255, [TrackSpec("a", weight=-100), TrackSpec("b")], {"a": False})
    assert eff.priority == 255 and not eff.fault
    assert effective_priority(255, [TrackSpec("b")], {"b": False}).fault


def test_init_ok_false_counts_as_failed_until_told():
    t = TrackSpec("a", weight=-30, init_ok=False)
    assert effective_priority(100, [t], {}).priority == 70
    assert effective_priority(100, [t], {"a": True}).priority == 100


def test_detail_names_the_threshold_crossed():
    h = Hysteresis(rise=3, fall=2)
    assert h.detail() == "OK (initial)"
    h.feed(False)
    assert h.detail() == "OK (initial)"  # one failure of two: still OK, nothing crossed
    assert h.feed(False) is False and h.detail() == "failed 2/2 times"
    assert [h.feed(True) for _ in range(3)] == [None, None, True]
    assert h.detail() == "succeeded 3/3 times"
    assert Hysteresis(init_fail=True).detail() == "failed (init_fail)"
    assert transition_detail(False, rise=5, fall=1) == "failed 1/1 times"
    assert transition_detail(True, rise=5, fall=1) == "succeeded 5/5 times"
