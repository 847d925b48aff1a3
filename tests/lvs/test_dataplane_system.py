"""client -> director -> two real servers, in namespaces, with the nft and proxy data planes.

The director runs ``python -m chimeha.runtime.lvs_manager`` (virtual servers
only, real TCP_CHECK health checks) inside its namespace; real servers answer
every connection with their name; clients count the names they get.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from chimeha.lab.netns import Topology, stop_process

from .labtools import count, start_name_server, wait_for

pytestmark = pytest.mark.system

VIP = "192.168.231.10"
SEED = Path(__file__).resolve().parents[2] / "examples" / "seed" / "active-active-server1.conf"


def vs_block(port: int, algo: str, weights=(1, 1), extra: str = "", rs_port: int | None = None,
             proto: str = "TCP", check: bool = True) -> str:
    rss = ""
    for i, w in enumerate(weights):
        chk = "    TCP_CHECK {\n      connect_timeout 1\n      retry 0\n    }\n" if check else ""
        rss += f"  real_server 192.168.231.{11 + i} {rs_port or port} {{\n    weight {w}\n{chk}  }}\n"
    return (f"virtual_server {VIP} {port} {{\n  delay_loop 1\n  lb_algo {algo}\n  lb_kind NAT\n"
            f"  protocol {proto}\n{extra}{rss}}}\n")


@pytest.fixture(scope="module")
def lab():
    """client (.5, .6) -> director (.2, VIP .10) -> rs1 (.11), rs2 (.12), one bridge, shared by this module."""
    topo = Topology("lvs")
    topo.open()
    try:
        topo.add_host("client", "192.168.231.5/24", "192.168.231.6/24")
        d = topo.add_host("dir", "192.168.231.2/24", f"{VIP}/32")
        d.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])  # in-process managers do not set it
        for i, name in ((11, "rs1"), (12, "rs2")):
            h = topo.add_host(name, f"192.168.231.{i}/24")
            start_name_server(h, name, [8801, 8802, 5353])
        yield topo
    finally:
        topo.close()


@contextlib.contextmanager
def director(host, tmp_path, conf_text: str | None, dataplane: str, *extra: str, conf_path: str | None = None):
    """Run the virtual-server manager in ``host``; yield a function returning its status snapshot."""
    if conf_path is None:
        conf_path = str(tmp_path / f"lvs-{dataplane}.conf")
        Path(conf_path).write_text(conf_text)
    ready = tmp_path / f"status-{os.urandom(3).hex()}.json"
    log = open(tmp_path / "director.log", "a")
    proc = host.popen([sys.executable, "-m", "chimeha.runtime.lvs_manager", conf_path, "--dataplane", dataplane,
                       "--ready-file", str(ready), "--forwarding", "enable", *extra], stderr=log)

    def status() -> dict:
        ready.unlink(missing_ok=True)
        proc.send_signal(signal.SIGUSR1)
        assert wait_for(ready.exists, 10), "director did not write its status"
        return json.loads(ready.read_text())

    try:
        started = wait_for(lambda: ready.exists() or proc.poll() is not None, 20)
        assert started and proc.poll() is None, (tmp_path / "director.log").read_text()
        yield status
    finally:
        stop_process(proc)
        log.close()
    if dataplane == "nft":
        # stop() removes the table: nothing of chime-ha stays in the director
        assert "chimeha" not in host.run(["nft", "list", "tables"]).stdout


@pytest.mark.parametrize("dataplane", ["nft", "proxy"])
def test_rr_spreads_and_weights_are_respected(lab, tmp_path, dataplane):
    conf = vs_block(8801, "rr") + vs_block(8802, "wrr", (3, 1))
    with director(lab.hosts["dir"], tmp_path, conf, dataplane) as status:
        st = status()
        assert {v["dataplane"] for v in st["virtual_servers"]} == {dataplane}
        c = lab.hosts["client"]
        assert count(c, VIP, 8801, 40) == {"rs1": 20, "rs2": 20}
        assert count(c, VIP, 8802, 40) == {"rs1": 30, "rs2": 10}


@pytest.mark.parametrize("dataplane", ["nft", "proxy"])
def test_udp_round_robin(lab, tmp_path, dataplane):
    conf = vs_block(5353, "rr", proto="UDP", check=False)
    with director(lab.hosts["dir"], tmp_path, conf, dataplane):
        # distinct client ports per data plane: conntrack keeps a NAT binding per flow after the table goes
        base = 20000 if dataplane == "nft" else 21000
        assert count(lab.hosts["client"], VIP, 5353, 20, udp_base_port=base) == {"rs1": 10, "rs2": 10}


@pytest.mark.parametrize("dataplane", ["nft", "proxy"])
def test_persistence_sticks_per_client(lab, tmp_path, dataplane):
    conf = vs_block(8801, "rr", extra="  persistence_timeout 50\n")
    with director(lab.hosts["dir"], tmp_path, conf, dataplane):
        c = lab.hosts["client"]
        first = count(c, VIP, 8801, 15, src="192.168.231.5")
        second = count(c, VIP, 8801, 15, src="192.168.231.6")
        assert len(first) == 1 and len(second) == 1, (first, second)
        assert set(first) | set(second) == {"rs1", "rs2"}  # rr placed the two clients apart
        assert count(c, VIP, 8801, 10, src="192.168.231.5") == first | {next(iter(first)): 10}


@pytest.mark.parametrize("dataplane", ["nft", "proxy"])
def test_dead_real_server_is_removed_then_no_errors(lab, tmp_path, dataplane):
    port = 8901 if dataplane == "nft" else 8902
    rs1, rs2 = lab.hosts["rs1"], lab.hosts["rs2"]
    start_name_server(rs1, "rs1", [port])
    victim = start_name_server(rs2, "rs2", [port])
    with director(lab.hosts["dir"], tmp_path, vs_block(port, "rr"), dataplane) as status:
        c = lab.hosts["client"]
        assert count(c, VIP, port, 10) == {"rs1": 5, "rs2": 5}
        stop_process(victim)
        # after detection (TCP_CHECK, delay_loop 1, retry 0) only rs1 answers
        assert wait_for(lambda: count(c, VIP, port, 6) == {"rs1": 6}, 30)
        assert count(c, VIP, port, 40) == {"rs1": 40}
        rss = status()["virtual_servers"][0]["real_servers"]
        assert [(r["address"], r["healthy"], r["in_service"]) for r in rss] == [
            ("192.168.231.11", True, True), ("192.168.231.12", False, False)]
        start_name_server(rs2, "rs2", [port])
        assert wait_for(lambda: "rs2" in count(c, VIP, port, 4), 30)


def test_proxy_reports_a_port_taken_by_a_wildcard_listener(lab, tmp_path):
    start_name_server(lab.hosts["dir"], "dir", [8805])  # listens on 0.0.0.0:8805
    for name in ("rs1", "rs2"):
        start_name_server(lab.hosts[name], name, [8805])
    with director(lab.hosts["dir"], tmp_path, vs_block(8805, "rr"), "proxy") as status:
        errors = status()["errors"]
        assert len(errors) == 1 and "192.168.231.10:8805: cannot listen: Address already in use" in errors[0]
        assert "--dataplane nft" in errors[0]
    with director(lab.hosts["dir"], tmp_path, vs_block(8805, "rr"), "nft") as status:
        assert status()["errors"] == []  # DNAT happens before the socket lookup
        assert count(lab.hosts["client"], VIP, 8805, 4) == {"rs1": 2, "rs2": 2}


def test_connection_aware_scheduler_needs_proxy(lab, tmp_path):
    """wlc: auto picks the proxy and says why; a forced nft refuses with a clear message."""
    conf = vs_block(8801, "wlc")
    with director(lab.hosts["dir"], tmp_path, conf, "auto") as status:
        v = status()["virtual_servers"][0]
        assert v["dataplane"] == "proxy"
        assert "lb_algo wlc needs live connection counts" in v["why"]
        got = count(lab.hosts["client"], VIP, 8801, 10)
        assert sum(got.values()) == 10 and not any(k.startswith("error") for k in got)
    with director(lab.hosts["dir"], tmp_path, conf, "nft") as status:
        st = status()
        assert st["virtual_servers"][0]["dataplane"] is None
        assert any("lb_algo wlc" in e for e in st["errors"])


async def test_vip_ownership_moves_forwarding_and_stop_removes_table(lab):
    """In-process manager driving nft in the director: only the VIP holder forwards."""
    from chimeha.config import loads
    from chimeha.runtime.lvs_manager import LvsManager

    conf = f"vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {{\n  {VIP}\n }}\n}}\n"
    cfg = loads(conf + vs_block(8801, "rr", check=False)).config
    d, c = lab.hosts["dir"], lab.hosts["client"]
    mgr = LvsManager(cfg, "nft", netns=d.netns, health_checks=False)
    try:
        await mgr.start()  # owns nothing yet: a backup
        assert mgr.snapshot()["virtual_servers"][0]["state"] == "standby: VIP held by another node"
        assert count(c, VIP, 8801, 2) == {"error: ConnectionRefusedError": 2}
        mgr.on_vips_changed({VIP})
        await mgr.reconcile_now()
        assert count(c, VIP, 8801, 4) == {"rs1": 2, "rs2": 2}
        mgr.on_vips_changed(set())
        await mgr.reconcile_now()
        assert count(c, VIP, 8801, 2) == {"error: ConnectionRefusedError": 2}
    finally:
        await mgr.stop()
    assert "chimeha" not in d.run(["nft", "list", "tables"]).stdout


@pytest.fixture(scope="module")
def seed_lab():
    """The seed's layout: server1 (.11, director + real server, VIPs .10 .20 on ens160), server2 (.12), clients."""
    topo = Topology("seed")
    topo.open()
    try:
        topo.add_host("client", "192.168.231.5/24", "192.168.231.6/24")
        s1 = topo.add_host("server1", "192.168.231.11/24", "192.168.231.10/32", "192.168.231.20/32",
                           ifname="ens160")
        s2 = topo.add_host("server2", "192.168.231.12/24", ifname="ens160")
        # each real server listens on its own address, so the director's VIP:8801 is free
        for h, name, addr in ((s1, "server1", "192.168.231.11"), (s2, "server2", "192.168.231.12")):
            start_name_server(h, name, [8033, 8801, 8802], bind=addr)
        yield topo
    finally:
        topo.close()


