"""Lab nodes behave like separate machines: own processes, own /run and /etc/keepalived."""

import os
import subprocess
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
    assert not os.path.exists(f"/proc/{init}") or open(f"/proc/{init}/stat").read().split()[2] == "Z"
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
