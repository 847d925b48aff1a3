"""Golden trace: the daemon and the simulator run the same node and must do the same things.

One input trace (adverts from a peer, hostile adverts, tracker results, a
reload of the same file and one that changes an instance, the passage of time,
a stop) is fed to

* the real :class:`~chimeha.runtime.daemon.Daemon` on an asyncio loop whose
  clock is virtual (it jumps to the next timer when nothing is readable), with
  the fake sockets and fake netlink of test_daemon_fake_lan and a fake tracker
  source (the trace calls ``Daemon.tracked`` as the real trackers would);
* the simulator (:class:`chimeha.sim.segment.Segment`), with the same config.

What each side did is recorded at its outer edge (daemon: what reached the fake
socket, the fake netlink and the state hooks; simulator: the actions its node
queued) and the two sequences must be identical, in order and in time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
from functools import partial

import pytest

from chimeha.config import loads
from chimeha.net.vrrpsock import Received
from chimeha.runtime import daemon as daemon_mod
from chimeha.runtime.daemon import Daemon
from chimeha.sim.segment import Segment
from chimeha.vrrp import packet
from chimeha.vrrp.events import (AddAddresses, PriorityChanged, RemoveAddresses, SendAdvert, SendGratuitous,
                                 SplitBrain, StateChanged)
from chimeha.vrrp.from_config import instance_specs, sync_groups

from test_daemon_fake_lan import Bus, FakeNetlink, FakeSocket

ME, PEER, STRANGER = "10.0.0.1", "10.0.0.2", "10.0.0.9"


def conf(version: int, advert: float, unicast: bool = False) -> str:
    # unicast: adverts go to the one peer and only its adverts count (the typed check_unicast_src)
    src = (f" unicast_src_ip {ME}\n unicast_peer {{{{\n  {PEER}\n }}}}\n check_unicast_src\n" if unicast
           else f" mcast_src_ip {ME}\n")
    inst = ("vrrp_instance {name} {{\n state BACKUP\n interface lo\n virtual_router_id {vrid}\n priority 100\n"
            f" advert_int {advert:g}\n version {version}\n{src}"
            " track_interface {{\n  ethx weight -60\n }}\n"
            " virtual_ipaddress {{\n  {vip}/24\n }}\n}}\n")
    # sync_group_tracking_weight: without it keepalived 2.2.7 (and chime-ha) unweights a member's own
    # track_interface (it would fault the group instead of lowering the priority by 60)
    return ("vrrp_sync_group G {\n group {\n  VI_1\n  VI_2\n }\n sync_group_tracking_weight\n}\n"
            + inst.format(name="VI_1", vrid=10, vip="10.0.0.100")
            + inst.format(name="VI_2", vrid=11, vip="10.0.0.101"))


# ------------------------------------------------------------------ a loop with a virtual clock

class _JumpingSelector(selectors.DefaultSelector):
    """Answers at once; when nothing is ready and the loop would sleep, the clock jumps instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout=None):
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            return super().select(None)
        self.now += timeout
        return []


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """``run_in_executor`` without a thread, so nothing runs outside the virtual clock."""

    def submit(self, fn, *args, **kwargs):
        fut = concurrent.futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting code, as a thread pool would
            fut.set_exception(exc)
        return fut


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)
        self.set_default_executor(_InlineExecutor())

    def time(self) -> float:
        return self._jumping.now


class NoTrackers:
    """Stands in for runtime.tracking.Trackers: the trace supplies the tracker results."""

    def __init__(self, *args, **kwargs) -> None:
        self.scripts: dict = {}

    def start(self) -> None:
        pass

    async def stop(self, timeout: float = 0.0) -> None:
        pass


# ------------------------------------------------------------------ the trace

def advert(version: int, vrid: int, priority: int, interval: float, source: str, destination: str) -> bytes:
    vip = {10: "10.0.0.100", 11: "10.0.0.101"}[vrid]
    return packet.encode(version, vrid, priority, [vip], interval, source=source, destination=destination)


