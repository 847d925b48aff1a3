"""Netlink and link-layer side effects, run in worker threads, in order.

pyroute2's synchronous API runs its own event loop, which cannot nest inside
the daemon's running loop (and uvloop cannot open netlink datagram
endpoints at all). So every VIP/route change goes through a single worker
thread with a plain asyncio loop of its own, and gratuitous announcements
through a second one: FIFO order is kept (a GARP is never sent before its
VIP is added), and a slow netlink reply never delays an advertisement.

Many instances move together (a link cut hands 200 VIPs to the backup in
the same few milliseconds), so the worker drains its queue in *passes*:
every job queued while the previous pass ran is done in the next one, on
the one pyroute2 socket, with interface lookups cached for the pass, and
the jobs' futures are resolved together at its end. The gratuitous
announcements and adverts waiting on those futures therefore start once
all the pass's addresses are in place instead of competing with the adds
for the interpreter one by one (measured: bench/scale/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import socket
import threading
import time
from typing import Callable

from chimeha.net.addresses import AddressError, AddressManager, route_from_config, vip_from_config
from chimeha.net.garp import Announcer

log = logging.getLogger("chimeha.runtime.netlink")


def _thread_init() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())


def _thread_close() -> None:
    """Close the worker thread's loop (else it is closed by the collector at exit, after its fds went)."""
    loop = asyncio.get_event_loop_policy().get_event_loop()
    if not loop.is_running():
        loop.close()


