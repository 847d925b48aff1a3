"""Two address owners against the real keepalived 2.2.7, and our model of it.

The seed's active-active VRRP part (both nodes priority 255, server1 ``state
MASTER``, server2 ``state BACKUP``) runs in two lab namespaces; a third
captures every advert off the bridge. Both inputs are cut (nftables inside
each node) so server2 becomes a second MASTER; then only server2's cut is
lifted: server2, the HIGHER address, hears server1's 255 first. keepalived
logs a configuration error, lowers itself to 254 and yields (the RFC's
tie-break would have kept it MASTER). After server1 stops, server2 takes over
advertising 254; a reload (SIGHUP) brings 255 back. The simulator, given the
same events, must predict the same: who yields, with which priority, and 255
after the reload.
"""

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chimeha.sim import Segment
from chimeha.vrrp.events import InstanceSpec, State

pytestmark = [pytest.mark.system, pytest.mark.keepalived]

ROOT = Path(__file__).resolve().parents[2]
HELPER = str(Path(__file__).with_name("capture_helper.py"))
S1, S2 = "192.168.231.11", "192.168.231.12"
CUT = ["add table inet owners", "add chain inet owners in { type filter hook input priority 0 ; }",
       "add rule inet owners in ip protocol vrrp drop"]


def vrrp_part(name: str) -> str:
    """The seed config's VRRP part, byte for byte (its virtual_servers need ip_vs)."""
    text = (ROOT / "examples" / "seed" / f"active-active-{name}.conf").read_text()
    return f"global_defs {{\n    router_id {name}\n}}\n" + text[:text.index("virtual_server")]


class Capture:
    """Adverts seen by the listener: (time, source, priority)."""

    def __init__(self, host):
        self.proc = host.popen([sys.executable, HELPER, "ens160", "60"], stdout=subprocess.PIPE, text=True)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.seen: list[tuple[float, str, int]] = []
        assert self._line(10) == "ready", "capture helper did not start"

    def _line(self, timeout):
        for key, _ in self.sel.select(timeout=timeout):
            return key.fileobj.readline().strip()
        return None

    def wait(self, cond, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond(self.seen):
                return
            line = self._line(0.1)
            if line and line.startswith("{"):
                rec = json.loads(line)
                self.seen.append((rec["t"], rec["src"], bytes.fromhex(rec["payload"])[2]))
        raise AssertionError(f"timed out waiting for {what}; adverts: {self.seen[-12:]}")

    def since(self, t):
        return [(src, prio) for at, src, prio in self.seen if at >= t]


def wait_log(path: Path, text: str, timeout: float, after: int = 0) -> int:
    """Wait until ``text`` appears in the log past offset ``after``; return its offset."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        log = path.read_text(errors="replace")
        i = log.find(text, after)
        if i >= 0:
            return i
        time.sleep(0.05)
    raise AssertionError(f"{path.name}: no {text!r} within {timeout} s:\n{path.read_text(errors='replace')[-3000:]}")


def test_two_owners_keepalived_lowers_the_one_that_hears_the_other(topology, tmp_path):
    s1 = topology.add_host("server1", f"{S1}/24", ifname="ens160")
    s2 = topology.add_host("server2", f"{S2}/24", ifname="ens160")
    cap = Capture(topology.add_host("lis", "192.168.231.13/24", ifname="ens160"))
    procs, logs = {}, {}
    for host in (s1, s2):
        conf = tmp_path / f"{host.name}.conf"
        conf.write_text(vrrp_part(host.name))
        logs[host.name] = tmp_path / f"{host.name}.log"
        with open(logs[host.name], "w") as log:
            procs[host.name] = host.popen(
                ["keepalived", "-n", "-l", "-D", "--vrrp", "-f", str(conf), "-p", str(tmp_path / f"{host.name}.pid"),
                 "-r", str(tmp_path / f"{host.name}.vrrp.pid")], stdout=log, stderr=subprocess.STDOUT)
    wait_log(logs["server2"], "Entering BACKUP STATE", 15)
    cap.wait(lambda s: sum(1 for _, src, p in s if src == S1 and p == 255) >= 2, 15, "server1 advertising 255")

    for host in (s1, s2):
        for rule in CUT:
            host.run(["nft", *rule.split()])
    cap.wait(lambda s: any(src == S2 and p == 255 for _, src, p in s), 15, "server2 a second MASTER at 255")
    s2.run(["nft", "delete", "table", "inet", "owners"])  # server2 hears server1 again; server1 still deaf
    err = wait_log(logs["server2"], "CONFIGURATION ERROR", 10)
    wait_log(logs["server2"], "Entering BACKUP STATE", 10, after=err)
    log2 = logs["server2"].read_text()
    assert "both configured as address owner" in log2 and "reducing local priority" in log2
    assert f"Master received advert from {S1} with higher priority 255, ours 254" in log2
    s1.run(["nft", "delete", "table", "inet", "owners"])
    assert "CONFIGURATION ERROR" not in logs["server1"].read_text()

    stopped = time.time()
    os.kill(procs["server1"].pid, signal.SIGTERM)
    cap.wait(lambda s: sum(1 for at, src, _ in s if src == S2 and at >= stopped) >= 3, 15,
             "server2 advertising after server1 stopped")
    after_stop = [p for src, p in cap.since(stopped) if src == S2]
    assert set(after_stop) == {254}, after_stop  # lowered until reload, even as the only master

    reloaded = time.time()
    os.kill(procs["server2"].pid, signal.SIGHUP)
    cap.wait(lambda s: sum(1 for at, src, p in s if src == S2 and at >= reloaded and p == 255) >= 2, 15,
             "server2 advertising 255 after the reload")

    # Our model, same events: server2 yields with 254, keeps it as the only master, 255 after reload.
    seg = Segment()
    kw = dict(advert_addresses=("192.168.231.10", "192.168.231.20"), auth_type="PASS", auth_pass="1111")
    seg.add_node("server1", S1, [InstanceSpec("VI_1", 51, 255, initial_state="MASTER", **kw)])
    seg.add_node("server2", S2, [InstanceSpec("VI_1", 51, 255, initial_state="BACKUP", **kw)])
    seg.start(0.0)
    seg.cut_input("server1", at=5.5)
    seg.cut_input("server2", at=5.5)
    seg.restore_input("server2", at=10.5)
    seg.run_until(11.5)
    assert seg.state("server2", "VI_1") is State.BACKUP and seg.instance("server2", "VI_1").priority == 254
    assert seg.instance("server1", "VI_1").priority == 255 and seg.masters("VI_1") == ["server1"]
    seg.restore_input("server1", at=12.0)
    seg.stop_node("server1", at=13.0)
    seg.run_until(15.0)
    assert seg.masters("VI_1") == ["server2"] and seg.instance("server2", "VI_1").priority == 254
    seg.reload("server2", at=16.0)
    seg.run_until(17.0)
    assert seg.instance("server2", "VI_1").priority == 255
