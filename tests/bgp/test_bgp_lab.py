"""The ECMP lab with a real FRR router and three chime-ha directors (root, namespaces)."""

import shutil

import pytest

from tests.conftest import require

pytestmark = pytest.mark.system


def test_router_installs_three_next_hops_kill_withdraws_restart_rejoins(record_property):
    require(None if shutil.which("vtysh") and shutil.which("nft") else "needs FRR (apt-get install frr) and nftables")
    from chimeha.lab.bgp import DIRECTORS, HOLD, BgpLab
    from chimeha.lab.bgp_measure import kill_survival, same_real_everywhere

    allhops = set(DIRECTORS.values())
    with BgpLab("tbgp") as lab:
        assert lab.wait_next_hops(allhops, 60) is not None, lab.vtysh("show bgp summary")
        assert lab.routes_to_vip() == 1  # one route, three next hops
        got = lab.client_run(300)
        assert got["errors"] == 0, got
        for d in DIRECTORS.values():  # each director within 1/3 +/- 10 % of the 300 connections
            assert 70 <= got["directors"].get(d, 0) <= 130, got
        # Maglev: whichever director the router picks, one client address gets one real server
        assert len(got["chosen"]) == 16 and same_real_everywhere(got["chosen"]) == [], got["chosen"]
        snap = lab.status("d1").get("bgp") or {}
        assert snap.get("announced") == ["10.99.60.10/32"]
        # Kill the director in the middle of the router's hash-threshold split: the two others keep
        # their share of the hash space, so their flows stay where they are (an end hop would shift
        # the boundaries and move some of them too: bench/bgp/RESULTS.md).
        order = lab.hop_order()
        victim = next(n for n, ip in DIRECTORS.items() if ip == order[1])
        r = kill_survival(lab, victim, count=150)
        record_property("kill_survival", r)
        print(f"\nkill {victim}: {r}")
        assert r["opened"] == 150 and r["failed_open"] == 0, r
        assert r["withdraw_s"] is not None and r["withdraw_s"] <= HOLD, r
        assert r["survivor_conns"] >= 70 and r["survivor_failures"] == 0, r  # 0 errors through survivors
        assert r["dead_conns"] >= 20, r  # the measured fraction is over a real sample
        lab.start_director(victim)
        assert lab.wait_next_hops(allhops, 60) is not None
        after = lab.client_run(60)
        assert after["errors"] == 0 and len(after["directors"]) == 3, after
        lab.stop_director("d3")  # SIGTERM: withdrawn before the daemon exits
        assert lab.next_hops() == allhops - {DIRECTORS["d3"]}