class NetlinkWorker:
    """Owns an :class:`AddressManager` and the GARP sockets, each used from its own thread."""

    def __init__(self, manager_factory: Callable[[], AddressManager] = AddressManager,
                 announcer_factory: Callable[[str], Announcer] = Announcer):
        self._manager_factory = manager_factory
        self._announcer_factory = announcer_factory
        self._ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chimeha-netlink",
                                                         initializer=_thread_init)
        # Gratuitous ARP/NA on a thread of their own: a burst must never hold up the next VIP
        # removal queued behind it (measured: ~40 ms, during which a backup that had just lost
        # an election still held the VIP beside the new master).
        self._garp_ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chimeha-garp",
                                                              initializer=_thread_init)
        self._mgr: AddressManager | None = None
        self._announcers: dict[str, Announcer] = {}  # used from the garp thread only
        self._next_garp: dict[tuple[str, bool], float] = {}  # (dev, IPv6) -> earliest next send (garp thread)
        self._lock = threading.Lock()
        self._queue: list[tuple[Callable[[AddressManager], object], concurrent.futures.Future]] = []
        self._pass_queued = False
        self._stale_seen: dict[str, set[str]] = {}  # dev -> addresses on it, within one pass (worker thread)
        self._closed = False
        self.passes = 0  # worker passes run (each drains everything queued before it began)

    def _m(self) -> AddressManager:
        if self._mgr is None:
            self._mgr = self._manager_factory()
        return self._mgr

    def submit(self, fn, *args) -> concurrent.futures.Future:
        """Queue ``fn(manager, *args)`` for the worker's next pass; returns its future."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._queue.append((lambda m: fn(m, *args), fut))
            start, self._pass_queued = not self._pass_queued, True
        if start:
            self._ex.submit(self._pass)
        return fut

    def call(self, fn, *args):
        """Run ``fn(manager, *args)`` in the worker and wait for the result (start/reload only)."""
        return self.submit(fn, *args).result()

    def _pass(self) -> None:
        with self._lock:
            jobs, self._queue, self._pass_queued = self._queue, [], False
        self.passes += 1
        done = []
        try:
            m = self._m()
            with m.cached_lookups():
                for job, fut in jobs:
                    try:
                        done.append((fut, True, job(m)))
                    except BaseException as exc:  # handed to whoever waits on the future
                        done.append((fut, False, exc))
        except BaseException as exc:  # no manager (netlink refused...): the rest of the pass fails with it
            answered = {id(f) for f, _ok, _v in done}
            done += [(fut, False, exc) for _job, fut in jobs if id(fut) not in answered]
        finally:
            # Every future of the pass is answered, whatever happened: a waiter (stop, reload,
            # a takeover advert) must never hang on a job that will not run.
            self._stale_seen.clear()
            for fut, ok, value in done:
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    # -- operations (run in the worker thread) -------------------------------
    def apply(self, name: str, addresses, excluded, routes, dev: str, add: bool,
              rules=()) -> concurrent.futures.Future:
        """Add or remove an instance's VIPs, excluded VIPs, virtual routes and virtual rules.

        Rules go last when adding and first when removing (a rule points at a route's table).
        """
        def do_rules(m: AddressManager) -> None:
            for spec in rules:
                try:
                    if m.rule("add" if add else "del", spec):
                        log.info("%s: %s virtual rule %s", name, "added" if add else "removed", spec)
                except (AddressError, ValueError) as exc:
                    log.error("%s: virtual rule: %s", name, exc)

        def work(m: AddressManager) -> int:
            changed = 0
            if not add:
                do_rules(m)
            for va in tuple(addresses) + tuple(excluded):
                try:
                    vip = vip_from_config(va, dev)
                    if m.add(vip) if add else m.delete(vip):
                        changed += 1
                        log.info("%s: %s VIP %s", name, "added" if add else "removed", vip)
                except (AddressError, ValueError) as exc:
                    log.error("%s: %s", name, exc)
            for vr in routes:
                try:
                    m.route("add" if add else "del", route_from_config(vr, None))
                except (AddressError, ValueError) as exc:
                    log.error("%s: virtual route: %s", name, exc)
            if add:
                do_rules(m)
            return changed
        return self.submit(work)

    def announce(self, name: str, addresses, dev: str, count: int,
                 after: concurrent.futures.Future | None = None,
                 wanted=lambda: True, interval: float = 0.0, na_interval: float = 0.0) -> concurrent.futures.Future:
        """Gratuitous ARP / unsolicited NA, ``count`` rounds over ``addresses``, once ``after`` is done.

        Skipped when ``wanted()`` is false by then (the instance already gave the VIPs up): an
        announcement for an address we no longer hold would point clients at the wrong node.
        ``interval`` / ``na_interval``: at least this long between two GARPs / NAs on one
        interface, across instances and bursts (keepalived's vrrp_garp_interval, garp_group).
        One announcement per address goes out first, then the repeats, in rounds over every
        address as keepalived sends them; the returned future is done once that first round is
        out (or skipped), which is what a takeover advert waits for. Whether the VIPs are still
        wanted is asked before every packet: a burst stops the moment the instance gives them up.
        """
        first: concurrent.futures.Future = concurrent.futures.Future()

        def work() -> None:
            try:
                if after is not None:
                    concurrent.futures.wait([after])  # the VIP is in place before it is announced
                targets = []
                for va in addresses:
                    try:
                        vip = vip_from_config(va, dev)
                        targets.append((va, self._announcer(vip.dev), vip.dev, vip.address))
                    except (OSError, ValueError) as exc:
                        log.warning("%s: gratuitous announcement for %s: %s", name, getattr(va, "address", va), exc)
                for round_ in range(max(1, count)):
                    for va, ann, vdev, address in targets:
                        if not wanted():
                            return
                        v6 = ":" in address
                        gap = na_interval if v6 else interval
                        self._pace((vdev, v6))
                        try:
                            ann.announce(address)
                        except OSError as exc:
                            if round_ == 0:
                                log.warning("%s: gratuitous announcement for %s: %s", name,
                                            getattr(va, "address", va), exc)
                        if gap > 0:  # counted from the send: opening the first socket is not part of the gap
                            self._next_garp[(vdev, v6)] = time.monotonic() + gap
                    if round_ == 0:
                        first.set_result(None)
            finally:
                if not first.done():
                    first.set_result(None)
        self._garp_ex.submit(work)
        return first

    def _announcer(self, dev: str) -> Announcer:
        """The cached announcer of ``dev``, opened again when the interface was re-created (new index)."""
        ann = self._announcers.get(dev)
        if ann is not None and ann.ifindex != socket.if_nametoindex(dev):
            ann.close()
            ann = None
        if ann is None:
            ann = self._announcers[dev] = self._announcer_factory(dev)
        return ann

    def _pace(self, key: tuple[str, bool]) -> None:
        """Sleep (garp thread) until the interface's interval since its last announcement of this kind is over."""
        wait = self._next_garp.get(key, 0.0) - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def _prepare_announcers(self, devs) -> None:
        """Open the GARP sockets of ``devs`` now, so the first takeover does not wait for them (~40 ms)."""
        for dev in devs:
            try:
                self._announcer(dev)
            except (OSError, ValueError) as exc:
                log.debug("gratuitous announcements on %s: %s (retried at the first takeover)", dev, exc)

    def remove_stale(self, name: str, addresses, dev: str) -> concurrent.futures.Future:
        """Delete VIPs a killed previous run left behind; queued before anything the instance does later.

        This runs once per instance at start, over every interface its VIPs use: the gratuitous
        announcement sockets of those interfaces are opened here too, ahead of any takeover.
        """
        devs = set()
        for va in addresses:
            try:
                devs.add(vip_from_config(va, dev).dev)
            except ValueError:
                pass
        self._garp_ex.submit(self._prepare_announcers, sorted(devs))

        def work(m: AddressManager) -> None:
            for va in addresses:
                try:
                    vip = vip_from_config(va, dev)
                    if vip.address in self._present(m, vip.dev) and m.delete(vip):
                        self._stale_seen[vip.dev].discard(vip.address)
                        log.info("%s: removed stale VIP %s left by a previous run", name, vip)
                except (AddressError, ValueError) as exc:
                    log.warning("%s: stale VIP check for %s: %s", name, getattr(va, "address", va), exc)
        return self.submit(work)

    def _present(self, m: AddressManager, dev: str) -> set[str]:
        """The addresses on ``dev``, dumped once per pass for the stale checks (not one delete per VIP)."""
        seen = self._stale_seen.get(dev)
        if seen is None:
            try:
                seen = {str(ipaddress.ip_address(a.split("%")[0])) for a in m.addresses(dev)}
            except (AddressError, ValueError):
                seen = set()
            self._stale_seen[dev] = seen
        return seen

    def close(self) -> None:
        """Close the sockets and stop both threads (waits for queued work; a second call does nothing)."""
        if self._closed:
            return
        self._closed = True

        def close_announcers() -> None:
            for ann in self._announcers.values():
                ann.close()
            self._announcers.clear()
        try:
            self._garp_ex.submit(close_announcers).result()
            self.call(lambda m: m.close())
            for ex in (self._garp_ex, self._ex):
                ex.submit(_thread_close).result()
        finally:
            self._garp_ex.shutdown(wait=True)
            self._ex.shutdown(wait=True)
