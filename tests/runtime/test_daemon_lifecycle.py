"""runtime/daemon.py start and stop on fakes: operator errors, stale VIPs, notify_stop, what stop closes."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from rtfakes import FakeNetlink, SocketFactory, instance_conf, load_ok, until

from chimeha.net.addresses import AddressError
from chimeha.runtime.daemon import Daemon, DaemonError, interface_primary_address
from chimeha.vrrp.events import State


class Msg(dict):
    """A pyroute2 address message: .get() for attributes, ["flags"] for the header field."""


class Mgr:
    def __init__(self, addrs, known=("eth0",)):
        self.addrs, self.known = addrs, known

    def ifindex(self, name):
        if name not in self.known:
            raise AddressError(f"interface {name!r} does not exist")
        return 7

    def raw_addresses(self, idx, fam):
        return [m for m in self.addrs if m["fam"] == fam]


def test_primary_address_is_the_first_primary_ipv4_or_the_link_local_ipv6():
    mgr = Mgr([Msg(fam=socket.AF_INET, flags=0x01, IFA_LOCAL="10.0.0.9"),  # secondary: skipped
               Msg(fam=socket.AF_INET, flags=0, IFA_LOCAL="10.0.0.1"),
               Msg(fam=socket.AF_INET, flags=0, IFA_LOCAL="10.0.0.2"),
               Msg(fam=socket.AF_INET6, flags=0, IFA_ADDRESS="fd00::1"),  # global: skipped
               Msg(fam=socket.AF_INET6, flags=0, IFA_ADDRESS="fe80::1")])
    assert interface_primary_address("eth0", 4, mgr) == "10.0.0.1"
    assert interface_primary_address("eth0", 6, mgr) == "fe80::1"
    assert interface_primary_address("nope0", 4, mgr) is None
    assert interface_primary_address("eth0", 4, Mgr([Msg(fam=socket.AF_INET, flags=0x01, IFA_LOCAL="10.0.0.9")])) \
        is None
    assert interface_primary_address("eth0", 6, Mgr([Msg(fam=socket.AF_INET6, flags=0)])) is None


async def test_a_config_with_errors_does_not_start_and_says_so(tmp_path):
    path = tmp_path / "k.conf"
    path.write_text(instance_conf().replace("virtual_router_id 10", "virtual_router_id 0"))
    d = Daemon(str(path), socket_factory=SocketFactory(), netlink=FakeNetlink())
    with pytest.raises(DaemonError, match=rf"^{path}: configuration has errors \(see above\); not starting$"):
        await d.start()


async def test_a_missing_file_does_not_start(tmp_path):
    d = Daemon(str(tmp_path / "none.conf"), socket_factory=SocketFactory(), netlink=FakeNetlink())
    with pytest.raises(DaemonError, match="not starting"):
        await d.start()


@pytest.mark.parametrize("text, factory, words", [
    (instance_conf(interface="nope0"), SocketFactory(), "vrrp_instance VI_1: interface nope0 does not exist"),
    (instance_conf(), SocketFactory(refuse={("lo", 4)}), "vrrp_instance VI_1: [Errno 1] Operation not permitted"),
])
async def test_host_problems_are_daemon_errors_in_operator_words(tmp_path, text, factory, words):
    nl = FakeNetlink()
    d = Daemon(str(tmp_path / "k.conf"), load_ok(text), socket_factory=factory, netlink=nl)
    with pytest.raises(DaemonError) as exc:
        await d.start()
    assert words in str(exc.value)
    assert not [e for e in nl.log if e[0] in ("add", "stale")]  # nothing was touched before the refusal


async def test_start_removes_stale_vips_of_every_instance_before_anything_runs(tmp_path):
    text = (instance_conf("VI_1", vrid=1, extra=" virtual_ipaddress_excluded {\n  10.0.0.150/24\n }\n")
            + instance_conf("VI_2", vrid=2, vip="10.0.0.101/24"))
    nl = FakeNetlink()
    d = Daemon(str(tmp_path / "k.conf"), load_ok(text), socket_factory=SocketFactory(), netlink=nl)
    await d.start()
    try:
        assert nl.log[:2] == [("stale", "VI_1", ("10.0.0.100/24", "10.0.0.150/24")), ("stale", "VI_2", ("10.0.0.101/24",))]
    finally:
        await d.stop()


async def test_a_daemon_without_instances_starts_and_reports_it(tmp_path):
    d = Daemon(str(tmp_path / "k.conf"), load_ok("global_defs {\n router_id x\n}\n"), socket_factory=SocketFactory(),
               netlink=FakeNetlink())
    await d.start()
    try:
        assert d.generation == 1 and d.snapshot()["instances"] == {} and d.node.get_timer() is None
    finally:
        await d.stop()


async def test_stop_gives_up_vips_runs_notify_stop_and_closes_everything(tmp_path):
    out = tmp_path / "stopped"
    text = instance_conf(extra=f' notify_stop "/bin/sh -c \'echo stop >> {out}\'"\n'
                               f' notify "/bin/sh -c \'echo $3 $2 >> {out}\'"\n')  # sh -c: $0 is INSTANCE
    nl, factory = FakeNetlink(), SocketFactory()
    d = Daemon(str(tmp_path / "k.conf"), load_ok(text), socket_factory=factory, netlink=nl)
    await d.start()
    await until(lambda: d.node.state("VI_1") is State.MASTER, what="MASTER")
    assert nl.held == {"10.0.0.100/24"}
    sock = factory.made[0]
    sent_before = len(sock.sent)
    await d.stop()
    assert nl.held == set() and nl.closed and sock.closed and d.sockets == {}
    assert sock.sent[sent_before:][-1][0][2] == 0  # the last advert said priority 0
    lines = out.read_text().splitlines()
    assert lines[-2:] == ["stop", "100 STOP"]  # notify_stop, then notify ... STOP, both awaited by stop()
    await asyncio.wait_for(d.wait_stopped(), 1)
    await d.stop()  # a second SIGTERM is harmless
    assert len(sock.sent) > sent_before


async def test_no_timer_fires_after_stop(tmp_path):
    factory = SocketFactory()
    d = Daemon(str(tmp_path / "k.conf"), load_ok(instance_conf()), socket_factory=factory, netlink=FakeNetlink())
    await d.start()
    await until(lambda: d.node.state("VI_1") is State.MASTER, what="MASTER")
    await d.stop()
    n = len(factory.made[0].sent)
    await asyncio.sleep(0.2)  # four advert intervals
    assert len(factory.made[0].sent) == n and d.node.state("VI_1") is State.INIT


async def test_a_master_never_sends_faster_than_its_advert_interval(tmp_path):
    factory = SocketFactory()
    d = Daemon(str(tmp_path / "k.conf"), load_ok(instance_conf(advert="0.1")), socket_factory=factory,
               netlink=FakeNetlink())
    await d.start()
    try:
        await until(lambda: d.node.state("VI_1") is State.MASTER, what="MASTER")
        sock, loop = factory.made[0], asyncio.get_running_loop()
        n0, t0 = len(sock.sent), loop.time()
        await until(lambda: len(sock.sent) >= n0 + 3, 5, "three more adverts")  # the timer keeps firing
        await asyncio.sleep(0.5)
        sent, elapsed = len(sock.sent) - n0, loop.time() - t0
        # An upper bound only (a loaded machine may be late, never early): a timer re-armed
        # at "now" instead of the deadline would send hundreds.
        assert sent <= elapsed / 0.1 + 2, (sent, elapsed)
    finally:
        await d.stop()


async def test_a_stalled_loop_does_not_send_a_catch_up_burst(tmp_path):
    # A GC pause or a loaded machine blocks the loop for ten intervals: the master must resume
    # its rhythm, not fire the ten adverts it "missed" back to back.
    factory = SocketFactory()
    d = Daemon(str(tmp_path / "k.conf"), load_ok(instance_conf(advert="0.1")), socket_factory=factory,
               netlink=FakeNetlink())
    await d.start()
    try:
        await until(lambda: d.node.state("VI_1") is State.MASTER, what="MASTER")
        sock = factory.made[0]
        n = len(sock.sent)
        time.sleep(1.0)  # blocks the loop on purpose
        await asyncio.sleep(0.03)
        assert len(sock.sent) - n <= 2
    finally:
        await d.stop()
