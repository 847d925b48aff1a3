"""The BFD session state machine (RFC 5880 6.2, 6.8) with a fake clock, to the millisecond."""

from __future__ import annotations

import pytest

from chimeha.bfd.packet import ControlPacket, Diag, SessionState
from chimeha.bfd.session import SendControl, Session, SessionSpec, ms

from bfd_pair import Pair

FAST = dict(min_tx=0.05, min_rx=0.05, multiplier=3)
UP, DOWN, INIT, ADMIN = SessionState.UP, SessionState.DOWN, SessionState.INIT, SessionState.ADMIN_DOWN


def up_pair(**kw) -> Pair:
    p = Pair(FAST, FAST, **kw)
    p.start()
    p.run_until(1.0)
    assert p.sa.state is UP and p.sb.state is UP
    return p


def test_three_way_handshake_goes_down_init_up_within_round_trips():
    p = Pair(FAST, FAST, delay=0.001)
    p.start()
    p.run_until(0.01)
    assert [(c.old, c.new) for c in p.changes_of("a")] == [(DOWN, INIT), (INIT, UP)]
    assert [(c.old, c.new) for c in p.changes_of("b")] == [(DOWN, INIT), (INIT, UP)]
    # both start at 0 with a 1 ms link: Init at 1 ms, Up at 2 ms
    assert [round(c.at, 6) for c in p.changes_of("a")] == [0.001, 0.002]


def test_slow_rate_until_up_then_poll_sequence_to_the_configured_rate():
    p = Pair(FAST, FAST)
    p.cut = True  # b is not running yet
    p.a.start(0.0)
    p._flush()
    first = [s for n, _, s in p.sent if n == "a"]
    assert first[0].packet.desired_min_tx == 1.0 and first[0].packet.state is DOWN  # RFC 5880 6.8.3
    p.run_until(3.0)  # b not started: a keeps sending once a second (jitter factor 1.0 here)
    times = [round(t, 6) for n, t, _ in p.sent if n == "a"]
    assert times == [0.0, 1.0, 2.0, 3.0]
    p.cut = False
    p.b.start(3.0)
    p._flush()
    p.run_until(4.0)
    assert p.sa.state is UP and p.sb.state is UP
    polls = [s.packet for n, _, s in p.sent if n == "a" and s.packet.poll]
    assert polls and polls[0].desired_min_tx == 0.05 and polls[0].state is UP
    assert any(s.packet.final for n, _, s in p.sent if n == "b")
    assert not p.sa.polling and p.sa.counters.polls_completed == 1
    assert p.sa.tx_interval() == 0.05 and p.sa.detection_time() == pytest.approx(0.15)


def test_detection_time_expiry_to_the_millisecond():
    p = up_pair()
    p.cut = True
    cut_at = p.now
    last_rx = p.sa.last_rx
    p.run_until(cut_at + 1.0)
    down = p.changes_of("a")[-1]
    assert down.new is DOWN and down.diag == Diag.DETECT_EXPIRED
    assert round(down.at - last_rx, 6) == 0.150  # 3 x max(50 ms, 50 ms)
    assert down.describe() == "BFD to 192.0.2.2 down: control detection time expired, 150 ms"
    assert p.sa.remote_discr == 0  # RFC 5880 6.8.1: forgotten after a detection time
    assert p.sa.desired_tx == 1.0  # back to the slow rate


def test_detection_uses_the_larger_of_our_rx_and_their_tx_times_their_multiplier():
    p = Pair(dict(min_tx=0.02, min_rx=0.1, multiplier=2), dict(min_tx=0.03, min_rx=0.01, multiplier=4))
    p.start()
    p.run_until(1.0)
    assert p.sa.detection_time() == pytest.approx(4 * 0.1)   # b's mult x max(a rx 100, b tx 30)
    assert p.sb.detection_time() == pytest.approx(2 * 0.02)  # a's mult x max(b rx 10, a tx 20)
    # each transmits at max(own desired tx, the other's required rx)
    assert p.sa.tx_interval() == pytest.approx(0.02)
    assert p.sb.tx_interval() == pytest.approx(0.1)


@pytest.mark.parametrize("r, mult, expect", [(0.0, 3, 0.75), (0.999999, 3, 1.0), (0.999999, 1, 0.9), (0.0, 1, 0.75)])
def test_jitter_is_75_to_100_percent_and_90_with_multiplier_1(r, mult, expect):
    s = Session(SessionSpec("s", "192.0.2.2", min_tx=0.1, multiplier=mult), 5, random=lambda: r)
    s.start(10.0)
    assert s.get_timer() == pytest.approx(10.0 + 1.0 * expect, abs=1e-5)  # slow rate 1 s while Down


