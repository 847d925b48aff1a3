"""vrrp_track_process in the pure core: keepalived 2.2.7's matching and its quorum with delays (fake clock)."""

from __future__ import annotations

import pytest

from chimeha.track.process import NO_MAX, ProcessQuorum, ProcessRule, params_match, quorum_ok


def cmd(*argv: str) -> bytes:
    return b"".join(a.encode() + b"\0" for a in argv)


# ------------------------------------------------------------------ matching
def test_name_is_compared_exactly_with_comm_not_as_a_regex():
    r = ProcessRule.from_config(("ssh",))
    assert not r.full_command and r.param_match == "none"
    assert r.matches("ssh", cmd("/usr/bin/ssh", "host"))
    assert not r.matches("sshd", cmd("/usr/sbin/sshd", "-D"))  # pgrep ssh would match sshd
    assert not r.matches("ss", cmd("ss"))
    assert r.matches("ssh", b"")


def test_a_name_longer_than_comm_never_matches_without_full_command():
    # keepalived compares the whole configured name with the 15-character comm (no truncation).
    r = ProcessRule.from_config(("averyveryverylongname",))
    assert not r.matches("averyveryverylo", cmd("averyveryverylongname"))
    full = ProcessRule.from_config(("averyveryverylongname",), full_command=True)
    assert full.matches("averyveryverylo", cmd("averyveryverylongname", "x"))


def test_full_command_compares_argv0_exactly_not_its_basename():
    r = ProcessRule.from_config(("/usr/sbin/nginx",), full_command=True)
    assert r.matches("nginx", cmd("/usr/sbin/nginx", "-g", "daemon off;"))
    assert not r.matches("nginx", cmd("nginx", "-g"))
    assert not r.matches("/usr/sbin/nginx", cmd("/usr/local/sbin/nginx"))


def test_parameters_imply_full_command_and_an_exact_match():
    r = ProcessRule.from_config(("sleep", "1000"))
    assert r.full_command and r.param_match == "exact" and r.params == b"1000\0"
    assert r.matches("sleep", cmd("sleep", "1000"))
    assert not r.matches("sleep", cmd("sleep", "1000", "1"))
    assert not r.matches("sleep", cmd("sleep", "100"))
    assert not r.matches("sleep", cmd("sleep"))
    assert not r.matches("sleep", cmd("/bin/sleep", "1000"))  # argv[0] is compared, exactly


def test_bare_param_match_means_no_parameters_at_all():
    r = ProcessRule.from_config(("nginx",), "exact")
    assert r.full_command
    assert r.matches("nginx", cmd("nginx"))
    assert not r.matches("nginx", cmd("nginx", "-g"))


def test_partial_compares_the_first_parameters_exactly():
    r = ProcessRule.from_config(("app", "-c", "/etc/app.conf"), "partial")
    assert r.matches("app", cmd("app", "-c", "/etc/app.conf"))
    assert r.matches("app", cmd("app", "-c", "/etc/app.conf", "-d"))
    assert not r.matches("app", cmd("app", "-c", "/etc/app.conf.bak"))
    assert not r.matches("app", cmd("app", "-c"))
    assert not r.matches("app", cmd("app", "-d", "-c", "/etc/app.conf"))


def test_initial_lets_the_last_parameter_be_longer():
    r = ProcessRule.from_config(("app", "--conf=/etc"), "initial")
    assert r.matches("app", cmd("app", "--conf=/etc/app.conf"))
    assert r.matches("app", cmd("app", "--conf=/etc", "more"))
    assert not r.matches("app", cmd("app", "--conf=/var/a"))
    # only the last one: earlier parameters are still compared whole
    r2 = ProcessRule.from_config(("app", "-c", "/etc"), "initial")
    assert r2.matches("app", cmd("app", "-c", "/etc/x"))
    assert not r2.matches("app", cmd("app", "-cx", "/etc/x"))


def test_param_match_without_parameters_accepts_any():
    for mode in ("partial", "initial"):
        r = ProcessRule.from_config(("app",), mode)
        assert r.full_command
        assert r.matches("whatever", cmd("app", "a", "b")) and r.matches("x", cmd("app"))


def test_a_quoted_parameter_with_a_space_is_one_parameter():
    r = ProcessRule.from_config(("/opt/a b", "param 2"))
    assert r.matches("a b", cmd("/opt/a b", "param 2"))
    assert not r.matches("a b", cmd("/opt/a b", "param", "2"))


def test_params_match_is_byte_wise_like_keepalived():
    assert params_match("exact", b"", b"")
    assert not params_match("exact", b"", b"x\0")
    assert params_match("initial", b"\0", b"anything\0")  # a single empty parameter
    assert not params_match("partial", b"a\0b\0", b"a\0")


def test_unknown_param_match_is_refused():
    with pytest.raises(ValueError):
        ProcessRule.from_config(("x",), "fuzzy")