@pytest.mark.parametrize("dataplane", ["nft", "proxy"])
def test_seed_active_active_config_unmodified(seed_lab, tmp_path, dataplane):
    """The seed's same-subnet layout works because replies come back through the director."""
    with director(seed_lab.hosts["server1"], tmp_path, None, dataplane, "--own", "192.168.231.10",
                  "--own", "192.168.231.20", conf_path=str(SEED)) as status:
        assert [v["dataplane"] for v in status()["virtual_servers"]] == [dataplane] * 3
        c = seed_lab.hosts["client"]
        for vip, port in (("192.168.231.20", 80), ("192.168.231.10", 8801), ("192.168.231.10", 8802)):
            a = count(c, vip, port, 5, src="192.168.231.5")
            b = count(c, vip, port, 5, src="192.168.231.6")
            # persistence_timeout 50: each client stays on one server; rr put them on different ones
            assert {**a, **b} == {"server1": 5, "server2": 5}, (vip, port, a, b)


def test_without_source_nat_the_seed_layout_breaks(seed_lab, tmp_path):
    """Control experiment: plain DNAT (keepalived's LVS NAT) loses the remote real server's replies."""
    with director(seed_lab.hosts["server1"], tmp_path, None, "nft", "--own", "192.168.231.20",
                  "--snat", "never", conf_path=str(SEED)):
        c = seed_lab.hosts["client"]
        assert count(c, "192.168.231.20", 80, 1, src="192.168.231.5") == {"server1": 1}
        assert count(c, "192.168.231.20", 80, 1, src="192.168.231.6") == {"error: TimeoutError": 1}


