"""The VRRP daemon: an asyncio executor around one pure :class:`~chimeha.vrrp.node.VrrpNode`.

Theory of operation
-------------------
Every protocol decision is the node's (RFC 3768 / RFC 5798 section 6 and 7
through :mod:`chimeha.vrrp.node`); this adapter only feeds it and executes
what it asks, in the aioquic style:

* **time**: ``loop.time()`` (monotonic) is the ``now`` of every call. One
  timer handle for the whole node, armed at ``node.get_timer()`` after every
  input; a handle that fires no later than needed is kept (a backup's
  deadline moves later with every advert), and re-armed when it wakes early.
* **inputs**: one reader per raw VRRP socket (interface, family) ->
  ``node.receive_datagram``; tracker results -> ``node.set_tracked``;
  SIGTERM -> ``node.shutdown``; SIGHUP -> :meth:`Daemon.reload`.
* **outputs**: ``node.pop_actions()`` in order. SendAdvert -> encode + socket
  (failures fed back with ``note_send``); Add/RemoveAddresses and
  SendGratuitous -> the netlink worker thread (FIFO); an advert queued after
  a VIP add waits until the worker has installed the VIP and sent its GARP,
  so the old master never lets go before the address answers here;
  StateChanged / GroupStateChanged -> log, notify scripts and FIFO, hooks;
  VipsChanged -> the virtual servers' ``on_vips_changed``.
* **reload** (:mod:`chimeha.runtime.reload`): read off the loop, preflight
  the host, then plan and apply with no ``await`` in between. A refused
  reload leaves instances, VIPs, trackers and sockets as they were.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import socket
import time
from typing import Any, Callable

from chimeha.errors import ChimeHaError
from chimeha.net.addresses import AddressError, AddressManager
from chimeha.net.vrrpsock import VrrpSocket
from chimeha.runtime import reload as reloading
from chimeha.runtime import status
from chimeha.runtime.bfd import attach as bfd_attach
from chimeha.runtime.bgp import attach as bgp_attach
from chimeha.runtime.executor import Executor
from chimeha.runtime.interfaces import InterfaceMonitor
from chimeha.runtime.netlink import NetlinkWorker
from chimeha.runtime.notify import Notifier, NotifyFifo
from chimeha.runtime.static import StaticManager
from chimeha.runtime.tracking import Trackers
from chimeha.runtime.vmac import LinkError, LinkManager
from chimeha.vrrp.events import StateChanged
from chimeha.vrrp.node import VrrpNode

log = logging.getLogger("chimeha.runtime")


class DaemonError(ChimeHaError, RuntimeError):
    """The daemon cannot start (bad config, missing interface...); str() says why."""


def interface_primary_address(ifname: str, family: int, mgr: AddressManager) -> str | None:
    """The address VRRP packets leave ``ifname`` from: first IPv4 / the IPv6 link-local."""
    try:
        idx = mgr.ifindex(ifname)
    except AddressError:
        return None
    fam = socket.AF_INET if family == 4 else socket.AF_INET6
    for msg in mgr.raw_addresses(idx, fam):
        addr = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
        if not addr:
            continue
        if family == 4 and not (msg["flags"] & 0x01):  # not IFA_F_SECONDARY
            return addr
        if family == 6 and ipaddress.IPv6Address(addr).is_link_local:
            return addr
    return None


class Daemon:
    """Runs the VRRP instances of one config. See the module docstring.

    ``state_hooks`` receive every :class:`StateChanged` (the journal subscribes);
    ``event_hooks`` receive every other event worth recording (SplitBrain...).
    """

    def __init__(self, config_path: str, config=None, *, dataplane: str | None = None,
                 socket_factory: Callable[..., Any] = VrrpSocket, netlink: Any = None, fast_detect: bool = True,
                 lvs_options: dict | None = None, vip_filter: Any = None):
        self.config_path = config_path
        self.vip_filter = vip_filter  # None: the executor's own nftables VipFilter (net/vipfilter.py)
        self.fast_detect = fast_detect
        self.config = config
        self.dataplane = dataplane
        self.lvs_options = dict(lvs_options or {})  # extra LvsManager keywords (snat_to, proxy_workers)
        self.state_hooks: list[Callable[[StateChanged], None]] = []
        self.event_hooks: list[Callable[[Any], None]] = []
        self.node = VrrpNode(())
        self.trackers: Trackers | None = None
        self.reloads = 0
        self.started_at: float | None = None
        self.config_loaded_at: float | None = None
        self.lvs = None
        self.bgp = None  # chimeha.runtime.bgp.BgpManager with a chimeha_bgp block
        self.bfd = None  # chimeha.runtime.bfd.BfdManager with bfd_instance blocks
        self._socket_factory = socket_factory
        self._nl = netlink if netlink is not None else NetlinkWorker()
        self._ex = Executor(self, self._nl)
        self._gen = 0
        self._stopping = False
        self._stopped = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reload_lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.interfaces: InterfaceMonitor | None = None
        self.static = StaticManager(self._nl)  # static_ipaddress / static_routes / static_rules
        submit = getattr(self._nl, "submit", None)  # a netlink test double without a worker: no links
        self.links: LinkManager | None = LinkManager(submit) if submit is not None else None

    @property
    def generation(self) -> int:
        """Moves on every state, priority, split-brain change and reload (pollers skip otherwise)."""
        return self.node.generation + self._gen

    @property
    def scripts(self) -> dict:
        return self.trackers.scripts if self.trackers else {}

    @property
    def sockets(self) -> dict:
        return self._ex.sockets

    def now(self) -> float:
        return self._loop.time() if self._loop else time.monotonic()

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        """Load (if needed) and start everything; raises :class:`DaemonError`."""
        self._loop = asyncio.get_running_loop()
        if self.config is None:
            result = await reloading.load_config(self.config_path)
            for d in result.diagnostics:
                (log.error if d.severity == "error" else log.warning)("%s", d)
            if not result.ok or result.config is None:
                raise DaemonError(f"{self.config_path}: configuration has errors (see above); not starting")
            self.config = result.config
        self.started_at = self.config_loaded_at = time.time()
        try:
            specs, groups = reloading.build_specs(self.config)
            self._ensure_links(specs, self.config.global_defs.dynamic_interfaces)
            pre = reloading.preflight(specs, open_sockets=set(), primary_address=self._primary_lookup(),
                                      socket_factory=self._socket_factory,
                                      allow_missing=self.config.global_defs.dynamic_interfaces)
        except ChimeHaError as exc:
            if self.links is not None and self.links.links:  # made before the refusal: not left behind
                self.links.remove().result()
            raise DaemonError(str(exc)) from exc
        self._ex.setup_notify(self.config)
        self._ex.adopt_sockets(pre.opened)
        self.static.start(self.config)  # before any VIP, tied to no VRRP state (keepalived)
        self.node = VrrpNode(pre.specs, groups)
        self._ex.join_groups(self.node.socket_keys(), self.node.ah_socket_keys())
        # VIPs a killed previous run left behind (keepalived does the same): queued, not waited
        # for; the worker's FIFO puts them before any VIP an instance adds.
        for s in pre.specs:
            self._nl.remove_stale(s.name, tuple(s.virtual_ipaddresses) + tuple(s.virtual_ipaddresses_excluded),
                                  s.interface)
        self._ex.start_filter(pre.specs)
        self._start_trackers()
        self._watch_interfaces()
        # The config and instances live as long as the daemon: keep them out of the cyclic
        # collector, whose full passes over them landed in the middle of takeovers (measured
        # ~20 ms pauses with 200 instances moving together; bench/scale). O(1), no collection.
        gc.freeze()
        delay = self.config.global_defs.vrrp_startup_delay
        if delay > 0:
            log.info("delaying start-up for %g s (vrrp_startup_delay)", delay)
        self.node.start(self.now(), startup_delay=delay)  # keepalived: at start only, never at reload
        self.after_input()
        self.bfd = bfd_attach(self)  # bfd_instance: sessions for track_bfd / BFD_CHECK (docs/bfd.md)
        await self._ex.start_lvs(self.config)
        self.bgp = await bgp_attach(self)  # chimeha_bgp: announce VIPs by BGP (docs/bgp.md)
        self._gen += 1  # started: news for a poller even without any instance
        log.info("started %d VRRP instance(s) from %s", len(self.node.names), self.config_path)

    def _ensure_links(self, specs, allow_missing: bool) -> list[str]:
        """Create the VMAC/ipvlan links the specs need before anything looks for them; the names created.

        Raises :class:`DaemonError` (FILE:LINE of the instance) when one cannot be made.
        """
        made: list[str] = []
        if self.links is None:
            return made
        for s in specs:
            for link in s.links():
                fresh = self.links.links.get(link.name) != link
                try:
                    self.links.ensure((link,), allow_missing_base=allow_missing)
                except LinkError as exc:
                    raise DaemonError(f"{s.where}vrrp_instance {s.name}: {exc}") from exc
                if fresh:
                    made.append(link.name)
        return made

    def _primary_lookup(self) -> Callable[[str, int], str | None]:
        """``primary_address`` for one preflight: one netlink query per (interface, family), not per instance."""
        found: dict[tuple[str, int], str | None] = {}

        def lookup(ifname: str, family: int) -> str | None:
            if (ifname, family) not in found:
                found[(ifname, family)] = self._nl.call(lambda m: interface_primary_address(ifname, family, m))
            return found[(ifname, family)]
        return lookup

    def open_socket(self, ifname: str, family: int):
        """A new VRRP socket on ``ifname`` (the executor's socket rebuild after an interface came back)."""
        return self._socket_factory(ifname, family, join_group=False)

    def _watch_interfaces(self) -> None:
        """Tell the node what every VRRP interface looks like now, and follow it from here (runtime.interfaces)."""
        submit = getattr(self._nl, "submit", None)
        if submit is None:  # a netlink test double without a worker thread: nothing to watch
            return
        watched: dict[str, set[int]] = {}
        for s in self.node.specs():
            for name in s.interfaces():
                watched.setdefault(name, set())
            watched[s.source_interface].add(s.family)
        if self.interfaces is None:
            self.interfaces = InterfaceMonitor(watched, submit, self.interface_changed)
            facts = self.interfaces.snapshot()
            self.interfaces.start()
        else:
            facts = self.interfaces.watch(watched)
        now = self.now()
        for name, (present, index, sources) in facts.items():
            self.node.set_interface(name, present, index, now, sources=sources)

    def interface_changed(self, ifname: str, present: bool, ifindex: int | None, sources: dict) -> None:
        """The interface monitor's report: the node decides (FAULT, recovery, socket rebuild)."""
        if self._stopping:
            return
        self.node.set_interface(ifname, present, ifindex, self.now(), sources=sources)
        self.after_input()

    def _start_trackers(self) -> None:
        self.trackers = Trackers(self.config, self.node.specs(), self.tracked, fast_detect=self.fast_detect)
        self.trackers.start()

    # ------------------------------------------------------------- inputs
    def tracked(self, kind: str, name: str, ok: bool, detail: str | None = None, value: int | None = None) -> None:
        """A tracker's result (after rise/fall)."""
        if self._stopping:
            return
        self.node.set_tracked(name, ok, self.now(), kind=kind, detail=detail, value=value)
        self.after_input()

    def datagram(self, key: tuple[str, int], rx) -> None:
        """One datagram from the socket of ``key`` (interface, family)."""
        self.node.receive_datagram(rx.payload, rx.src, rx.dst or "", rx.ttl, rx.family, key[0], self.now(),
                                   ah=rx.ah)
        self.after_input()

    def _on_timer(self) -> None:
        self._timer = None
        now = self.now()
        due = self.node.get_timer()
        if due is not None and now < due:
            self._arm()  # the deadline moved later since this handle was armed
            return
        try:
            self.node.handle_timer(now)
        except Exception:
            log.exception("unexpected error in the VRRP timer")
        self.after_input()

    def _arm(self) -> None:
        when = self.node.get_timer()
        self._timer_at = when
        if when is None or self._stopping:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._on_timer)

    def after_input(self) -> None:
        """Execute everything the node queued, then re-arm the timer."""
        for action in self.node.pop_actions():
            try:
                self._ex.execute(action)
            except Exception:
                log.exception("executing %s failed", type(action).__name__)
        self._arm()

    # ---------------------------------------------------------- lifecycle
    async def stop(self) -> None:
        """SIGTERM: priority 0 from every MASTER, VIPs removed, notify_stop, close. Always finishes."""
        if self._stopping:
            return
        self.node.shutdown(self.now())
        self.after_input()
        self._stopping = True
        if self._timer:
            self._timer.cancel()
        if self.bfd is not None:
            self.bfd.stop()  # peers hear AdminDown, not a detection timeout
        if self.interfaces is not None:
            self.interfaces.stop()
        steps = [("trackers", self.trackers.stop() if self.trackers else None),
                 ("BGP announcements", self.bgp.stop() if self.bgp else None),  # before the data plane
                 ("virtual servers", self._ex.stop_lvs()), ("notify scripts", self._ex.drain_notify()),
                 ("SMTP alerts", self._ex.close_mail(5.0))]
        for what, coro in steps:
            if coro is None:
                continue
            try:
                await asyncio.wait_for(coro, 10.0)
            except asyncio.TimeoutError:
                log.error("stop: %s did not finish within 10 s; going on", what)
            except Exception:
                log.exception("stop: %s failed", what)
        await self._ex.wait_netlink(5.0)
        try:  # after the instances let their VIPs go, as keepalived removes them last
            fut = self.static.stop()
            if fut is not None:
                await asyncio.wait_for(asyncio.wrap_future(fut), 5.0)
        except (asyncio.TimeoutError, Exception):
            log.exception("stop: removing the static addresses, routes and rules failed")
        await self._ex.close_filter(5.0)
        self._ex.close_sockets()
        self._ex.close_notify()
        if self.links is not None and self.links.links:  # after the VIPs are gone (same FIFO)
            try:
                await asyncio.wait_for(asyncio.wrap_future(self.links.remove()), 5.0)
            except (asyncio.TimeoutError, Exception):
                log.exception("stop: removing the VMAC/ipvlan links failed")
        try:
            await asyncio.wait_for(self._loop.run_in_executor(None, self._nl.close), 5.0)
        except (asyncio.TimeoutError, Exception):
            log.exception("stop: closing netlink failed")
        self._stopped.set()
        log.info("stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def reload(self) -> dict:
        """SIGHUP: load the file again; refuse it (old config keeps running, untouched) if it cannot run.

        Unchanged instances (ignoring file:line positions) keep their state,
        timers and VIPs. A changed instance is rebuilt but keeps MASTER if it
        was MASTER (no priority 0; VIPs it still lists are never removed).
        Removed instances shut down (priority 0, VIPs removed).
        """
        async with self._reload_lock:  # a second SIGHUP waits for the first
            outcome = await self._reload()
        self._gen += 1
        for hook in list(self.event_hooks):
            try:
                hook(outcome)
            except Exception:
                log.exception("event hook %r failed", hook)
        return outcome.as_dict()

    async def _reload(self) -> "status.ReloadOutcome":
        try:
            result = await reloading.load_config(self.config_path)
        except reloading.ReloadRefused as exc:
            log.error("reload refused: %s", exc)
            return status.ReloadOutcome(False, (str(exc),), "reload failed", self.now())
        diags = tuple(str(d) for d in result.diagnostics)
        if not result.ok or result.config is None:
            for d in diags:
                log.error("reload refused: %s", d)
            return status.ReloadOutcome(False, diags, "invalid configuration; still running the old one", self.now())
        for d in diags:  # warnings of a usable file (an include skipped as a FIFO...): say them on SIGHUP too
            log.warning("reload: %s", d)
        made: list[str] = []
        try:
            specs, groups = reloading.build_specs(result.config)
            made = self._ensure_links(specs, result.config.global_defs.dynamic_interfaces)
            pre = reloading.preflight(specs, open_sockets=set(self._ex.sockets),
                                      primary_address=self._primary_lookup(), socket_factory=self._socket_factory,
                                      allow_missing=result.config.global_defs.dynamic_interfaces)
        except ChimeHaError as exc:
            self._drop_links(made)
            log.error("reload failed: %s", exc)
            return status.ReloadOutcome(False, diags + (str(exc),), "reload failed; nothing changed", self.now())
        try:
            plan = self.node.plan_reload(pre.specs, groups)
        except ChimeHaError as exc:
            self._drop_links(made)
            pre.close()
            log.error("reload failed: %s", exc)
            return status.ReloadOutcome(False, diags + (str(exc),), "reload failed; nothing changed", self.now())
        # From here on, no await until the node runs the new configuration.
        old_trackers = self.trackers
        self.config = result.config
        self._ex.adopt_sockets(pre.opened)
        self.static.reload(self.config)
        self.node.apply_reload(plan, self.now())
        self._watch_interfaces()
        self._ex.join_groups(self.node.socket_keys(), self.node.ah_socket_keys())
        self.after_input()
        self._ex.refilter()
        self._ex.close_unused_sockets(self.node.socket_keys())
        if self.links is not None:  # links no instance needs now go, behind the removed instances' VIPs
            needed = {lk.name for sp in self.node.specs() for lk in sp.links()}
            self._drop_links([n for n in list(self.links.links) if n not in needed])
        self._ex.setup_notify(self.config)
        self._start_trackers()
        self._reload_bfd()
        if old_trackers is not None:
            await old_trackers.stop()
        await self._ex.reload_lvs(self.config)
        self.reloads += 1
        self.config_loaded_at = time.time()
        msg = "reloaded: " + plan.summary()
        log.info(msg)
        return status.ReloadOutcome(True, diags, msg, self.now(), plan)

    def _drop_links(self, names) -> None:
        if self.links is not None and names:
            self.links.remove(tuple(names))

    def _reload_bfd(self) -> None:
        """Sessions whose bfd_instance is unchanged keep running; their state is fed to the new trackers."""
        if self.bfd is None:
            self.bfd = bfd_attach(self)
        else:
            self.bfd.reload(self.config)
        if self.bfd is not None:
            self.bfd.resync()

    # ------------------------------------------------------------- status
    def owned_vips(self) -> set[str]:
        return set(self.node.owned_vips())

    def snapshot(self) -> dict:
        """JSON-able status in the shape of :class:`chimeha.observe.schema.Snapshot`."""
        return status.snapshot(self)

    def instance_snapshot(self, name: str) -> dict | None:
        """One entry of ``snapshot()["instances"]`` (None for an unknown name)."""
        st = self.node.instance_status(name)
        return None if st is None else status.instance_entry(st, self.now())
