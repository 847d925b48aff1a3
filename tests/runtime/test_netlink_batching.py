"""The netlink worker's passes and the executor's takeover gate, with fakes (no root, no kernel).

* jobs queued while a pass runs are done together in the next one, in FIFO
  order, and their futures are resolved only once the whole pass is done
  (the GARPs and adverts waiting on them start after all of the adds);
* the stale-VIP check dumps each interface once per pass and deletes only
  what is there;
* a gratuitous burst sends one announcement per address before any repeat,
  and says so through the future it returns;
* a takeover advert waits for its VIP and the first GARP round, adverts
  queued after it wait with it, in order, and a GARP that never comes holds
  them at most GARP_WAIT.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
from types import SimpleNamespace

import pytest

from chimeha.config import loads
from chimeha.runtime import executor as executor_mod
from chimeha.runtime.executor import Executor
from chimeha.runtime.netlink import NetlinkWorker
from chimeha.runtime.reload import build_specs
from chimeha.vrrp import packet
from chimeha.vrrp.events import SendAdvert
from chimeha.vrrp.node import VrrpNode


class FakeManager:
    """Stands in for AddressManager: records what the worker asked, in order."""

    def __init__(self, present: dict[str, set[str]] | None = None):
        self.calls: list[tuple] = []
        self.present = present or {}
        self.dumps = 0
        self.in_pass = False

    @contextlib.contextmanager
    def cached_lookups(self):
        self.in_pass = True
        try:
            yield self
        finally:
            self.in_pass = False

    def add(self, vip) -> bool:
        self.calls.append(("add", vip.address, self.in_pass))
        return True

    def delete(self, vip) -> bool:
        self.calls.append(("del", vip.address, self.in_pass))
        self.present.get(vip.dev, set()).discard(vip.address)
        return True

    def addresses(self, dev: str) -> set[str]:
        self.dumps += 1
        return set(self.present.get(dev, set()))

    def route(self, op, route) -> bool:
        return True

    def close(self) -> None:
        pass


class FakeAnnouncer:
    sent: list[str] = []

    def __init__(self, dev: str):
        self.dev = dev
        self.ifindex = socket.if_nametoindex(dev)  # the worker re-opens an announcer whose index changed

    def announce(self, address: str) -> None:
        FakeAnnouncer.sent.append(address)

    def close(self) -> None:
        pass


def va(address: str):
    return SimpleNamespace(address=address)


def test_jobs_queued_during_a_pass_share_the_next_one_in_order_and_resolve_together():
    mgr = FakeManager()
    nl = NetlinkWorker(manager_factory=lambda: mgr, announcer_factory=FakeAnnouncer)
    try:
        started, gate = threading.Event(), threading.Event()
        blocker = nl.submit(lambda m: started.set() or gate.wait(5))
        assert started.wait(5)  # the worker is inside a pass
        futs = [nl.apply(f"VI_{i}", [va(f"10.1.0.{i}/32")], (), (), "eth0", True) for i in range(1, 51)]
        seen_at_first_result = []
        futs[0].add_done_callback(lambda _f: seen_at_first_result.append(len(mgr.calls)))
        gate.set()
        concurrent.futures.wait(futs, timeout=5)
        assert blocker.result() is True
        assert all(f.result() == 1 for f in futs)
        assert nl.passes == 2  # the blocker's pass, then one pass for all fifty
        assert [c[1] for c in mgr.calls] == [f"10.1.0.{i}" for i in range(1, 51)]
        assert all(in_pass for _, _, in_pass in mgr.calls)  # interface lookups cached for the pass
        assert seen_at_first_result == [50]  # resolved after the whole pass, not one by one
    finally:
        nl.close()


def test_stale_check_dumps_once_per_pass_and_deletes_only_present_addresses_before_any_add():
    mgr = FakeManager(present={"eth0": {"10.1.0.3", "10.1.0.7", "192.0.2.1"}})
    nl = NetlinkWorker(manager_factory=lambda: mgr, announcer_factory=FakeAnnouncer)
    try:
        started, gate = threading.Event(), threading.Event()
        nl.submit(lambda m: started.set() or gate.wait(5))
        assert started.wait(5)
        stale = [nl.remove_stale(f"VI_{i}", [va(f"10.1.0.{i}/32")], "eth0") for i in range(1, 11)]
        add = nl.apply("VI_3", [va("10.1.0.3/32")], (), (), "eth0", True)
        gate.set()
        concurrent.futures.wait([*stale, add], timeout=5)
        assert mgr.dumps == 1
        assert [c[:2] for c in mgr.calls] == [("del", "10.1.0.3"), ("del", "10.1.0.7"), ("add", "10.1.0.3")]
    finally:
        nl.close()


def test_garp_burst_sends_a_first_round_for_every_address_before_the_repeats():
    FakeAnnouncer.sent = []
    nl = NetlinkWorker(manager_factory=FakeManager, announcer_factory=FakeAnnouncer)
    try:
        vip_added: concurrent.futures.Future = concurrent.futures.Future()
        first = nl.announce("VI_1", [va("10.1.0.1/32"), va("10.1.0.2/32")], "eth0", 3, after=vip_added)
        sent_at_first = []
        first.add_done_callback(lambda _f: sent_at_first.append(list(FakeAnnouncer.sent)))
        assert not first.done() and FakeAnnouncer.sent == []  # nothing before the VIP is in place
        vip_added.set_result(2)
        first.result(timeout=5)
        nl.close()  # waits for the repeats
        assert sent_at_first == [["10.1.0.1", "10.1.0.2"]]
        assert FakeAnnouncer.sent == ["10.1.0.1", "10.1.0.2"] * 3
    finally:
        nl.close()


def test_garp_burst_for_vips_given_up_meanwhile_is_skipped_and_still_releases_the_advert():
    FakeAnnouncer.sent = []
    nl = NetlinkWorker(manager_factory=FakeManager, announcer_factory=FakeAnnouncer)
    try:
        first = nl.announce("VI_1", [va("10.1.0.1/32")], "eth0", 5, wanted=lambda: False)
        first.result(timeout=5)
        assert FakeAnnouncer.sent == []
    finally:
        nl.close()


# -- the executor's takeover gate -------------------------------------------------------------
CONF = ("vrrp_instance VI_1 {\n state BACKUP\n interface eth0\n virtual_router_id 7\n priority 200\n"
        " advert_int 0.1\n version 3\n mcast_src_ip 10.0.0.1\n virtual_ipaddress {\n  10.1.0.1/32\n }\n}\n")


class GateNetlink:
    """apply/announce return futures the test completes by hand."""

    def __init__(self):
        self.vip: concurrent.futures.Future = concurrent.futures.Future()
        self.garp: concurrent.futures.Future = concurrent.futures.Future()

    def apply(self, name, addresses, excluded, routes, dev, add):
        return self.vip

    def announce(self, name, addresses, dev, count, after=None, wanted=lambda: True):
        return self.garp


class RecordingSocket:
    def __init__(self):
        self.sent: list[bytes] = []

    def send(self, payload: bytes, dst=None, src=None) -> None:
        self.sent.append(payload)


def takeover_executor() -> tuple[Executor, VrrpNode, GateNetlink, RecordingSocket, list]:
    res = loads(CONF, "gate.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    specs, groups = build_specs(res.config)
    node = VrrpNode(specs, groups)
    daemon = SimpleNamespace(node=node, config=None, state_hooks=[], event_hooks=[], lvs=None)
    nl = GateNetlink()
    ex = Executor(daemon, nl)
    sock = RecordingSocket()
    ex.sockets[("eth0", 4)] = sock
    node.start(0.0)
    node.pop_actions()
    node.handle_timer(node.get_timer())  # no master heard: takeover
    takeover = node.pop_actions()
    later = node.get_timer()
    node.handle_timer(later)  # the next periodic advert, queued while the first still waits
    periodic = node.pop_actions()
    assert any(isinstance(a, SendAdvert) for a in periodic)
    return ex, node, nl, sock, [*takeover, *periodic]


def priorities(sock: RecordingSocket) -> list[int]:
    return [packet.decode(p).priority for p in sock.sent]


async def test_takeover_adverts_wait_for_the_vip_and_the_first_garp_round_in_order():
    ex, node, nl, sock, actions = takeover_executor()
    for a in actions:
        ex.execute(a)
    await asyncio.sleep(0.01)
    assert sock.sent == []  # VIP not in place yet
    nl.vip.set_result(1)
    await asyncio.sleep(0.01)
    assert sock.sent == []  # VIP there, clients not yet told
    nl.garp.set_result(None)
    await asyncio.sleep(0.01)
    assert len(sock.sent) == 2 and priorities(sock) == [200, 200]
    assert node.instance_status("VI_1").sent == 2


async def test_a_garp_that_never_comes_holds_the_adverts_at_most_garp_wait():
    ex, node, nl, sock, actions = takeover_executor()
    for a in actions:
        ex.execute(a)
    nl.vip.set_result(1)
    await asyncio.sleep(executor_mod.GARP_WAIT / 2)
    assert sock.sent == []
    await asyncio.sleep(executor_mod.GARP_WAIT * 3)
    assert len(sock.sent) == 2  # a stuck announcement never silences a master


def test_a_pass_whose_manager_cannot_open_answers_every_future():
    """No netlink socket (the factory raises): every job of the pass fails with it, none hangs a waiter."""

    def refused():
        raise OSError(1, "Operation not permitted")

    nl = NetlinkWorker(manager_factory=refused, announcer_factory=FakeAnnouncer)
    try:
        futs = [nl.submit(lambda m: 1) for _ in range(3)]
        for f in futs:
            with pytest.raises(OSError, match="not permitted"):
                f.result(5)
    finally:
        nl._garp_ex.shutdown(wait=True)  # noqa: SLF001 - close() would need the manager too
        nl._ex.shutdown(wait=True)  # noqa: SLF001
