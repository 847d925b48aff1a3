"""The daemon's status snapshot (schema: :mod:`chimeha.observe.schema`)."""

from __future__ import annotations

import logging
import os
import socket
import time

from chimeha.vrrp.events import State

log = logging.getLogger("chimeha.runtime")


def _instance(name: str, inst) -> dict:
    core, spec = inst.core, inst.core.spec
    c = core.counters
    return {
        "name": name,
        "state": str(core.state),
        "vrid": spec.vrid,
        "version": spec.version,
        "interface": spec.interface,
        "base_priority": spec.priority,
        "effective_priority": core.priority,
        "master_address": inst.src if core.state is State.MASTER else core.master,
        "vips": [va.address for va in spec.virtual_ipaddresses],
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
        "failovers": {"count": len(inst.failovers),
                      "last_seconds": inst.failovers[-1] if inst.failovers else None,
                      "recent": list(inst.failovers)},
        "track_scripts": [t.name for t in spec.tracks if t.kind == "script"],
        "faults": core.snapshot().get("faults", []),
        "send_errors": inst.send_errors,
        "sync_group": spec.sync_group,
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
    return {
        "schema": 1,
        "taken_at": time.time(),
        "node": {
            "router_id": getattr(gd, "router_id", None) or socket.gethostname(),
            "hostname": socket.gethostname(),
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
    }
