"""Lab nodes behave like separate machines: own processes, own /run and /etc/keepalived."""

import json
import os
import subprocess
import sys
import time

import pytest

from chimeha.lab.netns import list_own_namespaces
from chimeha.lab.node import add_node

pytestmark = pytest.mark.system


def _wait(pred, deadline=5.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_nodes_have_separate_pid_and_mount_namespaces(topology):
    s1 = add_node(topology, "server1", "192.168.231.11/24", ifname="ens160")
    s2 = add_node(topology, "server2", "192.168.231.12/24", ifname="ens160")
    s1.write_file("/etc/keepalived/keepalived.conf", "server1 config\n")
    s2.write_file("/etc/keepalived/keepalived.conf", "server2 config\n")
    assert s1.run("cat /etc/keepalived/keepalived.conf").stdout == "server1 config\n"
    assert s2.run("cat /etc/keepalived/keepalived.conf").stdout == "server2 config\n"
    # The host's own /etc/keepalived is untouched.
    assert not os.path.exists("/etc/keepalived/keepalived.conf") or \
        open("/etc/keepalived/keepalived.conf").read() not in ("server1 config\n", "server2 config\n")
    s1.write_file("/run/marker.pid", "1\n")
    assert s2.run("test -e /run/marker.pid", check=False).returncode != 0
    assert not os.path.exists("/run/marker.pid")

    s1.popen(["sleep", "60"])
    assert _wait(lambda: s1.pids("sleep"))
    assert s2.pids("sleep") == []
    # Inside the node, the only processes are its init and what we started.
    comms = s1.run("ps -eo comm=").stdout.split()
    assert "sleep" in comms and len(comms) <= 4, comms
    # Own network namespace with the requested interface.
    assert "192.168.231.11" in s1.run("ip -br a show dev ens160").stdout
    assert s2.run("ping -c1 -W2 192.168.231.11", check=False).returncode == 0


def test_orphans_are_reaped_so_pgrep_stops_matching(topology):
    node = add_node(topology, "n", "192.168.231.21/24")
    node.run(["sh", "-c", "sleep 0.2 >/dev/null 2>&1 & exit 0"])
    assert node.pids("sleep")
    assert _wait(lambda: not node.run("ps -eo stat=,comm=").stdout.count("sleep"))


def test_close_kills_every_process_of_the_node(topology):
    node = add_node(topology, "n", "192.168.231.22/24")
    proc = node.popen(["sleep", "60"])
    # A grandchild that escaped the popen'd process group still dies with the PID namespace.
    node.run(["setsid", "sh", "-c", "sleep 70 >/dev/null 2>&1 &"])
    init = node.init_pid
    node.close()
    assert proc.poll() is not None
    assert not os.path.exists(f"/proc/{init}"), "the node's init is gone, not a zombie"
    out = subprocess.run(["ip", "netns", "pids", node.netns], capture_output=True, text=True).stdout
    assert out.split() == []


def test_topology_close_also_stops_nodes():
    from chimeha.lab.netns import Topology

    topo = Topology("n")
    topo.open()
    try:
        node = add_node(topo, "n", "192.168.231.23/24")
        proc = node.popen(["sleep", "60"])
    finally:
        topo.close()
    assert proc.poll() is not None
    assert not [n for n in list_own_namespaces() if n.startswith(topo.prefix)]


def test_bad_paths_are_refused(topology):
    node = add_node(topology, "n", "192.168.231.24/24")
    with pytest.raises(ValueError):
        node.write_file("relative/path", "x")


def test_stop_waits_until_the_command_itself_is_gone(topology):
    """Like `systemctl stop`: returning means the service no longer exists (pgrep would not find it)."""
    node = add_node(topology, "n", "192.168.231.25/24")
    # A service that needs a moment to shut down after SIGTERM.
    proc = node.popen(["sh", "-c", "trap 'sleep 0.4; exit 0' TERM; while :; do sleep 0.05; done"])
    assert _wait(lambda: node.pids("sh"))
    node.stop(proc)
    assert node.pids("sh") == []
    assert proc.poll() is not None


def _zombie_children(pid=None):
    """PIDs of ``pid``'s (default: this process's) children that are zombies."""
    pid = pid or os.getpid()
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids = fh.read().split()
        except OSError:
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/stat") as fh:
                    if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                        found.add(int(kid))
            except OSError:
                pass
    return found


def test_no_zombie_children_after_node_and_topology_close():
    from chimeha.lab.netns import Topology

    before = _zombie_children()
    topo = Topology("z")
    topo.open()
    try:
        closed_by_node = add_node(topo, "a", "192.168.231.26/24")
        closed_by_topo = add_node(topo, "b", "192.168.231.27/24")
        inits = [closed_by_node.init_pid, closed_by_topo.init_pid]
        for node in (closed_by_node, closed_by_topo):
            node.popen(["sleep", "60"])
            node.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 &"])  # an orphan inside the node
        closed_by_node.close()
        assert _zombie_children() - before == set()
    finally:
        topo.close()
    assert _zombie_children() - before == set()
    for init in inits:
        assert not os.path.exists(f"/proc/{init}"), f"init {init} still exists"


# Run as a child subreaper (as service managers and some test runners are), the
# node's init is orphaned to *us* when unshare dies before it (killed from
# outside): without a wait of ours it stays a zombie for as long as we live.
_SUBREAPER_SCRIPT = r"""
import ctypes, json, os, signal, sys, time
sys.path.insert(0, os.environ["TESTS_LAB"])
from test_node import _zombie_children
from chimeha.lab.netns import Topology
from chimeha.lab.node import add_node

assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
out = {}
topo = Topology("z")
topo.open()
try:
    nodes = [add_node(topo, n, f"192.168.231.{28 + i}/24") for i, n in enumerate(("a", "b"))]
    for node in nodes:
        node.popen(["sleep", "60"])
        os.kill(node._unshare.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not {n.init_pid for n in nodes} <= _zombie_children() and time.monotonic() < deadline:
        time.sleep(0.02)
    out["orphaned"] = [n.init_pid for n in nodes if n.init_pid in _zombie_children()]
    nodes[0].close()
    out["after_node_close"] = sorted(_zombie_children())
finally:
    topo.close()
out["after_topology_close"] = sorted(_zombie_children())
print(json.dumps(out))
"""


def test_an_init_orphaned_to_a_subreaper_is_reaped_on_close():
    env = {**os.environ, "TESTS_LAB": os.path.dirname(os.path.abspath(__file__))}
    proc = subprocess.run([sys.executable, "-c", _SUBREAPER_SCRIPT], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    # The scenario happened: both inits became zombie children of the subreaper...
    assert len(out["orphaned"]) == 2, out
    # ...and closing reaped them: Node.close its own (node b's processes wait for
    # Topology.close), Topology.close everything else.
    assert out["orphaned"][0] not in out["after_node_close"], out
    assert out["after_topology_close"] == [], out
