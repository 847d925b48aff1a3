"""The pure checker schedule, driven by a fake clock (no sockets, no sleeps)."""

from __future__ import annotations

from pytest import approx
from hypothesis import given, settings, strategies as st

from chimeha.check.schedule import CheckSchedule, combine
from chimeha.check.spec import CheckResult, Timing, resolve_timing
from chimeha.config.model import DnsCheck, HttpCheck, MiscCheck, RealServer, TcpCheck, VirtualServer

OK = CheckResult(True, "ok")
FAIL = CheckResult(False, "refused")


def run(sched: CheckSchedule, now: float, result: CheckResult):
    """Start a probe at ``now`` and finish it 0.01 s later; returns the transition."""
    sched.probe_started(now)
    return sched.probe_done(result, now + 0.01)


# --- timing defaults and inheritance --------------------------------------


def test_defaults_per_kind():
    tcp = resolve_timing(TcpCheck())
    assert (tcp.delay_loop, tcp.connect_timeout, tcp.retry, tcp.delay_before_retry, tcp.warmup, tcp.alpha) == \
        (60.0, 5.0, 1, 1.0, 60.0, False)
    assert resolve_timing(HttpCheck()).delay_before_retry == 3.0
    assert resolve_timing(HttpCheck(ssl=True)).delay_before_retry == 3.0
    dns = resolve_timing(DnsCheck(delay_loop=7))
    assert (dns.retry, dns.delay_before_retry) == (3, 7.0)
    assert resolve_timing(MiscCheck()).retry == 0


def RS(**kw) -> RealServer:
    return RealServer("10.0.0.1", port=80, weight=3, **kw)


VS = VirtualServer


def test_inheritance_checker_over_real_server_over_virtual_server():
    vs = VS(delay_loop=6, connect_timeout=3, retry=4, alpha=True)
    rs = RS(connect_timeout=2, delay_before_retry=0.5)
    t = resolve_timing(TcpCheck(connect_timeout=1), rs, vs)
    assert t.connect_timeout == 1          # checker wins
    assert t.delay_before_retry == 0.5     # from the real server
    assert (t.retry, t.delay_loop, t.alpha) == (4, 6.0, True)  # from the virtual server
    assert t.warmup == 6.0                 # defaults to the inherited delay_loop
    # An explicit retry on the virtual server beats DNS_CHECK's kind default.
    assert resolve_timing(DnsCheck(), rs, vs).retry == 4
    assert resolve_timing(DnsCheck(), RS(), VS(delay_loop=9)).delay_before_retry == 9.0


# --- warmup ------------------------------------------------------------------


def test_warmup_scatters_first_probe_and_zero_disables():
    s = CheckSchedule(Timing(delay_loop=10, warmup=8), random=lambda: 0.25)
    assert s.get_timer() is None
    s.start(100.0)
    assert s.get_timer() == approx(102.0)
    s0 = CheckSchedule(Timing(delay_loop=10, warmup=0), random=lambda: 0.9)
    s0.start(100.0)
    assert s0.get_timer() == 100.0


# --- retries and transitions -------------------------------------------------


def test_retries_before_declaring_down_then_delay_loop():
    s = CheckSchedule(Timing(delay_loop=5, retry=2, delay_before_retry=1.5, warmup=0), name="TCP_CHECK x")
    s.start(0.0)
    assert s.up
    assert run(s, 0.0, FAIL) is None
    assert s.get_timer() == approx(0.01 + 1.5)          # first retry after delay_before_retry
    assert run(s, 1.51, FAIL) is None
    assert s.get_timer() == approx(1.52 + 1.5)
    tr = run(s, 3.02, FAIL)
    assert tr is not None and tr.up is False and tr.at == 3.03
    assert "after 2 retries" in tr.reason and "refused" in tr.reason and tr.reason.startswith("TCP_CHECK x")
    assert s.get_timer() == approx(3.03 + 5)           # back to delay_loop once down
    # Down and still failing: no retries, no repeated transition.
    assert run(s, 8.03, FAIL) is None
    assert s.get_timer() == approx(8.04 + 5)
    # One success brings it back up.
    tr = run(s, 13.04, OK)
    assert tr is not None and tr.up is True
    assert s.get_timer() == approx(13.05 + 5)
    assert run(s, 18.05, OK) is None