def test_neighbor_admin_down_and_back():
    p = up_pair()
    p.a.admin_down("s", p.now)
    p._flush()
    p.run_until(p.now + 0.01)
    assert p.sa.state is ADMIN and p.sa.diag == Diag.ADMIN_DOWN
    b_down = p.changes_of("b")[-1]
    assert b_down.new is DOWN and b_down.diag == Diag.NEIGHBOR_DOWN
    assert "administratively down" in b_down.reason
    p.run_until(p.now + 5.0)
    assert p.sb.state is DOWN  # stays Down while the neighbour is AdminDown, no flapping
    assert p.sa.state is ADMIN
    p.a.admin_up("s", p.now)
    p._flush()
    p.run_until(p.now + 3.0)
    assert p.sa.state is UP and p.sb.state is UP


def test_peer_restart_with_a_new_discriminator():
    p = up_pair()
    old = p.sb.local_discr
    from chimeha.bfd.node import BfdNode
    p.b = BfdNode([SessionSpec("s", Pair.A, Pair.B, **FAST)], random=lambda: 0.123)
    p.b.start(p.now)  # restarted before a's detection time ran out
    p._flush()
    p.run_until(p.now + 2.0)
    a = [(c.old, c.new, c.diag) for c in p.changes_of("a")]
    assert (UP, DOWN, Diag.NEIGHBOR_DOWN) in a  # the new instance's Down is heard at once
    assert p.sa.state is UP and p.sa.remote_discr == p.sb.local_discr != old


def test_passive_waits_for_the_remote():
    p = Pair(FAST, dict(FAST, passive=True))
    p.b.start(0.0)
    p._flush()
    p.run_until(5.0)
    assert not [1 for n, _, _ in p.sent if n == "b"]
    p.a.start(p.now)
    p._flush()
    p.run_until(p.now + 1.0)
    assert p.sa.state is UP and p.sb.state is UP


def test_poll_answered_at_once_with_final():
    s = Session(SessionSpec("s", "192.0.2.2", **FAST), 5, random=lambda: 1.0)
    s.start(0.0)
    s.pop_actions()
    s.handle_packet(ControlPacket(state=DOWN, my_discr=9, poll=True), 0.3)
    sends = [a for a in s.pop_actions() if isinstance(a, SendControl)]
    assert len(sends) == 1 and sends[0].packet.final and not sends[0].packet.poll
    assert sends[0].packet.state is INIT and sends[0].at == 0.3


def test_timer_increase_waits_for_final_rx_decrease_too():
    p = up_pair(delay=0.02)
    t0 = p.now
    p.sa.set_timers(t0, min_tx=0.2, min_rx=0.02)
    p._flush()
    assert p.sa.polling
    assert p.sa.tx_interval() == pytest.approx(0.05)      # the larger tx waits for the Final
    assert p.sb.detection_time() == pytest.approx(0.15)  # b still has a's old 50 ms
    p.run_until(t0 + 0.01)
    assert p.sa.detection_time() == pytest.approx(0.15)  # smaller rx: old value until the Final
    p.run_until(t0 + 0.5)
    assert not p.sa.polling
    assert p.sa.tx_interval() == pytest.approx(0.2)
    assert p.sb.detection_time() == pytest.approx(0.6)
    assert p.sa.detection_time() == pytest.approx(3 * max(0.02, 0.05))
    assert p.sa.state is UP and p.sb.state is UP  # no flap through the renegotiation


def test_remote_required_min_rx_zero_stops_periodic_transmission():
    s = Session(SessionSpec("s", "192.0.2.2", **FAST), 5, random=lambda: 1.0)
    s.start(0.0)
    s.handle_packet(ControlPacket(state=DOWN, my_discr=9, required_min_rx=0.0), 0.1)
    assert s._tx_at is None
    assert s.get_timer() == pytest.approx(0.1 + 3 * 0.05 * 20)  # only detection (3 x 1 s desired tx default)


def test_snapshot_reports_states_intervals_and_counters():
    p = up_pair()
    snap = p.sa.snapshot()
    assert snap["state"] == "Up" and snap["remote_state"] == "Up"
    assert snap["detection_time_ms"] == pytest.approx(150) and snap["tx_interval_ms"] == pytest.approx(50)
    assert snap["counters"]["rx"] > 10 and snap["counters"]["up"] == 1
    assert snap["remote_discriminator"] == p.sb.local_discr


def test_ms_formatting():
    assert ms(0.15) == "150 ms" and ms(0.003312) == "3.312 ms"
