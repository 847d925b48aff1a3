"""RFC timer formulas."""

import pytest

from chimeha.vrrp.timing import master_down_interval, skew_time, wire_interval


@pytest.mark.parametrize("prio,expected", [(255, 1 / 256), (254, 2 / 256), (100, 156 / 256), (1, 255 / 256)])
def test_v2_skew_is_independent_of_interval(prio, expected):
    assert skew_time(prio, 1.0, 2) == pytest.approx(expected, abs=1e-6)
    assert skew_time(prio, 5.0, 2) == skew_time(prio, 1.0, 2)


def test_v3_skew_scales_with_master_interval():
    assert skew_time(100, 1.0, 3) == pytest.approx(156 / 256, abs=1e-6)
    assert skew_time(100, 0.1, 3) == pytest.approx(15.6 / 256, abs=1e-6)


def test_master_down_interval_seed_backup_is_3008ms():
    # server2 of the seed: priority 254, advert_int 1 -> 3 + 2/256 = 3.0078125
    assert master_down_interval(254, 1.0, 2) == pytest.approx(3.007812, abs=1e-6)


def test_down_timer_adverts_replaces_the_three():
    assert master_down_interval(200, 2.0, 2, down_timer_adverts=5) == pytest.approx(10 + 56 / 256, abs=1e-6)
    assert master_down_interval(200, 0.1, 3, down_timer_adverts=1) == pytest.approx(0.1 + 5.6 / 256, abs=1e-6)


def test_wire_interval_units():
    assert wire_interval(0.92, 2) == 1.0 and wire_interval(2.4, 2) == 2.0 and wire_interval(0.2, 2) == 1.0
    assert wire_interval(0.123, 3) == 0.12 and wire_interval(100, 3) == 40.95


def test_v3_skew_is_not_truncated_to_centiseconds():
    # Measured (bench/vrrp/RESULTS.md): keepalived's priority-1 backup at 0.1 s took over
    # ~100.9 ms after a priority 0, i.e. 255 x 0.1 / 256 = 99.6 ms, not 90 ms.
    assert skew_time(1, 0.1, 3) == 0.099609
    assert master_down_interval(1, 0.1, 3) == 0.399609
    assert skew_time(200, 0.1, 3) == 0.021875
