"""The ECMP lab with a real FRR router and three chime-ha directors (root, namespaces)."""

import shutil

import pytest

from tests.conftest import require

pytestmark = pytest.mark.system


def test_router_installs_three_next_hops_kill_withdraws_restart_rejoins():
    require(None if shutil.which("vtysh") and shutil.which("nft") else "needs FRR (apt-get install frr) and nftables")
    from chimeha.lab.bgp import DIRECTORS, HOLD, BgpLab

    allhops = set(DIRECTORS.values())
    with BgpLab("tbgp") as lab:
        assert lab.wait_next_hops(allhops, 60) is not None, lab.vtysh("show bgp summary")
        assert lab.routes_to_vip() == 1  # one route, three next hops
        got = lab.client_run(300)
        assert got["errors"] == 0, got
        for d in DIRECTORS.values():  # each director within 1/3 +/- 10 % of the 300 connections
            assert 70 <= got["directors"].get(d, 0) <= 130, got
        snap = lab.status("d1").get("bgp") or {}
        assert snap.get("announced") == ["10.99.60.10/32"]
        lab.kill_director("d2")
        took = lab.wait_next_hops(allhops - {DIRECTORS["d2"]}, HOLD + 2)
        assert took is not None and took <= HOLD, took
        lab.start_director("d2")
        assert lab.wait_next_hops(allhops, 60) is not None
        lab.stop_director("d3")  # SIGTERM: withdrawn before the daemon exits
        assert lab.next_hops() == allhops - {DIRECTORS["d3"]}
