"""Asyncio glue for virtual servers: checkers -> desired state -> data planes.

The VRRP daemon creates one :class:`LvsManager` when the config has
``virtual_server`` blocks. Three things change desired state: a health
verdict (from ``chimeha.check.runner.RealServerMonitor``), VIP ownership
(``on_vips_changed`` from the daemon) and a reload. Each only marks the state
dirty; one reconcile task computes :func:`chimeha.lvs.desired.desired_state`,
chooses a backend per service (:func:`chimeha.lvs.backends.select.choose`),
diffs against what each backend holds and applies the operations. Triggers
that arrive while a reconcile runs are coalesced into one more pass.

It can also be run on its own (the lab, the benchmark, tests)::

    python -m chimeha.runtime.lvs_manager CONFIG [--dataplane nft] [--own VIP ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any, Iterable

from chimeha.check.runner import RealServerMonitor
from chimeha.config import load
from chimeha.lvs.backends.base import BackendError
from chimeha.lvs.backends.nft import SNAT_TO
from chimeha.lvs.backends.proxy_workers import default_workers
from chimeha.lvs.backends.registry import BackendOptions, make_backend
from chimeha.lvs.backends.select import Choice, choose
from chimeha.lvs.catalog import DATAPLANES, ORDER
from chimeha.lvs.desired import (RsHealth, desired_state, quorum_changes, rs_id, service_keys, sync_master,
                                 vrrp_addresses, vs_id)
from chimeha.lvs.reconcile import diff
from chimeha.lvs.types import DesiredState, LvsConfigError
from chimeha.runtime.conntrackd import ConntrackSync
from chimeha.runtime.scripts import run_program
from chimeha.runtime.tasks import cancel_and_wait

_log = logging.getLogger("chimeha.lvs")


class LvsManager:
    """Virtual servers of one config on this node.

    ``dataplane``: auto | ipvs | nft | proxy | none (None = auto; none = check only). ``netns``: run
    nft inside that namespace (lab use; the daemon normally runs inside its
    own). ``snat``: the nft backend's source NAT mode. ``health_checks``:
    start the config's checkers (False = every real server counts as up unless
    :meth:`set_health` says otherwise; tests and the benchmark use it).
    ``forwarding``: "warn" (default) or "enable" IPv4 forwarding in this
    namespace when a kernel data plane forwards to a remote real server.
    ``proxy_own_loop``: see :class:`chimeha.lvs.backends.proxy.ProxyBackend`
    (None: the proxy relays on its own uvloop thread unless this loop is uvloop).
    ``snat_to``: the nft source address, "auto", "masquerade" or "vip"; None: "vip" when
    ``lvs_sync_daemon`` replicates connections (the real servers must answer the VIP,
    which moves with the connections), else "auto" (the VIP where the real server's
    subnet holds it, the interface's address otherwise; see nft.Renderer).
    """

    def __init__(self, config: Any, dataplane: str | None = "auto", log: logging.Logger | None = None, *,
                 netns: str | None = None, snat: str = "auto", health_checks: bool = True,
                 forwarding: str = "warn", backends: dict[str, Any] | None = None,
                 proxy_own_loop: bool | None = None, verify_interval: float = 5.0, snat_to: str | None = None,
                 nft_counters: bool = True, proxy_relay: str = "epoll",
                 proxy_workers: int = 1):
        self.config = config
        self.dataplane = dataplane or "auto"
        if self.dataplane not in DATAPLANES:
            raise LvsConfigError(f"--dataplane must be one of {', '.join(DATAPLANES)}, not {dataplane!r}")
        self.log = log or _log
        self.netns = netns
        self.snat = snat
        self.health_checks = health_checks
        self.forwarding = forwarding
        self.proxy_own_loop = proxy_own_loop
        self.proxy_relay = proxy_relay
        #: proxy relay processes (1: exact scheduling; more: see lvs/backends/proxy_workers.py)
        self.proxy_workers = proxy_workers
        self.snat_to = snat_to or ("vip" if self._sync_spec(config) else "auto")
        self.nft_counters = nft_counters
        #: conntrackd replicating connections (global_defs lvs_sync_daemon), while running
        self.sync: ConntrackSync | None = None
        #: seconds between reads of the live data plane while nothing else triggers a reconcile
        #: (an outside ``nft flush ruleset`` is repaired within this time)
        self.verify_interval = verify_interval
        self.repairs = 0
        self._used: set[str] = set()  # backends that have programmed something
        self.owned: set[str] | None = set()
        self.health: dict[str, RsHealth] = {}
        self.health_detail: dict[str, str] = {}  # the checkers' last reason, per real server
        self.errors: list[str] = []
        self.choice = Choice()
        self.desired = DesiredState()
        self._backends: dict[str, Any] = dict(backends or {})
        self._monitors: dict[str, Any] = {}
        self._monitor_specs: dict[str, tuple] = {}
        self._dirty = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._idle = asyncio.Event()
        self._bg: set[asyncio.Task] = set()
        self.reconciles = 0
        self.alerts = None  # chimeha.runtime.mailer.MailAlerts: smtp_alert mails (set by the daemon)

    # ------------------------------------------------------------ backends
    def _backend(self, name: str):
        b = self._backends.get(name)
        if b is None:
            b = make_backend(name, BackendOptions(self.log, self.netns, self.snat, self.proxy_own_loop, self.snat_to,
                                                    self.nft_counters, self.proxy_relay, self.proxy_workers))
            self._backends[name] = b
        return b

    # ------------------------------------------------------------ connection sync
    def _sync_spec(self, config: Any):
        """The lvs_sync_daemon settings that apply here (None: no sync; IPVS and proxy have none here)."""
        spec = getattr(getattr(config, "global_defs", None), "lvs_sync_daemon", None)
        if spec is None or self.dataplane in ("proxy", "none", "ipvs"):
            return None
        return spec

    async def _start_sync(self, config: Any) -> None:
        spec = self._sync_spec(config)
        if self.sync is not None:
            s = self.sync
            if spec is not None and (s.interface, s.group, s.port) == (spec.interface, spec.group or s.group,
                                                                       spec.port or s.port):
                return
            await s.stop()
            self.sync = None
        if spec is None:
            return
        sync = ConntrackSync(spec.interface, group=spec.group, port=spec.port, netns=self.netns, log=self.log)
        try:
            await sync.start()
        except (RuntimeError, OSError) as e:  # VRRP and forwarding run on without replication
            self.errors.append(f"{spec.where}: {e}")
            self.log.error("virtual servers: %s: %s", spec.where, e)
            await sync.stop()
            return
        self.sync = sync
        self._sync_role()

    def _sync_role(self) -> None:
        if self.sync is None:
            return
        spec = self._sync_spec(self.config)
        master = sync_master(self.config, spec.instance if spec else None, self.owned)
        if master == self.sync.master:
            return
        t = asyncio.get_running_loop().create_task(self.sync.set_master(master))
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start checkers and program the data plane for the current VIP ownership."""
        self._start_monitors(self.config)
        await self._start_sync(self.config)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="lvs reconcile")
        await self.reconcile_now()

    def on_vips_changed(self, owned: Iterable[str] | None) -> None:
        """The VIPs this node holds now (None: forward every virtual server, no VRRP gating)."""
        owned = None if owned is None else set(owned)
        changed = owned != self.owned
        self.owned = owned
        self._sync_role()  # a takeover commits the replicated connections at once
        if changed and self._task is not None and any(v.ha_suspend for v in self.config.virtual_servers):
            self._start_monitors(self.config)  # ha_suspend: checkers follow VIP ownership
        self._kick()

    def set_health(self, rsid: str, up: bool, weight: int | None = None) -> None:
        """Feed a real server's verdict directly (see :func:`chimeha.lvs.desired.rs_id`)."""
        self.health[rsid] = RsHealth(up, weight)
        self._kick()

    async def reload(self, config: Any) -> None:
        """Take a new config: checkers of unchanged real servers keep running."""
        self.config = config
        self._start_monitors(config)
        await self._start_sync(config)
        await self.reconcile_now()

    async def stop(self) -> None:
        """Stop checkers, remove the nft table / close listeners, run omega notifiers."""
        await cancel_and_wait(self._task)
        self._task = None
        for mon in self._monitors.values():
            await mon.stop()
        self._monitors.clear()
        self._monitor_specs.clear()
        for vs in self.config.virtual_servers:
            if vs.omega and vs.quorum_down and self.desired.quorum.get(vs_id(vs)):
                self._run(vs.quorum_down)
            if vs.omega and self.alerts is not None:  # keepalived mails at stop only in omega mode
                self.alerts.shutdown(vs, [rs for rs, _w in self._live(vs)])
        if self.sync is not None:
            await self.sync.stop()
            self.sync = None
        for b in list(self._backends.values()):
            try:
                await b.close()
            except BackendError as e:
                self.log.error("virtual servers: closing %s data plane: %s", b.name, e)
        if self._bg:
            await asyncio.wait(set(self._bg), timeout=5.0)

    # ------------------------------------------------------------ health
    def _start_monitors(self, config: Any) -> None:
        if not self.health_checks:
            return
        wanted: dict[str, tuple] = {}
        managed = vrrp_addresses(config)
        for vs in config.virtual_servers:
            if vs.ha_suspend and self._suspended(vs, managed):
                continue
            for rs in vs.real_servers:
                if rs.checkers:
                    wanted[rs_id(vs, rs)] = (vs, rs)
        for key in [k for k in self._monitors if k not in wanted or self._monitor_specs[k] != wanted[k]]:
            mon = self._monitors.pop(key)
            self._monitor_specs.pop(key, None)
            t = asyncio.get_running_loop().create_task(mon.stop())
            self._bg.add(t)
            t.add_done_callback(self._bg.discard)
            self.health.pop(key, None)
        for key, (vs, rs) in wanted.items():
            if key in self._monitors:
                continue
            mon = RealServerMonitor.from_config(
                rs, vs, lambda up, w, why, k=key, r=rs: self._health_changed(k, r, up, w, why),
                track_files=config.track_files)
            self._monitor_specs[key] = (vs, rs)
            self._monitors[key] = mon
            self.health[key] = RsHealth(mon.up, mon.weight)
            if self.alerts is not None:
                mon.checker_hooks.append(lambda c, ok, was, up, why, v=vs, r=rs: self.alerts.checker(
                    v, r, c, ok, was, up, why))
            mon.start()

    def _suspended(self, vs: Any, managed: set[str]) -> bool:
        """ha_suspend: a virtual server whose VRRP address this node does not hold is not checked."""
        if self.owned is None:
            return False
        try:
            keys = service_keys(vs, self.config.virtual_server_groups)
        except (LvsConfigError, ValueError):
            return False
        return any(k.address in managed and k.address not in self.owned for k in keys)

    def _health_changed(self, key: str, rs: Any, up: bool, weight: int | None, why: str) -> None:
        self.log.info("virtual servers: %s is %s: %s", key, "up" if up else "down", why)
        self.health[key] = RsHealth(up, weight)
        self.health_detail[key] = why
        script = rs.notify_up if up else rs.notify_down
        if script:
            self._run(script)
        self._kick()

    def _live(self, vs: Any) -> list[tuple[Any, int]]:
        """(real server, weight) of each live real server of ``vs`` (what keepalived weighs for quorum)."""
        out = []
        for rs in vs.real_servers:
            h = self.health.get(rs_id(vs, rs))
            if h is None or h.up:
                out.append((rs, rs.weight if h is None or h.weight is None else h.weight))
        return out

    def _run(self, argv) -> None:
        async def go():
            res = await run_program(tuple(argv), 30.0)
            if not res.ok:
                self.log.warning("virtual servers: %s: %s", " ".join(argv), res.describe())
        t = asyncio.get_running_loop().create_task(go())
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    # ------------------------------------------------------------ reconcile
    def _kick(self) -> None:
        self._idle.clear()
        self._dirty.set()

    async def _loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.verify_interval if self._used else None):
                    await self._dirty.wait()
            except TimeoutError:  # quiet for a while: look at the live data plane for drift
                self._idle.clear()
            self._dirty.clear()
            try:
                await self._reconcile()
            except Exception:  # a bug here must never take the VRRP daemon down
                self.log.exception("virtual servers: reconcile failed")
            if not self._dirty.is_set():
                self._idle.set()

    async def reconcile_now(self) -> None:
        """Reconcile and wait until the data plane matches (used by start/reload/tests)."""
        self._kick()
        if self._task is None:
            await self._reconcile()
            self._idle.set()
            return
        await self._idle.wait()

    async def _reconcile(self) -> None:
        before = self.desired
        desired = desired_state(self.config, self.owned, self.health, before)
        for vid, up in quorum_changes(before, desired):
            vs = next((v for v in self.config.virtual_servers if vs_id(v) == vid), None)
            self.log.warning("virtual servers: %s %s quorum", vid, "regained" if up else "lost")
            script = (vs.quorum_up if up else vs.quorum_down) if vs is not None else None
            if script:
                self._run(script)
            if vs is not None and self.alerts is not None:
                self.alerts.quorum(vs, up, sum(w for _rs, w in self._live(vs)))
        services = list(desired.services.values())
        errors = []
        probes = {n: self._backend(n) for n in (ORDER if self.dataplane == "auto" else (self.dataplane,))
                  if n in ORDER}
        choice = Choice()
        for svc in services:
            try:
                c = choose([svc], self.dataplane, probes)
            except LvsConfigError as e:
                errors.append(str(e))
                continue
            choice.backend.update(c.backend)
            choice.reasons.update(c.reasons)
        for key, why in choice.reasons.items():
            if self.choice.reasons.get(key) != why:
                self.log.info("virtual servers: data plane %s", why)
        for e in errors:
            if e not in self.errors:
                self.log.error("virtual servers: %s", e)
        self.choice, self.errors, self.desired = choice, errors, desired
        for name in sorted(set(choice.backend.values()) | self._used):
            b = self._backend(name)
            mine = DesiredState({k: s for k, s in desired.services.items() if choice.backend.get(k) == name})
            if mine.services and name != "proxy":
                self._check_forwarding(mine)
            try:
                actual = await b.read_actual()
            except BackendError as e:
                self.errors.append(str(e))
                self.log.error("virtual servers: reading the %s data plane: %s", name, e)
                continue
            if b.drift:
                self.repairs += 1
                self.log.warning("virtual servers: the %s data plane drifted (%s); repairing", name, b.drift)
            ops = diff(mine, actual)
            if mine.services:
                self._used.add(name)
            elif not ops:
                self._used.discard(name)
            if not ops:
                continue
            for op in ops:
                self.log.debug("virtual servers [%s]: %s", name, op)
            try:
                await b.apply(ops)
            except BackendError as e:
                self.errors.append(str(e))
                self.log.error("virtual servers: %s data plane: %s", name, e)
        self.reconciles += 1

    def _check_forwarding(self, state: DesiredState) -> None:
        if not state.services or self.netns is not None:
            return
        path = "/proc/sys/net/ipv4/ip_forward"
        try:
            with open(path) as f:
                on = f.read().strip() == "1"
        except OSError:
            return
        if on:
            return
        if self.forwarding == "enable":
            with open(path, "w") as f:
                f.write("1")
            self.log.info("virtual servers: enabled net.ipv4.ip_forward for the nft data plane")
        else:
            self.log.warning("virtual servers: net.ipv4.ip_forward is 0: the nft data plane cannot reach "
                             "remote real servers (sysctl -w net.ipv4.ip_forward=1)")

    # ------------------------------------------------------------ status
    def snapshot(self) -> dict:
        """Per virtual server: data plane, quorum, real servers with health and weight (JSON-able)."""
        out = []
        stats = {n: b.stats() for n, b in self._backends.items()}
        for vs in self.config.virtual_servers:
            vid = vs_id(vs)
            try:
                keys = service_keys(vs, self.config.virtual_server_groups)
            except (LvsConfigError, ValueError):
                keys = []
            svc = next((self.desired.services[k] for k in keys if k in self.desired.services), None)
            backend = self.choice.backend.get(svc.key) if svc else None
            rss = []
            rs_stats = (stats.get(backend, {}).get(str(svc.key)) or {}).get("real_servers", {}) if svc else {}
            for rs in vs.real_servers:
                rid = rs_id(vs, rs)
                h = self.health.get(rid)
                dest = None
                if svc is not None:
                    dest = next((d for d in svc.destinations if d.address == rs.address and
                                 d.port == (rs.port or vs.port or 0)), None)
                rss.append({"address": rs.address, "port": rs.port or vs.port,
                            "healthy": h.up if h is not None else True,
                            "configured_weight": rs.weight,
                            "weight": dest.weight if dest is not None else None,
                            "in_service": dest is not None and dest.weight > 0,
                            "detail": self.health_detail.get(rid, ""),
                            "stats": {k: v for k, v in rs_stats.get(f"{rs.address}:{rs.port or vs.port}", {}).items()
                                      if k in ("connections", "packets_in", "packets_out", "bytes_in",
                                               "bytes_out")}})
            out.append({"virtual_server": vid, "address": vs.address, "port": vs.port, "fwmark": vs.fwmark,
                        "group": vs.group, "protocol": vs.protocol, "lb_algo": vs.lb_algo, "lb_kind": vs.lb_kind,
                        "dataplane": backend,
                        "active": bool(backend and svc and any(d.weight > 0 for d in svc.destinations)), "why": self.choice.reasons.get(svc.key) if svc else None,
                        "state": self.desired.notes.get(vid), "quorum": self.desired.quorum.get(vid),
                        "sorry_server": bool(svc and svc.sorry), "real_servers": rss,
                        "counters": stats.get(backend, {}).get(str(svc.key)) if svc and backend else None})
        return {"dataplane": self.dataplane, "virtual_servers": out, "errors": list(self.errors),
                "reconciles": self.reconciles, "repairs": self.repairs,
                "sync": self.sync.snapshot() if self.sync is not None else None}


