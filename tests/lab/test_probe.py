"""The client prober's bookkeeping: parsing its lines and turning them into outages."""

import pytest

from chimeha.lab.probe import ProbeResult, _split_target, outage
import argparse


def _series(pattern: str, start: float = 10.0, step: float = 0.02, target: str = "v:1"):
    """'++--+' -> probe results every `step` seconds."""
    return [ProbeResult(start + i * step, target, ch == "+", "server1" if ch == "+" else "refused")
            for i, ch in enumerate(pattern)]


def test_no_failures_no_outage():
    o = outage(_series("+++++"), 0, 100)
    assert o.total == 0 and o.longest == 0 and o.failures == 0 and o.probes == 5 and o.recovered


def test_one_run_counts_from_first_failure_to_first_success():
    res = _series("++---+++")
    o = outage(res, 0, 100)
    # failures at indexes 2,3,4 ; success at 5 -> 3 intervals
    assert o.total == pytest.approx(0.06)
    assert o.failures == 3 and o.recovered


def test_two_runs_are_summed_and_longest_is_kept():
    o = outage(_series("+--+----+"), 0, 100)
    assert o.total == pytest.approx(0.04 + 0.08)
    assert o.longest == pytest.approx(0.08)


def test_unrecovered_run_extends_to_window_end():
    res = _series("++--")
    o = outage(res, 0, 10.5)
    assert o.total == pytest.approx(10.5 - 10.04)
    assert not o.recovered


def test_window_excludes_results_outside_it():
    res = _series("--++--++")
    o = outage(res, 10.05, 10.13)  # indexes 3..6: "+--+"
    assert o.probes == 4
    assert o.total == pytest.approx(0.04)


def test_parse_round_trip_and_garbage():
    r = ProbeResult(12.5, "192.168.231.10:8801", True, "server2")
    assert ProbeResult.parse(r.format()) == r
    assert ProbeResult.parse("garbage") is None
    assert ProbeResult.parse("x 1.2.3.4:80 1 s") is None
    assert ProbeResult.parse("1.0 1.2.3.4:80 2 s") is None


def test_target_syntax_errors_are_explained():
    assert _split_target("192.168.231.10:8801") == ("192.168.231.10", 8801)
    for bad in ("nohost", ":80", "1.2.3.4:x", "1.2.3.4:70000"):
        with pytest.raises(argparse.ArgumentTypeError, match="HOST:PORT"):
            _split_target(bad)
