"""The seed's active-standby configs, unmodified, on two chime-ha nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalab import Daemon, holders, settle_on, start_service, stop_service, wait_until

pytestmark = pytest.mark.system

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
VIP = "192.168.231.10"


def test_seed_active_standby_service_stop_and_start(topology, tmp_path):
    from chimeha.lab.node import add_node

    s1 = add_node(topology, "server1", "192.168.231.11/24", ifname="ens160")
    s2 = add_node(topology, "server2", "192.168.231.12/24", ifname="ens160")
    nodes = [s1, s2]
    start_service(s1)
    start_service(s2)
    d1 = Daemon(s1, "chime-ha", (SEED / "active-standby-server1.conf").read_text(), tmp_path,
                conf_path="/etc/keepalived/keepalived.conf")
    d2 = Daemon(s2, "chime-ha", (SEED / "active-standby-server2.conf").read_text(), tmp_path,
                conf_path="/etc/keepalived/keepalived.conf")
    try:
        d1.start()
        d2.start()
        # server1 (priority 255, the address owner) takes the VIP; server2 stays backup.
        settle_on(nodes, VIP, "server1", timeout=10, hold=2.5)
        assert s1.pids("chime-server") and s2.pids("chime-server")  # pgrep is per node

        stop_service(s1)
        settle_on(nodes, VIP, "server2", timeout=10)

        start_service(s1)
        settle_on(nodes, VIP, "server1", timeout=15)
        assert d1.alive() and d2.alive()
    except BaseException:
        print(d1.log()[-4000:])
        print(d2.log()[-4000:])
        raise
    finally:
        d1.stop()
        d2.stop()
    # SIGTERM removed the VIP from the master.
    assert holders(nodes, VIP) == []


def test_seed_nc_variant_tracks_the_api_port(topology, tmp_path):
    """The seed's commented alternative, ``nc -zv localhost 8801``, as the check."""
    from chimeha.lab.node import add_node

    s1 = add_node(topology, "server1", "192.168.231.11/24", ifname="ens160")
    text = (SEED / "active-standby-server1.conf").read_text()
    text = text.replace('script "/usr/bin/pgrep chime-server"', 'script "nc -zv localhost 8801"')
    assert 'script "nc -zv localhost 8801"' in text
    listen = ["nc", "-l", "-k", "127.0.0.1", "8801"]
    api = s1.popen(listen)
    d1 = Daemon(s1, "chime-ha", text, tmp_path, conf_path="/etc/keepalived/keepalived.conf")
    try:
        d1.start()
        # one node: nobody else can take the VIP, so a short hold is enough
        settle_on([s1], VIP, "server1", timeout=10, hold=0.5)
        s1.stop(api)  # the API port closes: the check fails, VI_1 goes to FAULT
        wait_until(lambda: holders([s1], VIP) == [], 10, "VIP released after the API went away")
        assert "track_script chk_server failed" in d1.log()
        s1.popen(listen)
        settle_on([s1], VIP, "server1", timeout=15)
    finally:
        d1.stop()
        print(d1.log()[-4000:])
