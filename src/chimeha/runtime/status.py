"""The daemon's status snapshot (schema: :mod:`chimeha.observe.schema`)."""

from __future__ import annotations

import logging
import os
import socket
import time

from chimeha.vrrp.events import State

log = logging.getLogger("chimeha.runtime")


def _static(name: str, inst) -> dict:
    """The part of an instance's status fixed by its spec (computed once per instance)."""
    spec = inst.core.spec
    cached = getattr(inst, "status_static", None)
    if cached is None or cached[0] is not spec:
        fields = {
            "name": name,
            "vrid": spec.vrid,
            "version": spec.version,
            "interface": spec.interface,
            "base_priority": spec.priority,
            "vips": tuple(va.address for va in spec.virtual_ipaddresses),
            "track_scripts": tuple(t.name for t in spec.tracks if t.kind == "script"),
            "sync_group": spec.sync_group,
        }
        cached = inst.status_static = (spec, fields)
    return cached[1]


def _instance(name: str, inst) -> dict:
    # Polled for every instance twice a second by the observer: keep it lean.
    core = inst.core
    c = core.counters
    static = _static(name, inst)
    return {
        "name": name,
        "state": str(core.state),
        "vrid": static["vrid"],
        "version": static["version"],
        "interface": static["interface"],
        "base_priority": static["base_priority"],
        "effective_priority": core.priority,
        "master_address": inst.src if core.state is State.MASTER else core.master,
        "vips": list(static["vips"]),
        "vips_owned": inst.vips_owned,
        "advert_interval": core.advert_interval,
        "adverts_sent": inst.sent,
        "adverts_received": inst.received,
        "priority_zero_sent": c.priority_zero_sent,
        "priority_zero_received": c.priority_zero_received,
        "became_master": c.became_master,
        "released_master": c.released_master,
        "drops_by_reason": dict(inst.drops),
        "last_transition": inst.last_transition,
        "split_brain": dict(inst.split_brain),
        "failovers": {"count": inst.failover_count,
                      "last_seconds": inst.failovers[-1] if inst.failovers else None,
                      "recent": list(inst.failovers)},
        "track_scripts": list(static["track_scripts"]),
        # the core's full snapshot is only worth building when there are faults to list
        "faults": core.snapshot().get("faults", []) if core.in_fault else [],
        "send_errors": inst.send_errors,
        "sync_group": static["sync_group"],
    }


def _script(name: str, tracker, config) -> dict:
    vs = config.vrrp_scripts.get(name) if config else None
    last = tracker.last
    return {
        "name": name,
        "result": "unknown" if last is None else ("ok" if tracker.state.ok else "failed"),
        "last_exit": None if last is None else last.returncode,
        "last_run_at": tracker.last_run_at,
        "detail": "not run yet" if last is None else last.describe(),
        "weight": getattr(vs, "weight", 0),
    }


def _virtual_servers(lvs) -> list:
    if lvs is None:
        return []
    try:
        snap = lvs.snapshot()
    except Exception:
        log.exception("virtual servers: snapshot failed")
        return []
    if isinstance(snap, list):
        return snap
    if isinstance(snap, dict):
        return list(snap.get("virtual_servers", []))
    return []


def snapshot(daemon) -> dict:
    """Build the JSON-able snapshot of ``daemon`` (a :class:`chimeha.runtime.daemon.Daemon`)."""
    gd = getattr(daemon.config, "global_defs", None)
    hostname = socket.gethostname()
    return {
        "schema": 1,
        "taken_at": time.time(),
        "node": {
            "router_id": getattr(gd, "router_id", None) or hostname,
            "hostname": hostname,
            "pid": os.getpid(),
            "started_at": daemon.started_at,
            "config_path": daemon.config_path,
            "config_loaded_at": daemon.config_loaded_at,
            "reloads": daemon.reloads,
        },
        "instances": {name: _instance(name, inst) for name, inst in daemon.instances.items()},
        "scripts": {name: _script(name, tr, daemon.config) for name, tr in daemon.scripts.items()},
        "virtual_servers": _virtual_servers(daemon.lvs),
        "drops_by_reason": dict(daemon.drops),
        "bgp": daemon.bgp.snapshot() if getattr(daemon, "bgp", None) is not None else None,
    }
