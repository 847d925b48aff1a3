"""BFD_CHECK follows its session's state changes at once, not every delay_loop."""

from __future__ import annotations

import asyncio

from chimeha import config
from chimeha.check.bfd import STATES
from chimeha.check.runner import RealServerMonitor

CONF = """
bfd_instance rs1 {
    neighbor_ip 127.0.0.2
}
virtual_server 127.0.0.1 80 {
    delay_loop 60
    protocol TCP
    real_server 127.0.0.2 80 {
        BFD_CHECK {
            name rs1
        }
    }
}
"""


async def test_real_server_follows_the_session_without_waiting_for_delay_loop():
    res = config.loads(CONF, "k.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    vs = res.config.virtual_servers[0]
    rs = vs.real_servers[0]
    seen: list[tuple[bool, str]] = []
    mon = RealServerMonitor.from_config(rs, vs, lambda up, w, why: seen.append((up, why)))
    assert mon.runners[0].timing.retry == 0 and mon.runners[0].timing.warmup == 0
    mon.start()
    try:
        # before any session state: down at the first probe (the session starts Down)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen[-1][0] is False and "no BFD session" in seen[-1][1]
        STATES.publish("rs1", True, "BFD to 127.0.0.2 up: neighbor is Init")
        await asyncio.wait_for(_until(lambda: mon.up), 5)  # delay_loop is 60 s: only the wake-up can do this
        STATES.publish("rs1", False, "BFD to 127.0.0.2 down: control detection time expired, 150 ms")
        await asyncio.wait_for(_until(lambda: not mon.up), 5)
        assert "detection time expired" in seen[-1][1]
    finally:
        await mon.stop()
        STATES.clear()


async def _until(pred):
    while not pred():
        await asyncio.sleep(0.01)
