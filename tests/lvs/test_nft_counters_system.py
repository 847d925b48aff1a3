"""Per-real-server named counters of the nft data plane, against real nft and real traffic."""

from __future__ import annotations

import asyncio

import pytest

from chimeha.lab.netns import Topology
from chimeha.lvs.backends import nft_counters
from chimeha.lvs.backends.nft import NftBackend, Renderer
from chimeha.lvs.reconcile import diff
from chimeha.lvs.types import DesiredState, Destination, Service, ServiceKey

from .labtools import count, start_name_server

pytestmark = pytest.mark.system

NET = "192.168.233"
VIP = f"{NET}.10"
RS = (f"{NET}.11", f"{NET}.12")


def svc(port: int, proto: str = "TCP", weights=(1, 1), persist: int | None = None) -> Service:
    return Service(ServiceKey(proto, VIP, port), "rr", persist, None, "NAT",
                   tuple(Destination(RS[i], port, w) for i, w in enumerate(weights)))


def state(*services: Service) -> DesiredState:
    return DesiredState({s.key: s for s in services})


def test_render_declares_counters_maps_and_chains():
    want = state(svc(9101), svc(9102, "UDP"))
    text = Renderer(counters={}).render(want)
    base = nft_counters.counter_base(want.services[ServiceKey("TCP", VIP, 9101)].key, Destination(RS[0], 9101).key)
    assert f"counter {base}_c {{" in text and f"counter {base}_o {{" in text
    assert f'{VIP} . {RS[0]} . 9101 : "{base}_c"' in text
    assert "chain count_pre {" in text and "chain count_out {" in text
    # connections are counted on a NAT hook (first packet only), before source NAT;
    # the per-packet chains hold one rule per direction and no connection count
    new_chain = text.split("chain count_new {", 1)[1].split("\n  }", 1)[0]
    assert "type nat hook postrouting priority srcnat - 1;" in new_chain and "@rsc4" in new_chain
    per_packet = text.split("chain count_pre {", 1)[1].split("\n  }", 1)[0]
    assert "@rsc4" not in per_packet and "ct state new" not in per_packet
    # values read from the live table are carried into the new one
    carried = Renderer(counters={f"{base}_i": (7, 700)}).render(want)
    assert f"counter {base}_i {{\n    packets 7 bytes 700\n  }}" in carried
    assert "count_pre" not in Renderer().render(want)  # counters off: the table has none


@pytest.fixture(scope="module")
def lab():
    topo = Topology("nftc")
    topo.open()
    try:
        topo.add_host("client", f"{NET}.5/24")
        d = topo.add_host("dir", f"{NET}.2/24", f"{VIP}/32")
        d.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for addr, name in zip(RS, ("rs1", "rs2")):
            start_name_server(topo.add_host(name, f"{addr}/24"), name, [9101, 9102])
        yield topo
    finally:
        topo.close()


def _rs(stats: dict, key: ServiceKey, addr: str) -> dict:
    return stats[str(key)]["real_servers"][f"{addr}:{key.port}"]


def test_counters_match_the_traffic_sent(lab):
    client = lab.hosts["client"]
    tcp, udp = svc(9101), svc(9102, "UDP")
    want = state(tcp, udp)

    async def program(b: NftBackend, s: DesiredState) -> dict:
        await b.apply(diff(s, await b.read_actual()))
        return await b.refresh_stats()

    async def scenario() -> None:
        b = NftBackend(netns=lab.hosts["dir"].netns)
        try:
            zero = await program(b, want)
            for key in (tcp.key, udp.key):
                for addr in RS:
                    assert _rs(zero, key, addr) == {"connections": 0, "packets_in": 0, "bytes_in": 0,
                                                    "packets_out": 0, "bytes_out": 0}
            names = await asyncio.to_thread(count, client, VIP, 9101, 20)
            dgrams = await asyncio.to_thread(count, client, VIP, 9102, 10, None, 42000)
            got = await b.refresh_stats()
            for addr, name in zip(RS, ("rs1", "rs2")):
                t = _rs(got, tcp.key, addr)
                assert t["connections"] == names[name] == 10, (names, got)
                # SYN, ACK, FIN-ACK / ACK at least per connection, each way; 4 bytes of payload back
                assert t["packets_in"] >= 3 * 10 and t["packets_out"] >= 3 * 10, t
                assert t["bytes_out"] >= 10 * (3 * 40 + 4) and t["bytes_in"] >= 10 * 3 * 40, t
                # UDP: one datagram each way per flow, exactly: "hi" in (20+8+2), the name out (20+8+4)
                u = _rs(got, udp.key, addr)
                assert dgrams[name] == 5, dgrams
                assert u == {"connections": 5, "packets_in": 5, "bytes_in": 5 * 30,
                             "packets_out": 5, "bytes_out": 5 * 32}, u
            # A client on the director itself (the output hook): counted once, exactly as well
            local = await asyncio.to_thread(count, lab.hosts["dir"], VIP, 9102, 4, None, 43000)
            mine = await b.refresh_stats()
            for addr, name in zip(RS, ("rs1", "rs2")):
                u, before = _rs(mine, udp.key, addr), _rs(got, udp.key, addr)
                assert local[name] == 2, local
                assert u["connections"] == before["connections"] + 2, (u, before)
                assert (u["packets_in"], u["bytes_out"]) == (before["packets_in"] + 2, before["bytes_out"] + 64), u
            got = mine
            # A reload (another service added) replaces the table: the counts carry over
            after = await program(b, state(tcp, udp, svc(9103)))
            assert _rs(after, udp.key, RS[0]) == _rs(got, udp.key, RS[0])
            assert _rs(after, tcp.key, RS[1])["connections"] == 10
            assert _rs(after, ServiceKey("TCP", VIP, 9103), RS[0])["connections"] == 0
            assert b.drift is None and (await b.read_actual()) is not None and b.drift is None
        finally:
            await b.close()

    asyncio.run(scenario())


def test_status_snapshot_shows_the_counters(lab, tmp_path):
    """The standalone manager's status (what `chime-ha status` and /metrics read) carries them."""
    import json
    import signal
    import sys
    import time

    from chimeha.lab.netns import stop_process

    conf = tmp_path / "c.conf"
    conf.write_text(f"virtual_server {VIP} 9101 {{\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n"
                    + "".join(f"  real_server {a} 9101 {{\n    weight 1\n  }}\n" for a in RS) + "}\n")
    ready = tmp_path / "status.json"
    proc = lab.hosts["dir"].popen([sys.executable, "-m", "chimeha.runtime.lvs_manager", str(conf), "--dataplane",
                                   "nft", "--no-checks", "--verify-interval", "0.3", "--ready-file", str(ready)])
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists()
        names = count(lab.hosts["client"], VIP, 9101, 6)
        time.sleep(1.0)  # two verify passes read the live counters
        ready.unlink()
        proc.send_signal(signal.SIGUSR1)
        while not ready.exists() and time.monotonic() < deadline + 10:
            time.sleep(0.05)
        snap = json.loads(ready.read_text())
    finally:
        stop_process(proc)
    (vs,) = snap["virtual_servers"]
    by_addr = {rs["address"]: rs["stats"] for rs in vs["real_servers"]}
    assert by_addr[RS[0]]["connections"] == names["rs1"] == 3, (names, by_addr)
    assert by_addr[RS[1]]["connections"] == names["rs2"] == 3, (names, by_addr)
    assert all(s["packets_in"] >= 9 and s["bytes_out"] > 0 for s in by_addr.values()), by_addr
