"""Executes what the :class:`~chimeha.vrrp.node.VrrpNode` asks: sockets, netlink, GARP, notify, hooks.

No protocol decision is made here. Order and limits:

* netlink work (VIPs, routes) runs FIFO in one worker thread, GARP in
  another; an advertisement queued after a VIP add of the same instance
  is sent only once the worker has installed the VIP and the first round
  of its gratuitous ARP/NA is out (that advert makes the old master let
  go: clients must already be pointed here). The GARP wait is bounded by
  GARP_WAIT so a stuck announcement never silences a master;
* a failed send is fed back to the node (``note_send``) and logged at the
  1st, 10th, 100th and every 1000th time; receive errors are counted;
* every hook runs in its own try: one broken observer cannot stop VRRP.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

from chimeha.net.vipfilter import VipFilter
from chimeha.net.vrrpsock import VRRP_GROUP_V4, VRRP_GROUP_V6
from chimeha.runtime.mailer import MailAlerts
from chimeha.runtime.notify import Notifier, NotifyFifo
from chimeha.vrrp import packet
from chimeha.vrrp.ah import uses_ah
from chimeha.vrrp.events import (AddAddresses, GroupStateChanged, InstanceRemoved, InterfaceChanged,
                                 LowerPriorityHeard, PacketDropped, PriorityChanged, RemoveAddresses, RestoreLink,
                                 SendAdvert, SendGratuitous, SplitBrain, State, StateChanged, VipsChanged)

log = logging.getLogger("chimeha.runtime")

READS_PER_WAKEUP = 64  # bounded so one flood cannot starve the timers
GARP_WAIT = 0.1  # at most this long (s) a takeover advert waits for its first gratuitous round


def _rare(n: int) -> bool:
    return n in (1, 10, 100) or n % 1000 == 0


class Executor:
    """The daemon's side effects (see the module docstring); ``daemon`` is used through public names only."""

    def __init__(self, daemon: Any, netlink: Any):
        self.daemon = daemon
        self.nl = netlink
        self.sockets: dict[tuple[str, int], Any] = {}
        self.notifier = Notifier()
        self.mail = MailAlerts()  # smtp_alert (runtime.mailer); configured by setup_notify
        self._notify_cfg: dict = {}  # instance -> its config block as of the last setup_notify
        self._cache: dict[tuple, bytes] = {}
        self._pending: dict[str, concurrent.futures.Future] = {}  # instance -> its last netlink job
        self._announced: dict[str, concurrent.futures.Future] = {}  # instance -> first round of its takeover GARP
        self._held: dict[str, list[SendAdvert]] = {}  # instance -> adverts waiting for its takeover gate
        self._holding: dict[str, bool] = {}  # instance -> its VIPs were last added (read by the garp thread)
        self._added_on: dict[str, str] = {}  # instance -> interface its VIPs were last added on
        self._send_errors = 0
        self._ah_fds: dict[tuple[str, int], int] = {}  # socket key -> its IPsec AH companion's fd
        self.vipfilter = getattr(daemon, "vip_filter", None) or VipFilter()  # no_accept VIPs (net/vipfilter.py)
        self._filtered: set[str] = set()  # instances whose VIPs the filter holds (as queued from this thread)

    # -- sockets --------------------------------------------------------------
    def adopt_sockets(self, opened: dict) -> None:
        loop = asyncio.get_running_loop()
        for key, sock in opened.items():
            self.sockets[key] = sock
            loop.add_reader(sock.fileno(), self._readable, key)

    def join_groups(self, keys: dict[tuple[str, int], bool], ah_keys=frozenset()) -> None:
        """Join the multicast group where an instance needs it; open the AH companion where one uses AH."""
        for key, multicast in keys.items():
            sock = self.sockets.get(key)
            if sock is None:
                continue
            if key in ah_keys and key not in self._ah_fds:
                try:
                    self._ah_fds[key] = sock.enable_ah()
                    asyncio.get_running_loop().add_reader(self._ah_fds[key], self._readable, key)
                except OSError as exc:
                    log.error("%s: cannot open the IPsec AH socket: %s", key[0], exc)
            # True (a test double's word) = the standard group; else the groups of the socket's instances.
            groups = multicast if isinstance(multicast, (set, frozenset)) else ({None} if multicast else set())
            for group in sorted(groups, key=str):
                try:
                    if group in (None, VRRP_GROUP_V4, VRRP_GROUP_V6):
                        sock.join()
                    else:
                        sock.join(group)
                except OSError as exc:
                    log.error("%s: cannot join the VRRP multicast group %s: %s", key[0], group or "", exc)
            leave = getattr(sock, "leave_others", None)
            if leave is not None and isinstance(multicast, (set, frozenset)):
                leave(groups)

    def rebuild_sockets(self, ifname: str, present: bool, ifindex: int | None) -> None:
        """The interface was deleted or re-created: a socket stays bound to the old index, so reopen them."""
        for key in [k for k in self.sockets if k[0] == ifname]:
            self._close(key)
        if not present:
            log.warning("%s: interface deleted; its VRRP sockets are closed until it comes back", ifname)
            return
        keys = {k: m for k, m in self.daemon.node.socket_keys().items() if k[0] == ifname}
        opened = {}
        for key in keys:
            try:
                opened[key] = self.daemon.open_socket(*key)
            except OSError as exc:
                log.error("%s: cannot open the VRRP socket (IPv%d): %s", ifname, key[1], exc)
        self.adopt_sockets(opened)
        self.join_groups({k: keys[k] for k in opened})
        if opened:
            log.info("%s: VRRP sockets opened on interface index %s", ifname, ifindex)

    def close_unused_sockets(self, keys) -> None:
        for key in [k for k in self.sockets if k not in keys]:
            self._close(key)

    def close_sockets(self) -> None:
        for key in list(self.sockets):
            self._close(key)

    def _close(self, key) -> None:
        sock = self.sockets.pop(key)
        for fd in (sock.fileno(), self._ah_fds.pop(key, None)):
            if fd is None:
                continue
            try:
                asyncio.get_running_loop().remove_reader(fd)
            except (ValueError, OSError, RuntimeError):
                pass
        sock.close()

    def _readable(self, key: tuple[str, int]) -> None:
        sock = self.sockets.get(key)
        node = self.daemon.node
        for _ in range(READS_PER_WAKEUP):
            if sock is None:
                return
            try:
                rx = sock.recv()
            except OSError as exc:
                node.note_drop("receive-error")
                if _rare(node.drops["receive-error"]):
                    log.warning("receive on %s: %s", key[0], exc)
                return
            if rx is None:
                return
            try:
                self.daemon.datagram(key, rx)
            except Exception:  # never let one packet kill the daemon
                log.exception("unexpected error handling a packet from %s", rx.src)
                node.note_drop("internal-error")

    # -- actions --------------------------------------------------------------
    def execute(self, a) -> None:
        if isinstance(a, SendAdvert):
            self._advert(a)
        elif isinstance(a, (AddAddresses, RemoveAddresses)):
            spec = self._spec(a.instance)
            dev = spec.vip_interface if spec else ""
            if isinstance(a, AddAddresses):
                self._added_on[a.instance] = dev
            else:  # a reload may have removed the instance already: remove where the VIPs were added
                dev = self._added_on.get(a.instance, dev)
            self._holding[a.instance] = isinstance(a, AddAddresses)
            self._announced.pop(a.instance, None)
            adding = isinstance(a, AddAddresses)
            if adding and spec is not None and not spec.accept:  # the drop rule before the address (FIFO)
                self._filter(a.instance, tuple(a.addresses) + tuple(a.excluded), True)
            extra = {"rules": a.rules} if a.rules else {}  # virtual_rules (test doubles take none)
            self._track(a.instance, self.nl.apply(a.instance, a.addresses, a.excluded, a.routes, dev, adding,
                                                  **extra))
            if a.instance in self._filtered and not (adding and spec is not None and not spec.accept):
                self._filter(a.instance, (), False)  # let go, or accepts now (a reload)
        elif isinstance(a, SendGratuitous):
            # Not tracked: the takeover advert waits for the VIP (netlink), not for the burst, whose
            # first raw socket can take tens of ms (measured ~40 ms: long enough for a peer to
            # declare us down and claim the VIP too).
            pacing = {"interval": a.interval, "na_interval": a.na_interval} if a.interval or a.na_interval else {}
            first = self.nl.announce(a.instance, a.addresses, a.interface, a.count,
                                     after=self._pending.get(a.instance),
                                     wanted=lambda n=a.instance: self._holding.get(n, True), **pacing)
            if a.why == "master" and isinstance(first, concurrent.futures.Future):
                self._announced[a.instance] = first
        elif isinstance(a, RestoreLink):
            links = getattr(self.daemon, "links", None)
            if links is not None:
                log.warning("%s: %s %s is gone; re-creating it", a.instance, a.link.kind, a.link.name)
                links.restore(a.link)
        elif isinstance(a, InterfaceChanged):
            self.rebuild_sockets(a.interface, a.present, a.ifindex)
        elif isinstance(a, StateChanged):
            self._state_changed(a)
        elif isinstance(a, GroupStateChanged):
            cfg = self.daemon.config.sync_groups.get(a.group) if self.daemon.config else None
            self.notifier.notify("GROUP", a.group, a.state, None, cfg)
            self.mail.vrrp("GROUP", a.group, a.state)
        elif isinstance(a, VipsChanged):
            self._vips_changed(a.owned)
        elif isinstance(a, PacketDropped):
            log.debug("%s: dropped (%s) from %s: %s", a.interface, a.reason, a.source, a.detail)
        elif isinstance(a, PriorityChanged):
            log.info("%s: priority %d -> %d (%s)", a.instance, a.old, a.new, a.reason)
            if self._notify_priority(a.instance):
                self.notifier.priority_changed(a.instance, a.state is State.MASTER, a.new)
            self.emit(a)
        elif isinstance(a, LowerPriorityHeard):
            cfg = self._instance_cfg(a.instance)
            node = self.daemon.node
            prio = node.instance(a.instance).priority if node.state(a.instance) is not None else 0
            self.notifier.master_rx_lower_pri(a.instance, prio, cfg.notify_master_rx_lower_pri if cfg else None)
        elif isinstance(a, InstanceRemoved):
            # keepalived 2.2.7 (vrrp.c clear_diff_vrrp): DELETED with notify_deleted, else FAULT unless it was.
            cfg = self._instance_cfg(a.instance)
            deleted = cfg is not None and cfg.notify_deleted is not None
            if deleted or a.state is not State.FAULT:
                word = "DELETED" if deleted else "FAULT"
                self.notifier.notify("INSTANCE", a.instance, word, a.priority, cfg)
                self.mail.vrrp("INSTANCE", a.instance, word)
        elif isinstance(a, SplitBrain):
            log.warning("%s: %s%s", a.instance, "" if a.healing else "split brain: ", a.reason)
            self.emit(a)

    # -- accept mode off: net/vipfilter.py -----------------------------------
    def _filter(self, name: str, addresses, held: bool) -> None:
        """Queue one filter change on the netlink worker (in order with the VIP changes)."""
        vf = self.vipfilter
        (self._filtered.add if held else self._filtered.discard)(name)
        bare = tuple(str(getattr(v, "address", v)) for v in addresses)
        submit = getattr(self.nl, "submit", None)
        if submit is None:  # a netlink test double without a worker thread
            vf.set(name, bare, held)
        else:  # not tracked as the instance's pending job: an advert must not wait for nft
            submit(lambda _m: vf.set(name, bare, held))

    def refilter(self) -> None:
        """After a reload: instances whose accept mode changed while holding their VIPs follow it."""
        node = self.daemon.node
        for name in node.names:
            spec = node.spec(name)
            filtered = name in self._filtered
            if filtered and (spec.accept or not self._holding.get(name)):
                self._filter(name, (), False)
            elif not filtered and not spec.accept and self._holding.get(name):
                self._filter(name, tuple(spec.virtual_ipaddresses) + tuple(spec.virtual_ipaddresses_excluded), True)
        for name in self._filtered - set(node.names):
            if not self._holding.get(name):
                self._filter(name, (), False)

    def start_filter(self, specs) -> None:
        """Start-up: with any instance that does not accept, remove a table a killed run left."""
        if any(not s.accept for s in specs):
            submit = getattr(self.nl, "submit", None)
            if submit is None:
                self.vipfilter.clear_stale()
            else:
                submit(lambda _m: self.vipfilter.clear_stale())

    async def close_filter(self, timeout: float) -> None:
        """Stop: delete the table (after the VIP removals queued before)."""
        submit = getattr(self.nl, "submit", None)
        if submit is None:
            self.vipfilter.close()
            return
        fut = submit(lambda _m: self.vipfilter.close())
        await asyncio.wait([asyncio.wrap_future(fut)], timeout=timeout)

    def _track(self, name: str, fut) -> None:
        if isinstance(fut, concurrent.futures.Future):
            self._pending[name] = fut

    def _spec(self, name: str):
        node = self.daemon.node
        return node.spec(name) if node.state(name) is not None else None

    def _advert(self, a: SendAdvert) -> None:
        """Send now, or once the VIP is in place and its first GARP round out (see the module doc).

        Adverts queued while a takeover advert waits are held behind it, in order: a periodic
        advert must not overtake the gate (measured: it did, before the GARPs, under load).
        """
        held = self._held.get(a.instance)
        if held is not None:
            held.append(a)
            return
        vip = self._pending.get(a.instance)
        garp = self._announced.pop(a.instance, None)
        if (vip is None or vip.done()) and (garp is None or garp.done()):
            self._send(a)
            return
        self._held[a.instance] = held = [a]
        loop = asyncio.get_running_loop()

        def release() -> None:  # on the loop; the first of the GARP round and GARP_WAIT wins
            if self._held.get(a.instance) is held:
                del self._held[a.instance]
                for advert in held:
                    self._send(advert)

        def after_vip(_f=None) -> None:  # on the netlink worker thread (or here, VIP already done)
            if garp is None or garp.done():
                loop.call_soon_threadsafe(release)
                return
            garp.add_done_callback(lambda _g: loop.call_soon_threadsafe(release))
            loop.call_soon_threadsafe(loop.call_later, GARP_WAIT, release)

        if vip is None or vip.done():
            after_vip()
        else:
            vip.add_done_callback(after_vip)

    def _send(self, a: SendAdvert) -> None:
        node = self.daemon.node
        spec = self._spec(a.instance)
        if spec is None:
            return
        sock = self.sockets.get((spec.interface, spec.family))
        # Multicast goes to the instance's group (mcast_dst_ip / vrrp_mcast_group4/6); None = the standard one.
        for dst in spec.unicast_peers or (spec.mcast_group or None,):
            try:
                if sock is None:
                    raise OSError("no socket")
                data = self._encoded(a, spec.primary_address, dst)
                if uses_ah(spec):  # never a plain advert instead: keepalived drops those
                    sock.send_datagram(node.seal_ah(a.instance, data, source=spec.primary_address,
                                                    destination=dst or VRRP_GROUP_V4), dst)
                elif spec.unicast_ttl is not None and spec.unicast_peers:
                    sock.send(data, dst, spec.primary_address, ttl=spec.unicast_ttl)
                else:
                    sock.send(data, dst, spec.primary_address)
                node.note_send(a.instance, True)
            except (OSError, ValueError) as exc:
                node.note_send(a.instance, False)
                self._send_errors += 1
                if _rare(self._send_errors):
                    log.warning("%s: cannot send advert to %s: %s", a.instance, dst or "multicast", exc)

    def _encoded(self, a: SendAdvert, src: str, dst: str | None) -> bytes:
        # A master sends the same advert every interval: encode it only when a field changed.
        key = (a.instance, a.version, a.vrid, a.priority, a.addresses, a.interval, a.family, a.auth_type,
               a.auth_pass, src, dst)
        data = self._cache.get(key)
        if data is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            data = self._cache[key] = packet.encode(
                a.version, a.vrid, a.priority, a.addresses, a.interval, family=a.family, auth_type=a.auth_type,
                auth_pass=a.auth_pass, source=src, destination=dst)
        return data

    def _instance_cfg(self, name: str):
        """The instance's config block: the running configuration's, else (removed by a reload) the last one."""
        cfg = self.daemon.config.instances.get(name) if self.daemon.config else None
        return cfg if cfg is not None else self._notify_cfg.get(name)

    def _notify_priority(self, name: str) -> bool:
        """notify_priority_changes: the instance's, else its sync group's, else global (keepalived's order)."""
        config = self.daemon.config
        cfg = config.instances.get(name) if config else None
        if cfg is None:
            return False
        if cfg.notify_priority_changes is not None:
            return cfg.notify_priority_changes
        for group in config.sync_groups.values():
            if name in group.group and group.notify_priority_changes is not None:
                return group.notify_priority_changes
        return config.global_defs.vrrp_notify_priority_changes

    def _state_changed(self, a: StateChanged) -> None:
        log.info("%s: %s -> %s (%s)", a.instance, a.old, a.new, a.reason)
        node = self.daemon.node
        removed = a.new is State.INIT and node.state(a.instance) is None  # InstanceRemoved says it (not STOP)
        if (a.new is not State.INIT or a.old is not State.INIT) and not removed:
            cfg = self.daemon.config.instances.get(a.instance) if self.daemon.config else None
            prio = node.instance(a.instance).priority if node.state(a.instance) is not None else 0
            word = "STOP" if a.new is State.INIT else str(a.new)
            self.notifier.notify("INSTANCE", a.instance, word, prio, cfg)
            self.mail.vrrp("INSTANCE", a.instance, word)
        for hook in list(self.daemon.state_hooks):
            try:
                hook(a)
            except Exception:
                log.exception("state hook %r failed", hook)

    def emit(self, event) -> None:
        for hook in list(self.daemon.event_hooks):
            try:
                hook(event)
            except Exception:
                log.exception("event hook %r failed", hook)

    async def wait_netlink(self, timeout: float) -> None:
        """Wait for queued netlink work, then for adverts still held at a takeover gate (stop's priority 0)."""
        loop = asyncio.get_running_loop()
        futs = [asyncio.wrap_future(f) for f in self._pending.values() if not f.done()]
        if futs:
            await asyncio.wait(futs, timeout=timeout)
        end = loop.time() + 2 * GARP_WAIT
        while self._held and loop.time() < end:
            await asyncio.sleep(0.01)

    # -- notify ---------------------------------------------------------------
    def setup_notify(self, config) -> None:
        gd = config.global_defs
        fifos = [NotifyFifo(path) for path in (gd.vrrp_notify_fifo, gd.notify_fifo) if path]
        opened = []
        for fifo in fifos:
            try:
                fifo.open()
                opened.append(fifo)
            except OSError as exc:
                log.warning("notify FIFO %s: %s", fifo.path, exc)
        self.notifier.close()
        self.notifier = Notifier(opened, user=gd.script_user, group=gd.script_group)
        self.mail.configure(config)
        # Kept until the next reload has been carried out: a removed instance is notified with its old block.
        self._notify_cfg = dict(config.instances)

    async def close_mail(self, timeout: float = 5.0) -> None:
        """Give queued mails (the STOP ones) at most ``timeout`` s on the mail thread; never blocks the loop."""
        if not self.mail.mailer.busy:
            return
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.mail.mailer.close, timeout):
            log.warning("stop: SMTP alerts still queued after %.0f s were dropped", timeout)

    async def drain_notify(self) -> None:
        await self.notifier.drain(5.0)

    def close_notify(self) -> None:
        self.notifier.close()

    # -- virtual servers ------------------------------------------------------
    def _vips_changed(self, owned) -> None:
        lvs = self.daemon.lvs
        if lvs is not None:
            try:
                lvs.on_vips_changed(set(owned))
            except Exception:
                log.exception("virtual servers: on_vips_changed failed")

    async def start_lvs(self, config) -> None:
        if not config.virtual_servers:
            return
        from chimeha.runtime.lvs_manager import LvsManager

        try:
            lvs = LvsManager(config, dataplane=self.daemon.dataplane or "auto",
                             **getattr(self.daemon, "lvs_options", {}))
            lvs.alerts = self.mail
            await lvs.start()
            lvs.on_vips_changed(self.daemon.owned_vips())
            self.daemon.lvs = lvs
        except Exception as exc:  # a task boundary: VRRP runs on without virtual servers
            log.error("virtual servers could not start: %s", exc)
            self.daemon.lvs = None

    async def reload_lvs(self, config) -> None:
        try:
            lvs = self.daemon.lvs
            if lvs is None:
                await self.start_lvs(config)
            elif not config.virtual_servers:
                await lvs.stop()
                self.daemon.lvs = None
            else:
                await lvs.reload(config)
                lvs.on_vips_changed(self.daemon.owned_vips())
        except Exception as exc:
            log.error("virtual servers: reload failed: %s", exc)

    async def stop_lvs(self) -> None:
        if self.daemon.lvs is not None:
            await self.daemon.lvs.stop()

