"""vrrp_track_process in a lab node: the daemon faults when a tracked process exits, and recovers.

The node has its own PID namespace, so the kernel's process events connector
does not answer there (keepalived's track_process does not work in such a
node): exits come by pidfd at once, appearances by the shared /proc scan.
"""

from __future__ import annotations

import textwrap

import pytest

from chalab import Daemon, holders, wait_until

pytestmark = pytest.mark.system

VIP = "10.9.0.100"
ARG = "86400123"  # `sleep 86400123`: a command line nothing else in the node has


def conf(extra: str = "") -> str:
    return textwrap.dedent(f"""\
        vrrp_track_process svc {{
            process sleep {ARG}
            quorum 2
        {extra}}}
        vrrp_instance VI_P {{
            state MASTER
            interface eth0
            virtual_router_id 78
            priority 150
            advert_int 0.1
            version 3
            track_process {{
                svc
            }}
            virtual_ipaddress {{
                {VIP}/24
            }}
        }}
        """)


@pytest.fixture
def node(topology, tmp_path):
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", "10.9.0.11/24")
    d = Daemon(a, "chime-ha", conf(), tmp_path, control=True)
    try:
        yield a, d
    finally:
        d.stop()
        print("--- a ---\n" + d.log()[-6000:])


def state(d: Daemon) -> str:
    return d.status()["instances"]["VI_P"]["state"]


def test_an_exit_faults_the_instance_and_a_restart_recovers_it(node):
    a, d = node
    one, two = (a.popen(["sleep", ARG]) for _ in range(2))
    wait_until(lambda: len(a.run(["pgrep", "-f", f"^sleep {ARG}$"], check=False).stdout.split()) == 2, 5,
               "two tracked sleeps")
    d.start()
    wait_until(lambda: holders([a], VIP) == ["a"], 8, "the VIP on a")
    assert state(d) == "MASTER"
    tp = d.status()["track_processes"]["svc"]
    # the node's own PID namespace: the kernel's process events do not reach it
    assert tp["up"] is True and len(tp["pids"]) == 2 and tp["source"] == "scan"

    a.stop(one)  # SIGTERM by PID: one left, under quorum 2
    wait_until(lambda: state(d) == "FAULT", 3, "FAULT after the exit")
    assert holders([a], VIP) == []
    assert "track_process svc failed (1 process, quorum 2)" in d.log()

    a.popen(["sleep", ARG])  # found by the next scan (0.5 s)
    wait_until(lambda: state(d) == "MASTER", 5, "MASTER again")
    wait_until(lambda: holders([a], VIP) == ["a"], 3, "the VIP back")
    a.stop(two)