def test_retry_zero_fails_on_first_failure():
    s = CheckSchedule(Timing(delay_loop=2, retry=0, warmup=0))
    s.start(0.0)
    tr = run(s, 0.0, FAIL)
    assert tr is not None and not tr.up and "retr" not in tr.reason


def test_success_during_retries_resets_the_count():
    s = CheckSchedule(Timing(delay_loop=2, retry=1, delay_before_retry=1, warmup=0))
    s.start(0.0)
    assert run(s, 0, FAIL) is None
    assert run(s, 1, OK) is None              # still up, nothing reported
    assert s.retries_done == 0
    assert run(s, 3, FAIL) is None            # a fresh retry budget
    assert run(s, 4, FAIL).up is False


def test_alpha_starts_down_and_first_success_reports_up():
    s = CheckSchedule(Timing(delay_loop=2, retry=3, warmup=0, alpha=True))
    s.start(0.0)
    assert not s.up
    assert run(s, 0, FAIL) is None
    assert s.get_timer() == approx(2.01)              # down: no retry schedule
    tr = run(s, 2.01, OK)
    assert tr.up is True


def test_dynamic_weight_change_while_up_is_reported_once():
    s = CheckSchedule(Timing(delay_loop=1, warmup=0))
    s.start(0)
    tr = run(s, 0, CheckResult(True, "exit 12", weight=10))
    assert tr.up and tr.weight == 10
    assert run(s, 1, CheckResult(True, "exit 12", weight=10)) is None
    tr = run(s, 2, CheckResult(True, "exit 7", weight=5))
    assert tr.up and tr.weight == 5


def test_no_timer_while_probe_in_flight():
    s = CheckSchedule(Timing(delay_loop=1, warmup=0))
    s.start(0)
    s.probe_started(0)
    assert s.get_timer() is None
    s.probe_done(OK, 0.3)
    assert s.get_timer() == approx(1.3)


@settings(max_examples=300, deadline=None)
@given(results=st.lists(st.booleans(), max_size=60), retry=st.integers(0, 4), alpha=st.booleans())
def test_transitions_alternate_and_need_retry_plus_one_failures(results, retry, alpha):
    """Against a reference model: down only after retry+1 consecutive failures while up."""
    s = CheckSchedule(Timing(delay_loop=3, retry=retry, delay_before_retry=1, warmup=0, alpha=alpha))
    s.start(0.0)
    now, up, streak = 0.0, not alpha, 0
    for ok in results:
        now = s.get_timer()
        tr = run(s, now, OK if ok else FAIL)
        if ok:
            streak = 0
            expect = None if up else True
            up = True
        else:
            streak += 1
            expect = False if up and streak > retry else None
            if expect is False:
                up, streak = False, 0
            elif not up:
                streak = 0
        assert (tr.up if tr else None) == expect
        assert s.up == up
        # Next probe: retry delay only while an up server is failing.
        assert s.get_timer() == approx(now + 0.01 + (1 if (up and not ok) else 3))


def test_combine_all_up_and_dynamic_weights():
    assert combine([], 3) == (True, 3)
    assert combine([(True, None), (True, None)], 3) == (True, 3)
    assert combine([(True, None), (False, None)], 3) == (False, 3)
    assert combine([(True, 10)], 3) == (True, 10)
    # Two dynamic checkers: each adds its offset from the configured weight.
    assert combine([(True, 10), (True, 5)], 3) == (True, 12)
    assert combine([(True, 0), (True, 0)], 3) == (True, 0)


def test_schedule_and_spec_stay_pure():
    """The state machine and its data never import I/O or clocks (project rule for the core)."""
    import ast
    import pathlib

    import chimeha.check.schedule as sched_mod
    import chimeha.check.spec as spec_mod
    forbidden = {"asyncio", "socket", "subprocess", "time", "select", "selectors", "threading"}
    for mod in (sched_mod, spec_mod):
        tree = ast.parse(pathlib.Path(mod.__file__).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
                if node.module.startswith("chimeha"):
                    # the config model is pure core too
                    assert node.module in ("chimeha.check.spec", "chimeha.config.model"), node.module
        assert not imported & forbidden, (mod.__name__, imported & forbidden)