def trace(advert_int: float, unicast: bool, changed: str) -> tuple[list[tuple], float]:
    """(time, kind, args) inputs and the stop time. Times avoid the node's own timer instants."""
    k = advert_int
    ev: list[tuple] = []

    def peer(t0: float, t1: float, prio: int, vrids=(10, 11), ttl: int = 255, src: str = PEER):
        t = t0
        while t < t1 - 1e-9:
            for vrid in vrids:
                ev.append((round(t, 6), "rx", (vrid, prio, ttl, src)))
            t += k

    peer(0.3 * k, 2.8 * k, 150)                 # a peer is MASTER: we stay BACKUP
    # the peer falls silent: master-down timer, both instances take over (sync group)
    ev.append((round(6.55 * k, 6), "reload", ()))  # an unchanged file while MASTER: nothing happens
    ev.append((round(7.45 * k, 6), "track", ("interface", "ethx", False)))  # priority 100 -> 40
    peer(8.2 * k, 10.3 * k, 80, vrids=(10,))     # a higher priority than ours on VI_1: VI_1 and its group yield
    ev.append((round(10.35 * k, 6), "rx", (10, 0, 255, PEER)))  # the peer resigns: takeover after Skew_Time
    if unicast:  # (unicast adverts may be routed: their TTL is not checked)
        peer(12.1 * k, 13.0 * k, 250, src=STRANGER)  # not our unicast peer: dropped, changes nothing
    else:
        peer(12.1 * k, 13.0 * k, 250, ttl=64)  # routed multicast (TTL 64): dropped, changes nothing
    ev.append((round(13.55 * k, 6), "track", ("interface", "ethx", True)))  # back to 100
    ev.append((round(13.8 * k, 6), "reload", (changed,)))  # VI_2 priority 110: rebuilt, stays MASTER
    peer(14.15 * k, 15.5 * k, 120, vrids=(11,))  # VI_2 hears a higher priority
    peer(15.6 * k, 17.0 * k, 90, vrids=(11,))    # lower: we preempt back
    return ev, round(19.4 * k, 6)


# ------------------------------------------------------------------ the two runs

def _event(now: float, a) -> list[tuple]:
    """The events both sides report besides states (the daemon through ``event_hooks``)."""
    if isinstance(a, PriorityChanged):
        return [(now, "priority", a.instance, a.old, a.new)]
    if isinstance(a, SplitBrain):
        return [(now, "split-brain", a.instance, a.healing)]
    return []


def _norm(rec: list[tuple]) -> list[tuple]:
    return [(round(r[0], 6), *r[1:]) for r in rec]


def run_daemon(path, text: str, version: int, dst: str, events: list[tuple], stop_at: float,
               monkeypatch) -> tuple[list[tuple], tuple]:
    path.write_text(text)
    res = loads(text, str(path))
    assert res.ok, [str(d) for d in res.diagnostics]
    monkeypatch.setattr(daemon_mod, "Trackers", NoTrackers)
    names = {i.virtual_router_id: n for n, i in res.config.instances.items()}
    loop = VirtualClockLoop()
    rec: list[tuple] = []

    class RecordingNetlink(FakeNetlink):
        def apply(self, name, addresses, excluded, routes, dev, add):
            rec.append((loop.time(), "add" if add else "del", name, tuple(v.address for v in addresses)))
            return super().apply(name, addresses, excluded, routes, dev, add)

        def announce(self, name, addresses, dev, count, after=None, wanted=lambda: True):
            rec.append((loop.time(), "garp", name, count))
            return super().announce(name, addresses, dev, count, after, wanted)

    class RecordingSocket(FakeSocket):
        def send(self, payload, dst=None, src=None):
            adv = packet.decode(payload)
            rec.append((loop.time(), "advert", names[adv.vrid], adv.priority))
            return super().send(payload, dst, src)

    d = Daemon(str(path), res.config, socket_factory=partial(RecordingSocket, Bus(), ME),
               netlink=RecordingNetlink())
    d.state_hooks.append(lambda a: rec.append((loop.time(), "state", a.instance, a.old.value, a.new.value)))
    d.event_hooks.append(lambda a: rec.extend(_event(loop.time(), a)))

    def feed(kind, args):
        if kind == "rx":
            vrid, prio, ttl, src = args
            payload = advert(version, vrid, prio, d.node.spec("VI_1").advert_int, src, dst)
            d.sockets[("lo", 4)].deliver(Received(payload, src, dst, ttl, 1, 4))
        elif kind == "reload":  # SIGHUP, with the same file or a new one
            if args:
                path.write_text(args[0])
            reloads.append(asyncio.ensure_future(d.reload()))
        else:
            d.tracked(*args)

    reloads: list = []

    async def main():
        await d.start()
        for t, kind, args in events:
            loop.call_at(t, feed, kind, args)
        await asyncio.sleep(stop_at - loop.time())
        assert [r.result()["ok"] for r in reloads] == [True, True], [r.result() for r in reloads]
        await d.stop()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return _norm(rec), d.node.status()


