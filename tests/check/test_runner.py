"""CheckerRunner and RealServerMonitor on the real event loop, against real servers."""

from __future__ import annotations

import asyncio
import sys

from chimeha.check import CheckerRunner, RealServerMonitor, Target
from chimeha.check.spec import Timing
from chimeha.config.model import MiscCheck, RealServer, TcpCheck

FAST = Timing(delay_loop=0.05, connect_timeout=3, retry=1, delay_before_retry=0.05, warmup=0)


async def listen(port=0):
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port, reuse_address=True)
    return server, server.sockets[0].getsockname()[1]


async def test_runner_reports_only_changes(wait_for):
    server, port = await listen()
    changes = []
    runner = CheckerRunner(TcpCheck(), Target("127.0.0.1", port), changes.append, timing=FAST)
    runner.start()
    try:
        await wait_for(lambda: runner.schedule.probes >= 5)
        assert changes == [] and runner.up          # up from the start, successes are not news
        server.close()
        await server.wait_closed()
        await wait_for(lambda: changes)
        assert changes[0].ok is False and "after 1 retry" in changes[0].detail and "refused" in changes[0].detail
        n = runner.schedule.probes
        await wait_for(lambda: runner.schedule.probes >= n + 5)
        assert len(changes) == 1                    # still down: no repeats
        server, _ = await listen(port)
        await wait_for(lambda: len(changes) == 2)
        assert changes[1].ok is True and not runner.schedule.retries_done
    finally:
        await runner.stop()
        server.close()
    assert runner._task is None


async def test_runner_alpha_starts_down_and_callback_errors_do_not_stop_it(wait_for):
    server, port = await listen()
    calls = []

    def bad(result):
        calls.append(result)
        raise RuntimeError("consumer bug")

    runner = CheckerRunner(TcpCheck(), Target("127.0.0.1", port), bad,
                           timing=Timing(delay_loop=0.05, connect_timeout=3, retry=0, warmup=0, alpha=True))
    assert runner.up is False
    runner.start()
    try:
        await wait_for(lambda: calls)
        assert calls[0].ok
        server.close()
        await server.wait_closed()
        await wait_for(lambda: len(calls) == 2)     # the raising callback did not kill the runner
        assert calls[1].ok is False
    finally:
        await runner.stop()


async def test_real_server_up_only_when_all_checkers_up(tmp_path, wait_for):
    server, port = await listen()
    flag = tmp_path / "code"
    flag.write_text("0")
    script = (sys.executable, "-c", f"import sys; sys.exit(int(open({str(flag)!r}).read()))")
    rs = RealServer("127.0.0.1", port=port, weight=5, delay_loop=0.05, connect_timeout=3, retry=0,
                    delay_before_retry=0.05, warmup=0,
                    checkers=(TcpCheck(), MiscCheck(misc_path=script, misc_dynamic=True, misc_timeout=5)))
    changes = []
    mon = RealServerMonitor.from_config(rs, None, lambda up, w, why: changes.append((up, w, why)))
    assert [r.timing.delay_loop for r in mon.runners] == [0.05, 0.05]
    mon.start()
    try:
        await wait_for(lambda: all(r.schedule.probes >= 2 for r in mon.runners))
        assert changes == [] and mon.up and mon.weight == 5
        flag.write_text("9")                          # dynamic: weight 7
        await wait_for(lambda: changes)
        assert changes[-1][:2] == (True, 7)
        flag.write_text("1")                          # the script fails: server down
        await wait_for(lambda: changes[-1][0] is False)
        assert "MISC_CHECK" in changes[-1][2]
        server.close()
        await server.wait_closed()
        await wait_for(lambda: not mon.runners[0].up)
        flag.write_text("0")                          # script fine again but TCP now down: still down
        await wait_for(lambda: mon.runners[1].up)
        n = len(changes)
        await wait_for(lambda: all(r.schedule.probes >= 8 for r in mon.runners))
        assert all(c[0] is False for c in changes[n:]) and not mon.up
        server, _ = await listen(port)
        await wait_for(lambda: mon.up)
        assert changes[-1][:2] == (True, 5)
    finally:
        await mon.stop()
        server.close()


async def test_checker_hooks_report_each_checker_up_down_not_weight(tmp_path, wait_for):
    """smtp_alert's feed: (checker, ok, server was up, server is up); a dynamic weight change is no event."""
    server, port = await listen()
    flag = tmp_path / "code"
    flag.write_text("0")
    script = (sys.executable, "-c", f"import sys; sys.exit(int(open({str(flag)!r}).read()))")
    tcp, misc = TcpCheck(), MiscCheck(misc_path=script, misc_dynamic=True, misc_timeout=5)
    rs = RealServer("127.0.0.1", port=port, weight=5, delay_loop=0.05, connect_timeout=3, retry=0,
                    delay_before_retry=0.05, warmup=0, checkers=(tcp, misc))
    mon = RealServerMonitor.from_config(rs, None, None)
    events = []
    mon.checker_hooks.append(lambda c, ok, was, up, why: events.append((c is misc, ok, was, up)))
    mon.start()
    try:
        flag.write_text("9")  # weight only
        await wait_for(lambda: mon.weight == 7)
        assert events == []
        flag.write_text("1")
        await wait_for(lambda: events)
        assert events == [(True, False, True, False)]
        server.close()
        await server.wait_closed()
        await wait_for(lambda: len(events) == 2)
        assert events[1] == (False, False, False, False)  # the server was already down
    finally:
        await mon.stop()
        server.close()
