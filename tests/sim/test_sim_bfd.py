"""``chime-ha simulate`` models BFD: detection = remote mult x max(local min_rx, remote min_tx), then the takeover."""

from __future__ import annotations

import pytest

from chimeha.config import loads
from chimeha.sim.bfd import BfdModel, detection_time, last_packet_before, tx_interval
from chimeha.sim.scenario import NodeInput, parse_event, simulate

S1, S2 = "192.168.231.11", "192.168.231.12"


def conf(me, peer, prio, state, track=True, rx=50, tx=50, mult=3, bfd=True):
    block = (f"bfd_instance peer {{\n neighbor_ip {peer}\n source_ip {me}\n min_rx {rx}\n min_tx {tx}\n"
             f" multiplier {mult}\n}}\n") if bfd else ""
    tr = "track_bfd {\n  peer weight 60 reverse\n }\n" if track and bfd else ""
    return block + f"""
vrrp_instance VI_1 {{
    state {state}
    interface ens160
    virtual_router_id 51
    priority {prio}
    advert_int 1
    virtual_ipaddress {{
        192.168.231.10
    }}
    {tr}
}}
"""


def nodes(**kw):
    out = []
    for name, me, peer, prio, state in (("server1", S1, S2, 255, "MASTER"), ("server2", S2, S1, 254, "BACKUP")):
        res = loads(conf(me, peer, prio, state, track=(name == "server2"), **kw), f"{name}.conf")
        assert res.ok, [str(d) for d in res.diagnostics]
        out.append(NodeInput(name, res.config, me))
    return out


def move_after(result, event_text):
    moves = [m for m in result["vip_moves"] if m["after_event"] == event_text and m["to"] == "server2"]
    return moves[0]["delay"] if moves else None


def test_formulas():
    local = BfdModel("p", S1, min_tx=0.05, min_rx=0.1, multiplier=3)
    remote = BfdModel("p", S2, min_tx=0.05, min_rx=0.05, multiplier=5)
    assert detection_time(local, remote) == pytest.approx(0.5)  # 5 x max(100 ms, 50 ms)
    assert tx_interval(remote, local) == pytest.approx(0.1)     # the remote sends at our min_rx
    assert last_packet_before(10.23, 10.0, 0.1) == pytest.approx(10.2)


@pytest.mark.parametrize("offset", [0.0, 0.01, 0.025, 0.049])
def test_link_cut_moves_the_vip_after_detection_plus_skew(offset):
    ev = f"{10 + offset:g} server1 link-down"
    r = simulate(nodes(), [parse_event(ev)])
    took = move_after(r, ev)
    skew = (256 - 254) / 256  # 254: the backup's priority while the session is Down (reverse weight)
    # the last packet left between 0 and one interval (50 ms) before the cut
    assert 0.15 - 0.05 + skew - 1e-6 <= took <= 0.15 + skew + 1e-6
    downs = {t["node"] for t in r["timeline"] if "control detection time expired, 150 ms" in t["text"]}
    assert downs == {"server1", "server2"}  # each side stops hearing the other
    states = [t for t in r["timeline"] if t["kind"] == "state" and t["node"] == "server2" and t["new"] == "MASTER"]
    assert states[-1]["reason"] == f"BFD to {S1} down: control detection time expired, 150 ms"


def test_without_bfd_the_backup_waits_for_the_master_down_timer():
    ev = "10 server1 link-down"
    took = move_after(simulate(nodes(bfd=False), [parse_event(ev)]), ev)
    assert took > 2.0


def test_slower_timers_give_a_longer_window():
    ev = "10 server1 link-down"
    took = move_after(simulate(nodes(rx=100, tx=100, mult=5), [parse_event(ev)]), ev)
    assert 0.4 < took <= 0.5 + 2 / 256 + 1e-6


def test_a_clean_stop_is_admin_down_not_a_bfd_takeover():
    r = simulate(nodes(), [parse_event("10 server1 stop")])
    texts = [t["text"] for t in r["timeline"] if t["node"] == "server2"]
    assert any("administratively down" in t for t in texts)
    master = [t for t in r["timeline"] if t["kind"] == "state" and t["node"] == "server2" and t["new"] == "MASTER"]
    assert "priority 0" in master[-1]["reason"]  # the VRRP goodbye, not the BFD step


def test_the_cli_finds_the_addresses_from_source_ip():
    # chime-ha simulate without --address: the bfd_instance's source_ip is the node's address
    ns = [NodeInput(n.name, n.config) for n in nodes()]
    ev = "10 server1 link-down"
    r = simulate(ns, [parse_event(ev)])
    assert [n["address"] for n in r["nodes"]] == [S1, S2]
    assert move_after(r, ev) < 0.2


def test_session_needs_both_sides():
    ns = nodes()
    res = loads(conf(S1, S2, 255, "MASTER", bfd=False), "server1.conf")
    ns[0] = NodeInput("server1", res.config, S1)
    ev = "10 server1 link-down"
    r = simulate(ns, [parse_event(ev)])
    assert move_after(r, ev) > 2.0  # no session: nothing detects faster than VRRP
