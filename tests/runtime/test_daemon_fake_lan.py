"""The asyncio adapter end to end without root: two Daemons on an in-process LAN.

Sockets and netlink are replaced by fakes (the daemon accepts both as
arguments); everything else is the real code path: validate -> core ->
actions -> timers, SIGTERM's priority 0, drop counting.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from functools import partial

from chimeha.config import loads
from chimeha.net.vrrpsock import Received
from chimeha.runtime.daemon import Daemon, DaemonError
from chimeha.vrrp import packet
from chimeha.vrrp.events import State


class Bus:
    def __init__(self):
        self.sockets: list["FakeSocket"] = []


class FakeSocket:
    """Delivers every send to every other socket on the bus, TTL 255, to the VRRP group."""

    def __init__(self, bus: Bus, src: str, ifname: str, family: int, join_group: bool = False):
        self.bus, self.src, self.ifname, self.family = bus, src, ifname, family
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self.queue: deque = deque()
        bus.sockets.append(self)

    def fileno(self) -> int:
        return self._r

    def join(self) -> None:
        pass

    def send(self, payload: bytes, dst: str | None = None, src: str | None = None) -> None:
        for other in list(self.bus.sockets):
            if other is not self:
                other.deliver(Received(payload, src or self.src, dst or "224.0.0.18", 255, 1, 4))

    def deliver(self, rx: Received) -> None:
        self.queue.append(rx)
        os.write(self._w, b"x")

    def recv(self):
        if not self.queue:
            return None
        os.read(self._r, 1)
        return self.queue.popleft()

    def close(self) -> None:
        if self in self.bus.sockets:
            self.bus.sockets.remove(self)
        os.close(self._r)
        os.close(self._w)


class FakeNetlink:
    def __init__(self):
        self.log: list[tuple] = []
        self.held: set[str] = set()

    def apply(self, name, addresses, excluded, routes, dev, add):
        for va in tuple(addresses) + tuple(excluded):
            (self.held.add if add else self.held.discard)(va.address)
        self.log.append(("add" if add else "del", name, tuple(v.address for v in addresses)))

    def announce(self, name, addresses, dev, count, after=None, wanted=lambda: True):
        self.log.append(("garp", name, count))

    def remove_stale(self, name, addresses, dev):
        self.log.append(("stale", name))

    def call(self, fn, *args):
        raise AssertionError("no interface lookups expected: mcast_src_ip is set")

    def close(self):
        pass


def conf(priority: int, src: str, vrid: int = 10) -> str:
    return (f"vrrp_instance VI_1 {{\n state BACKUP\n interface lo\n virtual_router_id {vrid}\n"
            f" priority {priority}\n advert_int 0.05\n version 3\n mcast_src_ip {src}\n"
            " virtual_ipaddress {\n  10.0.0.100/24\n }\n}\n")


def node(bus: Bus, priority: int, src: str) -> tuple[Daemon, FakeNetlink]:
    res = loads(conf(priority, src), "node.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    nl = FakeNetlink()
    return Daemon("node.conf", res.config, socket_factory=partial(FakeSocket, bus, src), netlink=nl), nl


async def until(cond, timeout: float = 5.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def state(d: Daemon) -> State:
    return d.node.state("VI_1")


async def test_election_sigterm_takeover_and_drops():
    bus = Bus()
    a, nla = node(bus, 200, "10.0.0.1")
    b, nlb = node(bus, 100, "10.0.0.2")
    hooks = []
    b.state_hooks.append(hooks.append)
    await b.start()
    await a.start()
    try:
        await until(lambda: state(a) is State.MASTER and state(b) is State.BACKUP, what="a MASTER, b BACKUP")
        assert ("stale", "VI_1") in nla.log and ("stale", "VI_1") in nlb.log
        assert nla.held == {"10.0.0.100/24"}
        assert ("garp", "VI_1", 5) in nla.log
        await until(lambda: b.snapshot()["instances"]["VI_1"]["adverts_received"] >= 3, what="adverts at b")
        sb = b.snapshot()["instances"]["VI_1"]
        assert sb["master_address"] == "10.0.0.1" and sb["vips_owned"] is False

        # hostile traffic at b: counted by reason, state untouched
        sock = next(iter(b.sockets.values()))
        good = packet.encode(3, 10, 250, ["10.0.0.100"], 0.05, source="10.0.0.9")
        bad = bytearray(good)
        bad[6] ^= 0xFF
        sock.deliver(Received(bytes(bad), "10.0.0.9", "224.0.0.18", 255, 1, 4))
        sock.deliver(Received(good, "10.0.0.9", "224.0.0.18", 64, 1, 4))
        sock.deliver(Received(b"\x00", "10.0.0.9", "224.0.0.18", 255, 1, 4))
        await until(lambda: sum(b.snapshot()["instances"]["VI_1"]["drops_by_reason"].values())
                    + sum(b.snapshot()["drops_by_reason"].values()) == 3, what="3 drops")
        drops = b.snapshot()["instances"]["VI_1"]["drops_by_reason"]
        assert drops == {"checksum": 1, "ttl": 1}
        assert b.snapshot()["drops_by_reason"] == {"length": 1}
        assert state(b) is State.BACKUP

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await a.stop()  # priority 0: b takes over after Skew_Time, not Master_Down_Interval
        await until(lambda: state(b) is State.MASTER, 2, "b MASTER after a's priority 0")
        took = loop.time() - t0
        assert took < 3 * 0.05  # a whole Master_Down_Interval would be >= 0.15 s
        assert nla.held == set() and nlb.held == {"10.0.0.100/24"}
        sb = b.snapshot()["instances"]["VI_1"]
        assert sb["priority_zero_received"] == 1
        assert sb["last_transition"]["to"] == "MASTER"
        assert "priority 0" in sb["last_transition"]["reason"]
        assert [(h.old, h.new) for h in hooks] == [(State.INIT, State.BACKUP), (State.BACKUP, State.MASTER)]
    finally:
        await a.stop()
        await b.stop()
    assert nlb.held == set()


async def test_duplicate_vrid_on_one_interface_is_refused():
    text = conf(100, "10.0.0.1") + conf(100, "10.0.0.1").replace("VI_1", "VI_2")
    res = loads(text, "dup.conf")
    d = Daemon("dup.conf", res.config, socket_factory=partial(FakeSocket, Bus(), "10.0.0.1"),
               netlink=FakeNetlink())
    try:
        await d.start()
    except DaemonError as exc:
        assert "virtual_router_id 10 is already used by VI_1" in str(exc)
    else:
        raise AssertionError("duplicate VRID accepted")
    finally:
        await d.stop()


def test_failover_count_is_a_total_while_recent_stays_capped():
    from chimeha.vrrp.node_types import RECENT_FAILOVERS, InstanceStats

    st = InstanceStats()
    n = RECENT_FAILOVERS + 5
    for i in range(n):
        st.note_failover(round(1 + i / 1000, 4))
    assert st.failover_count == n and len(st.failovers) == RECENT_FAILOVERS
    assert st.failovers[-1] == round(1 + (n - 1) / 1000, 4)
    assert st.failovers[0] == round(1 + 5 / 1000, 4)  # the oldest five were dropped


async def test_generation_moves_on_changes_and_not_on_steady_adverts():
    bus = Bus()
    a, _ = node(bus, 200, "10.0.0.1")
    b, _ = node(bus, 100, "10.0.0.2")
    await b.start()
    await a.start()
    try:
        await until(lambda: state(a) is State.MASTER and state(b) is State.BACKUP, what="a MASTER, b BACKUP")
        steady = b.generation
        assert steady >= 1  # INIT -> BACKUP at least
        received = b.snapshot()["instances"]["VI_1"]["adverts_received"]
        await until(lambda: b.snapshot()["instances"]["VI_1"]["adverts_received"] >= received + 3,
                    what="three more adverts at b")
        assert b.generation == steady  # adverts alone change nothing a poller must report
        await a.stop()
        await until(lambda: state(b) is State.MASTER, 2, "b MASTER")
        assert b.generation > steady
    finally:
        await a.stop()
        await b.stop()


async def test_reload_restores_an_owner_priority_lowered_by_a_conflict(tmp_path):
    # Two address owners (priority 255, state MASTER): as in keepalived 2.2.7,
    # the one that hears the other lowers itself to 254 and yields, until a
    # reload gives it its configured priority back.
    bus = Bus()
    daemons = []
    for src in ("10.0.0.1", "10.0.0.2"):
        path = tmp_path / f"{src}.conf"
        path.write_text(conf(255, src).replace("state BACKUP", "state MASTER"))
        res = loads(path.read_text(), str(path))
        assert res.ok, [str(d) for d in res.diagnostics]
        daemons.append(Daemon(str(path), res.config, socket_factory=partial(FakeSocket, bus, src),
                              netlink=FakeNetlink()))
    for d in daemons:
        await d.start()
    try:
        prio = lambda d: d.node.instance("VI_1").priority  # noqa: E731
        await until(lambda: sorted(prio(d) for d in daemons) == [254, 255], what="one owner lowered to 254")
        lowered = next(d for d in daemons if prio(d) == 254)
        await until(lambda: state(lowered) is State.BACKUP, what="the lowered owner to yield")
        result = await lowered.reload()
        assert result["ok"], result
        assert prio(lowered) == 255
    finally:
        for d in daemons:
            await d.stop()


async def test_instance_snapshot_is_the_instance_entry_of_the_full_snapshot():
    bus = Bus()
    a, _ = node(bus, 200, "10.0.0.1")
    await a.start()
    try:
        await until(lambda: state(a) is State.MASTER, what="a MASTER")
        one = a.instance_snapshot("VI_1")
        full = a.snapshot()["instances"]["VI_1"]
        volatile = {"adverts_sent", "adverts_received", "uptime", "now"}  # may tick between the two calls
        assert {k: v for k, v in one.items() if k not in volatile} == \
               {k: v for k, v in full.items() if k not in volatile}
        assert one["state"] == "MASTER"
        assert a.instance_snapshot("nope") is None
    finally:
        await a.stop()


async def test_track_file_value_scales_the_effective_priority(tmp_path):
    # keepalived.conf(5) track_file: the value read times the weight is added
    # to the priority; below -253 the instance goes to FAULT.
    scaled, rev = tmp_path / "scaled", tmp_path / "rev"

    def put(path, value):
        tmp = path.with_suffix(".new")
        tmp.write_text(f"{value}\n")
        os.replace(tmp, path)  # so a poll never reads a half-written file

    put(scaled, 2)
    put(rev, 0)
    text = (f'track_file tf_scaled {{\n file "{scaled}"\n weight 1\n}}\n'
            f'track_file tf_rev {{\n file "{rev}"\n weight 5 reverse\n}}\n'
            + conf(100, "10.0.0.1").replace(" virtual_ipaddress {",
                                             " track_file {\n  tf_scaled weight 10\n  tf_rev\n }\n"
                                             " virtual_ipaddress {"))
    res = loads(text, "node.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    d = Daemon("node.conf", res.config, socket_factory=partial(FakeSocket, Bus(), "10.0.0.1"),
               netlink=FakeNetlink())
    await d.start()
    try:
        core = d.node.instance("VI_1")
        await until(lambda: core.priority == 120, what="priority 100 + 2 x 10")
        put(rev, 3)
        await until(lambda: core.priority == 105, what="priority 100 + 20 - 3 x 5 (reverse)")
        put(scaled, -4)
        await until(lambda: core.priority == 45, what="priority 100 - 40 - 15")
        put(scaled, 30)
        await until(lambda: core.priority == 254, what="priority clamped to 254")
        put(scaled, -30)
        await until(lambda: core.state is State.FAULT, what="FAULT for -300 < -253")
        assert core.priority == 85  # a faulting file adds nothing: 100 - 15
        put(scaled, 1)
        await until(lambda: core.state is not State.FAULT and core.priority == 95,
                    what="recovery to priority 100 + 10 - 15")
    finally:
        await d.stop()


async def test_failed_reload_changes_nothing(tmp_path):
    # issue 9's reproduction: VI_1 and VI_2 MASTER; the new file drops VI_2 and adds VI_3 on an
    # interface that does not exist. Before: "reload failed" but VI_2 had been shut down already.
    two = conf(100, "10.0.0.1") + conf(100, "10.0.0.1", vrid=11).replace("VI_1", "VI_2").replace(
        "10.0.0.100/24", "10.0.0.101/24")
    path = tmp_path / "node.conf"
    path.write_text(two)
    res = loads(two, str(path))
    assert res.ok, [str(d) for d in res.diagnostics]
    nl = FakeNetlink()
    d = Daemon(str(path), res.config, socket_factory=partial(FakeSocket, Bus(), "10.0.0.1"), netlink=nl)
    await d.start()
    try:
        await until(lambda: d.node.state("VI_1") is State.MASTER and d.node.state("VI_2") is State.MASTER,
                    what="both MASTER")
        held, log_len = set(nl.held), len(nl.log)
        sockets = dict(d.sockets)
        path.write_text(conf(100, "10.0.0.1") + conf(100, "10.0.0.1", vrid=12).replace("VI_1", "VI_3").replace(
            "interface lo", "interface nope0"))
        result = await d.reload()
        assert not result["ok"] and "nope0 does not exist" in " ".join(result["diagnostics"])
        assert d.node.names == ("VI_1", "VI_2")
        assert d.node.state("VI_2") is State.MASTER and nl.held == held == {"10.0.0.100/24", "10.0.0.101/24"}
        assert not [e for e in nl.log[log_len:] if e[0] == "del"]
        assert d.sockets == sockets and d.node.get_timer() is not None
        sent = d.node.instance_status("VI_2").sent
        await until(lambda: d.node.instance_status("VI_2").sent > sent, what="VI_2 still advertising")
    finally:
        await d.stop()
