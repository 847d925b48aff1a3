"""The daemon snapshot that ``observe`` consumes.

``Daemon.snapshot()`` returns a JSON-able ``dict`` shaped like :class:`Snapshot`.
Everything in :mod:`chimeha.observe` (``chime-ha status``, the metrics, the status
page, the keepalived-style dumps) reads the snapshot through :func:`normalize`,
which fills in defaults for anything missing, so a daemon that fills only part
of the schema still gets a working status page instead of a traceback.

All times in the snapshot are wall-clock epoch seconds (``time.time()``), never
the monotonic clock the core runs on: operators read them as dates.
docs/operations.md publishes this schema for the runtime engineer.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, TypedDict

from chimeha.runtime.status import INSTANCE_COUNTERS, NODE_COUNTERS

#: Every per-instance counter in a snapshot entry: the node's (datagrams sent, accepted, send
#: errors) then the state machine's (priority 0, takeovers, faults, split brains...).
COUNTER_KEYS = tuple(dict.fromkeys((*NODE_COUNTERS.values(), *INSTANCE_COUNTERS)))

SCHEMA_VERSION = 1

#: VRRP states as they appear in the snapshot and the journal.
STATES = ("INIT", "BACKUP", "MASTER", "FAULT", "STOP")

Transition = TypedDict("Transition", {"at": float, "from": str, "to": str, "reason": str})


class SplitBrain(TypedDict):
    active: bool  # this master hears another master for its VRID right now
    peer: str | None  # the other master's source address
    since: float | None  # when it started (epoch seconds)


class Failovers(TypedDict):
    count: int  # takeovers measured so far
    last_seconds: float | None  # last advert heard -> VIP taken over
    recent: list[float]  # the most recent durations, oldest first (bounded by the daemon)


class InstanceStatus(TypedDict):
    name: str
    state: str  # one of STATES
    vrid: int
    version: int  # VRRP 2 or 3
    interface: str
    base_priority: int  # configured priority
    effective_priority: int  # after track_script / track_interface weights
    master_address: str | None  # who is master now (ourselves when MASTER)
    vips: list[str]  # configured VIPs, CIDR
    vips_owned: bool  # the VIPs are on our interface now
    advert_interval: float
    adverts_sent: int  # datagrams the kernel accepted (one per unicast peer)
    adverts_received: int  # datagrams that passed validation for this VRID
    send_errors: int
    adverts_scheduled: int  # advertisements the state machine decided to send
    adverts_processed: int
    priority_zero_sent: int
    priority_zero_received: int
    became_master: int
    released_master: int
    entered_fault: int
    split_brain_episodes: int
    lower_priority_received: int  # adverts from another master we out-rank (split brain material)
    interval_adopted: int  # a backup took the master's advert interval (v3)
    drops_by_reason: dict[str, int]  # reason (vrrp.packet drop enum) -> count
    last_transition: Transition | None
    split_brain: SplitBrain
    failovers: Failovers
    track_scripts: list[str]  # names of the vrrp_scripts this instance tracks
    faults: list[str]  # why the instance is in FAULT (empty otherwise)
    sync_group: str | None


class ScriptStatus(TypedDict):
    name: str
    result: str  # "ok", "failed" or "unknown" (not run yet)
    last_exit: int | None  # exit status of the last run (None: timeout or not run)
    last_run_at: float | None
    detail: str  # operator words, e.g. "exit 1 (3/3 failures, fall 3)"
    weight: int


class RealServerStatus(TypedDict):
    address: str
    port: int | None
    healthy: bool
    weight: int  # weight in use now (0 when inhibited)
    detail: str  # last checker result in words
    stats: dict[str, int]  # data-plane counters: connections, packets_in, packets_out, bytes_in, bytes_out


class VirtualServerStatus(TypedDict):
    name: str  # "192.168.231.10:8801/TCP" or "fwmark 1/TCP"
    address: str | None
    port: int | None
    fwmark: int | None
    protocol: str
    lb_algo: str
    lb_kind: str
    dataplane: str | None  # "nft", "proxy", "ipvs" or None when not programmed
    active: bool  # programmed in the data plane now (we own its VIP)
    real_servers: list[RealServerStatus]
    stats: dict[str, int]  # data-plane counters summed over the service


class NodeStatus(TypedDict):
    router_id: str
    hostname: str
    pid: int
    started_at: float | None
    config_path: str
    config_loaded_at: float | None
    reloads: int


class Snapshot(TypedDict):
    schema: int  # SCHEMA_VERSION
    taken_at: float
    node: NodeStatus
    instances: dict[str, InstanceStatus]  # config file order
    scripts: dict[str, ScriptStatus]
    virtual_servers: list[VirtualServerStatus]
    drops_by_reason: dict[str, int]  # packets that matched no instance (e.g. unknown VRID)
    bgp: dict | None  # chimeha.runtime.bgp.BgpManager.snapshot(), None without chimeha_bgp
    bfd: dict | None  # chimeha.runtime.bfd.BfdManager.snapshot(), None without bfd_instance
    # chimeha.runtime.proc_monitor.ProcessMonitor.status(): name -> {up, pids, pending, source}
    track_processes: dict | None


STAT_KEYS = ("connections", "packets_in", "packets_out", "bytes_in", "bytes_out")


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _str(value: Any, default: str = "") -> str:
    return default if value is None else str(value)


def _key(value: Any) -> str:
    """Enum members (e.g. vrrp.packet.DropReason) by value, anything else by str()."""
    if isinstance(value, Enum):
        value = value.value
    return str(value)


def _state(value: Any) -> str:
    if isinstance(value, Enum):
        return value.name.upper()
    return _str(value, "INIT").upper() or "INIT"


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {_key(k): _int(v) for k, v in value.items()}


def _transition(value: Any) -> Transition | None:
    if not isinstance(value, dict):
        return None
    return {
        "at": _float(value.get("at")) or 0.0,
        "from": _str(value.get("from"), "?"),
        "to": _str(value.get("to"), "?"),
        "reason": _str(value.get("reason")),
    }


def _instance(name: str, raw: Any) -> InstanceStatus:
    raw = raw if isinstance(raw, dict) else {}
    sb = raw.get("split_brain")
    if isinstance(sb, bool):  # accept a bare flag too
        sb = {"active": sb}
    sb = sb if isinstance(sb, dict) else {}
    fo = raw.get("failovers")
    fo = fo if isinstance(fo, dict) else {}
    recent = [f for f in (_float(x) for x in (fo.get("recent") or [])) if f is not None]
    base = _int(raw.get("base_priority"), 0)
    master = raw.get("master_address")
    return {
        "name": _str(raw.get("name"), name),
        "state": _state(raw.get("state")),
        "vrid": _int(raw.get("vrid")),
        "version": _int(raw.get("version"), 2),
        "interface": _str(raw.get("interface")),
        "base_priority": base,
        "effective_priority": _int(raw.get("effective_priority"), base),
        "master_address": None if master in (None, "") else str(master),
        "vips": [str(v) for v in (raw.get("vips") or [])],
        "vips_owned": bool(raw.get("vips_owned", False)),
        "advert_interval": _float(raw.get("advert_interval")) or 1.0,
        **{k: _int(raw.get(k)) for k in COUNTER_KEYS},
        "drops_by_reason": _counts(raw.get("drops_by_reason")),
        "last_transition": _transition(raw.get("last_transition")),
        "split_brain": {
            "active": bool(sb.get("active", False)),
            "peer": None if sb.get("peer") in (None, "") else str(sb.get("peer")),
            "since": _float(sb.get("since")),
        },
        "failovers": {
            "count": _int(fo.get("count"), len(recent)),
            "last_seconds": _float(fo.get("last_seconds")) if fo.get("last_seconds") is not None
            else (recent[-1] if recent else None),
            "recent": recent,
        },
        "track_scripts": [str(s) for s in (raw.get("track_scripts") or [])],
        "faults": [str(f) for f in (raw.get("faults") or [])],
        "sync_group": None if raw.get("sync_group") in (None, "") else str(raw.get("sync_group")),
    }


def instance_status(name: str, raw: Any) -> InstanceStatus:
    """One entry of ``instances`` normalized as :func:`normalize` does (never raises)."""
    return _instance(name, raw)


def _script(name: str, raw: Any) -> ScriptStatus:
    raw = raw if isinstance(raw, dict) else {}
    result = raw.get("result")
    if isinstance(result, bool):
        result = "ok" if result else "failed"
    result = _str(result, "unknown").lower()
    if result not in ("ok", "failed", "unknown"):
        result = "unknown"
    last_exit = raw.get("last_exit")
    return {
        "name": _str(raw.get("name"), name),
        "result": result,
        "last_exit": None if last_exit is None else _int(last_exit),
        "last_run_at": _float(raw.get("last_run_at")),
        "detail": _str(raw.get("detail")),
        "weight": _int(raw.get("weight")),
    }


def _stats(raw: Any) -> dict[str, int]:
    raw = raw if isinstance(raw, dict) else {}
    return {k: _int(raw.get(k)) for k in STAT_KEYS}


def _real_server(raw: Any) -> RealServerStatus:
    raw = raw if isinstance(raw, dict) else {}
    port = raw.get("port")
    return {
        "address": _str(raw.get("address"), "?"),
        "port": None if port is None else _int(port),
        "healthy": bool(raw.get("healthy", False)),
        "weight": _int(raw.get("weight")),  # None (not in the data plane) counts as 0
        "detail": _str(raw.get("detail")),
        "stats": _stats(raw.get("stats")),
    }


def _virtual_server(raw: Any) -> VirtualServerStatus:
    raw = raw if isinstance(raw, dict) else {}
    address, port, fwmark = raw.get("address"), raw.get("port"), raw.get("fwmark")
    protocol = _str(raw.get("protocol"), "TCP").upper()
    name = raw.get("name") or raw.get("virtual_server")  # runtime.lvs_manager says virtual_server
    if not name:
        name = f"fwmark {fwmark}/{protocol}" if fwmark is not None else f"{address}:{port}/{protocol}"
    rss = [_real_server(r) for r in (raw.get("real_servers") or [])]
    given = raw.get("stats") or raw.get("counters")
    stats = _stats(given) if isinstance(given, dict) and any(k in given for k in STAT_KEYS) else {
        k: sum(r["stats"][k] for r in rss) for k in STAT_KEYS}
    dataplane = raw.get("dataplane")
    active = raw.get("active")
    if active is None:  # not reported: programmed when a data plane carries an in-service real server
        active = dataplane not in (None, "") and any(
            isinstance(r, dict) and r.get("in_service") for r in raw.get("real_servers") or [])
    return {
        "name": str(name),
        "address": None if address is None else str(address),
        "port": None if port is None else _int(port),
        "fwmark": None if fwmark is None else _int(fwmark),
        "protocol": protocol,
        "lb_algo": _str(raw.get("lb_algo"), "wlc"),
        "lb_kind": _str(raw.get("lb_kind"), "NAT"),
        "dataplane": None if dataplane in (None, "") else str(dataplane),
        "active": bool(active),
        "real_servers": rss,
        "stats": stats,
    }


def normalize(raw: Any) -> Snapshot:
    """Return a complete :class:`Snapshot` from whatever the daemon produced.

    Missing keys get defaults, wrong types are coerced or dropped; this never
    raises, so a half-built or buggy snapshot degrades the display instead of
    killing the control socket or the status page.
    """
    raw = raw if isinstance(raw, dict) else {}
    node = raw.get("node") if isinstance(raw.get("node"), dict) else {}
    instances = raw.get("instances") if isinstance(raw.get("instances"), dict) else {}
    scripts = raw.get("scripts") if isinstance(raw.get("scripts"), dict) else {}
    vss = raw.get("virtual_servers") if isinstance(raw.get("virtual_servers"), list) else []
    return {
        "schema": SCHEMA_VERSION,
        "taken_at": _float(raw.get("taken_at")) or 0.0,
        "node": {
            "router_id": _str(node.get("router_id")),
            "hostname": _str(node.get("hostname")),
            "pid": _int(node.get("pid")),
            "started_at": _float(node.get("started_at")),
            "config_path": _str(node.get("config_path")),
            "config_loaded_at": _float(node.get("config_loaded_at")),
            "reloads": _int(node.get("reloads")),
        },
        "instances": {str(k): _instance(str(k), v) for k, v in instances.items()},
        "scripts": {str(k): _script(str(k), v) for k, v in scripts.items()},
        "virtual_servers": [_virtual_server(v) for v in vss],
        "drops_by_reason": _counts(raw.get("drops_by_reason")),
        "bgp": raw.get("bgp") if isinstance(raw.get("bgp"), dict) else None,  # chimeha.runtime.bgp
        "bfd": raw.get("bfd") if isinstance(raw.get("bfd"), dict) else None,  # chimeha.runtime.bfd
        "track_processes": raw.get("track_processes") if isinstance(raw.get("track_processes"), dict) else None,
        # conntrackd state (global_defs lvs_sync_daemon, chimeha.runtime.conntrackd)
        "lvs_sync": raw.get("lvs_sync") if isinstance(raw.get("lvs_sync"), dict) else None,
    }