async def test_nft_persistence_survives_table_replacement(lab):
    """Persistence entries are carried into each new table: a weight change keeps clients where they were."""
    from chimeha.config import loads
    from chimeha.lvs.desired import rs_id
    from chimeha.runtime.lvs_manager import LvsManager

    cfg = loads(vs_block(8802, "rr", check=False, extra="  persistence_timeout 50\n")).config
    d, c = lab.hosts["dir"], lab.hosts["client"]
    mgr = LvsManager(cfg, "nft", netns=d.netns, health_checks=False)
    mgr.on_vips_changed(None)
    try:
        await mgr.start()
        assert count(c, VIP, 8802, 1, src="192.168.231.6") == {"rs1": 1}  # numgen slot 0
        assert count(c, VIP, 8802, 3, src="192.168.231.5") == {"rs2": 3}  # slot 1, then sticky
        vs = cfg.virtual_servers[0]
        mgr.set_health(rs_id(vs, vs.real_servers[1]), True, 3)  # new weight: the table is rendered again
        await mgr.reconcile_now()
        assert "dnat ip to 192.168.231.12:8802" in mgr._backends["nft"].last_script
        assert "numgen inc mod 2" in mgr._backends["nft"].last_script  # rr ignores weights, period 2
        # a fresh numgen counter would send the next new client to rs1; .5 stays on rs2
        assert count(c, VIP, 8802, 3, src="192.168.231.5") == {"rs2": 3}
        assert count(c, VIP, 8802, 2, src="192.168.231.6") == {"rs1": 2}
    finally:
        await mgr.stop()
