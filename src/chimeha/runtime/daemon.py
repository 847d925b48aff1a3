"""The VRRP daemon: one asyncio loop driving the pure VRRP core.

Theory of operation
-------------------
The core (:class:`chimeha.vrrp.instance.VrrpInstance`) never reads a clock or
a socket; this adapter does both, in the aioquic style:

* **time**: ``loop.time()`` (monotonic) is the ``now`` of every call. Each
  instance has exactly one timer handle, re-armed at ``get_timer()`` after
  every input (packet, timer, tracking change).
* **packets in**: one raw VRRP socket per (interface, family). Each datagram
  is judged by :func:`chimeha.vrrp.packet.validate` against the instances on
  that socket (RFC 3768 section 7.1 / RFC 5798 section 7.1 checks); a
  :class:`Drop` is counted by reason, an :class:`Advertisement` goes to
  ``handle_advert``. Nothing a peer sends can raise out of the reader.
* **actions out**: SendAdvert -> encode + socket, Add/RemoveAddresses ->
  netlink (net.addresses), SendGratuitous -> GARP / unsolicited NA,
  StateChanged -> log, notify scripts, notify FIFO, journal hooks.
* **tracking**: vrrp_script runners, interface / file / process watchers feed
  ``set_tracked``; sync groups are synced after every input to a member.
* **lifecycle**: stale VIPs left by a killed run are deleted before start
  (keepalived does the same); SIGTERM -> ``shutdown`` (priority 0, VIPs
  removed, notify_stop); SIGHUP -> :meth:`Daemon.reload`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
import time
from collections import Counter
from typing import Any, Callable

from chimeha.net.addresses import AddressError, AddressManager
from chimeha.net.vrrpsock import VrrpSocket, VrrpSocketError
from chimeha.runtime.fast_detect import FastDetector
from chimeha.runtime.netlink import NetlinkWorker
from chimeha.runtime.notify import Notifier, NotifyFifo
from chimeha.runtime.scripts import ScriptTracker, stop_all
from chimeha.runtime.trackers import (FileWatcher, InterfaceWatcher, ProcessWatcher,
                                      init_track_file, process_quorum_ok)
from chimeha.vrrp import packet
from chimeha.vrrp.events import (AddAddresses, PriorityChanged, RemoveAddresses, SendAdvert,
                                 SendGratuitous, SplitBrain, State, StateChanged)
from chimeha.vrrp.instance import VrrpInstance
from chimeha.vrrp.sync_group import SyncGroup

log = logging.getLogger("chimeha.runtime")

RECENT_FAILOVERS = 20  # failover durations kept per instance for status (the count is a total)


class DaemonError(RuntimeError):
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


class _Instance:
    """Runtime companion of one core instance: socket, timer, counters."""

    def __init__(self, core: VrrpInstance, cfg: Any, sock_key: tuple[str, int], src: str):
        self.core = core
        self.cfg = cfg  # config model VrrpInstance (notify scripts, etc.)
        self.sock_key = sock_key
        self.src = src
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: float | None = None  # when the core wants handle_timer
        self.handle_at: float | None = None  # when ``timer`` fires (may be earlier: then re-armed)
        self.advert_cache: tuple[tuple, bytes] | None = None  # (fields, bytes) of the last advert encoded
        self.status_static: tuple | None = None  # (spec, its status fields): see runtime.status
        self.drops: Counter = Counter()
        self.sent = 0
        self.received = 0
        self.send_errors = 0
        self.vips_owned = False
        self.last_transition: dict | None = None
        self.last_rx: float | None = None
        self.failovers: list[float] = []  # the most recent ones, oldest first (capped)
        self.failover_count = 0  # every failover measured since start (not capped)
        self.split_brain: dict = {"active": False, "peer": None, "since": None}
        self.group: SyncGroup | None = None

    @property
    def name(self) -> str:
        return self.core.name

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(self.core.spec.unicast_peers)


def _wall(mono: float) -> float:
    return time.time() - (time.monotonic() - mono)


class Daemon:
    """Runs the VRRP instances of one config. See the module docstring.

    ``state_hooks`` receive every :class:`StateChanged` (the journal subscribes);
    ``event_hooks`` receive every other action worth recording (SplitBrain...).
    """

    def __init__(self, config_path: str, config=None, *, dataplane: str | None = None,
                 socket_factory: Callable[..., Any] = VrrpSocket, netlink: Any = None, fast_detect: bool = True):
        self.config_path = config_path
        self.fast_detect = fast_detect  # runtime.fast_detect: early script runs on process exit
        self.config = config
        self.dataplane = dataplane
        self.state_hooks: list[Callable[[StateChanged], None]] = []
        self.event_hooks: list[Callable[[Any], None]] = []
        self.instances: dict[str, _Instance] = {}
        self.groups: dict[str, SyncGroup] = {}
        self.sockets: dict[tuple[str, int], VrrpSocket] = {}
        self.scripts: dict[str, ScriptTracker] = {}
        self.drops: Counter = Counter()  # packets matching no instance
        self.reloads = 0
        # Bumped on every state change, priority change, split-brain start/end
        # and reload: a poller can skip building a snapshot while it is unchanged.
        self.generation = 0
        self.started_at: float | None = None
        self.config_loaded_at: float | None = None
        self.lvs = None
        # Both injectable so the adapter can be tested without root (fake LAN).
        self._socket_factory = socket_factory
        self._nl = netlink if netlink is not None else NetlinkWorker()
        self._notifier = Notifier()
        self._iface_watch: InterfaceWatcher | None = None
        self._file_watch: FileWatcher | None = None
        self._proc_watch: ProcessWatcher | None = None
        self._fast: FastDetector | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reload_lock = asyncio.Lock()
        self._group_states: dict[str, str] = {}

    # ------------------------------------------------------------------ start
    def now(self) -> float:
        return self._loop.time() if self._loop else time.monotonic()

    async def start(self) -> None:
        """Load (if needed) and start everything; raises :class:`DaemonError`."""
        self._loop = asyncio.get_running_loop()
        if self.config is None:
            self.config = _load_or_raise(self.config_path)
        self.started_at = time.time()
        self.config_loaded_at = self.started_at
        self._setup_notify()
        self._build(self.config, cleanup_stale=True)
        self._start_trackers(self.config)
        now = self.now()
        for inst in self.instances.values():
            inst.core.start(now)
        self._after_input(list(self.instances.values()))
        await self._start_lvs()
        self.generation += 1  # started: news for a poller even without any instance
        log.info("started %d VRRP instance(s) from %s", len(self.instances), self.config_path)

    def _setup_notify(self) -> None:
        gd = self.config.global_defs
        fifos = []
        for key in ("vrrp_notify_fifo", "notify_fifo"):
            words = _option(gd, key)
            if words:
                fifos.append(NotifyFifo(words[0]))
        for fifo in fifos:
            try:
                fifo.open()
            except OSError as exc:
                log.warning("notify FIFO %s: %s", fifo.path, exc)
        self._notifier.close()
        self._notifier = Notifier([f for f in fifos if f._fd is not None],
                                  user=gd.script_user, group=gd.script_group)

    def _specs(self, config) -> list:
        from chimeha.vrrp.from_config import instance_specs

        return instance_specs(config)

    def _build(self, config, *, cleanup_stale: bool, keep: dict[str, _Instance] | None = None) -> None:
        keep = keep or {}
        new: dict[str, _Instance] = {}
        for spec in self._specs(config):
            cfg = config.instances.get(spec.name)
            if spec.name in keep:
                new[spec.name] = keep[spec.name]
                new[spec.name].cfg = cfg
                continue
            if not spec.interface:
                raise DaemonError(f"vrrp_instance {spec.name}: no interface")
            try:
                socket.if_nametoindex(spec.interface)
            except OSError:
                raise DaemonError(f"{_where(cfg)}vrrp_instance {spec.name}: interface {spec.interface} "
                                  "does not exist") from None
            src = spec.primary_address or self._nl.call(
                lambda m: interface_primary_address(spec.interface, spec.family, m))
            if not src:
                raise DaemonError(
                    f"vrrp_instance {spec.name}: interface {spec.interface} has no IPv{spec.family} address"
                    + (" (IPv6 needs a link-local address)" if spec.family == 6 else ""))
            if not spec.primary_address:
                spec = dataclasses.replace(spec, primary_address=src)
            key = (spec.interface, spec.family)
            clash = next((i for i in new.values() if i.sock_key == key and i.core.spec.vrid == spec.vrid), None)
            if clash is not None:
                raise DaemonError(f"{_where(cfg)}vrrp_instance {spec.name}: virtual_router_id {spec.vrid} is "
                                  f"already used by {clash.name} on {spec.interface} (IPv{spec.family})")
            try:
                if key not in self.sockets:
                    # Unicast-only interfaces stay out of the multicast group, as keepalived's do.
                    self.sockets[key] = self._socket_factory(spec.interface, spec.family, join_group=False)
                    self._loop.add_reader(self.sockets[key].fileno(), self._readable, key)
                if not spec.unicast_peers:
                    self.sockets[key].join()
            except (VrrpSocketError, OSError) as exc:
                raise DaemonError(f"vrrp_instance {spec.name}: {exc}") from exc
            if cleanup_stale:
                self._remove_stale(spec)
            new[spec.name] = _Instance(VrrpInstance(spec), cfg, key, src)
        self.instances = new
        self.groups = {}
        for name, grp in getattr(config, "sync_groups", {}).items():
            members = [new[m].core for m in grp.group if m in new]
            if members:
                sg = SyncGroup(name, members)
                self.groups[name] = sg
                for m in grp.group:
                    if m in new:
                        new[m].group = sg
        self._expect = self._expectations()
        self._vrids = {(i.sock_key, i.core.spec.vrid): i for i in new.values()}

    def _expectations(self) -> dict[tuple[str, int], dict[int, packet.Expectation]]:
        out: dict[tuple[str, int], dict[int, packet.Expectation]] = {}
        for inst in self.instances.values():
            exp = packet.expectation_for(inst.core.spec)
            skip = bool(getattr(inst.cfg, "skip_check_adv_addr", False)) or bool(
                getattr(self.config.global_defs, "vrrp_skip_check_adv_addr", False))
            if skip:
                exp = dataclasses.replace(exp, skip_check_adv_addr=True)
            out.setdefault(inst.sock_key, {})[inst.core.spec.vrid] = exp
        return out

    def _remove_stale(self, spec) -> None:
        self._nl.remove_stale(spec.name, tuple(spec.virtual_ipaddresses)
                              + tuple(spec.virtual_ipaddresses_excluded), spec.interface)

    # ----------------------------------------------------------- tracking
    def _start_trackers(self, config) -> None:
        wanted: dict[str, set[str]] = {"script": set(), "interface": set(), "file": set(), "process": set()}
        for inst in self.instances.values():
            for t in inst.core.spec.tracks:
                wanted.setdefault(t.kind, set()).add(t.name)
        gd = config.global_defs
        for name in sorted(wanted["script"]):
            vs = config.vrrp_scripts.get(name)
            if vs is None:
                continue
            self.scripts[name] = ScriptTracker(
                name, vs.script, interval=vs.interval, timeout=vs.timeout, rise=vs.rise, fall=vs.fall,
                init_fail=vs.init_fail, user=vs.user or gd.script_user, group=vs.group or gd.script_group,
                on_change=lambda n, ok, _res: self._tracked("script", n, ok,
                                                            detail=self.scripts[n].state.detail()),
                secure=gd.enable_script_security)
            self.scripts[name].start()
        self._fast = FastDetector(self.scripts, enabled=self.fast_detect)
        self._fast.start()
        if wanted["interface"]:
            self._iface_watch = InterfaceWatcher(sorted(wanted["interface"]),
                                                 lambda n, up: self._tracked("interface", n, up))
            self._iface_watch.start()
        files = {}
        for name in wanted["file"]:
            tf = config.track_files.get(name)
            if tf and tf.file:
                if tf.init_file:
                    try:
                        init_track_file(tf.file, tf.init_file_value or 0, tf.init_file_overwrite)
                    except OSError as exc:
                        log.warning("track_file %s: cannot initialise %s: %s", name, tf.file, exc)
                files[name] = tf.file
        if files:
            self._file_watch = FileWatcher(files, lambda n, v: self._tracked("file", n, v == 0, value=v))
            self._file_watch.start()
        procs = {n: config.track_processes[n] for n in wanted["process"] if n in config.track_processes}
        if procs:
            self._proc_watch = ProcessWatcher(
                procs, lambda n, c: self._tracked("process", n, process_quorum_ok(procs[n], c)))
            self._proc_watch.start()

    async def _stop_trackers(self) -> None:
        await stop_all(self.scripts.values())
        self.scripts = {}
        for w in (self._fast, self._iface_watch, self._file_watch, self._proc_watch):
            if w is not None:
                w.stop()
        self._iface_watch = self._file_watch = self._proc_watch = self._fast = None

    def _tracked(self, kind: str, name: str, ok: bool, detail: str | None = None,
                 value: int | None = None) -> None:
        if self._stopping:
            return
        now = self.now()
        touched = []
        for inst in self.instances.values():
            if any(t.kind == kind and t.name == name for t in inst.core.spec.tracks):
                inst.core.set_tracked(name, ok, now, detail=detail, value=value)
                touched.append(inst)
        self._after_input(touched)

    # ------------------------------------------------------------ packets
    def _readable(self, key: tuple[str, int]) -> None:
        sock = self.sockets.get(key)
        if sock is None:
            return
        for _ in range(64):  # bounded so one flood cannot starve the timers
            try:
                rx = sock.recv()
            except OSError as exc:
                self.drops["receive-error"] += 1
                if self.drops["receive-error"] in (1, 10, 100) or self.drops["receive-error"] % 1000 == 0:
                    log.warning("receive on %s: %s", key[0], exc)
                return
            if rx is None:
                return
            try:
                self._on_packet(key, rx)
            except Exception:  # never let one packet kill the daemon
                log.exception("unexpected error handling a packet from %s", rx.src)
                self.drops["internal-error"] += 1

    def _on_packet(self, key, rx) -> None:
        expect = self._expect.get(key, {})
        verdict = packet.validate(rx.payload, source=rx.src, destination=rx.dst or "",
                                  ttl=rx.ttl if rx.ttl is not None else -1, family=rx.family, expect=expect)
        if isinstance(verdict, packet.Drop):
            inst = self._by_vrid(key, verdict.vrid)
            if inst is not None:
                inst.drops[verdict.reason.value] += 1
            else:
                self.drops[verdict.reason.value] += 1
            log.debug("%s: %s", key[0], verdict)
            return
        inst = self._by_vrid(key, verdict.vrid)
        if inst is None:
            self.drops[packet.DropReason.VRID_UNKNOWN.value] += 1
            return
        now = self.now()
        inst.received += 1
        inst.last_rx = now
        inst.core.handle_advert(verdict, now)
        self._after_input([inst])

    def _by_vrid(self, key, vrid) -> _Instance | None:
        return self._vrids.get((key, vrid)) if vrid is not None else None

    # ------------------------------------------------------------- timers
    def _on_timer(self, name: str) -> None:
        inst = self.instances.get(name)
        if inst is None:
            return
        inst.timer = None
        now = self.now()
        if inst.timer_at is not None and now < inst.timer_at:
            # The deadline moved later since this handle was armed (a backup
            # hears an advert every interval): just wait for the new one.
            self._arm(inst)
            return
        inst.timer_at = None
        try:
            inst.core.handle_timer(now)
            self._after_input([inst])
        except Exception:
            log.exception("%s: unexpected error in timer", name)
            self._arm(inst)

    def _arm(self, inst: _Instance) -> None:
        """Make sure ``_on_timer`` runs by the core's next deadline.

        A handle that fires no later than needed is kept even when the deadline
        moved later: re-arming a backup's Master_Down timer on every advert
        would cancel and allocate a timer per packet. ``_on_timer`` re-arms
        when it wakes before ``timer_at``.
        """
        when = inst.core.get_timer()
        inst.timer_at = when
        if when is None or self._stopping:
            if inst.timer is not None:
                inst.timer.cancel()
                inst.timer = None
            return
        if inst.timer is not None:
            if inst.handle_at is not None and inst.handle_at <= when:
                return
            inst.timer.cancel()
        inst.handle_at = when
        inst.timer = self._loop.call_at(when, self._on_timer, inst.name)

    def _after_input(self, touched: list[_Instance]) -> None:
        """Sync groups of the touched instances, execute every queued action, re-arm timers."""
        now = self.now()
        todo = {i.name: i for i in touched}
        for inst in list(todo.values()):
            if inst.group is not None:
                inst.group.sync(now)
                for m in inst.group.members:
                    todo[m.name] = self.instances[m.name]
        for inst in todo.values():
            for action in inst.core.pop_actions():
                try:
                    self._execute(inst, action)
                except Exception:
                    log.exception("%s: executing %s failed", inst.name, type(action).__name__)
            self._arm(inst)

    # ------------------------------------------------------------ actions
    def _execute(self, inst: _Instance, action) -> None:
        if isinstance(action, SendAdvert):
            self._send_advert(inst, action)
        elif isinstance(action, AddAddresses):
            self._addresses(inst, action, add=True)
        elif isinstance(action, RemoveAddresses):
            self._addresses(inst, action, add=False)
        elif isinstance(action, SendGratuitous):
            self._gratuitous(inst, action)
        elif isinstance(action, StateChanged):
            self.generation += 1
            self._state_changed(inst, action)
        elif isinstance(action, PriorityChanged):
            self.generation += 1
            log.info("%s: priority %d -> %d (%s)", inst.name, action.old, action.new, action.reason)
            self._emit(action)
        elif isinstance(action, SplitBrain):
            self.generation += 1
            if getattr(action, "healing", False):
                # The core ends the episode once every rival master went silent.
                if inst.split_brain["active"]:
                    inst.split_brain = {"active": False, "peer": None, "since": None}
                    log.warning("%s: %s", inst.name, action.reason)
            elif not inst.split_brain["active"]:
                inst.split_brain = {"active": True, "peer": action.peer, "since": _wall(action.at)}
                log.warning("%s: split brain: %s", inst.name, action.reason)
            self._emit(action)

    def _send_advert(self, inst: _Instance, a: SendAdvert) -> None:
        sock = self.sockets[inst.sock_key]
        dests = inst.peers or (None,)
        for dst in dests:
            try:
                data = self._encoded(inst, a, dst)
                sock.send(data, dst, inst.src)
                inst.sent += 1
            except (OSError, ValueError) as exc:
                inst.send_errors += 1
                if inst.send_errors in (1, 10, 100) or inst.send_errors % 1000 == 0:
                    log.warning("%s: cannot send advert to %s: %s", inst.name, dst or "multicast", exc)

    @staticmethod
    def _encoded(inst: _Instance, a: SendAdvert, dst: str | None) -> bytes:
        # A master sends the same advert every interval: encode it (addresses
        # parsed, checksum computed) only when something in it changed.
        key = (a.version, a.vrid, a.priority, a.addresses, a.interval, a.family, a.auth_type, a.auth_pass,
               inst.src, dst)
        cached = inst.advert_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        data = packet.encode(a.version, a.vrid, a.priority, a.addresses, a.interval, family=a.family,
                             auth_type=a.auth_type, auth_pass=a.auth_pass, source=inst.src, destination=dst)
        if len(inst.peers) <= 1:  # one cache slot: with several unicast peers each has its own checksum
            inst.advert_cache = (key, data)
        return data

    def _addresses(self, inst: _Instance, a, add: bool) -> None:
        self._nl.apply(inst.name, a.addresses, a.excluded, a.routes, inst.core.spec.interface, add)
        inst.vips_owned = add
        self._vips_changed()

    def _gratuitous(self, inst: _Instance, a: SendGratuitous) -> None:
        self._nl.announce(inst.name, a.addresses, a.interface or inst.core.spec.interface, a.count)

    def _state_changed(self, inst: _Instance, a: StateChanged) -> None:
        log.info("%s: %s -> %s (%s)", inst.name, a.old, a.new, a.reason)
        inst.last_transition = {"at": _wall(a.at), "from": str(a.old), "to": str(a.new), "reason": a.reason}
        if a.new is State.MASTER and a.old is State.BACKUP and inst.last_rx is not None:
            inst.failovers.append(round(a.at - inst.last_rx, 4))
            inst.failover_count += 1
            del inst.failovers[:-RECENT_FAILOVERS]
        if a.new is not State.MASTER:
            inst.split_brain = {"active": False, "peer": None, "since": None}
        state = "STOP" if a.new is State.INIT else str(a.new)
        if a.new is not State.INIT or a.old is not State.INIT:
            self._notifier.notify("INSTANCE", inst.name, state, inst.core.priority, inst.cfg)
        if inst.group is not None:
            self._group_notify(inst.group)
        for hook in list(self.state_hooks):
            try:
                hook(a)
            except Exception:
                log.exception("state hook %r failed", hook)

    def _group_notify(self, group: SyncGroup) -> None:
        # keepalived reports a group's state once all members agree on it.
        states = {m.state for m in group.members}
        if len(states) != 1:
            return
        state = states.pop()
        word = "STOP" if state is State.INIT else str(state)
        if self._group_states.get(group.name) == word:
            return
        self._group_states[group.name] = word
        cfg = self.config.sync_groups.get(group.name)
        self._notifier.notify("GROUP", group.name, word, None, cfg)

    def _emit(self, action) -> None:
        for hook in list(self.event_hooks):
            try:
                hook(action)
            except Exception:
                log.exception("event hook %r failed", hook)

    # ---------------------------------------------------------------- LVS
    def owned_vips(self) -> set[str]:
        out = set()
        for inst in self.instances.values():
            if inst.vips_owned:
                for va in inst.core.spec.virtual_ipaddresses:
                    out.add(str(ipaddress.ip_interface(va.address).ip))
        return out

    def _vips_changed(self) -> None:
        if self.lvs is not None:
            try:
                self.lvs.on_vips_changed(self.owned_vips())
            except Exception:
                log.exception("virtual servers: on_vips_changed failed")

    async def _start_lvs(self) -> None:
        if not getattr(self.config, "virtual_servers", ()):
            return
        if self.dataplane == "none":
            log.info("virtual_server blocks ignored (--dataplane none)")
            return
        try:
            from chimeha.runtime import lvs_manager
        except ImportError:
            log.warning("config has virtual_server blocks; virtual servers are not handled yet")
            return
        cls = getattr(lvs_manager, "LvsManager", None)
        if cls is None:
            log.warning("runtime.lvs_manager has no LvsManager; virtual servers not handled")
            return
        try:
            self.lvs = cls(self.config, dataplane=self.dataplane or "auto")
            await self.lvs.start()
            self.lvs.on_vips_changed(self.owned_vips())
        except Exception as exc:
            log.error("virtual servers could not start: %s", exc)
            self.lvs = None

    # ---------------------------------------------------------- lifecycle
    async def _reload_lvs(self) -> None:
        """Hand a reloaded config to the virtual servers (start or stop them as needed)."""
        try:
            if self.lvs is None:
                await self._start_lvs()
            elif not getattr(self.config, "virtual_servers", ()):
                await self.lvs.stop()
                self.lvs = None
            else:
                await self.lvs.reload(self.config)
                self.lvs.on_vips_changed(self.owned_vips())
        except Exception as exc:
            log.error("virtual servers: reload failed: %s", exc)

    async def stop(self) -> None:
        """SIGTERM: priority 0 from every MASTER, VIPs removed, notify_stop, close."""
        if self._stopping:
            return
        now = self.now()
        for inst in self.instances.values():
            inst.core.shutdown(now)
        self._after_input(list(self.instances.values()))
        self._stopping = True
        for inst in self.instances.values():
            if inst.timer:
                inst.timer.cancel()
        await self._stop_trackers()
        if self.lvs is not None:
            try:
                await self.lvs.stop()
            except Exception:
                log.exception("virtual servers: stop failed")
        await self._notifier.drain(5.0)
        self._close_sockets()
        self._notifier.close()
        await self._loop.run_in_executor(None, self._nl.close)
        self._stopped.set()
        log.info("stopped")

    def _close_sockets(self) -> None:
        for sock in self.sockets.values():
            try:
                self._loop.remove_reader(sock.fileno())
            except (ValueError, OSError):
                pass
            sock.close()
        self.sockets = {}

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def reload(self) -> dict:
        """SIGHUP: load the file again; refuse it (old config keeps running) if invalid.

        Unchanged instances (ignoring file:line positions) keep their state,
        timers and VIPs untouched. A changed instance is rebuilt but keeps
        MASTER if it was MASTER (no priority 0, VIPs it still has are never
        removed). Removed instances shut down (priority 0, VIPs removed).
        """
        async with self._reload_lock:  # a second SIGHUP waits for the first
            return await self._reload()

    async def _reload(self) -> dict:
        from chimeha.runtime.reload import reload

        return await reload(self)

    def _gc_sockets(self) -> None:
        used = {i.sock_key for i in self.instances.values()}
        for key in list(self.sockets):
            if key not in used:
                self._loop.remove_reader(self.sockets[key].fileno())
                self.sockets.pop(key).close()

    # ------------------------------------------------------------- status
    def snapshot(self) -> dict:
        """JSON-able status in the shape of :class:`chimeha.observe.schema.Snapshot`."""
        from chimeha.runtime.status import snapshot

        return snapshot(self)

    def instance_snapshot(self, name: str) -> dict | None:
        """One entry of ``snapshot()["instances"]`` (None for an unknown name).

        The observer journals each transition from this, instead of building
        the whole snapshot (which costs ~0.5 ms with 100 instances).
        """
        from chimeha.runtime.status import _instance

        inst = self.instances.get(name)
        return None if inst is None else _instance(name, inst)


def _where(cfg) -> str:
    where = getattr(cfg, "where", None)
    return f"{where.file}:{where.line}: " if where is not None and getattr(where, "line", 0) else ""


def _option(node, key: str):
    value = getattr(node, key, None)
    if value:
        return (value,) if isinstance(value, str) else tuple(value)
    opts = getattr(node, "options", {}) or {}
    lines = opts.get(key)
    if lines:
        return tuple(lines[0])
    return None


def _load_or_raise(path: str):
    from chimeha.config import load

    result = load(path)
    for d in result.diagnostics:
        (log.error if d.severity == "error" else log.warning)("%s", d)
    if not result.ok or result.config is None:
        raise DaemonError(f"{path}: configuration has errors (see above); not starting")
    return result.config
