"""The one object the daemon attaches to be observable.

:class:`Observer` ties the parts together: it reads ``daemon.snapshot()``
(normalized by :mod:`.schema`), journals every ``StateChanged`` handed to
:meth:`Observer.on_transition`, serves the control socket and the metrics
address, answers keepalived's dump signals and tells systemd what is going on.

Split brain and failover durations live in the snapshot (the daemon measures
them); a small watcher polls the snapshot every ``watch_interval`` seconds and
turns their changes into journal entries and histogram samples, so the daemon
only has to keep its snapshot true.

Metrics (prometheus_client, which pulls in http.server, email and urllib:
~2.6 MiB of RSS) and the HTTP listener are imported only when a metrics address
is given (or ``metrics=True``): a daemon run without ``--metrics`` never loads
them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from typing import Any, Callable

from . import sdnotify
from .control import DEFAULT_CONTROL_PATH, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, ControlServer
from .dumps import RENDERERS, DumpPaths, write_dump
from .journal import DEFAULT_JOURNAL_PATH, Journal, state_name
from .schema import InstanceStatus, Snapshot, instance_status, normalize

log = logging.getLogger(__name__)

# keepalived's JSON dump signal: `keepalived --signum=JSON` prints 36 (SIGRTMIN+2).
SIGJSON = signal.SIGRTMIN + 2
DUMP_SIGNALS = {signal.SIGUSR1: "data", signal.SIGUSR2: "stats", SIGJSON: "json"}


class Observer:
    """Status, journal, metrics, status page, dumps and sd_notify for one daemon.

    ``daemon`` needs ``snapshot() -> dict`` (see :class:`.schema.Snapshot`) and
    may offer ``reload()`` returning (or awaiting to) ``{"ok": bool,
    "message": str, "diagnostics": [str]}``. ``control_path=None`` or
    ``metrics_addr=None`` disable the control socket or the HTTP listener;
    ``journal_path=None`` keeps the journal in memory.

    ``metrics`` (None: only when ``metrics_addr`` is given) builds
    :attr:`metrics`, the Prometheus registry, without an HTTP listener when
    True; without metrics :attr:`metrics` and :attr:`http` are None and
    prometheus_client is never imported.

    The daemon may also offer ``instance_snapshot(name) -> dict | None`` (one
    entry of ``snapshot()["instances"]``): :meth:`on_transition` then builds
    only that instance's status instead of the whole snapshot.
    """

    def __init__(self, daemon: Any, control_path: str | None = DEFAULT_CONTROL_PATH,
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
        self._split: dict[str, bool] = {}
        self._failovers_seen: dict[str, tuple] = {}
        # The systemd STATUS= line per instance, kept up to date by polls and
        # transitions so a transition does not need every instance's status.
        self._shown: dict[str, str] = {}
        self._last_raw: Any = {}
        self._snapshot_failed = False
        self._ready_sent = False
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
        """Subscribe to the daemon's ``state_hooks`` and ``event_hooks`` lists (when it has them)."""
        for attr, fn in (("state_hooks", self.on_transition), ("event_hooks", self.on_event)):
            hooks = getattr(self.daemon, attr, None)
            if isinstance(hooks, list) and fn not in hooks:
                hooks.append(fn)

    def unhook(self) -> None:
        for attr, fn in (("state_hooks", self.on_transition), ("event_hooks", self.on_event)):
            hooks = getattr(self.daemon, attr, None)
            if isinstance(hooks, list) and fn in hooks:
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
    def on_transition(self, event: Any) -> dict[str, Any]:
        """Journal one ``StateChanged`` (instance, old, new, reason, at); returns the entry.

        Call it after the daemon updated its snapshot for the change: a
        BACKUP -> MASTER entry carries the failover duration the daemon measured.
        """
        name = str(getattr(event, "instance", ""))
        # Only this instance's status: a 100-instance failover is 100 transitions,
        # and the whole snapshot costs ~1.4 ms each.
        inst = self.instance_status(name)
        seconds = None
        new: list[float] = []
        if inst is not None:
            new = self._new_failovers(name, inst["failovers"])
            if new and state_name(getattr(event, "new", "")) == "MASTER":
                seconds = new[-1]
        entry = self.journal.append("transition", getattr(event, "instance", "?"),
                                    state_name(getattr(event, "old", "?")), state_name(getattr(event, "new", "?")),
                                    getattr(event, "reason", "") or "", getattr(event, "at", None),
                                    failover_seconds=getattr(event, "failover_seconds", None) or seconds)
        if self.metrics is not None:
            for s in new:
                self.metrics.observe_failover(name, s)
        if self.auto_ready and not self._ready_sent:
            self.poll()  # until READY=1 (the first transitions only): node.started_at is in the full snapshot
        elif inst is not None:
            self._poll_instance(name, inst, failovers=False)
        sdnotify.status(self._summary_cached())
        return entry

    def on_event(self, action: Any) -> dict[str, Any] | None:
        """Journal the other core actions an operator cares about (``SplitBrain``, ``PriorityChanged``).

        Unknown actions are ignored, so the daemon may hand over everything.
        """
        kind = type(action).__name__
        name = str(getattr(action, "instance", "?"))
        if kind == "SplitBrain":
            if getattr(action, "healing", False):
                # The core's end of the episode: journal it now, not at the next poll.
                if not self._split.get(name):
                    return None
                self._split[name] = False
                inst = self.instance_status(name)
                return self.journal.append("split_brain_resolved", name, "SPLIT_BRAIN",
                                           inst["state"] if inst else "MASTER",
                                           getattr(action, "reason", "") or "no other master heard any more",
                                           getattr(action, "at", None), peer=getattr(action, "peer", None))
            if self._split.get(name):
                return None  # one entry per episode, not one per advert heard
            self._split[name] = True
            inst = self.instance_status(name)
            return self.journal.append("split_brain", name, inst["state"] if inst else "MASTER", "SPLIT_BRAIN",
                                       getattr(action, "reason", "") or "another master is advertising",
                                       getattr(action, "at", None), peer=getattr(action, "peer", None))
        if kind == "PriorityChanged":
            return self.journal.append("priority", name, str(getattr(action, "old", "?")),
                                       str(getattr(action, "new", "?")), getattr(action, "reason", "") or "",
                                       getattr(action, "at", None))
        return None

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
        """One instance's normalized status (None if the daemon has no such instance).

        Uses the daemon's ``instance_snapshot(name)`` when it offers one; else
        takes that entry of ``snapshot()`` and normalizes only it.
        """
        fn = getattr(self.daemon, "instance_snapshot", None)
        if callable(fn):
            try:
                raw = fn(name)
            except Exception:
                log.exception("daemon instance_snapshot(%r) failed; using the full snapshot", name)
            else:
                return None if raw is None else instance_status(name, raw)
        try:
            snap = self.daemon.snapshot()
            self._last_raw = snap
            self._snapshot_failed = False
        except Exception:
            if not self._snapshot_failed:
                log.exception("daemon snapshot failed; serving the last good one")
            self._snapshot_failed = True
            snap = self._last_raw
        instances = snap.get("instances") if isinstance(snap, dict) else None
        raw = instances.get(name) if isinstance(instances, dict) else None
        return None if raw is None else instance_status(name, raw)

    def _new_failovers(self, name: str, fo: dict[str, Any]) -> list[float]:
        """Failover durations not yet seen; works whether ``count`` is a total or capped at len(recent)."""
        signature = (fo["count"], tuple(fo["recent"]), fo["last_seconds"])
        previous = self._failovers_seen.get(name)
        self._failovers_seen[name] = signature
        if previous is None:
            previous = (0, (), None)
        if signature == previous or fo["last_seconds"] is None and not fo["recent"]:
            return []
        grown = fo["count"] - previous[0]
        if grown > 0 and fo["recent"]:
            return fo["recent"][-grown:]
        if fo["recent"]:
            return fo["recent"][-1:]
        return [fo["last_seconds"]]

    def poll(self) -> None:
        """Turn split-brain changes and new failover measurements into journal and metrics."""
        self._poll(self.snapshot())

    def _poll(self, snap: Snapshot) -> None:
        if self.auto_ready and not self._ready_sent and snap["node"]["started_at"] is not None:
            self.ready()  # the daemon reports it started: its instances run
        for name, inst in snap["instances"].items():
            self._poll_instance(name, inst)
        for name in [n for n in self._split if n not in snap["instances"]]:
            del self._split[name]
        self._shown = {name: self._shown[name] for name in snap["instances"]}

    def _poll_instance(self, name: str, inst: InstanceStatus, failovers: bool = True) -> None:
        """Journal a split-brain change of one instance; feed new failovers (unless ``failovers`` is False)."""
        sb = inst["split_brain"]
        if sb["active"] != self._split.get(name, False):
            if sb["active"]:
                self.journal.append("split_brain", name, inst["state"], "SPLIT_BRAIN",
                                    f"another master for VRID {inst['vrid']} is advertising: {sb['peer'] or 'unknown address'}",
                                    sb["since"], peer=sb["peer"])
            else:
                self.journal.append("split_brain_resolved", name, "SPLIT_BRAIN", inst["state"],
                                    f"no other master heard for VRID {inst['vrid']} any more", None)
            self._split[name] = sb["active"]
        self._shown[name] = "SPLIT BRAIN" if sb["active"] else inst["state"]
        if failovers:
            for seconds in self._new_failovers(name, inst["failovers"]):
                if self.metrics is not None:
                    self.metrics.observe_failover(name, seconds)

    async def _watch(self) -> None:
        seen = None
        while True:
            await asyncio.sleep(self.watch_interval)
            # A daemon that counts its changes (runtime.Daemon.generation: state,
            # priority, split brain, reload) says when there is nothing new to
            # journal; then no snapshot is built (100 instances: ~1.5 ms a poll).
            generation = getattr(self.daemon, "generation", None)
            if generation is not None and generation == seen:
                continue
            try:
                self.poll()
                seen = generation
            except Exception:  # never let observation take the daemon down
                log.exception("observer poll failed")

    def _summary(self, snap: Snapshot | None = None) -> str:
        snap = snap or self.snapshot()
        parts = [f"{n} {'SPLIT BRAIN' if i['split_brain']['active'] else i['state']}" for n, i in snap["instances"].items()]
        return "; ".join(parts) or "no VRRP instances"

    def _summary_cached(self) -> str:
        """:meth:`_summary` from what the last poll and transitions showed (no snapshot)."""
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
        """Ask the daemon to reload its configuration; journal and return the outcome."""
        fn = getattr(self.daemon, "reload", None)
        if fn is None:
            return {"ok": False, "message": "this daemon cannot reload its configuration", "diagnostics": []}
        sdnotify.reloading()
        try:
            result = fn()
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            log.exception("reload failed")
            result = {"ok": False, "message": f"reload failed: {exc}"}
        finally:
            sdnotify.ready(self._summary())
        outcome = _reload_outcome(result)
        self.journal.append("reload", "-", "", "", outcome["message"], None, ok=outcome["ok"])
        return outcome

    def dump(self, kind: str = "all") -> list[str]:
        """Write the keepalived-style dump(s) (``data``, ``stats``, ``json`` or ``all``); returns the paths."""
        kinds = list(RENDERERS) if kind == "all" else [kind]
        snap = self.snapshot()
        return [write_dump(k, snap, self.dump_paths) for k in kinds]


def _reload_outcome(result: Any) -> dict[str, Any]:
    if result is None or result is True:
        return {"ok": True, "message": "configuration reloaded", "diagnostics": []}
    if result is False:
        return {"ok": False, "message": "reload refused", "diagnostics": []}
    if isinstance(result, dict):
        ok = bool(result.get("ok", True))
        diags = [str(d) for d in (result.get("diagnostics") or [])]
        msg = str(result.get("message") or ("configuration reloaded" if ok else "reload refused"))
        return {"ok": ok, "message": msg, "diagnostics": diags}
    return {"ok": True, "message": str(result), "diagnostics": []}
