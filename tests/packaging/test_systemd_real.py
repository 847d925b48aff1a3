"""packaging/systemd/chime-ha.service under a real systemd (PID 1 of an nspawn container).

The container's network is one lab namespace (node a); keepalived 2.2.7 is
the peer on node b, and node c probes the VIP every 20 ms. Asserted, in the
unit's own terms: ``systemctl start`` returns only once the instances run
(Type=notify), ``systemctl reload`` loses no probe, a SIGKILL is restarted by
Restart=on-failure, ``systemctl stop`` resigns (priority 0) so the peer takes
over within Skew_Time instead of the Master_Down_Interval, all with the
unit's hardening directives in force.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))
from chalab import Daemon, wait_until  # noqa: E402

from nspawn import SystemdContainer, nspawn_unavailable  # noqa: E402

pytestmark = [pytest.mark.system, pytest.mark.keepalived]

A, B, C, VIP = "10.7.8.11", "10.7.8.12", "10.7.8.50", "10.7.8.100"


def conf(state: str, priority: int, router_id: str) -> str:
    return f"""global_defs {{
    router_id {router_id}
}}
vrrp_instance VI_SD {{
    state {state}
    interface eth0
    virtual_router_id 48
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"""


@pytest.fixture
def lab(topology):
    from chimeha.lab.node import add_node

    why = nspawn_unavailable()
    if why:
        pytest.skip(why)  # conftest turns a skip under CI=true into a failure
    a = topology.add_host("a", f"{A}/24")
    b = add_node(topology, "b", f"{B}/24")
    c = topology.add_host("c", f"{C}/24")
    return a, b, c


def holders(a, b) -> list[str]:
    return [n for n, h in (("a", a), ("b", b)) if VIP in h.addresses_on()]


def probe(c, seconds: float) -> subprocess.Popen:
    n = int(seconds / 0.02)
    return c.popen(["ping", "-n", "-i", "0.02", "-c", str(n), "-W", "1", VIP], stdout=subprocess.PIPE, text=True)


def lost(proc: subprocess.Popen) -> int:
    out, _ = proc.communicate(timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    return int(m.group(1)) - int(m.group(2))


def test_unit_start_reload_restart_and_stop_under_real_systemd(lab, tmp_path):
    a, b, c = lab
    peer = Daemon(b, "keepalived", conf("BACKUP", 100, "peer"), tmp_path)
    with SystemdContainer(a.netns, tmp_path / "ct", conf("MASTER", 200, "unit"), name=a.netns[-20:]) as ct:
        try:
            peer.start()
            wait_until(lambda: holders(a, b) == ["b"], 10, "the peer master first")
            started = time.monotonic()
            ct.systemctl("start", "chime-ha", timeout=60)  # blocks until READY=1
            took = time.monotonic() - started
            assert ct.show("ActiveState") == "active" and ct.show("Type") == "notify"
            status = ct.run([str(ct.exe), "status",
                             "--control", "/run/chime-ha/control.sock", "--json"], check=False)
            assert '"VI_SD"' in status.stdout, status.stdout + status.stderr  # the instances ran when start returned
            wait_until(lambda: holders(a, b) == ["a"], 10, "chime-ha preempting the lower-priority peer")

            ping = probe(c, 4.0)
            time.sleep(1.0)
            ct.systemctl("reload", "chime-ha")
            assert lost(ping) == 0, "probes lost across systemctl reload"
            assert holders(a, b) == ["a"]

            pid = ct.show("MainPID")
            ct.systemctl("kill", "-s", "SIGKILL", "--kill-whom=main", "chime-ha")
            wait_until(lambda: ct.show("MainPID") not in (pid, "0") and ct.show("ActiveState") == "active",
                       20, "Restart=on-failure bringing chime-ha back")
            assert int(ct.show("NRestarts")) == 1
            wait_until(lambda: holders(a, b) == ["a"], 10, "the VIP back on the restarted master")

            time.sleep(1.5)
            stopped = time.monotonic()
            ct.systemctl("stop", "chime-ha", timeout=30)
            wait_until(lambda: holders(a, b) == ["b"], 3, "the peer taking over after priority 0")
            handover = time.monotonic() - stopped
            # Skew_Time for priority 100 is 0.61 s; without priority 0 it would be 3.6 s.
            assert handover < 2.0, handover
            assert ct.show("ActiveState") == "inactive"
            journal = ct.unit_journal()
            assert "MASTER -> INIT (shutdown)" in journal or "priority 0" in journal, journal[-3000:]
            print(f"systemctl start returned after {took:.2f} s; handover after stop {handover:.2f} s")
        except BaseException:
            print("--- unit journal ---\n" + ct.unit_journal()[-5000:])
            print("--- nspawn ---\n" + ct.log()[-2000:])
            print("--- keepalived ---\n" + peer.log()[-2000:])
            raise
        finally:
            peer.stop()
