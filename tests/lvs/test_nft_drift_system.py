"""read_actual() reads the kernel: the live nft table parsed back, drift found and repaired.

A director namespace with two real servers. The backend is driven directly
(round trip of every table shape, each kind of outside edit), then through a
running ``python -m chimeha.runtime.lvs_manager`` whose table is deleted or
flushed under it.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from chimeha.lab.netns import Topology, stop_process
from chimeha.lvs.backends.nft import NftBackend
from chimeha.lvs.reconcile import diff
from chimeha.lvs.types import DesiredState, Destination, Service, ServiceKey

from .labtools import count, start_name_server, wait_for

pytestmark = pytest.mark.system

VIP = "192.168.232.10"
NET = "192.168.232"


@pytest.fixture(scope="module")
def lab():
    topo = Topology("drift")
    topo.open()
    try:
        topo.add_host("client", f"{NET}.5/24")
        d = topo.add_host("dir", f"{NET}.2/24", f"{VIP}/32")
        d.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for i, name in ((11, "rs1"), (12, "rs2")):
            h = topo.add_host(name, f"{NET}.{i}/24")
            start_name_server(h, name, [9001, 9002, 9003, 9004, 9005, 9006])
        yield topo
    finally:
        topo.close()


def svc(port: int, algo: str = "rr", weights=(1, 1), persist: int | None = None, flags=(), fwmark=None) -> Service:
    key = ServiceKey("TCP", fwmark=fwmark) if fwmark else ServiceKey("TCP", VIP, port)
    return Service(key, algo, persist, None, "NAT",
                   tuple(Destination(f"{NET}.{11 + i}", port, w) for i, w in enumerate(weights)), False, flags)


def state(*services: Service) -> DesiredState:
    return DesiredState({s.key: s for s in services})


SHAPES = {
    "inline rr": state(svc(9001), svc(9002, "wrr", (3, 1))),
    "maps, hashes, persistence, fo, fwmark": state(
        svc(9001), svc(9002, "wrr", (3, 1)), svc(9003, "sh", flags=("fallback",)), svc(9004, "rr", persist=50),
        svc(9005, "fo", (1, 2)), svc(9006, "mh", (2, 1), flags=("port",)), svc(9001, "rr", fwmark=7)),
}


async def program(b: NftBackend, want: DesiredState) -> None:
    await b.apply(diff(want, await b.read_actual()))


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_live_table_reads_back_as_what_was_programmed(lab, shape):
    b = NftBackend(netns=lab.hosts["dir"].netns)
    try:
        assert await b.read_actual() == DesiredState() and b.drift is None  # no table yet
        await program(b, SHAPES[shape])
        assert (await b.read_actual()).services == SHAPES[shape].services
        assert b.drift is None and await b.verify()
        # traffic does not change the reading (persistence sets fill, numgen counters move)
        count(lab.hosts["client"], VIP, 9004 if "persistence" in shape else 9001, 4)
        assert (await b.read_actual()).services == SHAPES[shape].services and b.drift is None
    finally:
        await b.close()


SHARED = "hook chains, maps or source NAT rules of table inet chimeha changed"
TAMPER = {
    # what an operator or another tool does -> what the drift report must say
    "nft delete table inet chimeha": ["table inet chimeha is missing"],
    "nft flush ruleset": ["table inet chimeha is missing"],
    "nft flush chain inet chimeha prerouting": [SHARED, "missing: TCP 192.168.232.10:9001,", "9006"],
    "nft flush chain inet chimeha postrouting": [SHARED],
    "nft flush chain inet chimeha output": [SHARED],
    "nft flush map inet chimeha svc4": ["missing: TCP 192.168.232.10:9001,", "9003", "9006"],
    "nft flush chain inet chimeha SVC9003": ["changed: TCP 192.168.232.10:9003"],
}


@pytest.mark.parametrize("cmd", list(TAMPER))
async def test_outside_edits_are_seen_and_repaired(lab, cmd):
    d, c = lab.hosts["dir"], lab.hosts["client"]
    b = NftBackend(netns=d.netns, snat="always")
    want = SHAPES["maps, hashes, persistence, fo, fwmark"]
    try:
        await program(b, want)
        if "SVC9003" in cmd:  # the service chain's generated name
            chain = next(line.split()[1] for line in b.last_script.splitlines()
                         if line.strip().startswith("chain s_") and "s_" in line
                         and f"{VIP} . tcp . 9003 : goto {line.split()[1]}" in b.last_script)
            cmd = cmd.replace("SVC9003", chain)
        d.run(cmd.split())
        assert not await b.verify()
        for words in TAMPER[cmd if "s_" not in cmd else "nft flush chain inet chimeha SVC9003"]:
            assert words in b.drift
        ops = diff(want, await b.read_actual())
        assert ops, "drift must turn into operations"
        await b.apply(ops)
        assert await b.verify() and (await b.read_actual()).services == want.services
        assert count(c, VIP, 9001, 4) == {"rs1": 2, "rs2": 2}
        assert sum(count(c, VIP, 9003, 2).values()) == 2 and "error" not in str(count(c, VIP, 9003, 2))
    finally:
        await b.close()


def test_running_manager_restores_a_deleted_or_flushed_table(lab, tmp_path):
    d, c = lab.hosts["dir"], lab.hosts["client"]
    conf = tmp_path / "drift.conf"
    conf.write_text(f"virtual_server {VIP} 9001 {{\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n"
                    f"  real_server {NET}.11 9001 {{\n  }}\n  real_server {NET}.12 9001 {{\n  }}\n}}\n")
    ready = tmp_path / "status.json"
    log = open(tmp_path / "manager.log", "w")
    proc = d.popen([sys.executable, "-m", "chimeha.runtime.lvs_manager", str(conf), "--dataplane", "nft",
                    "--ready-file", str(ready), "--verify-interval", "0.5"], stderr=log)

    def status() -> dict:
        ready.unlink(missing_ok=True)
        proc.send_signal(signal.SIGUSR1)
        assert wait_for(ready.exists, 10)
        return json.loads(ready.read_text())

    try:
        assert wait_for(lambda: ready.exists() or proc.poll() is not None, 20) and proc.poll() is None
        assert count(c, VIP, 9001, 4) == {"rs1": 2, "rs2": 2}
        for n, cmd in enumerate((["nft", "delete", "table", "inet", "chimeha"], ["nft", "flush", "ruleset"],
                                 ["nft", "flush", "chain", "inet", "chimeha", "prerouting"]), start=1):
            d.run(cmd)
            assert wait_for(lambda: status()["repairs"] >= n, 15), Path(log.name).read_text()
            assert count(c, VIP, 9001, 4) == {"rs1": 2, "rs2": 2}
        assert "drifted" in Path(log.name).read_text()
    finally:
        stop_process(proc)
        log.close()


UDP_CLIENT = r'''
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", int(sys.argv[3])))
s.settimeout(2)
out = []
for _ in range(int(sys.argv[4])):
    s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
    out.append(s.recv(100).decode().strip())
print(" ".join(out))
'''


@pytest.mark.parametrize("tool", [True, False], ids=["conntrack", "control-without-conntrack"])
async def test_removed_real_server_loses_its_conntrack_entries(lab, monkeypatch, tool):
    """A UDP flow stays on its real server (conntrack) until the checker removes that server:
    then its entries are deleted and the very next datagram goes to a live one. The control
    (no conntrack program) shows the flow would otherwise stay on the removed server."""
    import shutil

    from chimeha.lvs.backends import nft
    if not tool:
        real = shutil.which
        monkeypatch.setattr(nft.shutil, "which", lambda name: None if name == "conntrack" else real(name))
    from chimeha.config import loads
    from chimeha.lvs.desired import rs_id
    from chimeha.runtime.lvs_manager import LvsManager

    conf = (f"virtual_server {VIP} 9002 {{\n  lb_algo rr\n  protocol UDP\n"
            f"  real_server {NET}.11 9002 {{\n  }}\n  real_server {NET}.12 9002 {{\n  }}\n}}\n")
    cfg = loads(conf).config
    d, c = lab.hosts["dir"], lab.hosts["client"]
    mgr = LvsManager(cfg, "nft", netns=d.netns, health_checks=False)
    mgr.on_vips_changed(None)
    port = "40123" if tool else "40124"

    def flow(n: int) -> list[str]:
        return c.run([sys.executable, "-c", UDP_CLIENT, VIP, "9002", port, str(n)]).stdout.split()

    try:
        await mgr.start()
        first = flow(3)
        assert len(set(first)) == 1, first  # one flow, one real server
        vs = cfg.virtual_servers[0]
        victim = next(r for r in vs.real_servers if r.address == {"rs1": f"{NET}.11", "rs2": f"{NET}.12"}[first[0]])
        other = "rs2" if first[0] == "rs1" else "rs1"
        mgr.set_health(rs_id(vs, victim), False)  # the checker says: down (the server still answers)
        await mgr.reconcile_now()
        if tool:
            assert flow(3) == [other] * 3
            assert f"{victim.address}" not in d.run(["conntrack", "-L", "-p", "udp"], check=False).stdout
        else:
            assert flow(3) == first
            d.run(["conntrack", "-F"], check=False)  # leave no binding behind for the next test
    finally:
        await mgr.stop()
