"""runtime/netlink.py: FIFO netlink work, GARP after its VIP and skipped once the VIP is given up.

Unit tests with a fake AddressManager / Announcer; then the real thing in namespaces: VIPs on a
real veth, gratuitous ARP captured by a neighbour, and a daemon reload removing an instance.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from chimeha.net.addresses import AddressError
from chimeha.runtime import netlink as netlink_mod
from chimeha.runtime.netlink import NetlinkWorker


class FakeManager:
    """AddressManager stand-in: records calls with the thread they ran on."""

    instances: list["FakeManager"] = []

    def __init__(self):
        self.calls: list[tuple] = []
        self.present: set[str] = set()
        self.refuse: set[str] = set()
        self.closed = False
        FakeManager.instances.append(self)

    def add(self, vip):
        self.calls.append(("add", vip.address, vip.dev, threading.current_thread().name))
        if vip.address in self.refuse:
            raise AddressError(f"cannot add {vip}: Permission denied")
        new = vip.address not in self.present
        self.present.add(vip.address)
        return new

    def delete(self, vip):
        self.calls.append(("del", vip.address, vip.dev, threading.current_thread().name))
        there = vip.address in self.present
        self.present.discard(vip.address)
        return there

    def route(self, op, route):
        self.calls.append(("route", op, route.dst))
        return True

    @contextlib.contextmanager
    def cached_lookups(self):  # the worker caches interface lookups for one pass
        yield

    def addresses(self, dev):
        return set(self.present)

    def close(self):
        self.closed = True


class FakeAnnouncer:
    sent: list[tuple] = []
    gate: threading.Event | None = None
    fail: set[str] = set()

    def __init__(self, ifname):
        self.ifname = ifname
        self.ifindex = socket.if_nametoindex(ifname)  # the worker re-opens an announcer whose index changed
        self.closed = False
        FakeAnnouncer.made.append(self)

    def announce(self, ip):
        if FakeAnnouncer.gate is not None:
            FakeAnnouncer.gate.wait(10)
        if ip in FakeAnnouncer.fail:
            raise OSError(19, "No such device")
        FakeAnnouncer.sent.append((self.ifname, ip, threading.current_thread().name))

    def close(self):
        self.closed = True


@pytest.fixture
def worker(monkeypatch):
    FakeManager.instances = []
    FakeAnnouncer.sent, FakeAnnouncer.made, FakeAnnouncer.gate, FakeAnnouncer.fail = [], [], None, set()
    w = NetlinkWorker(manager_factory=FakeManager, announcer_factory=FakeAnnouncer)
    yield w
    if FakeAnnouncer.gate is not None:
        FakeAnnouncer.gate.set()
    w.close()


def va(address, **kw):
    return SimpleNamespace(address=address, **kw)


def test_apply_adds_and_removes_in_submission_order_on_one_thread(worker):
    a, b = va("10.0.0.100/24"), va("10.0.0.101/24", dev="eth1")
    futs = [worker.apply("VI_1", [a], [b], [], "eth0", True), worker.apply("VI_1", [a], [b], [], "eth0", False),
            worker.apply("VI_1", [a], [], [], "eth0", True)]
    assert [f.result(5) for f in futs] == [2, 2, 1]
    mgr = FakeManager.instances[0]
    assert [c[:3] for c in mgr.calls] == [("add", "10.0.0.100", "eth0"), ("add", "10.0.0.101", "eth1"),
                                          ("del", "10.0.0.100", "eth0"), ("del", "10.0.0.101", "eth1"),
                                          ("add", "10.0.0.100", "eth0")]
    assert {c[3] for c in mgr.calls} == {mgr.calls[0][3]} and mgr.calls[0][3].startswith("chimeha-netlink")
    assert len(FakeManager.instances) == 1  # one manager (one netlink socket) for the worker's life


def test_apply_counts_only_real_changes_and_one_bad_vip_does_not_stop_the_rest(worker, caplog):
    worker.apply("VI_1", [va("10.0.0.100/24")], [], [], "eth0", True).result(5)
    FakeManager.instances[0].refuse.add("10.0.0.102")
    with caplog.at_level(logging.ERROR, logger="chimeha.runtime.netlink"):
        n = worker.apply("VI_1", [va("10.0.0.100/24"), va("10.0.0.102/24"), va("not-an-ip"), va("10.0.0.103/24")],
                         [], [], "eth0", True).result(5)
    assert n == 1  # .100 already there, .102 refused, "not-an-ip" invalid, .103 added
    assert "VI_1: cannot add 10.0.0.102/24 dev eth0: Permission denied" in caplog.text
    assert FakeManager.instances[0].present == {"10.0.0.100", "10.0.0.103"}


def test_virtual_routes_follow_the_vips(worker):
    route = SimpleNamespace(destination="10.8.0.0/16", via="10.0.0.1", dev=None, words=())
    worker.apply("VI_1", [va("10.0.0.100/24")], [], [route], "eth0", True).result(5)
    worker.apply("VI_1", [va("10.0.0.100/24")], [], [route, {"dst": "default"}], "eth0", False).result(5)
    calls = [c[:3] for c in FakeManager.instances[0].calls]
    assert calls == [("add", "10.0.0.100", "eth0"), ("route", "add", "10.8.0.0/16"),
                     ("del", "10.0.0.100", "eth0"), ("route", "del", "10.8.0.0/16"), ("route", "del", "0.0.0.0/0")]


def test_garp_waits_for_its_vip_and_repeats_count_times(worker):
    gate = concurrent.futures.Future()
    g = worker.announce("VI_1", [va("10.0.0.100/24"), va("10.0.0.101/24")], "eth0", 3, after=gate)
    time.sleep(0.1)
    assert FakeAnnouncer.sent == []  # never before the VIP is in place
    gate.set_result(1)
    g.result(5)
    # in rounds over every VIP, as keepalived sends them (issue 10)
    assert [s[1] for s in FakeAnnouncer.sent] == ["10.0.0.100", "10.0.0.101"] * 3
    assert all(s[2].startswith("chimeha-garp") for s in FakeAnnouncer.sent)
    worker.announce("VI_1", [va("10.0.0.100/24")], "eth0", 0).result(5)
    assert len(FakeAnnouncer.sent) == 7  # count 0 still announces once
    assert len(FakeAnnouncer.made) == 1  # one raw socket per interface, reused


def test_garp_is_skipped_when_the_vips_were_given_up_meanwhile(worker):
    holding = {"VI_1": True}
    gate = concurrent.futures.Future()
    g = worker.announce("VI_1", [va("10.0.0.100/24")], "eth0", 5, after=gate, wanted=lambda: holding["VI_1"])
    holding["VI_1"] = False  # a RemoveAddresses was queued before the garp thread got to it
    gate.set_result(1)
    g.result(5)
    assert FakeAnnouncer.sent == []


def test_a_slow_garp_never_holds_up_the_next_vip_change(worker):
    FakeAnnouncer.gate = threading.Event()
    g = worker.announce("VI_1", [va("10.0.0.100/24")], "eth0", 1)
    removal = worker.apply("VI_1", [va("10.0.0.100/24")], [], [], "eth0", False)
    assert removal.result(5) == 0  # done while the announcement is still blocked
    assert not g.done()
    FakeAnnouncer.gate.set()
    g.result(5)


def test_a_failing_announcement_is_logged_and_the_next_address_still_goes_out(worker, caplog):
    FakeAnnouncer.fail = {"10.0.0.100"}
    with caplog.at_level(logging.WARNING, logger="chimeha.runtime.netlink"):
        worker.announce("VI_1", [va("10.0.0.100/24"), va("10.0.0.101/24")], "eth0", 1).result(5)
    assert [s[1] for s in FakeAnnouncer.sent] == ["10.0.0.101"]
    assert "VI_1: gratuitous announcement for 10.0.0.100/24" in caplog.text


def test_remove_stale_deletes_what_is_there(worker, caplog):
    worker.apply("VI_1", [va("10.0.0.100/24")], [], [], "eth0", True).result(5)
    with caplog.at_level(logging.INFO, logger="chimeha.runtime.netlink"):
        # queued (FIFO before anything the instance does later), not waited for by the caller
        worker.remove_stale("VI_1", [va("10.0.0.100/24"), va("10.0.0.101/24")], "eth0").result(5)
    assert FakeManager.instances[0].present == set()
    assert caplog.text.count("removed stale VIP") == 1  # only the one that was there


def test_close_closes_announcers_and_the_manager_and_ends_the_threads(monkeypatch):
    FakeManager.instances, FakeAnnouncer.made, FakeAnnouncer.sent = [], [], []
    FakeAnnouncer.gate, FakeAnnouncer.fail = None, set()
    w = NetlinkWorker(manager_factory=FakeManager, announcer_factory=FakeAnnouncer)
    w.apply("VI_1", [va("10.0.0.100/24")], [], [], "eth0", True).result(5)
    w.announce("VI_1", [va("10.0.0.100/24")], "eth0", 1).result(5)
    w.close()
    assert FakeManager.instances[0].closed and FakeAnnouncer.made[0].closed
    assert not [t for t in threading.enumerate() if t.name.startswith(("chimeha-netlink", "chimeha-garp"))]


# -- the real system ---------------------------------------------------------------------------
VIP = "10.9.71.100"
CHIME_HA = str(Path(sys.executable).with_name("chime-ha"))

CAPTURE = textwrap.dedent("""\
    import socket, sys, time
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((sys.argv[1], 0))
    s.settimeout(0.2)
    print("ready", flush=True)
    end, seen = time.time() + float(sys.argv[2]), 0
    while time.time() < end:
        try:
            frame = s.recv(2048)
        except socket.timeout:
            continue
        if socket.inet_ntoa(frame[28:32]) == sys.argv[3]:
            seen += 1
    print(seen, flush=True)
