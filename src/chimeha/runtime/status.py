"""The daemon's status snapshot (schema: :mod:`chimeha.observe.schema`), built from the node's typed status."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, fields

from chimeha.vrrp.events import Counters
from chimeha.vrrp.node_types import InstanceStatus, ReloadPlan

#: Status (and ``chimeha_vrrp_<key>`` metric) name of the instance state machine's counters
#: (:class:`~chimeha.vrrp.events.Counters`) where it is not the field name: the node's own
#: ``adverts_sent``/``adverts_received`` (datagrams sent / accepted) keep the plain names.
_RENAMED = {"adverts_sent": "adverts_scheduled", "adverts_received": "adverts_processed",
            "split_brain": "split_brain_episodes"}


def counter_key(field_name: str) -> str:
    """The status key of one :class:`Counters` field (or ``extra`` entry)."""
    return _RENAMED.get(field_name, field_name)


#: Every counter of :class:`Counters`, by status key, in field order (``extra`` entries come on top).
INSTANCE_COUNTERS = tuple(counter_key(f.name) for f in fields(Counters) if f.name != "extra")
#: The node's per-instance counters (:class:`~chimeha.vrrp.node_types.InstanceStats` fields) by status key;
#: ``drops`` is ``drops_by_reason`` and ``failover_count`` is ``failovers.count``.
NODE_COUNTERS = {"sent": "adverts_sent", "received": "adverts_received", "send_errors": "send_errors"}

log = logging.getLogger("chimeha.runtime")


@dataclass(frozen=True)
class ReloadOutcome:
    """What one reload did (an event for observers; ``as_dict`` is the control socket's answer)."""

    ok: bool
    diagnostics: tuple[str, ...]
    message: str
    at: float
    plan: ReloadPlan | None = None

    def as_dict(self) -> dict:
        return {"ok": self.ok, "diagnostics": list(self.diagnostics), "message": self.message}


# The event loop's clock is time.monotonic(); one fixed offset turns it into wall time,
# so the same event reads the same in every snapshot.
_WALL_OFFSET = time.time() - time.monotonic()


def _wall(mono: float | None, now: float) -> float | None:
    return None if mono is None else mono + _WALL_OFFSET


def instance_entry(st: InstanceStatus, now: float) -> dict:
    """One entry of ``snapshot()["instances"]``; ``now`` is the node clock (to turn its times into wall time)."""
    spec, ch = st.spec, st.last_change
    entry = {
        "name": st.name,
        "state": str(st.state),
        "vrid": spec.vrid,
        "version": spec.version,
        "interface": spec.interface,
        "base_priority": spec.priority,
        "effective_priority": st.priority,
        "master_address": st.master,
        # config.model.VirtualAddress objects; a spec built by hand (tests, the simulator) may hold bare strings
        "vips": [va.address if hasattr(va, "address") else str(va) for va in spec.virtual_ipaddresses],
        "vips_owned": st.vips_owned,
        "advert_interval": st.advert_interval,
        "adverts_sent": st.sent,
        "adverts_received": st.received,
        "send_errors": st.send_errors,
        **{counter_key(name): value for name, value in st.counters.items()},
        "drops_by_reason": st.drops,
        "last_transition": None if ch is None else {"at": _wall(ch.at, now), "from": str(ch.old), "to": str(ch.new),
                                                     "reason": ch.reason},
        "split_brain": {"active": st.split_brain, "peer": st.split_brain_peer,
                        "since": _wall(st.split_brain_since, now)},
        "failovers": {"count": st.failover_count, "last_seconds": st.failovers[-1] if st.failovers else None,
                      "recent": list(st.failovers)},
        "track_scripts": [t.name for t in spec.tracks if t.kind == "script"],
        "faults": list(st.faults),
        "sync_group": spec.sync_group,
    }
    return entry


def _script(name: str, tracker, config) -> dict:
    vs = config.vrrp_scripts.get(name) if config else None
    last = tracker.last
    return {
        "name": name,
        "result": "unknown" if last is None else ("ok" if tracker.state.ok else "failed"),
        "last_exit": None if last is None else last.returncode,
        "last_run_at": tracker.last_run_at,
        "detail": "not run yet" if last is None else last.describe(),
        "weight": vs.weight if vs is not None else 0,
    }


def _virtual_servers(lvs) -> list:
    if lvs is None:
        return []
    try:
        return list(lvs.snapshot()["virtual_servers"])
    except Exception:  # status must still answer with a broken data plane: say so in the log
        log.exception("virtual servers: snapshot failed")
        return []


def _lvs_sync(lvs) -> dict | None:
    """conntrackd's state (global_defs lvs_sync_daemon), or None without it."""
    sync = getattr(lvs, "sync", None)
    return sync.snapshot() if sync is not None else None


def snapshot(daemon) -> dict:
    """Build the JSON-able snapshot of ``daemon`` (a :class:`chimeha.runtime.daemon.Daemon`)."""
    gd = daemon.config.global_defs if daemon.config is not None else None
    hostname = socket.gethostname()
    now = daemon.now()
    return {
        "schema": 1,
        "taken_at": time.time(),
        "node": {
            "router_id": (gd.router_id if gd is not None else None) or hostname,
            "hostname": hostname,
            "pid": os.getpid(),
            "started_at": daemon.started_at,
            "config_path": daemon.config_path,
            "config_loaded_at": daemon.config_loaded_at,
            "reloads": daemon.reloads,
        },
        "instances": {st.name: instance_entry(st, now) for st in daemon.node.status()},
        "scripts": {name: _script(name, tr, daemon.config) for name, tr in daemon.scripts.items()},
        "virtual_servers": _virtual_servers(daemon.lvs),
        "lvs_sync": _lvs_sync(daemon.lvs),
        "drops_by_reason": dict(daemon.node.drops),
        "bgp": daemon.bgp.snapshot() if daemon.bgp is not None else None,
        "bfd": daemon.bfd.snapshot() if getattr(daemon, "bfd", None) is not None else None,
        "track_processes": _track_processes(daemon),
    }


def _track_processes(daemon) -> dict | None:
    """Per vrrp_track_process: up, counted PIDs, a pending delay, the event source (None without any)."""
    monitor = getattr(getattr(daemon, "trackers", None), "processes", None)
    return monitor.status() if monitor is not None else None
