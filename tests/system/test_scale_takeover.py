"""Many instances handed back at once: the new master's VIP and GARP come before its advert.

Two chime-ha nodes run 20 VRRP instances each (one VIP per instance); a
cut link moves them all to the backup, the restored link hands them back to
the higher-priority node (preemption). What is asserted is the order of
events, never a duration:

* from one ``ip monitor address all-nsid`` in the lab's switch namespace,
  which has a namespace id for both nodes, so their address events arrive
  on ONE netlink socket in the order the kernel made them (per-node
  monitors timestamp on reading and were seen out of order by 7 ms): each
  VIP is added on the new master before the old master removes it (make
  before break);
* from one capture on the client (the frames in the order the bridge
  delivered them): for every instance, the new master's gratuitous ARP for
  its VIP arrives before its first advertisement, the packet that makes the
  old master let go.

The lost-ping figures of the same handback (chime-ha beside keepalived)
are in bench/scale/RESULTS.md.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest

from chalab import Daemon, wait_until

pytestmark = pytest.mark.system

N = 20
IFNAME = "ens160"
A, B, CLIENT = "10.9.0.11", "10.9.0.12", "10.9.0.100"


def vip(i: int) -> str:
    return f"10.9.1.{i}"


def conf(priority: int, state: str) -> str:
    return "".join(
        f"vrrp_instance VI_{i} {{\n    state {state}\n    interface {IFNAME}\n    virtual_router_id {i}\n"
        f"    priority {priority}\n    advert_int 0.1\n    version 3\n"
        f"    virtual_ipaddress {{\n        {vip(i)}/32\n    }}\n}}\n" for i in range(1, N + 1))


class Lines:
    """A process (inside ``node``, or ours in the lab's switch namespace) whose output lines are collected."""

    def __init__(self, node, cmd: list[str], ready: str | None = None):
        self.node = node
        self.lines: list[str] = []
        self.err: list[str] = []
        kw = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.proc = node.popen(cmd, **kw) if node is not None else subprocess.Popen(cmd, **kw)
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True).start()
        if ready:
            wait_until(lambda: any(ready in ln for ln in self.err), 10, f"{cmd[0]} ready")

    @staticmethod
    def _pump(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def stop(self) -> list[str]:
        if self.node is not None:
            self.node.stop(self.proc, grace=3)
        else:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)
        time.sleep(0.1)  # the pump threads take the last lines
        return list(self.lines)


def held(node) -> set[str]:
    return {a for a in node.addresses_on(IFNAME) if a.startswith("10.9.1.")}


def monitor_events(lines: list[str], nsids: dict[int, str]) -> list[tuple[str, bool, str]]:
    """(node, added, address) in kernel order from ``ip -o -4 monitor address all-nsid`` lines."""
    out = []
    for line in lines:
        m = re.match(r"\[nsid (\d+)\]\s*(Deleted )?.*\binet (\S+?)/\d+", line)
        if m and int(m.group(1)) in nsids:
            out.append((nsids[int(m.group(1))], m.group(2) is None, m.group(3)))
    return out


def switch_nsids(topology) -> dict[int, str]:
    """The switch namespace's id for each lab node's namespace -> the node's short name."""
    out = subprocess.run(["ip", "-n", topology.switch_ns, "netns", "list-id"], capture_output=True, text=True,
                         check=True).stdout
    by_ns = {h.netns: name for name, h in topology.hosts.items()}
    return {int(m.group(1)): by_ns[m.group(2)] for m in re.finditer(r"nsid (\d+) \(iproute2 netns name: (\S+)\)", out)
            if m.group(2) in by_ns}


def mac_of(node) -> str:
    out = node.run(["ip", "-o", "link", "show", IFNAME]).stdout
    return re.search(r"link/ether (\S+)", out).group(1)


@pytest.fixture
def handback_lab(topology, tmp_path):
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", f"{A}/16", ifname=IFNAME)
    b = add_node(topology, "b", f"{B}/16", ifname=IFNAME)
    client = add_node(topology, "client", f"{CLIENT}/16", ifname=IFNAME)
    da = Daemon(a, "chime-ha", conf(200, "MASTER"), tmp_path)
    db = Daemon(b, "chime-ha", conf(100, "BACKUP"), tmp_path)
    try:
        yield topology, a, b, client, da, db
    finally:
        da.stop()
        db.stop()
        print("--- a ---\n" + da.log()[-6000:])
        print("--- b ---\n" + db.log()[-6000:])


def test_handback_of_many_instances_is_make_before_break_and_garp_first(handback_lab):
    topology, a, b, client, da, db = handback_lab
    vips = {vip(i) for i in range(1, N + 1)}
    db.start()
    da.start()
    wait_until(lambda: held(a) == vips and not held(b), 15, "a MASTER of every instance, b of none")
    a.link_down()
    wait_until(lambda: held(b) == vips, 10, "b took every VIP after a's link was cut")
    wait_until(lambda: not held(a), 5, "a dropped its VIPs (FAULT)")

    # Started while a is cut off: every event and frame of a's below belongs to the handback.
    nsids = switch_nsids(topology)
    assert sorted(nsids.values()) == ["a", "b", "client"], nsids
    mon = Lines(None, ["ip", "-n", topology.switch_ns, "-o", "-4", "monitor", "address", "all-nsid"])
    cap = Lines(client, ["tcpdump", "-i", IFNAME, "-n", "-e", "-tt", "-l", "-U", "arp or ip proto 112"],
                ready="listening on")
    time.sleep(0.3)
    a.link_up()  # a recovers to BACKUP, hears the lower-priority b and preempts
    try:
        wait_until(lambda: held(a) == vips and not held(b), 10, "every VIP back on a, none left on b")
        time.sleep(0.3)
    finally:
        events = monitor_events(mon.stop(), nsids)
        frames = cap.stop()

    added_a, removed_b = {}, {}
    for i, (node, added, addr) in enumerate(events):
        if node == "a" and added:
            added_a.setdefault(addr, i)
        elif node == "b" and not added:
            removed_b.setdefault(addr, i)
    assert set(added_a) == vips and set(removed_b) == vips, events
    early = sorted(v for v in vips if removed_b[v] < added_a[v])
    assert not early, f"b removed {early} before a had them (kernel order: {events})"

    mac = mac_of(a)
    first_garp, first_advert = {}, {}
    for i, line in enumerate(frames):
        parts = line.split()
        if len(parts) < 2 or parts[1] != mac:
            continue
        m = re.search(r"who-has (\S+) tell (\S+?),", line)
        if m and m.group(1) == m.group(2):
            first_garp.setdefault(m.group(1), i)
        m = re.search(rf"{re.escape(A)} > 224\.0\.0\.18: VRRPv3, Advertisement, vrid (\d+), prio 200", line)
        if m:
            first_advert.setdefault(vip(int(m.group(1))), i)
    assert set(first_advert) == vips, f"adverts from a after the restore: {sorted(first_advert)}"
    late = sorted(v for v in vips if v not in first_garp or first_garp[v] > first_advert[v])
    assert not late, f"a advertised before its gratuitous ARP for {late}: " + "".join(
        frames[i] for i in sorted({first_advert[v] for v in late} | {first_garp[v] for v in late if v in first_garp}))
