"""keepalived-compatible dumps: SIGUSR1 data, SIGUSR2 stats, SIGRTMIN+2 JSON.

keepalived writes ``/tmp/keepalived.data`` on SIGUSR1, ``/tmp/keepalived.stats``
on SIGUSR2 and ``/tmp/keepalived.json`` on its JSON signal (``keepalived
--signum=JSON`` prints 36, i.e. SIGRTMIN+2 on glibc). Operators have scripts
that send those signals and read those files, so chime-ha answers the same
signals at the same default paths, in a text layout an operator used to
keepalived recognises: section banners, ``Key = value`` lines, and the stats
file's exact grouping (Advertisements, Packet Errors, Authentication Errors,
Priority Zero). Drop reasons keepalived has no line for (checksum, VRID, ...)
are listed under an extra ``Other Drops`` group.

The layout was written from dumps measured with keepalived 2.2.7, not from its
source. Files are created mode 0600 and replaced atomically, so a reader never
sees half a dump and a symlink planted in /tmp is replaced, not followed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from .schema import InstanceStatus, Snapshot

DATA_PATH = "/tmp/keepalived.data"
STATS_PATH = "/tmp/keepalived.stats"
JSON_PATH = "/tmp/keepalived.json"

# keepalived's numeric state in its JSON dump.
_STATE_NUMBER = {"INIT": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3, "STOP": 0}

# keepalived stats lines, in its order, and the drop reasons counted under each.
# Reasons are matched by keyword so the mapping survives renames in the enum.
_PACKET_ERRORS = (
    ("Length", ("length", "short", "truncat")),
    ("TTL", ("ttl", "hop")),
    ("Invalid Type", ("type", "version")),
    ("Advertisement Interval", ("interval",)),
    ("Address List", ("address", "addr_list", "ip_count")),
)
_AUTH_ERRORS = (
    ("Invalid Type", ("auth_type_invalid", "invalid_auth", "unknown_auth")),
    ("Type Mismatch", ("auth_type_mismatch", "authtype_mismatch", "auth_mismatch_type")),
    ("Failure", ("auth",)),
)


@dataclass(frozen=True)
class DumpPaths:
    """Where the three dumps go (keepalived's paths unless configured)."""

    data: str = DATA_PATH
    stats: str = STATS_PATH
    json: str = JSON_PATH

    def of(self, kind: str) -> str:
        """The path of dump ``kind`` (a key of :data:`RENDERERS`)."""
        return {"data": self.data, "stats": self.stats, "json": self.json}[kind]


def _classify(drops: dict[str, int]) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Split drop counts into keepalived's packet and auth error lines plus the rest."""
    packet = {label: 0 for label, _ in _PACKET_ERRORS}
    auth = {label: 0 for label, _ in _AUTH_ERRORS}
    other: dict[str, int] = {}
    for reason, count in sorted(drops.items()):
        key = reason.lower()
        if "auth" in key:
            for label, words in _AUTH_ERRORS:
                if any(w in key for w in words):
                    auth[label] += count
                    break
            continue
        for label, words in _PACKET_ERRORS:
            if any(w in key for w in words):
                packet[label] += count
                break
        else:
            other[reason] = count
    return packet, auth, other


def _stamp(at: float | None) -> str:
    if at is None:
        return "never"
    frac = f"{at % 1:.6f}"[2:]
    return f"{at:.6f} ({time.strftime('%a %b %d %H:%M:%S', time.localtime(at))}.{frac} {time.strftime('%Y', time.localtime(at))})"


def render_stats(snap: Snapshot) -> str:
    """The SIGUSR2 stats file."""
    out: list[str] = []
    for name, inst in snap["instances"].items():
        packet, auth, other = _classify(inst["drops_by_reason"])
        out.append(f"VRRP Instance: {name}")
        out += ["  Advertisements:", f"    Received: {inst['adverts_received']}", f"    Sent: {inst['adverts_sent']}"]
        out.append(f"  Became master: {inst['became_master']}")
        out.append(f"  Released master: {inst['released_master']}")
        out.append("  Packet Errors:")
        out += [f"    {label}: {n}" for label, n in packet.items()]
        out.append("  Authentication Errors:")
        out += [f"    {label}: {n}" for label, n in auth.items()]
        out += ["  Priority Zero:", f"    Received: {inst['priority_zero_received']}",
                f"    Sent: {inst['priority_zero_sent']}"]
        if other:
            out.append("  Other Drops:")
            out += [f"    {reason}: {n}" for reason, n in other.items()]
    if snap["drops_by_reason"]:
        out.append("Unmatched VRRP packets:")
        out += [f"  {reason}: {n}" for reason, n in sorted(snap["drops_by_reason"].items())]
    return "\n".join(out) + "\n"


def _instance_data(name: str, inst: InstanceStatus) -> list[str]:
    lt = inst["last_transition"]
    sb = inst["split_brain"]
    lines = [
        f" VRRP Instance = {name}",
        f"   VRRP Version = {inst['version']}",
        f"   State = {inst['state']}",
        f"   Last transition = {_stamp(lt['at'] if lt else None)}",
    ]
    if lt:
        lines.append(f"   Last transition reason = {lt['from']} -> {lt['to']}: {lt['reason']}")
    lines += [
        f"   Interface = {inst['interface'] or '(unknown)'}",
        f"   Virtual Router ID = {inst['vrid']}",
        f"   Priority = {inst['base_priority']}",
        f"   Effective priority = {inst['effective_priority']}",
        f"   Advert interval = {inst['advert_interval']:g} sec",
        f"   Master = {inst['master_address'] or '(unknown)'}",
        f"   Split brain = {'yes, with ' + (sb['peer'] or '?') + ' since ' + _stamp(sb['since']) if sb['active'] else 'no'}",
        f"   Failovers measured = {inst['failovers']['count']}",
    ]
    if inst["failovers"]["last_seconds"] is not None:
        lines.append(f"   Last failover = {inst['failovers']['last_seconds']:.3f} sec")
    owned = "set" if inst["vips_owned"] else "not set"
    lines.append(f"   Virtual IP ({len(inst['vips'])}):")
    lines += [f"     {vip} dev {inst['interface'] or '?'} {owned}" for vip in inst["vips"]]
    if inst["track_scripts"]:
        lines.append("   Tracked scripts :")
        lines += [f"     {s}" for s in inst["track_scripts"]]
    return lines


def render_data(snap: Snapshot) -> str:
    """The SIGUSR1 data dump (VRRP and virtual servers in one file)."""
    node = snap["node"]
    out = ["------< Global definitions >------",
           f" Router ID = {node['router_id'] or '(unset)'}",
           f" Hostname = {node['hostname']}",
           f" PID = {node['pid']}",
           f" Configuration file = {node['config_path']}",
           f" Configuration loaded = {_stamp(node['config_loaded_at'])}",
           f" Reloads = {node['reloads']}",
           f" Dump taken = {_stamp(snap['taken_at'] or time.time())}",
           "------< VRRP Topology >------"]
    for name, inst in snap["instances"].items():
        out += _instance_data(name, inst)
    out.append("------< VRRP Scripts >------")
    for name, sc in snap["scripts"].items():
        status = {"ok": "GOOD", "failed": "BAD"}.get(sc["result"], "INIT")
        out += [f" VRRP Script = {name}",
                f"   Weight = {sc['weight']}",
                f"   Result = {'(none)' if sc['last_exit'] is None else sc['last_exit']}",
                f"   Last run = {_stamp(sc['last_run_at'])}",
                f"   Status = {status}"]
        if sc["detail"]:
            out.append(f"   Detail = {sc['detail']}")
    out.append("------< LVS Topology >------")
    for vs in snap["virtual_servers"]:
        out += [f" VS = {vs['name']}",
                f"   lb_algo = {vs['lb_algo']}",
                f"   lb_kind = {vs['lb_kind']}",
                f"   Data plane = {vs['dataplane'] or '(none)'}",
                f"   Active = {'yes' if vs['active'] else 'no'}"]
        for rs in vs["real_servers"]:
            where = rs["address"] if rs["port"] is None else f"{rs['address']}:{rs['port']}"
            out += [f"   RS = {where}",
                    f"     Weight = {rs['weight']}",
                    f"     Alive = {'yes' if rs['healthy'] else 'no'}"]
            if rs["detail"]:
                out.append(f"     Detail = {rs['detail']}")
    return "\n".join(out) + "\n"


def render_json(snap: Snapshot) -> str:
    """The JSON dump: keepalived's ``[{"data": ..., "stats": ...}]`` list, one per instance.

    keepalived's key names are kept where the meaning is the same; chime-ha's
    extra facts (state name, master address, split brain, drops by reason,
    failovers) are added beside them.
    """
    out: list[dict[str, Any]] = []
    for name, inst in snap["instances"].items():
        packet, auth, _ = _classify(inst["drops_by_reason"])
        lt = inst["last_transition"]
        out.append({
            "data": {
                "iname": name,
                "ifp_ifname": inst["interface"],
                "vrid": inst["vrid"],
                "version": inst["version"],
                "base_priority": inst["base_priority"],
                "effective_priority": inst["effective_priority"],
                "adver_int": inst["advert_interval"],
                "state": _STATE_NUMBER.get(inst["state"], 0),
                "state_name": inst["state"],
                "vipset": inst["vips_owned"],
                "vips": list(inst["vips"]),
                "track_script": list(inst["track_scripts"]),
                "last_transition": lt["at"] if lt else 0,
                "last_transition_reason": lt["reason"] if lt else "",
                "master_address": inst["master_address"],
                "split_brain": dict(inst["split_brain"]),
                "failovers": dict(inst["failovers"]),
            },
            "stats": {
                "advert_rcvd": inst["adverts_received"],
                "advert_sent": inst["adverts_sent"],
                "become_master": inst["became_master"],
                "release_master": inst["released_master"],
                "packet_len_err": packet["Length"],
                "advert_interval_err": packet["Advertisement Interval"],
                "ip_ttl_err": packet["TTL"],
                "invalid_type_rcvd": packet["Invalid Type"],
                "addr_list_err": packet["Address List"],
                "invalid_authtype": auth["Invalid Type"],
                "authtype_mismatch": auth["Type Mismatch"],
                "auth_failure": auth["Failure"],
                "pri_zero_rcvd": inst["priority_zero_received"],
                "pri_zero_sent": inst["priority_zero_sent"],
                "drops_by_reason": dict(inst["drops_by_reason"]),
            },
        })
    return json.dumps(out, separators=(",", ":")) + "\n"


RENDERERS = {"data": render_data, "stats": render_stats, "json": render_json}


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` (mode 0600) without ever exposing a partial file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".chime-ha-dump.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_dump(kind: str, snap: Snapshot, paths: DumpPaths = DumpPaths()) -> str:
    """Write one dump (``data``, ``stats`` or ``json``) and return its path."""
    if kind not in RENDERERS:
        raise ValueError(f"unknown dump kind {kind!r} (expected one of: {', '.join(RENDERERS)})")
    path = paths.of(kind)
    write_atomic(path, RENDERERS[kind](snap))
    return path

