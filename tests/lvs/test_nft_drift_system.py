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
