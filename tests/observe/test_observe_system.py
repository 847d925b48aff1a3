"""observe against the real daemon, in network namespaces.

Two chime-ha nodes (server1 .11 priority 255, server2 .12 priority 254) run
the seed's active-standby VRRP instance in lab namespaces made by the test.
The control socket is read from here (unix sockets live on the filesystem),
metrics and the status page are fetched inside each node's namespace over its
own loopback. Nothing touches the host's network namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import shutil

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chimeha.observe.control import ControlClient, ControlError
from chimeha.observe.schema import normalize

from observe_png import count_colour, read_png

pytestmark = pytest.mark.system

LAUNCHER = str(Path(__file__).with_name("observe_daemon.py"))
CHIME_HA = str(Path(sys.executable).with_name("chime-ha"))
VIP = "192.168.231.10"
METRICS = "127.0.0.1:9650"
SPLIT_RGB = (0xBF, 0x00, 0xBF)  # --split in statuspage/style.css

CONF = """\
global_defs {{
    router_id {name}
}}
vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    authentication {{
        auth_type PASS
        auth_pass 1111
    }}
    virtual_ipaddress {{
        {vip}/32
    }}
}}
"""


def wait_until(cond, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except (ControlError, OSError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def http_get(host, path: str) -> str:
    """GET http://127.0.0.1:9650/PATH from inside ``host``'s namespace (its own loopback)."""
    code = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
            f"'http://{METRICS}{path}', timeout=10).read().decode())")
    return host.run([sys.executable, "-c", code], timeout=30).stdout


def scrape(host, name: str, **labels) -> float | None:
    """One sample of ``name`` with ``labels`` from the node's /metrics (None if absent)."""
    for fam in text_string_to_metric_families(http_get(host, "/metrics")):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


