"""The daemon's tracked objects: vrrp_script runners and interface / file / process watchers.

Each reports through one callback, ``on_change(kind, name, ok, detail, value)``,
which the daemon feeds to :meth:`chimeha.vrrp.node.VrrpNode.set_tracked`.
:meth:`Trackers.stop` always finishes: every wait is bounded and logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from chimeha.runtime.fast_detect import FastDetector
from chimeha.config.build_bgp import build_bgp
from chimeha.runtime.scripts import ScriptTracker, stop_all
from chimeha.runtime.proc_monitor import ProcessMonitor
from chimeha.runtime.trackers import FileWatcher, InterfaceWatcher, init_track_file

log = logging.getLogger("chimeha.runtime")

#: How long stopping every script tracker may take before the stragglers are cancelled.
STOP_TIMEOUT = 5.0

OnChange = Callable[[str, str, bool, "str | None", "int | None"], None]


class Trackers:
    """Everything the instances of one config track, started and stopped together."""

    def __init__(self, config: Any, specs, on_change: OnChange, *, fast_detect: bool = True):
        self.config = config
        self.fast_detect = fast_detect  # runtime.fast_detect: early script runs on process exit
        self.scripts: dict[str, ScriptTracker] = {}
        self._watchers: list[Any] = []
        self.processes: ProcessMonitor | None = None
        self._wanted: dict[str, set[str]] = {"script": set(), "interface": set(), "file": set(), "process": set()}
        for s in specs:
            for t in s.tracks:
                self._wanted.setdefault(t.kind, set()).add(t.name)
        # chimeha_bgp's track_script gates announcements: those scripts run even if no instance tracks them
        bgp = build_bgp(config, []) if config is not None else None
        self._wanted["script"].update(bgp.track_scripts if bgp is not None else ())
        self._on_change = on_change

    def start(self) -> None:
        config, gd, wanted = self.config, self.config.global_defs, self._wanted
        for name in sorted(wanted["script"]):
            vs = config.vrrp_scripts.get(name)
            if vs is None:
                continue
            self.scripts[name] = ScriptTracker(
                name, vs.script, interval=vs.interval, timeout=vs.timeout, rise=vs.rise, fall=vs.fall,
                init_fail=vs.init_fail, user=vs.user or gd.script_user, group=vs.group or gd.script_group,
                on_change=lambda n, ok, _res: self._on_change("script", n, ok, self.scripts[n].state.detail(), None),
                secure=gd.enable_script_security)
            self.scripts[name].start()
        self._watchers.append(FastDetector(self.scripts, enabled=self.fast_detect))
        if wanted["interface"]:
            self._watchers.append(InterfaceWatcher(sorted(wanted["interface"]),
                                                   lambda n, up: self._on_change("interface", n, up, None, None)))
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
            self._watchers.append(FileWatcher(files, lambda n, v: self._on_change("file", n, v == 0, None, v)))
        procs = {n: config.track_processes[n] for n in wanted["process"] if n in config.track_processes}
        if procs:
            # One monitor (one /proc scan, one connector socket) for every vrrp_track_process.
            self.processes = ProcessMonitor(procs, lambda n, ok, detail: self._on_change("process", n, ok, detail, None))
            self._watchers.append(self.processes)
        for w in self._watchers:
            w.start()

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop everything; never waits longer than ``timeout`` for the scripts (stragglers are cancelled)."""
        for w in self._watchers:
            try:
                w.stop()
            except Exception:
                log.exception("stopping a tracker failed")
        self._watchers = []
        if not self.scripts:
            return
        stops = [asyncio.ensure_future(stop_all(self.scripts.values()))]
        done, pending = await asyncio.wait(stops, timeout=timeout)
        for fut in done:
            if not fut.cancelled() and fut.exception() is not None:
                log.error("stopping a vrrp_script tracker failed: %s", fut.exception())
        if pending:
            log.error("%d vrrp_script tracker(s) did not stop within %g s; cancelled", len(pending), timeout)
            for fut in pending:
                fut.cancel()
        self.scripts = {}
