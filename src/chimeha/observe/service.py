"""The one object the daemon attaches to be observable.

:class:`Observer` ties the parts together: it reads ``daemon.snapshot()``
(normalized by :mod:`.schema`), journals the core's typed events handed to
:meth:`Observer.on_transition` (``StateChanged``) and :meth:`Observer.on_event`
(``SplitBrain``, ``PriorityChanged``, the daemon's ``ReloadOutcome``), serves
the control socket and the metrics address, answers keepalived's dump signals
and tells systemd what is going on.

Nothing here measures or remembers VRRP state: failover durations come on the
core's ``StateChanged`` (``failover``), split-brain episodes are the core's
``SplitBrain`` events and its status, every counter is the core's. A small
watcher polls the snapshot every ``watch_interval`` seconds, only while the
daemon's ``generation`` moves, to send READY=1 once the daemon started and to
refresh the systemd STATUS= line.

Metrics (prometheus_client, which pulls in http.server, email and urllib:
~2.6 MiB of RSS) and the HTTP listener are imported only when a metrics address
is given (or ``metrics=True``): a daemon run without ``--metrics`` never loads
them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Callable, Protocol

from chimeha.runtime.status import ReloadOutcome
from chimeha.vrrp.events import PriorityChanged, SplitBrain, StateChanged

from . import sdnotify
from .control import DEFAULT_CONTROL_PATH, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, ControlServer
from .dumps import RENDERERS, DumpPaths, write_dump
from .journal import DEFAULT_JOURNAL_PATH, Journal, state_name
from .schema import InstanceStatus, Snapshot, instance_status, normalize

log = logging.getLogger(__name__)

# keepalived's JSON dump signal: `keepalived --signum=JSON` prints 36 (SIGRTMIN+2).
SIGJSON = signal.SIGRTMIN + 2
DUMP_SIGNALS = {signal.SIGUSR1: "data", signal.SIGUSR2: "stats", SIGJSON: "json"}


class ObservedDaemon(Protocol):
    """What the observer reads of :class:`chimeha.runtime.daemon.Daemon` (tests use a double)."""

    state_hooks: list  # called with every StateChanged
    event_hooks: list  # called with every other event (SplitBrain, PriorityChanged, ReloadOutcome...)

    @property
    def generation(self) -> int: ...  # moves on every change worth a poll
    def snapshot(self) -> dict: ...  # the shape of schema.Snapshot
    def instance_snapshot(self, name: str) -> dict | None: ...  # one entry of snapshot()["instances"]
    async def reload(self) -> dict: ...  # ReloadOutcome.as_dict()


class Observer:
    """Status, journal, metrics, status page, dumps and sd_notify for one daemon.

    ``daemon`` is an :class:`ObservedDaemon`. ``control_path=None`` or
    ``metrics_addr=None`` disable the control socket or the HTTP listener;
    ``journal_path=None`` keeps the journal in memory.

    ``metrics`` (None: only when ``metrics_addr`` is given) builds
    :attr:`metrics`, the Prometheus registry, without an HTTP listener when
    True; without metrics :attr:`metrics` and :attr:`http` are None and
    prometheus_client is never imported.
    """

    def __init__(self, daemon: ObservedDaemon, control_path: str | None = DEFAULT_CONTROL_PATH,
                 metrics_addr: str | None = None, journal_path: str | None = DEFAULT_JOURNAL_PATH,
                 dump_paths: DumpPaths = DumpPaths(), watch_interval: float = 0.5,
                 signals: bool = True, journal_size: int = 1000, metrics: bool | None = None,
                 control_max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 control_idle_timeout: float = DEFAULT_IDLE_TIMEOUT):
        self.daemon = daemon
        self.dump_paths = dump_paths
        self.watch_interval = watch_interval
        self.journal = Journal(journal_path, maxlen=journal_size)
        self.metrics = None
        if metrics or (metrics is None and metrics_addr):
            from .metrics import Metrics

            self.metrics = Metrics(self.snapshot)
            self.journal.subscribe(self.metrics.on_entry)
        self.control = ControlServer(control_path, self, max_connections=control_max_connections,
                                     idle_timeout=control_idle_timeout) if control_path else None
        self.http = None
        if metrics_addr:
            from .http import HttpServer

            if self.metrics is None:
                raise ValueError("a metrics address needs metrics (metrics=False given)")
            self.http = HttpServer(metrics_addr, self.status, self._journal_tail, self.metrics.render)
        self._want_signals = signals
        self._signals: list[int] = []
        self._watcher: asyncio.Task | None = None
        # The systemd STATUS= line per instance, kept up to date by events and polls
        # so that a transition needs no status at all.
        self._shown: dict[str, str] = {}
        self._last_raw: Any = {}
        self._snapshot_failed = False
        self._ready_sent = False
        self._reloads_reported = 0  # ReloadOutcome events journaled (the daemon reports its reloads)
        self.auto_ready = False

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        """Open the control socket and the HTTP listener, start watching, install dump signals."""
        self.poll()
        try:
            if self.control:
                await self.control.start()
            if self.http:
                await self.http.start()
        except BaseException:
            await self.stop()
            raise
        if self._want_signals:
            self._install_signals()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="chimeha-observe-watch")

    async def stop(self) -> None:
        """Close everything :meth:`start` opened (safe to call twice)."""
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()
        if self._watcher:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if self.http:
            await self.http.stop()
        if self.control:
            await self.control.stop()

    def hook(self) -> None:
        """Subscribe to the daemon's ``state_hooks`` and ``event_hooks``."""
        for hooks, fn in ((self.daemon.state_hooks, self.on_transition), (self.daemon.event_hooks, self.on_event)):
            if fn not in hooks:
                hooks.append(fn)

    def unhook(self) -> None:
        for hooks, fn in ((self.daemon.state_hooks, self.on_transition), (self.daemon.event_hooks, self.on_event)):
            if fn in hooks:
                hooks.remove(fn)

    async def close(self) -> None:
        """STOPPING=1 to systemd, unhook from the daemon, then :meth:`stop`."""
        self.stopping()
        self.unhook()
        await self.stop()

    def ready(self) -> None:
        """Tell systemd the daemon is up (call once the instances are running); sent once."""
        if not self._ready_sent:
            self._ready_sent = True
            sdnotify.ready(self._summary())

    def stopping(self) -> None:
        sdnotify.stopping()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, kind in DUMP_SIGNALS.items():
            try:
                loop.add_signal_handler(sig, self._signal_dump, kind)
            except (RuntimeError, ValueError) as exc:  # not the main thread
                log.warning("cannot handle signal %s for the %s dump: %s", sig, kind, exc)
                continue
            self._signals.append(sig)

    def _signal_dump(self, kind: str) -> None:
        try:
            log.info("wrote %s", self.dump(kind)[0])
        except OSError as exc:
            log.warning("cannot write the %s dump: %s", kind, exc)

    # -- inputs from the daemon -----------------------------------------
    def on_transition(self, event: StateChanged) -> dict[str, Any]:
        """Journal one ``StateChanged``; returns the entry.

        A BACKUP -> MASTER event carries the failover duration the core
        measured (``event.failover``): it lands on the entry and the histogram.
        No status is built (a 100-instance failover is 100 transitions).
        """
        entry = self.journal.record(event)
        if self.metrics is not None and event.failover is not None:
            self.metrics.observe_failover(event.instance, event.failover)
        self._shown[event.instance] = state_name(event.new)
        if self.auto_ready and not self._ready_sent:
            self.poll()  # until READY=1 (the first transitions only): node.started_at is in the full snapshot
        sdnotify.status(self._summary_cached())
        return entry

    def on_event(self, event: object) -> dict[str, Any] | None:
        """Journal the other events an operator cares about; returns the entry (None: not journaled).

        ``SplitBrain``: the core reports one start per rival master (the first
        opens the episode) and one end per episode. ``PriorityChanged``, and
        the daemon's ``ReloadOutcome``. Anything else is ignored, so the daemon
        may hand over every event.
        """
        match event:
            case SplitBrain(healing=True):
                state = self._state_now(event.instance) or "MASTER"
                self._shown[event.instance] = state
                entry = self.journal.append("split_brain_resolved", event.instance, "SPLIT_BRAIN", state,
                                            event.reason, event.at, peer=event.peer)
            case SplitBrain():
                self._shown[event.instance] = "SPLIT BRAIN"
                entry = self.journal.append("split_brain", event.instance, "MASTER", "SPLIT_BRAIN", event.reason,
                                            event.at, peer=event.peer, peer_priority=event.peer_priority)
            case PriorityChanged():
                return self.journal.append("priority", event.instance, str(event.old), str(event.new),
                                           event.reason, event.at)
            case ReloadOutcome():
                self._reloads_reported += 1
                return self._journal_reload(event.ok, event.message)
            case _:
                return None
        sdnotify.status(self._summary_cached())
        return entry

    def _state_now(self, name: str) -> str | None:
        inst = self.instance_status(name)
        return None if inst is None else inst["state"]

    def snapshot(self) -> Snapshot:
        """The daemon's snapshot, normalized; the last good one if the daemon's call fails."""
        try:
            raw = self.daemon.snapshot()
            self._last_raw = raw
            self._snapshot_failed = False
        except Exception:
            if not self._snapshot_failed:
                log.exception("daemon snapshot failed; serving the last good one")
            self._snapshot_failed = True
            raw = self._last_raw
        return normalize(raw)

    def instance_status(self, name: str) -> InstanceStatus | None:
        """One instance's normalized status (None if the daemon has no such instance)."""
        try:
            raw = self.daemon.instance_snapshot(name)
        except Exception:
            log.exception("daemon instance_snapshot(%r) failed", name)
            return None
        return None if raw is None else instance_status(name, raw)

    def poll(self) -> None:
        """READY=1 once the daemon reports it started (with ``auto_ready``); refresh the STATUS= line."""
        snap = self.snapshot()
        if self.auto_ready and not self._ready_sent and snap["node"]["started_at"] is not None:
            self.ready()  # the daemon reports it started: its instances run
        self._shown = {name: _shown_state(inst) for name, inst in snap["instances"].items()}

    async def _watch(self) -> None:
        seen = None
        while True:
            await asyncio.sleep(self.watch_interval)
            # The daemon counts its changes (state, priority, split brain, reload): nothing new,
            # no snapshot (100 instances: ~1.5 ms a poll).
            generation = self.daemon.generation
            if generation == seen:
                continue
            try:
                self.poll()
                seen = generation
            except Exception:  # never let observation take the daemon down
                log.exception("observer poll failed")

    def _summary(self, snap: Snapshot | None = None) -> str:
        snap = snap or self.snapshot()
        parts = [f"{n} {_shown_state(i)}" for n, i in snap["instances"].items()]
        return "; ".join(parts) or "no VRRP instances"

    def _summary_cached(self) -> str:
        """:meth:`_summary` from what the last poll and events showed (no snapshot)."""
        return "; ".join(f"{n} {s}" for n, s in self._shown.items()) or "no VRRP instances"

    # -- the control target (see control.ControlTarget) ------------------
    def status(self) -> dict[str, Any]:
        return dict(self.snapshot())

    def journal_entries(self, limit: int | None = None, instance: str | None = None) -> list[dict[str, Any]]:
        return self.journal.entries(limit=limit, instance=instance)

    def _journal_tail(self, limit: int) -> list[dict[str, Any]]:
        return self.journal.entries(limit=limit)

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        return self.journal.subscribe(listener)

    async def reload(self) -> dict[str, Any]:
        """Ask the daemon to reload its configuration; journal and return the outcome.

        The daemon reports the outcome as a ``ReloadOutcome`` event too (SIGHUP
        reloads have no other witness): it is journaled once, from the event
        when the observer is hooked, else here.
        """
        sdnotify.reloading()
        reported = self._reloads_reported
        try:
            result = await self.daemon.reload()
        except Exception as exc:
            log.exception("reload failed")
            result = {"ok": False, "message": f"reload failed: {exc}"}
        finally:
            sdnotify.ready(self._summary())
        outcome = _reload_outcome(result)
        if self._reloads_reported == reported:
            self._journal_reload(outcome["ok"], outcome["message"])
        return outcome

    def _journal_reload(self, ok: bool, message: str) -> dict[str, Any]:
        return self.journal.append("reload", "-", "", "", message, None, ok=ok)

    def dump(self, kind: str = "all") -> list[str]:
        """Write the keepalived-style dump(s) (``data``, ``stats``, ``json`` or ``all``); returns the paths."""
        kinds = list(RENDERERS) if kind == "all" else [kind]
        snap = self.snapshot()
        return [write_dump(k, snap, self.dump_paths) for k in kinds]


def _shown_state(inst: InstanceStatus) -> str:
    return "SPLIT BRAIN" if inst["split_brain"]["active"] else inst["state"]


def _reload_outcome(result: dict | None) -> dict[str, Any]:
    """The control socket's answer from what ``Daemon.reload`` returned (``ReloadOutcome.as_dict()``)."""
    result = result if isinstance(result, dict) else {}
    ok = bool(result.get("ok", False))
    diags = [str(d) for d in (result.get("diagnostics") or [])]
    msg = str(result.get("message") or ("configuration reloaded" if ok else "reload refused"))
    return {"ok": ok, "message": msg, "diagnostics": diags}
