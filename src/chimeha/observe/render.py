"""``chime-ha status`` as text an operator reads at a glance."""

from __future__ import annotations

import time

from .schema import COUNTER_KEYS, Snapshot

# Counters the "adverts" row already shows.
_SHOWN_ABOVE = ("adverts_sent", "adverts_received", "priority_zero_sent", "priority_zero_received")


def _when(at: float | None) -> str:
    if at is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def _ago(at: float | None, now: float) -> str:
    if at is None:
        return ""
    secs = max(0.0, now - at)
    if secs < 120:
        return f" ({secs:.0f} s ago)"
    if secs < 7200:
        return f" ({secs / 60:.0f} min ago)"
    return f" ({secs / 3600:.1f} h ago)"


def _wrap(parts: list[str], width: int) -> list[str]:
    """``parts`` joined by ", " into lines of at most ``width`` characters (a part is never split)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            if lines:
                lines[-1] += ","
            lines.append(part)
    return lines or ["none"]


def render_status(snap: Snapshot, now: float | None = None) -> str:
    """The whole status as plain text (no colours: it is often piped or mailed)."""
    now = now if now is not None else (snap["taken_at"] or time.time())
    node = snap["node"]
    out = [f"chime-ha on {node['hostname'] or '?'}"
           + (f" (router_id {node['router_id']})" if node["router_id"] else "")
           + (f", pid {node['pid']}" if node["pid"] else ""),
           f"config {node['config_path'] or '?'}, loaded {_when(node['config_loaded_at'])}, "
           f"{node['reloads']} reload(s)"]
    for name, inst in snap["instances"].items():
        sb = inst["split_brain"]
        state = "SPLIT BRAIN" if sb["active"] else inst["state"]
        out += ["", f"VRRP instance {name}: {state}  (VRID {inst['vrid']} on {inst['interface'] or '?'}, VRRPv{inst['version']})"]
        rows = []
        if sb["active"]:
            rows.append(("split brain", f"another master {sb['peer'] or '?'} since {_when(sb['since'])}{_ago(sb['since'], now)}"))
        rows.append(("priority", f"{inst['effective_priority']} effective (base {inst['base_priority']})"))
        master = inst["master_address"] or "unknown"
        if inst["state"] == "MASTER":
            master += " (this node)"
        rows.append(("master", master))
        rows.append(("VIPs", (", ".join(inst["vips"]) or "none") + (" (held here)" if inst["vips_owned"] else " (not held here)")))
        rows.append(("adverts", f"sent {inst['adverts_sent']}, received {inst['adverts_received']}"
                                f" (priority 0: sent {inst['priority_zero_sent']}, received {inst['priority_zero_received']})"))
        counters = [f"{k} {inst[k]}" for k in COUNTER_KEYS if k not in _SHOWN_ABOVE]
        rows += [("counters" if i == 0 else "", line) for i, line in enumerate(_wrap(counters, 84))]
        drops = inst["drops_by_reason"]
        rows.append(("dropped", ", ".join(f"{r} {n}" for r, n in sorted(drops.items())) if sum(drops.values()) else "none"))
        lt = inst["last_transition"]
        rows.append(("last change", f"{lt['from']} -> {lt['to']} at {_when(lt['at'])}{_ago(lt['at'], now)}: {lt['reason']}"
                     if lt else "none since start"))
        fo = inst["failovers"]
        rows.append(("failovers", f"{fo['count']} measured, last {fo['last_seconds']:.3f} s"
                     if fo["last_seconds"] is not None else f"{fo['count']} measured"))
        if inst["track_scripts"]:
            rows.append(("tracks", ", ".join(inst["track_scripts"])))
        out += [f"  {k:<12} {v}" for k, v in rows]
    if snap["scripts"]:
        out += ["", "Tracked scripts:"]
        for name, sc in snap["scripts"].items():
            code = "" if sc["last_exit"] is None else f" (exit {sc['last_exit']})"
            detail = f"  {sc['detail']}" if sc["detail"] else ""
            out.append(f"  {name:<16} {sc['result']:<8}{code} last run {_when(sc['last_run_at'])}{detail}")
    if snap["virtual_servers"]:
        out += ["", "Virtual servers:"]
        for vs in snap["virtual_servers"]:
            out.append(f"  {vs['name']}  {vs['lb_algo']}/{vs['lb_kind']}  data plane {vs['dataplane'] or 'none'}"
                       f"  {'active here' if vs['active'] else 'not active here'}")
            for rs in vs["real_servers"]:
                where = rs["address"] if rs["port"] is None else f"{rs['address']}:{rs['port']}"
                detail = f"  {rs['detail']}" if rs["detail"] else ""
                out.append(f"    {where:<24} {'up' if rs['healthy'] else 'DOWN':<5} weight {rs['weight']:<4}"
                           f" connections {rs['stats']['connections']}{detail}")
    if snap["drops_by_reason"]:
        out += ["", "VRRP packets matching no instance: "
                + ", ".join(f"{r} {n}" for r, n in sorted(snap["drops_by_reason"].items()))]
    return "\n".join(out) + "\n"