def run_sim(path, text: str, version: int, dst: str, events: list[tuple],
            stop_at: float) -> tuple[list[tuple], tuple]:
    config = loads(text, str(path)).config
    seg = Segment()
    seg.add_node("me", ME, instance_specs(config), groups=sync_groups(config))
    rec: list[tuple] = []
    interval = config.instances["VI_1"].advert_int

    def hook(node, act, now):
        if isinstance(act, SendAdvert):
            rec.append((now, "advert", act.instance, act.priority))
        elif isinstance(act, (AddAddresses, RemoveAddresses)):
            rec.append((now, "add" if isinstance(act, AddAddresses) else "del", act.instance,
                        tuple(v.address for v in act.addresses)))
        elif isinstance(act, StateChanged):
            rec.append((now, "state", act.instance, act.old.value, act.new.value))
        elif isinstance(act, SendGratuitous):
            rec.append((now, "garp", act.instance, act.count))
        else:
            rec.extend(_event(now, act))

    seg.action_hooks.append(hook)
    seg.start_node("me", at=0.0)
    for t, kind, args in events:
        if kind == "rx":
            vrid, prio, ttl, src = args
            seg.inject("me", advert(version, vrid, prio, interval, src, dst), src, at=t, ttl=ttl, destination=dst)
        elif kind == "reload":
            new = loads(args[0], str(path)).config if args else None
            seg.reload("me", at=t, **({"specs": instance_specs(new), "groups": sync_groups(new)} if new else {}))
        else:
            _kind, name, ok = args
            seg.set_tracked("me", name, ok, at=t)
    seg.stop_node("me", at=stop_at)
    seg.run_until(stop_at + 5)
    return _norm(rec), seg.nodes["me"].core.status()


def _summary(rec: list[tuple]) -> list[tuple]:
    """Everything but the steady adverts, for a readable failure and the sanity checks."""
    return [r for r in rec if r[1] != "advert"]


@pytest.mark.parametrize("version,advert_int,unicast", [(2, 1.0, False), (3, 0.5, False), (3, 1.0, True)])
def test_daemon_and_simulator_do_the_same(version, advert_int, unicast, monkeypatch, tmp_path):
    text = conf(version, advert_int, unicast)
    changed = text.replace("priority 100\n advert_int", "priority 110\n advert_int").replace(
        "priority 110", "priority 100", 1)  # VI_1 (first) unchanged, VI_2 now 110
    assert changed.count("priority 110") == 1
    events, stop_at = trace(advert_int, unicast, changed)
    dst = ME if unicast else packet.MCAST_V4
    path = tmp_path / "golden.conf"
    got_daemon, status_daemon = run_daemon(path, text, version, dst, events, stop_at, monkeypatch)
    got_sim, status_sim = run_sim(path, text, version, dst, events, stop_at)
    assert _summary(got_daemon) == _summary(got_sim)
    assert got_daemon == got_sim
    # the counters agree too (adverts sent and received, drops by reason, failovers...)
    assert status_daemon == status_sim
    # the hostile adverts were dropped (on both: the statuses are equal)
    vi1, vi2 = status_sim
    assert vi1.drops == {"unicast-source" if unicast else "ttl": 1}
    assert vi2.drops == {} and vi2.spec.priority == 110  # rebuilt by the reload after the drop

    # The trace exercises what it claims to (so an empty or one-sided run cannot pass).
    states = [(r[2], r[4]) for r in got_sim if r[1] == "state"]
    # VI_2 once more: the changed instance is rebuilt and resumes MASTER at once (INIT -> BACKUP -> MASTER)
    assert states.count(("VI_1", "MASTER")) == 3 and states.count(("VI_2", "MASTER")) == 4
    assert ("VI_1", "INIT") in states  # the stop
    prios = {r[3] for r in got_sim if r[1] == "advert"}
    assert {100, 40, 0} <= prios  # normal, tracked down (-60), priority 0 at the stop
    assert [r[1] for r in got_sim if r[1] in ("add", "del")].count("add") == 7
    assert [r[3:] for r in got_sim if r[1] == "priority" and r[2] == "VI_1"] == [(100, 40), (40, 100)]
    assert {r[3] for r in got_sim if r[1] == "advert" and r[2] == "VI_2"} >= {100, 110}  # the reload took
    assert sum(r[1] == "garp" for r in got_sim) == 7
