"""The interface lifecycle: which VRRP interfaces exist, with which index and source addresses.

keepalived follows its interfaces through netlink (RTM_NEWLINK / RTM_DELLINK,
RTM_NEWADDR / RTM_DELADDR): an interface deleted under a running instance
puts it in FAULT, one created again (a driver reload, a hot-plug, a bridge or
VLAN re-created by the network manager) brings it back, with its sockets
opened on the new interface index. :class:`InterfaceMonitor` does the same
for the daemon:

* one NETLINK_ROUTE socket subscribed to link and address events wakes it
  (the messages themselves are not parsed: an overrun may lose some, so every
  wake-up re-reads the facts, and a slow poll is the safety net);
* the facts are read off the event loop, in the netlink worker thread
  (pyroute2's AddressManager): the index (``if_nametoindex``) and the
  address adverts leave from, per family (the first primary IPv4, the IPv6
  link-local: the same rule as the daemon's start-up preflight);
* a change is reported as ``on_change(ifname, present, ifindex, sources)``,
  which the daemon feeds to :meth:`chimeha.vrrp.node.VrrpNode.set_interface`.
  The decisions (FAULT, recovery, rebuilding the sockets) are the node's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any, Callable, Iterable

log = logging.getLogger("chimeha.runtime.interfaces")

NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
IFA_F_SECONDARY = 0x01
POLL_SECONDS = 5.0

#: (present, ifindex, {family: source address or None})
Facts = tuple[bool, "int | None", dict[int, "str | None"]]
OnChange = Callable[[str, bool, "int | None", dict[int, "str | None"]], None]


def read_facts(mgr: Any, ifname: str, families: Iterable[int]) -> Facts:
    """What the node needs to know about ``ifname`` now (run in the netlink worker thread)."""
    try:
        index = socket.if_nametoindex(ifname)
    except OSError:
        return False, None, {}
    sources: dict[int, str | None] = {}
    for family in families:
        sources[family] = None
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        try:
            msgs = list(mgr.raw_addresses(index, af))
        except Exception as exc:  # the interface went away between the two calls
            log.debug("%s: reading addresses: %s", ifname, exc)
            msgs = []
        for msg in msgs:
            addr = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
            if not addr:
                continue
            if family == 4 and not msg["flags"] & IFA_F_SECONDARY:
                sources[4] = addr
                break
            if family == 6 and ipaddress.IPv6Address(addr).is_link_local:
                sources[6] = addr
                break
    return True, index, sources


class InterfaceMonitor:
    """Reports every change of the watched interfaces' facts (see the module docstring).

    ``watched`` maps an interface name to the address families its instances
    use; ``submit(fn, *args)`` runs ``fn(manager, *args)`` in the netlink
    worker and returns a concurrent future (:meth:`NetlinkWorker.submit`).
    """

    def __init__(self, watched: dict[str, set[int]], submit: Callable[..., Any], on_change: OnChange):
        self.watched = {name: set(f) for name, f in watched.items()}
        self.facts: dict[str, Facts] = {}
        self._submit = submit
        self._on_change = on_change
        self._sock: socket.socket | None = None
        self._poll_task: asyncio.Task | None = None
        self._pending = False
        self._again = False

    def snapshot(self) -> dict[str, Facts]:
        """Read every watched interface now (blocking; at start and reload, before the node starts)."""
        for name, families in self.watched.items():
            self.facts[name] = self._submit(read_facts, name, sorted(families)).result()
        return dict(self.facts)

    def watch(self, watched: dict[str, set[int]]) -> dict[str, Facts]:
        """Reload: watch these interfaces from now on; returns the facts of every one (blocking read)."""
        self.watched = {name: set(f) for name, f in watched.items()}
        self.facts = {n: f for n, f in self.facts.items() if n in self.watched}
        return self.snapshot()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        sock.setblocking(False)
        self._sock = sock
        loop.add_reader(sock.fileno(), self._readable)
        self._poll_task = loop.create_task(self._poll())

    def _readable(self) -> None:
        if self._sock is None:
            return
        try:
            while True:
                self._sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # ENOBUFS: events lost; re-reading everything covers them
            pass
        self.check()

    def check(self) -> None:
        """Re-read the facts in the worker; report what changed (one read in flight, coalesced)."""
        if self._sock is None:
            return
        if self._pending:
            self._again = True
            return
        self._pending = True
        loop = asyncio.get_running_loop()
        names = {n: sorted(f) for n, f in self.watched.items()}

        def read_all(mgr: Any) -> dict[str, Facts]:
            return {n: read_facts(mgr, n, fams) for n, fams in names.items()}

        fut = self._submit(read_all)
        fut.add_done_callback(lambda f: loop.call_soon_threadsafe(self._done, f))

    def _done(self, fut) -> None:
        self._pending = False
        if self._sock is None:
            return
        try:
            now = fut.result()
        except Exception as exc:
            log.warning("reading interface state failed: %s", exc)
            now = {}
        for name, facts in now.items():
            if name not in self.watched or self.facts.get(name) == facts:
                continue
            old = self.facts.get(name)
            self.facts[name] = facts
            present, index, sources = facts
            if old is None or old[0] != present or old[1] != index:
                log.info("interface %s %s", name, f"present (index {index})" if present else "deleted")
            try:
                self._on_change(name, present, index, dict(sources))
            except Exception:
                log.exception("interface change of %s: handler failed", name)
        if self._again:
            self._again = False
            self.check()

    async def _poll(self) -> None:
        while self._sock is not None:
            await asyncio.sleep(POLL_SECONDS)
            self.check()

    def stop(self) -> None:
        if self._sock is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            except (RuntimeError, ValueError):
                pass
            self._sock.close()
            self._sock = None
        if self._poll_task is not None:
            self._poll_task.cancel()
            self._poll_task = None
