"""Netlink and link-layer side effects, run in one worker thread, in order.

pyroute2's synchronous API runs its own event loop, which cannot nest inside
the daemon's running loop (and uvloop cannot open netlink datagram
endpoints at all). So every VIP/route change and gratuitous announcement goes
through a single worker thread with a plain asyncio loop of its own: FIFO
order is kept (a GARP is never sent before its VIP is added), and a slow
netlink reply never delays an advertisement.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import time

from chimeha.net.addresses import AddressError, AddressManager, route_from_config, vip_from_config
from chimeha.net.garp import Announcer

log = logging.getLogger("chimeha.runtime.netlink")


def _thread_init() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())


class NetlinkWorker:
    """Owns an :class:`AddressManager` and the GARP sockets, all used from one thread."""

    def __init__(self):
        self._ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chimeha-netlink",
                                                         initializer=_thread_init)
        # Gratuitous ARP/NA on a thread of their own: a burst (and opening its raw socket) must
        # never hold up the next VIP removal queued behind it (measured: ~40 ms, during which a
        # backup that had just lost an election still held the VIP beside the new master).
        self._garp_ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chimeha-garp",
                                                              initializer=_thread_init)
        self._mgr: AddressManager | None = None
        self._announcers: dict[str, Announcer] = {}  # used from the garp thread only
        self._next_garp: dict[tuple[str, bool], float] = {}  # (dev, IPv6) -> earliest next send (garp thread)

    def _m(self) -> AddressManager:
        if self._mgr is None:
            self._mgr = AddressManager()
        return self._mgr

    def submit(self, fn, *args) -> concurrent.futures.Future:
        """Run ``fn(manager, *args)`` in the worker; returns its future."""
        return self._ex.submit(lambda: fn(self._m(), *args))

    def call(self, fn, *args):
        """Run ``fn(manager, *args)`` in the worker and wait for the result (start/reload only)."""
        return self.submit(fn, *args).result()

    # -- operations (run in the worker thread) -------------------------------
    def apply(self, name: str, addresses, excluded, routes, dev: str, add: bool) -> concurrent.futures.Future:
        """Add or remove an instance's VIPs, excluded VIPs and virtual routes."""
        def work(m: AddressManager) -> int:
            changed = 0
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
        """
        def work() -> None:
            if after is not None:
                concurrent.futures.wait([after])  # the VIP is in place before it is announced
            for _ in range(max(1, count)):
                for va in addresses:
                    if not wanted():
                        return
                    try:
                        vip = vip_from_config(va, dev)
                        ann = self._announcer(vip.dev)
                        v6 = ":" in vip.address
                        gap = na_interval if v6 else interval
                        self._pace((vip.dev, v6))
                        ann.announce(vip.address)
                        if gap > 0:  # counted from the send: opening the first socket is not part of the gap
                            self._next_garp[(vip.dev, v6)] = time.monotonic() + gap
                    except (OSError, ValueError) as exc:
                        log.warning("%s: gratuitous announcement for %s: %s", name,
                                    getattr(va, "address", va), exc)
        return self._garp_ex.submit(work)

    def _announcer(self, dev: str) -> Announcer:
        """The cached announcer of ``dev``, opened again when the interface was re-created (new index)."""
        ann = self._announcers.get(dev)
        if ann is not None and ann.ifindex != socket.if_nametoindex(dev):
            ann.close()
            ann = None
        if ann is None:
            ann = self._announcers[dev] = Announcer(dev)
        return ann

    def _pace(self, key: tuple[str, bool]) -> None:
        """Sleep (garp thread) until the interface's interval since its last announcement of this kind is over."""
        wait = self._next_garp.get(key, 0.0) - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def remove_stale(self, name: str, addresses, dev: str) -> None:
        """Delete VIPs a killed previous run left behind (waits for completion)."""
        def work(m: AddressManager) -> None:
            for va in addresses:
                try:
                    vip = vip_from_config(va, dev)
                    if m.delete(vip):
                        log.info("%s: removed stale VIP %s left by a previous run", name, vip)
                except (AddressError, ValueError) as exc:
                    log.warning("%s: stale VIP check for %s: %s", name, getattr(va, "address", va), exc)
        self.call(work)

    def close(self) -> None:
        def close_announcers() -> None:
            for ann in self._announcers.values():
                ann.close()
            self._announcers.clear()
        try:
            self._garp_ex.submit(close_announcers).result()
            self.call(lambda m: m.close())
        finally:
            self._garp_ex.shutdown(wait=True)
            self._ex.shutdown(wait=True)
