"""Failover of the director under load (issue 4).

The seed's active-active cluster, unmodified configs, the full daemon
(``chime-ha run``) on both servers (chimeha.lab.cluster.SeedCluster): server1
holds both VIPs and balances the three virtual servers over both servers with
the nft data plane; a client keeps a steady load of new connections on every
endpoint through the VIPs; then server1's cable is pulled. server2 must take
the VIPs, program its own virtual servers, drop server1 as a real server once
its health checks fail, and from then on serve every request.
"""

from __future__ import annotations

import shutil
import time

import pytest

from chimeha.check.spec import resolve_timing
from chimeha.config import loads
from chimeha.lab.cluster import SeedCluster, chime_ha_available

from .labtools import start_load

pytestmark = pytest.mark.system

VIPS = ("192.168.231.10", "192.168.231.20")


def _bounds(cluster: SeedCluster) -> tuple[float, float, float]:
    """(VRRP takeover, health-check detection, checker warmup) worst cases, from server2's config."""
    cfg = loads(cluster.configs["server2"], "active-active-server2.conf").config
    # RFC 3768 6.1/6.4.2: Master_Down_Interval = 3 x Advertisement_Interval + Skew_Time
    # (Skew_Time = (256 - priority) / 256 s) after server1's last advert.
    inst = next(iter(cfg.instances.values()))
    takeover = 3 * inst.advert_int + (256 - inst.priority) / 256
    # A real server is removed after its check fails retry + 1 times in a row.
    # Worst case: the last good check ends just before the cut, the next starts
    # delay_loop later, and every attempt waits the whole connect_timeout (a
    # pulled cable answers nothing), with delay_before_retry between attempts.
    detect = warmup = 0.0
    for vs in cfg.virtual_servers:
        for rs in vs.real_servers:
            for chk in rs.checkers:
                t = resolve_timing(chk, rs, vs)
                detect = max(detect, t.delay_loop + (t.retry + 1) * t.connect_timeout
                             + t.retry * t.delay_before_retry)
                warmup = max(warmup, t.warmup)
    return takeover, detect, warmup


def test_director_failover_under_load():
    why = chime_ha_available()
    if why:
        pytest.skip(why)
    with SeedCluster(mode="active-active", tag="lvsfo") as cluster:
        cluster.start_daemons()
        cluster.wait_for(lambda: all(cluster.holders(v) == ["server1"] for v in VIPS), 15,
                         "server1 did not take both VIPs")
        targets = [t for _, t in cluster.endpoints()]
        takeover, detect, warmup = _bounds(cluster)
        # Steady state first: a checker's first probe comes at a random moment
        # within its warmup (delay_loop), so only after warmup (+1 s for the
        # probe itself) has every checker on both nodes seen its real server
        # up, and server2 has heard server1's adverts. Cutting earlier would
        # test a start-up race, not the failover of a running cluster.
        steady = max(r.started for r in cluster.daemon_runs.values()) + warmup + 1
        # The load stops by itself after this, whatever happens to the test.
        budget = (steady - time.monotonic()) + 6 + takeover + detect + 8
        load, res = start_load(cluster.client, targets, workers=4, total=40000, seconds=budget)
        try:
            def healthy_since(since: float, n: int) -> bool:
                recent = [r for r in res if r[0] >= since]
                return all(sum(1 for r in recent if r[2] == t and r[3]) >= n for t in targets)

            cluster.wait_for(lambda: time.monotonic() >= steady, warmup + 10)
            # Every endpoint answers through server1's data plane, without a single error.
            t_warm = time.monotonic()
            cluster.wait_for(lambda: healthy_since(t_warm, 30), 6, f"no steady load before the cut: {res[-6:]}")
            t_cut = time.monotonic()
            before = [r for r in res if t_warm <= r[0] and r[1] < t_cut]
            assert before and all(r[3] for r in before), [r for r in before if not r[3]][:5]
            cluster.cut_link("server1")

            # (server1, cut off, keeps its copies: the watchers still see them there)
            cluster.wait_for(lambda: all("server2" in cluster.holders(v) for v in VIPS),
                             takeover + 5, "server2 did not take the VIPs")

            # Recovered: every endpoint answered by server2 for 3 s in a row, no failure since.
            def recovered() -> bool:
                now = time.monotonic()
                fails = [r for r in res if r[0] >= t_cut and not r[3]]
                last_fail = max((r[1] for r in fails), default=t_cut)
                if now - last_fail < 3:
                    return False
                after = [r for r in res if r[0] > last_fail]
                return all(sum(1 for r in after if r[2] == t and r[3]) >= 20 for t in targets)

            cluster.wait_for(recovered, takeover + detect + 8, step=0.1,
                             what=f"no clean recovery after the cut: last results {res[-6:]}")
        finally:
            cluster.client.stop(load, grace=1)
        after_cut = [r for r in res if r[0] >= t_cut]
        fails = [r for r in after_cut if not r[3]]
        last_fail = max((r[1] for r in fails), default=t_cut)
        window = last_fail - t_cut
        # The error window: from the cut to the end of the last failed request.
        # Generous bound: VRRP takeover plus the whole health-check detection
        # (they run in parallel, so the real window is about the larger one:
        # until server2 removes server1 as a real server, persistence can pin
        # the client to it), plus 4 s for scheduling on a loaded 2-core machine.
        # Measured here: 12.4 s and 12.8 s (detection dominates: a check just
        # passed before the cut, the next one 6 s later times out twice).
        bound = takeover + detect + 4
        print(f"\n(daemon logs: {cluster.logdir}) failover under load: window {window:.2f} s (bound {bound:.2f} s: takeover {takeover:.3f} s"
              f" + detection {detect:.1f} s + 4 s), {len(fails)} failed / {len(after_cut)} requests after the cut,"
              f" {len(res)} in all")
        assert fails, "pulling the master's cable caused no error at all: the cut did not happen"
        assert window <= bound, f"errors for {window:.2f} s after the cut (bound {bound:.2f} s): {fails[-3:]}"
        # No errors after the window, and the survivor (server2) answers all of it.
        tail = [r for r in after_cut if r[0] > last_fail]
        assert tail and all(r[3] and r[4] == "server2" for r in tail), [r for r in tail if r[4] != "server2"][:5]
        assert {r[2] for r in tail} == set(targets)
    shutil.rmtree(cluster.logdir, ignore_errors=True)  # kept only when the test failed