""")

DRIVE = textwrap.dedent("""\
    import json, sys
    from types import SimpleNamespace
    from chimeha.runtime.netlink import NetlinkWorker
    vip, dev = SimpleNamespace(address=sys.argv[1] + "/24"), sys.argv[2]
    w, out = NetlinkWorker(), {}
    try:
        added = w.apply("VI_1", [vip], [], [], dev, True)
        w.announce("VI_1", [vip], dev, 3, after=added).result(10)
        out["added"] = added.result()
        out["again"] = w.apply("VI_1", [vip], [], [], dev, True).result(10)
        out["present"] = sys.argv[1] in w.call(lambda m: m.addresses(dev))
        out["removed"] = w.apply("VI_1", [vip], [], [], dev, False).result(10)
        w.announce("VI_1", [vip], dev, 3, wanted=lambda: False).result(10)
        out["gone"] = sys.argv[1] not in w.call(lambda m: m.addresses(dev))
        w.apply("VI_1", [vip], [], [], dev, True).result(10)
        w.remove_stale("VI_1", [vip], dev)
        out["stale_removed"] = sys.argv[1] not in w.call(lambda m: m.addresses(dev))
    finally:
        w.close()
    print(json.dumps(out))
""")


@pytest.mark.system
def test_real_netlink_vips_and_gratuitous_arp_in_a_namespace(topology):
    a = topology.add_host("a", "10.9.71.11/24")
    b = topology.add_host("b", "10.9.71.12/24")
    cap = b.popen([sys.executable, "-c", CAPTURE, b.ifname, "4", VIP], stdout=subprocess.PIPE, text=True)
    assert cap.stdout.readline().strip() == "ready"
    res = a.run([sys.executable, "-c", DRIVE, VIP, a.ifname], timeout=30)
    out = json.loads(res.stdout)
    assert out == {"added": 1, "again": 0, "present": True, "removed": 1, "gone": True, "stale_removed": True}
    assert VIP not in a.addresses_on()
    seen = int(cap.stdout.readline())
    cap.wait(10)
    assert seen == 3  # the first burst only: the one after the VIP was given up was skipped


def vrrp_conf(*names_vrids) -> str:
    blocks = []
    for name, vrid, vip in names_vrids:
        blocks.append(f"vrrp_instance {name} {{\n state MASTER\n interface eth0\n virtual_router_id {vrid}\n"
                      f" priority 150\n advert_int 0.1\n version 3\n virtual_ipaddress {{\n  {vip}/24\n }}\n}}\n")
    return "".join(blocks)


def wait_for(cond, timeout=10.0, what=""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.system
def test_reload_that_removes_a_master_instance_removes_its_vip_from_the_real_interface(topology, tmp_path):
    a = topology.add_host("a", "10.9.72.11/24")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(vrrp_conf(("VI_1", 1, "10.9.72.100"), ("VI_2", 2, "10.9.72.101")))
    log = open(tmp_path / "daemon.log", "w")
    proc = a.popen([CHIME_HA, "run", "-f", str(conf), "--control", "none"], stderr=log)
    try:
        wait_for(lambda: {"10.9.72.100", "10.9.72.101"} <= a.addresses_on(), what="both VIPs")
        conf.write_text(vrrp_conf(("VI_1", 1, "10.9.72.100")))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "10.9.72.101" not in a.addresses_on(), what="VI_2's VIP removed by the reload")
        assert "10.9.72.100" in a.addresses_on()  # the kept instance's VIP was never touched
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert not {"10.9.72.100", "10.9.72.101"} & a.addresses_on()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        print((tmp_path / "daemon.log").read_text()[-4000:])
    assert os.path.exists(conf)
