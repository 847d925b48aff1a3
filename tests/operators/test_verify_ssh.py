"""``chime-ha verify`` against lab nodes that run a real sshd, the seed's configs and chime-ha.

Each server node has its own PID and mount namespace, an OpenSSH server on
its lab address (keys made for the test), the stand-in services, and a
stand-in ``systemctl`` (first on the ssh session's PATH, in a /usr/local/bin
private to the node) that stops and starts the stand-in chime-server by its
PID file, as systemd would. ``chime-ha verify`` runs from the client node.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))
from chalab import CHIME_HA, Daemon, wait_until  # noqa: E402

pytestmark = [pytest.mark.system]

SERVERS = {"server1": "192.168.231.11", "server2": "192.168.231.12"}
VIP = "192.168.231.10"

SYSTEMCTL = """#!/bin/sh
# Stand-in for `systemctl start|stop chime-server|chime-portal` (the lab has no systemd).
kind=""
case "$2" in chime-server) kind=server ;; chime-portal) kind=portal ;; esac
[ -n "$kind" ] || {{ echo "stand-in systemctl: unknown unit $2" >&2; exit 5; }}
pidfile=/run/$2.pid
case "$1" in
  start)
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then exit 0; fi
    setsid {python} -m chimeha.lab.standins $kind --name {node} >/dev/null 2>&1 < /dev/null &
    echo $! > "$pidfile"
    for i in $(seq 100); do nc -z 127.0.0.1 $([ $kind = server ] && echo 8801 || echo 8033) && exit 0; sleep 0.05; done
    exit 1 ;;
  stop)
    [ -f "$pidfile" ] || exit 0
    pid=$(cat "$pidfile"); kill "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
    rm -f "$pidfile" ;;
  *) echo "stand-in systemctl: unsupported: $*" >&2; exit 1 ;;
esac
"""

SSHD_CONFIG = """ListenAddress {addr}
HostKey /etc/keepalived/hostkey
AuthorizedKeysFile /etc/keepalived/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile /run/sshd.pid
"""


@pytest.fixture
def cluster(topology, tmp_path):
    from chimeha.lab.cluster import seed_configs
    from chimeha.lab.node import PRIVATE_DIRS, add_node

    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("needs openssh-server")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    configs = seed_configs("active-standby")
    nodes, daemons = {}, []
    for name, addr in SERVERS.items():
        node = add_node(topology, name, f"{addr}/24", ifname="ens160",
                        private_dirs=PRIVATE_DIRS + ("/usr/local/bin",))
        node.write_file("/usr/local/bin/systemctl", SYSTEMCTL.format(python=sys.executable, node=name), mode=0o755)
        node.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/etc/keepalived/hostkey"])
        node.write_file("/etc/keepalived/authorized_keys", (tmp_path / "id_ed25519.pub").read_text(), mode=0o600)
        node.write_file("/etc/keepalived/sshd_config", SSHD_CONFIG.format(addr=addr))
        node.run(["mkdir", "-p", "/run/sshd"])
        node.popen(["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/keepalived/sshd_config"],
                   stdout=open(tmp_path / f"sshd-{name}.log", "ab"), stderr=subprocess.STDOUT)
        for unit in ("chime-server", "chime-portal"):
            node.run(["/usr/local/bin/systemctl", "start", unit])
        d = Daemon(node, "chime-ha", configs[name], tmp_path, conf_path="/etc/keepalived/keepalived.conf")
        daemons.append(d.start())
        nodes[name] = node
    client = topology.add_host("client", "192.168.231.100/24", ifname="ens160")
    wait_until(lambda: VIP in nodes["server1"].addresses_on() and VIP not in nodes["server2"].addresses_on(),
               15, "the VIP on server1")
    try:
        yield nodes, client, key
    finally:
        for d in daemons:
            d.stop()


def verify_argv(key: Path, *extra: str) -> list[str]:
    return [CHIME_HA, "verify", "--node", f"server1=root@{SERVERS['server1']}",
            "--node", f"server2=root@{SERVERS['server2']}", "--ssh-option", f"IdentityFile={key}",
            "--ssh-option", "StrictHostKeyChecking=no", "--ssh-option", "UserKnownHostsFile=/dev/null",
            "--ssh-option", "LogLevel=ERROR", *extra]


def chime_server_running(node) -> bool:
    return bool(node.pids("chime-server"))


def test_verify_passes_every_step_and_leaves_the_service_running(cluster):
    nodes, client, key = cluster
    proc = client.run(verify_argv(key), check=False, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for n in range(1, 5):
        assert f"[{n}] PASS" in out, out
    assert "all VIPs on server1" in out and "VIPs on server2 after" in out and "VIPs back on server1 after" in out
    assert "PASS: 4/4 steps" in out
    assert chime_server_running(nodes["server1"])
    assert VIP in nodes["server1"].addresses_on()
    print(out)


def test_verify_restores_the_service_when_interrupted(cluster):
    nodes, client, key = cluster
    proc = client.popen(verify_argv(key, "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # interrupt while chime-server is stopped on server1 (step 3)
    wait_until(lambda: not chime_server_running(nodes["server1"]), 30, "verify stopping chime-server")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    import json

    report = json.loads(out)
    assert proc.returncode == 1 and report["interrupted"] and report["restored"] is True, out + err
    assert chime_server_running(nodes["server1"])
    wait_until(lambda: VIP in nodes["server1"].addresses_on(), 15, "the VIP back on server1")


def test_verify_reports_an_unreachable_node_without_a_traceback(cluster):
    _nodes, client, key = cluster
    proc = client.run(verify_argv(key, "--ssh-option", "Port=2222"), check=False, timeout=60)
    assert proc.returncode == 1
    assert "ssh failed" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    assert "FAIL: 0/4 steps" in proc.stdout