# ------------------------------------------------------------------ quorum
def test_quorum_bounds():
    assert [quorum_ok(2, 3, n) for n in range(5)] == [False, False, True, True, False]
    assert [quorum_ok(0, 0, n) for n in range(3)] == [True, False, False]  # quorum_max 0: none may run
    assert quorum_ok(1, NO_MAX, 10_000)


def test_initial_state_is_the_quorum_of_what_runs():
    q = ProcessQuorum(quorum=2)
    assert q.start({10}, 0.0) is False and q.count == 1
    q = ProcessQuorum(quorum=2)
    assert q.start({10, 11}, 0.0) is True


def test_exec_appearance_and_exit_take_effect_at_once_without_delays():
    q = ProcessQuorum(quorum=2)
    q.start({1}, 0.0)
    assert q.add(2, 1.0) is True
    assert q.add(3, 1.1) is None  # no bound crossed
    assert q.remove(3, 1.2) is None
    assert q.remove(2, 1.3) is False
    assert q.next_deadline() is None


def test_terminate_delay_holds_the_loss_and_then_reports_it():
    q = ProcessQuorum(terminate_delay=2.0)
    q.start({1}, 0.0)
    assert q.remove(1, 10.0) is None and q.up and q.pending() == "terminate"
    assert q.next_deadline() == 12.0
    assert q.handle_timer(11.999) is None
    assert q.handle_timer(12.0) is False and q.next_deadline() is None


def test_a_restart_within_terminate_delay_never_shows():
    q = ProcessQuorum(terminate_delay=2.0)
    q.start({1}, 0.0)
    assert q.remove(1, 10.0) is None
    assert q.add(2, 11.0) is None  # exec of the new one cancels the terminate timer
    assert q.up and q.next_deadline() is None
    assert q.handle_timer(20.0) is None


def test_fork_delay_holds_a_gain_by_fork_but_not_by_exec():
    q = ProcessQuorum(quorum=2, fork_delay=1.5)
    q.start({1}, 0.0)
    assert q.add(2, 5.0, forked=True) is None and not q.up and q.pending() == "fork"
    assert q.handle_timer(6.4) is None
    assert q.handle_timer(6.5) is True
    # by exec (or a scan): at once, as keepalived's check_process does
    q2 = ProcessQuorum(quorum=2, fork_delay=1.5)
    q2.start({1}, 0.0)
    assert q2.add(2, 5.0) is True


def test_a_fork_that_exits_within_fork_delay_never_shows():
    q = ProcessQuorum(quorum=1, quorum_max=1, fork_delay=1.0, terminate_delay=1.0)
    q.start({1}, 0.0)
    assert q.add(2, 5.0, forked=True) is None  # two: over quorum_max, held by fork_delay
    assert q.remove(2, 5.2) is None  # back to one: the fork timer is cancelled, no terminate timer
    assert q.up and q.next_deadline() is None


def test_a_fork_that_execs_away_within_fork_delay_never_shows():
    q = ProcessQuorum(quorum=1, quorum_max=1, fork_delay=1.0)
    q.start({1}, 0.0)
    q.add(2, 5.0, forked=True)
    assert q.remove(2, 5.01, exited=False) is None and q.up and q.next_deadline() is None


def test_a_fork_past_quorum_max_goes_down_after_fork_delay():
    q = ProcessQuorum(quorum=1, quorum_max=1, fork_delay=1.0)
    q.start({1}, 0.0)
    q.add(2, 5.0, forked=True)
    assert q.handle_timer(6.0) is False
    assert q.remove(2, 7.0) is True  # back within quorum_max: up at once (no terminate_delay)


def test_exec_away_is_at_once_even_with_terminate_delay():
    q = ProcessQuorum(terminate_delay=3.0)
    q.start({1}, 0.0)
    assert q.remove(1, 1.0, exited=False) is False


def test_quorum_max_zero_is_up_only_while_nothing_runs():
    q = ProcessQuorum(quorum=0, quorum_max=0, terminate_delay=1.0)
    assert q.start(set(), 0.0) is True
    assert q.add(7, 1.0) is False
    assert q.remove(7, 2.0) is None and q.handle_timer(3.0) is True  # the exit is delayed too


def test_unknown_and_repeated_pids_change_nothing():
    q = ProcessQuorum()
    q.start({1}, 0.0)
    assert q.add(1, 1.0) is None and q.remove(99, 1.0) is None and q.count == 1


def test_resync_after_lost_events():
    q = ProcessQuorum(terminate_delay=2.0)
    q.start({1}, 0.0)
    assert q.resync({1, 2}, 1.0) is None
    assert q.resync(set(), 2.0) is None and q.next_deadline() == 4.0  # a loss: after terminate_delay
    assert q.handle_timer(4.0) is False
    assert q.resync({5}, 5.0) is True  # a gain: at once