class ObservedNode:
    """A lab host running the daemon with the observer; files under ``workdir``."""

    def __init__(self, host, workdir: Path, priority: int, state: str, extra: str = "", track: str = ""):
        self.host = host
        self.dir = workdir / host.name
        self.dir.mkdir(parents=True)
        self.conf = self.dir / "keepalived.conf"
        text = CONF.format(name=host.name, state=state, priority=priority, vip=VIP)
        if track:
            text = text.rstrip().rstrip("}") + f"    track_script {{\n        {track}\n    }}\n}}\n"
        self.conf.write_text(text + extra)
        self.control = str(self.dir / "control.sock")
        self.journal_path = str(self.dir / "journal.jsonl")
        self.log = self.dir / "daemon.log"
        self.proc = None

    def start(self):
        logf = open(self.log, "wb")
        self.proc = self.host.popen([sys.executable, LAUNCHER, str(self.conf), "--control", self.control,
                                     "--journal", self.journal_path, "--metrics", METRICS,
                                     "--dump-dir", str(self.dir)], stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        wait_until(lambda: self.status()["instances"], 20, f"{self.host.name}'s control socket")
        return self

    @property
    def pid(self) -> int:
        """The launcher's PID (ours: `ip netns exec` execs into it)."""
        return self.proc.pid

    def status(self) -> dict:
        return normalize(ControlClient(self.control, timeout=5).status())

    def instance(self) -> dict:
        return self.status()["instances"]["VI_1"]

    def journal(self) -> list[dict]:
        return ControlClient(self.control, timeout=5).journal(limit=100)

    def metric(self, name: str, **labels) -> float | None:
        return scrape(self.host, name, **labels)

    def holds_vip(self) -> bool:
        return VIP in self.host.addresses_on()

    def explain(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else "(no log)"


@pytest.fixture
def pair(topology, tmp_path):
    s1 = topology.add_host("server1", "192.168.231.11/24", ifname="eth0")
    s2 = topology.add_host("server2", "192.168.231.12/24", ifname="eth0")
    a = ObservedNode(s1, tmp_path, 255, "MASTER")
    b = ObservedNode(s2, tmp_path, 254, "BACKUP")
    b.start()
    a.start()
    try:
        wait_until(lambda: a.instance()["state"] == "MASTER" and a.holds_vip(), 15, "server1 MASTER with the VIP")
        wait_until(lambda: b.instance()["state"] == "BACKUP" and b.instance()["master_address"] == "192.168.231.11",
                   15, "server2 BACKUP following server1")
    except AssertionError:
        print(a.explain(), b.explain(), sep="\n----\n")
        raise
    yield a, b


def test_failover_is_journaled_with_reason_time_and_metrics(pair):
    a, b = pair
    assert b.instance()["base_priority"] == 254 and b.instance()["effective_priority"] == 254
    assert b.instance()["vips"] == [f"{VIP}/32"] and not b.instance()["vips_owned"]
    assert a.instance()["vips_owned"] and a.instance()["master_address"] == "192.168.231.11"
    assert [e["to"] for e in b.journal() if e["kind"] == "transition"][-1] == "BACKUP"

    a.host.link_down()  # server1's cable is pulled: server2 stops hearing adverts
    wait_until(lambda: b.instance()["state"] == "MASTER", 15, "server2 takes over")
    entry = [e for e in b.journal() if e["kind"] == "transition"][-1]
    assert (entry["from"], entry["to"]) == ("BACKUP", "MASTER")
    assert "192.168.231.11" in entry["reason"] and "no advertisement" in entry["reason"], entry
    # Master_Down_Interval = 3 x 1 s + (256 - 254)/256 s = 3.008 s, measured by the daemon itself.
    assert 2.9 <= entry["failover_seconds"] <= 4.5, entry
    inst = b.instance()
    assert inst["failovers"]["count"] == 1 and inst["failovers"]["last_seconds"] == entry["failover_seconds"]
    assert inst["last_transition"]["reason"] == entry["reason"]
    # The takeover advert leaves after the VIP+GARP, after the snapshot cached at the transition.
    assert inst["adverts_received"] > 0

    print(subprocess.run([CHIME_HA, "status", "--control", b.control], capture_output=True, text=True,
                         timeout=30).stdout)

    # Prometheus over HTTP, inside server2's namespace.
    assert b.metric("chimeha_vrrp_state", instance="VI_1", state="MASTER") == 1
    assert b.metric("chimeha_vrrp_transitions_total", instance="VI_1", **{"from": "BACKUP", "to": "MASTER"}) == 1
    assert b.metric("chimeha_vrrp_failover_seconds_count", instance="VI_1") == 1
    assert b.metric("chimeha_vrrp_failover_seconds_bucket", instance="VI_1", le="2.0") == 0
    assert b.metric("chimeha_vrrp_failover_seconds_bucket", instance="VI_1", le="5.0") == 1
    assert b.metric("chimeha_vrrp_effective_priority", instance="VI_1") == 254
    assert b.metric("chimeha_vrrp_adverts_received_total", instance="VI_1") >= inst["adverts_received"] > 0

    # keepalived's SIGUSR2 stats and SIGUSR1 data dumps.
    os.kill(b.pid, signal.SIGUSR2)
    stats = wait_until(lambda: (b.dir / "keepalived.stats").read_text(), 10, "the stats dump")
    assert "VRRP Instance: VI_1\n" in stats and "  Became master: 1\n" in stats
    os.kill(b.pid, signal.SIGUSR1)
    data = wait_until(lambda: (b.dir / "keepalived.data").read_text(), 10, "the data dump")
    assert "   State = MASTER\n" in data and f"     {VIP}/32 dev eth0 set\n" in data
    os.kill(b.pid, signal.SIGRTMIN + 2)  # keepalived --signum=JSON
    dump = wait_until(lambda: json.loads((b.dir / "keepalived.json").read_text()), 10, "the JSON dump")
    assert dump[0]["data"]["iname"] == "VI_1" and dump[0]["data"]["state"] == 2  # keepalived's MASTER
    assert dump[0]["stats"]["become_master"] == 1 and dump[0]["stats"]["advert_rcvd"] > 0

    a.host.link_up()  # server1 is back with the higher priority and preempts
    wait_until(lambda: b.instance()["state"] == "BACKUP", 15, "server2 yields to server1")
    back = [e for e in b.journal() if e["kind"] == "transition"][-1]
    assert (back["from"], back["to"]) == ("MASTER", "BACKUP")
    assert "255" in back["reason"] and "192.168.231.11" in back["reason"], back
    # The journal file holds the same history, one JSON object per line.
    for e in b.journal():
        print(e)
    on_disk = [json.loads(x) for x in Path(b.journal_path).read_text().splitlines()]
    assert [e["seq"] for e in on_disk] == [e["seq"] for e in b.journal()]


CRAFT = r"""
import socket, sys
from chimeha.vrrp import packet

def advert(vrid=51, auth="1111", interval=1.0):
    return packet.encode(2, vrid, 100, ["192.168.231.10"], interval, auth_type="PASS", auth_pass=auth,
                         source="192.168.231.13", destination="224.0.0.18")

def send(data, ttl=255, times=3):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("192.168.231.13"))  # no routes here
    for _ in range(times):
        s.sendto(data, ("224.0.0.18", 0))
    s.close()

good = advert()
bad_sum = bytearray(good); bad_sum[6] ^= 0xFF
send(good, ttl=64)                 # ttl: multicast adverts must arrive with TTL 255
send(bytes(bad_sum))               # checksum
send(advert(auth="2222"))          # auth: wrong password
send(advert(interval=2.0))         # advert-interval: v2 receivers drop a mismatched interval
send(advert(vrid=99))              # vrid-unknown: no instance for VRID 99 here
send(good[:6])                     # length: truncated
print("sent")
"""


@pytest.fixture
def single(topology, tmp_path):
    s1 = topology.add_host("server1", "192.168.231.11/24", ifname="eth0")
    attacker = topology.add_host("attacker", "192.168.231.13/24", ifname="eth0")
    a = ObservedNode(s1, tmp_path, 255, "MASTER").start()
    wait_until(lambda: a.instance()["state"] == "MASTER", 15, "server1 MASTER")
    yield a, attacker


def test_drop_counters_after_crafted_bad_packets(single):
    a, attacker = single
    assert attacker.run([sys.executable, "-c", CRAFT]).stdout.strip() == "sent"

    def drops():
        snap = a.status()
        inst, top = snap["instances"]["VI_1"]["drops_by_reason"], snap["drops_by_reason"]
        return {r: inst.get(r, 0) + top.get(r, 0) for r in set(inst) | set(top)}
    expected = {"ttl": 3, "checksum": 3, "auth": 3, "advert-interval": 3, "vrid-unknown": 3, "length": 3}
    wait_until(lambda: all(drops().get(r, 0) >= n for r, n in expected.items()), 10, f"drop counters {expected}")
    assert drops() == expected  # each crafted defect counted once, under its own reason, nothing else
    assert a.status()["drops_by_reason"].get("vrid-unknown") == 3  # it matched no instance
    assert a.instance()["state"] == "MASTER" and a.instance()["adverts_received"] == 0

    assert a.metric("chimeha_vrrp_drops_total", instance="VI_1", reason="ttl") == 3
    assert a.metric("chimeha_vrrp_drops_total", instance="VI_1", reason="checksum") == 3
    assert a.metric("chimeha_vrrp_unmatched_drops_total", reason="vrid-unknown") == 3
    out = subprocess.run([CHIME_HA, "status", "--control", a.control],
                         capture_output=True, text=True, timeout=30).stdout
    assert "VRRP instance VI_1: MASTER" in out and "ttl 3" in out and "checksum 3" in out

    os.kill(a.pid, signal.SIGUSR2)
    stats = wait_until(lambda: (a.dir / "keepalived.stats").read_text(), 10, "the stats dump")
    assert "    TTL: 3\n" in stats and "    Advertisement Interval: 3\n" in stats and "    Failure: 3\n" in stats


def _nft(host, *rules: str) -> None:
    for rule in rules:
        host.run(["nft", *rule.split()])


def test_split_brain_when_adverts_are_cut(pair, tmp_path):
    a, b = pair
    # server2 stops hearing VRRP (its input path drops protocol 112): it becomes a second master,
    # and server1, still master, hears server2's adverts.
    _nft(b.host, "add table inet chhacut", "add chain inet chhacut in { type filter hook input priority 0 ; }",
         "add rule inet chhacut in ip protocol vrrp drop")
    wait_until(lambda: b.instance()["state"] == "MASTER", 15, "server2 becomes a second master")
    sb = wait_until(lambda: a.instance()["split_brain"]["active"] and a.instance()["split_brain"], 10,
                    "server1 reports split brain")
    assert sb["peer"] == "192.168.231.12" and sb["since"] is not None
    assert a.instance()["state"] == "MASTER"
    entries = [e for e in a.journal() if e["kind"] == "split_brain"]
    assert len(entries) == 1 and entries[0]["peer"] == "192.168.231.12" and entries[0]["to"] == "SPLIT_BRAIN"
    assert "192.168.231.12" in entries[0]["reason"]
    assert a.metric("chimeha_vrrp_split_brain", instance="VI_1", peer="192.168.231.12") == 1
    assert a.metric("chimeha_vrrp_split_brain_episodes_total", instance="VI_1") == 1
    out = subprocess.run([CHIME_HA, "status", "--control", a.control],
                         capture_output=True, text=True, timeout=30).stdout
    assert "VRRP instance VI_1: SPLIT BRAIN" in out and "another master 192.168.231.12" in out

    page = _chromium(a.host, tmp_path, "--dump-dom").stdout
    assert 'data-loaded="1"' in page
    assert 'data-instance="VI_1" data-state="SPLIT_BRAIN"' in page
    shot = tmp_path / "split.png"
    _chromium(a.host, tmp_path, f"--screenshot={shot}", "--window-size=1280,800")
    _, _, rows = read_png(shot.read_bytes())
    assert count_colour(rows[:300], SPLIT_RGB) > 1500  # the magenta SPLIT BRAIN badge on the first card

    b.host.run(["nft", "delete", "table", "inet", "chhacut"])
    wait_until(lambda: b.instance()["state"] == "BACKUP", 15, "server2 hears server1 again and yields")
    assert a.instance()["state"] == "MASTER"
    wait_until(lambda: not a.instance()["split_brain"]["active"], 10, "server1's split brain to resolve")
    resolved = [e for e in a.journal() if e["kind"] == "split_brain_resolved"]
    assert len(resolved) == 1 and resolved[0]["to"] == "MASTER"
    assert a.metric("chimeha_vrrp_split_brain", instance="VI_1", peer="") == 0


def _chromium(host, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium inside ``host``'s namespace, on the node's own status page."""
    exe = shutil.which("chromium")
    if not exe:
        pytest.skip("needs chromium")
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return host.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                     "--virtual-time-budget=4000", *extra, f"http://{METRICS}/"], check=False, timeout=90)


def test_tracked_script_result_and_fault_reason(topology, tmp_path):
    flag = tmp_path / "chime-server.up"
    flag.write_text("")
    script = f"""
vrrp_script chk_server {{
    script "/usr/bin/test -e {flag}"
    interval 1
}}
"""
    host = topology.add_host("server1", "192.168.231.11/24", ifname="eth0")
    a = ObservedNode(host, tmp_path, 255, "MASTER", extra=script, track="chk_server").start()
    wait_until(lambda: a.instance()["state"] == "MASTER", 15, "server1 MASTER")
    sc = wait_until(lambda: a.status()["scripts"]["chk_server"]["result"] == "ok" and a.status()["scripts"]["chk_server"],
                    10, "chk_server ok")
    assert sc["last_exit"] == 0 and sc["last_run_at"] is not None
    assert a.instance()["track_scripts"] == ["chk_server"]
    assert a.metric("chimeha_track_script_ok", script="chk_server") == 1

    flag.unlink()  # the service "stops": the check fails and, with no weight, the instance faults
    wait_until(lambda: a.instance()["state"] == "FAULT", 10, "server1 FAULT after the check fails")
    sc = a.status()["scripts"]["chk_server"]
    assert sc["result"] == "failed" and sc["last_exit"] == 1
    entry = [e for e in a.journal() if e["kind"] == "transition"][-1]
    print("fault entry:", entry)
    assert (entry["from"], entry["to"]) == ("MASTER", "FAULT") and "chk_server" in entry["reason"], entry
    assert not a.holds_vip()
    assert a.metric("chimeha_track_script_ok", script="chk_server") == 0
    assert a.metric("chimeha_track_script_last_exit", script="chk_server") == 1
    assert a.metric("chimeha_vrrp_state", instance="VI_1", state="FAULT") == 1
    out = subprocess.run([CHIME_HA, "status", "--control", a.control], capture_output=True, text=True, timeout=30).stdout
    assert "VRRP instance VI_1: FAULT" in out and "chk_server" in out and "failed" in out

    flag.write_text("")
    wait_until(lambda: a.instance()["state"] == "MASTER", 15, "server1 MASTER again once the check passes")


VIRTUAL_SERVER = """
virtual_server 192.168.231.10 8801 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 192.168.231.21 8801 {
        weight 2
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 192.168.231.22 8801 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""


def test_virtual_server_health_weight_and_dataplane(topology, tmp_path):
    director = topology.add_host("server1", "192.168.231.11/24", ifname="eth0")
    rs1 = topology.add_host("rs1", "192.168.231.21/24", ifname="eth0")
    topology.add_host("rs2", "192.168.231.22/24", ifname="eth0")  # nothing listens there: health check fails
    rs1.popen([sys.executable, "-m", "http.server", "8801", "--bind", "192.168.231.21"])
    a = ObservedNode(director, tmp_path, 255, "MASTER", extra=VIRTUAL_SERVER).start()
    wait_until(lambda: a.instance()["state"] == "MASTER", 15, "server1 MASTER")

    def settled():
        vss = a.status()["virtual_servers"]
        if len(vss) != 1:
            return None
        rss = {r["address"]: r for r in vss[0]["real_servers"]}
        ok = rss.get("192.168.231.21", {}).get("healthy") and not rss.get("192.168.231.22", {}).get("healthy", True)
        return vss[0] if ok else None
    try:
        vs = wait_until(settled, 20, "rs1 up and rs2 down")
    except AssertionError:
        print(a.explain())
        raise
    print("virtual server:", vs)
    rss = {r["address"]: r for r in vs["real_servers"]}
    assert vs["dataplane"] in ("nft", "proxy", "ipvs"), vs
    assert "8801" in vs["name"] and vs["lb_algo"] == "rr" and vs["lb_kind"] == "NAT"
    assert rss["192.168.231.21"]["weight"] == 2 and rss["192.168.231.21"]["port"] == 8801
    assert rss["192.168.231.22"]["weight"] == 0  # failed: out of the data plane
    name = vs["name"]
    assert a.metric("chimeha_lvs_real_server_up", virtual_server=name, real_server="192.168.231.21:8801") == 1
    assert a.metric("chimeha_lvs_real_server_up", virtual_server=name, real_server="192.168.231.22:8801") == 0
    assert a.metric("chimeha_lvs_real_server_weight", virtual_server=name, real_server="192.168.231.21:8801") == 2
    assert a.metric("chimeha_lvs_virtual_server_active", virtual_server=name, dataplane=vs["dataplane"]) == 1
    out = subprocess.run([CHIME_HA, "status", "--control", a.control], capture_output=True, text=True, timeout=30).stdout
    assert f"data plane {vs['dataplane']}" in out and "192.168.231.22:8801" in out and "DOWN" in out


def test_reload_through_the_control_socket(topology, tmp_path):
    host = topology.add_host("server1", "192.168.231.11/24", ifname="eth0")
    a = ObservedNode(host, tmp_path, 255, "MASTER").start()
    wait_until(lambda: a.instance()["state"] == "MASTER", 15, "server1 MASTER")
    good = a.conf.read_text()

    a.conf.write_text(good.replace("priority 255", "priority 200"))
    proc = subprocess.run([CHIME_HA, "reload", "--control", a.control], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "chime-ha reload: reloaded" in proc.stdout
    wait_until(lambda: a.instance()["base_priority"] == 200, 10, "the new priority in effect")
    assert a.status()["node"]["reloads"] == 1

    a.conf.write_text(good.replace("virtual_router_id 51", "virtual_router_id 51 52 53 nonsense {"))
    proc = subprocess.run([CHIME_HA, "reload", "--control", a.control], capture_output=True, text=True, timeout=60)
    print("refused reload:", proc.stderr)
    assert proc.returncode == 1
    assert str(a.conf) in proc.stderr and "error" in proc.stderr  # FILE:LINE: error: ... from the config loader
    assert "Traceback" not in proc.stderr
    inst = a.instance()
    assert inst["base_priority"] == 200 and inst["state"] == "MASTER"  # the old configuration still runs
    reloads = [e for e in a.journal() if e["kind"] == "reload"]
    assert [e["ok"] for e in reloads] == [True, False]


def test_chime_ha_run_end_to_end_with_readiness(topology, tmp_path):
    """The real CLI path: `chime-ha run --control --journal --metrics` under a (fake) systemd notify socket."""
    import socket as _socket

    host = topology.add_host("server1", "192.168.231.11/24", ifname="eth0")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(CONF.format(name="server1", state="BACKUP", priority=200, vip=VIP))
    control, journal = str(tmp_path / "control.sock"), str(tmp_path / "journal.jsonl")
    notify_path = str(tmp_path / "notify.sock")
    with _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.settimeout(20)
        log = open(tmp_path / "run.log", "wb")
        proc = host.popen([CHIME_HA, "run", "-f", str(conf), "--control", control, "--journal", journal,
                           "--metrics", METRICS], stdout=log, stderr=subprocess.STDOUT,
                          env={**os.environ, "NOTIFY_SOCKET": notify_path})
        log.close()
        try:
            ready = notify.recv(4096).decode()
        except OSError:
            print((tmp_path / "run.log").read_text())
            raise
        assert ready.startswith("READY=1\n") and "STATUS=VI_1 " in ready
        status = json.loads(subprocess.run([CHIME_HA, "status", "--json", "--control", control],
                                           capture_output=True, text=True, timeout=30, check=True).stdout)
        assert status["instances"]["VI_1"]["base_priority"] == 200
        # Alone on the segment, the BACKUP takes over after Master_Down_Interval.
        wait_until(lambda: normalize(ControlClient(control).status())["instances"]["VI_1"]["state"] == "MASTER",
                   15, "VI_1 MASTER")
        out = subprocess.run([CHIME_HA, "journal", "--control", control], capture_output=True, text=True,
                             timeout=30, check=True).stdout.splitlines()
        assert any("INIT -> BACKUP" in line for line in out), out  # attached before start: nothing missed
        assert any("BACKUP -> MASTER" in line for line in out), out
        assert scrape(host, "chimeha_vrrp_state", instance="VI_1", state="MASTER") == 1
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        messages = []
        while True:
            try:
                messages.append(notify.recv(4096).decode())
            except OSError:
                break
            if any(m.startswith("STOPPING=1") for m in messages):
                break
        assert any(m.startswith("STOPPING=1") for m in messages), messages
    assert not os.path.exists(control)  # the socket is removed on a clean stop
    assert [json.loads(x)["to"] for x in Path(journal).read_text().splitlines()][:2] == ["BACKUP", "MASTER"]
