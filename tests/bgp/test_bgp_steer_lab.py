"""``forwarding direct`` in the ECMP lab: a dead director's established flows continue (root, namespaces)."""

import shutil

import pytest

from tests.conftest import require

pytestmark = pytest.mark.system


def test_direct_forwarding_keeps_every_flow_across_kill_and_rejoin(record_property):
    require(None if shutil.which("vtysh") and shutil.which("nft") else "needs FRR (apt-get install frr) and nftables")
    from chimeha.lab.bgp import DIRECTORS, HOLD, BgpLab
    from chimeha.lab.bgp_measure import kill_survival, same_real_everywhere

    with BgpLab("tbst", forwarding="direct") as lab:
        assert lab.wait_next_hops(set(DIRECTORS.values()), 60) is not None, lab.vtysh("show bgp summary")
        assert (lab.status("d1").get("bgp") or {}).get("steered") == ["10.99.60.10:80/tcp"]
        got = lab.client_run(300)
        assert got["errors"] == 0, got
        for d in DIRECTORS.values():
            assert 70 <= got["directors"].get(d, 0) <= 130, got["directors"]
        assert same_real_everywhere(got["chosen"]) == []
        # An END hop of the router's hash-threshold split: with NAT this also resets some of the
        # survivors' flows (the split moves); steered, nothing depends on which director a packet meets.
        victim = next(n for n, ip in DIRECTORS.items() if ip == lab.hop_order()[0])
        r = kill_survival(lab, victim, count=150, rejoin=True)
        record_property("kill_survival_direct", r)
        print(f"\nkill {victim} (direct): {r}")
        assert r["opened"] == 150 and r["unattributed"] == 0, r
        assert r["withdraw_s"] is not None and r["withdraw_s"] <= HOLD, r
        assert r["survivor_failures"] == 0 and r["survivor_conns"] >= 70, r
        assert r["dead_conns"] >= 20 and r["dead_continued"] == r["dead_conns"], r  # every one continues
        assert r["rejoin_s"] is not None and r["rejoin_failures"] == 0, r
        lab.stop_director("d3")  # SIGTERM removes the steering table with the announcement
        assert "chimeha_bgp_steer" not in lab.nodes["d3"].run(["nft", "list", "tables"]).stdout