# ---------------------------------------------------------------- standalone
def _workers_arg(value: str) -> int:
    if value == "auto":
        return default_workers()
    if value.isdigit() and 1 <= int(value) <= 64:
        return int(value)
    raise argparse.ArgumentTypeError(f"{value!r}: a number of processes (1-64) or auto")


def standalone_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chimeha.runtime.lvs_manager",
                                 description="Run only the virtual servers of a keepalived.conf")
    ap.add_argument("config")
    ap.add_argument("--dataplane", default="auto", choices=DATAPLANES)
    ap.add_argument("--own", action="append", default=None,
                    help="VIP this node holds (repeatable); default: forward every virtual server")
    ap.add_argument("--snat", default="auto", choices=("auto", "always", "never"))
    ap.add_argument("--snat-to", default=None, choices=SNAT_TO,
                    help="nft source address: the interface's (masquerade), the connection's VIP, or auto "
                         "(the VIP where the real server's subnet holds it; default: vip with "
                         "lvs_sync_daemon, else auto)")
    ap.add_argument("--nft-counters", default="on", choices=("on", "off"),
                    help="nft: per-real-server counters (connections, packets, bytes; default on)")
    ap.add_argument("--no-checks", action="store_true", help="do not run health checkers")
    ap.add_argument("--ready-file", help="write 'ready' here once the data plane is programmed")
    ap.add_argument("--uvloop", action="store_true", help="use uvloop's event loop")
    ap.add_argument("--proxy-loop", default="auto", choices=("auto", "thread", "same"),
                    help="proxy relays on its own uvloop thread, or on this process's loop")
    ap.add_argument("--proxy-relay", default="epoll", choices=("epoll", "transports"),
                    help="proxy TCP relay: epoll (default) or asyncio transports (the previous one, for A/B)")
    ap.add_argument("--proxy-workers", default=1, type=_workers_arg, metavar="N|auto",
                    help="proxy relay processes (default 1; auto: one per core, at most 4); with more than "
                         "one, rr/wrr/sh/dh/mh services without persistence run in every process and "
                         "each process schedules on its own")
    ap.add_argument("--forwarding", default="warn", choices=("warn", "enable"),
                    help="enable IPv4 forwarding in this namespace when nft needs it")
    ap.add_argument("--verify-interval", type=float, default=5.0, metavar="SECONDS",
                    help="read the live data plane this often and repair drift (default 5)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    res = load(args.config)
    for d in res.diagnostics:
        print(str(d), file=sys.stderr)
    if res.config is None:
        return 2

    async def run() -> int:
        mgr = LvsManager(res.config, args.dataplane, health_checks=not args.no_checks, snat=args.snat,
                         forwarding=args.forwarding, verify_interval=args.verify_interval, snat_to=args.snat_to,
                         nft_counters=args.nft_counters == "on",
                         proxy_own_loop={"auto": None, "thread": True, "same": False}[args.proxy_loop],
                         proxy_relay=args.proxy_relay,
                         proxy_workers=args.proxy_workers)
        mgr.owned = None if args.own is None else set(args.own)
        await mgr.start()
        for e in mgr.errors:
            print(f"chime-ha: {e}", file=sys.stderr)

        def dump() -> None:
            if args.ready_file:
                with open(args.ready_file + ".tmp", "w") as f:
                    json.dump(mgr.snapshot(), f)
                os.replace(args.ready_file + ".tmp", args.ready_file)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # SIGUSR1: rewrite the status file (tests and the lab poll it). Installed
        # before the first write: whoever sees the file may signal at once.
        loop.add_signal_handler(signal.SIGUSR1, dump)
        dump()
        await stop.wait()
        await mgr.stop()
        return 1 if mgr.errors else 0

    if args.uvloop:
        import uvloop
        return uvloop.run(run())
    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(standalone_main())
