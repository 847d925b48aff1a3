"""Scenarios for ``chime-ha simulate``: configs + timed events -> timeline and warnings.

Pure (no files, no clock): the CLI loads the configs and hands the models
here. :func:`parse_event` reads the event syntax ``"T NODE ACTION [ARG]"``,
:func:`lint` flags configurations prone to split brain or flapping, and
:func:`simulate` runs the :class:`~chimeha.sim.segment.Segment` and returns a
JSON-able result with the predicted VIP move times.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from chimeha.sim.bfd import bfd_models
from chimeha.sim.segment import ScriptModel, Segment
from chimeha.vrrp.events import InstanceSpec
from chimeha.vrrp.from_config import instance_specs, sync_groups
from chimeha.vrrp.timing import master_down_interval, skew_time, wire_interval

ACTIONS = {
    "check-fail": 1, "check-ok": 1, "link-down": 0, "link-up": 0, "stop": 0, "start": 0,
    "crash": 0, "track-down": 1, "track-up": 1, "partition": 0, "heal": 0, "input-cut": 0, "input-restore": 0,
    "reload": 0,
}


class ScenarioError(ValueError):
    """Bad user input to a scenario (an event, a node name, an address)."""


@dataclass(frozen=True)
class Event:
    """One operator event: at ``at`` seconds, ``action`` on ``node`` (``arg``: script/track name)."""

    at: float
    node: str
    action: str
    arg: str | None = None
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.at:g} {self.node} {self.action}" + (f" {self.arg}" if self.arg else "")


@dataclass
class NodeInput:
    """One node of a scenario: its name, address and loaded config model."""

    name: str
    config: Any
    address: str = ""
    specs: list[InstanceSpec] = field(default_factory=list)


def parse_event(text: str) -> Event:
    """Parse ``"T NODE ACTION [ARG]"`` (T in seconds, an optional trailing ``s``)."""
    words = text.split()
    if len(words) < 3:
        raise ScenarioError(f"event {text!r}: expected 'TIME NODE ACTION [ARG]', e.g. '2.0 server1 check-fail chk_server'")
    t_word, node, action, *rest = words
    try:
        at = float(t_word[:-1] if t_word.endswith("s") else t_word)
    except ValueError:
        raise ScenarioError(f"event {text!r}: time {t_word!r} is not a number of seconds") from None
    if at < 0 or at != at or at == float("inf"):
        raise ScenarioError(f"event {text!r}: time must be a finite number >= 0")
    if action not in ACTIONS:
        raise ScenarioError(f"event {text!r}: unknown action {action!r} (known: {', '.join(ACTIONS)})")
    if len(rest) != ACTIONS[action]:
        need = "a script/track name" if ACTIONS[action] else "no argument"
        raise ScenarioError(f"event {text!r}: {action} takes {need}")
    return Event(at, node, action, rest[0] if rest else None, text.strip())


def default_address(index: int, family: int) -> str:
    """An assumed primary address for the node at ``index`` (documentation ranges)."""
    return f"192.0.2.{index + 1}" if family == 4 else f"fe80::{index + 1:x}"


def prepare(nodes: list[NodeInput]) -> None:
    """Fill in addresses and InstanceSpecs for every node."""
    seen = set()
    for i, n in enumerate(nodes):
        if n.name in seen:
            raise ScenarioError(f"two nodes are named {n.name!r}; use NAME=path to name them")
        seen.add(n.name)
        fam = next((inst.family for inst in n.config.instances.values()), 4)
        if n.address:
            try:
                ipaddress.ip_address(n.address)
            except ValueError:
                raise ScenarioError(f"node {n.name}: {n.address!r} is not an IP address") from None
        else:
            src = next((inst.unicast_src_ip or inst.mcast_src_ip for inst in n.config.instances.values()
                        if inst.unicast_src_ip or inst.mcast_src_ip), None)
            # a bfd_instance's source_ip is this node's address too (and BFD pairs nodes by address)
            src = src or next((b.source for b in bfd_models(n.config) if b.source and (":" in b.source) == (fam == 6)),
                              None)
            n.address = src or default_address(i, fam)
        n.specs = instance_specs(n.config)


def lint(nodes: list[NodeInput]) -> list[str]:
    """Warnings about configs prone to split brain or flapping, across the nodes."""
    out: list[str] = []
    by_vrid: dict[tuple[int, int], list[tuple[str, InstanceSpec]]] = {}
    for n in nodes:
        for s in n.specs:
            by_vrid.setdefault((s.vrid, s.family), []).append((n.name, s))
    for (vrid, fam), members in sorted(by_vrid.items()):
        label = f"vrid {vrid} (IPv{fam}, {', '.join(sorted({s.name for _, s in members}))})"
        if len(members) == 1:
            out.append(f"{label}: only {members[0][0]} runs it; nothing to fail over to")
            continue
        owners = [n for n, s in members if s.priority == 255]
        if len(owners) > 1:
            out.append(f"{label}: {len(owners)} address owners (priority 255) on {', '.join(owners)}: "
                       "when two are MASTER at once, the one that hears the other lowers itself to 254 "
                       "until reload and yields (keepalived's CONFIGURATION ERROR); use one owner")
        prios: dict[int, list[str]] = {}
        for n, s in members:
            prios.setdefault(s.priority, []).append(n)
        for p, ns in sorted(prios.items()):
            if len(ns) > 1 and p != 255:
                out.append(f"{label}: equal priority {p} on {', '.join(ns)}: the winner depends on start order "
                           "and the higher primary address; use distinct priorities (or nopreempt)")
        for attr, what in (("version", "vrrp_version"), ("advert_int", "advert_int"),
                           ("down_timer_adverts", "down_timer_adverts"), ("auth_type", "auth_type"),
                           ("auth_pass", "auth_pass")):
            vals = {n: getattr(s, attr) for n, s in members}
            if len({str(v) for v in vals.values()}) > 1:
                shown = ", ".join(f"{n}={v}" for n, v in vals.items())
                if attr == "advert_int" and all(s.version == 3 for _, s in members):
                    out.append(f"{label}: mismatched advert_int ({shown}): v3 backups adopt the master's interval, "
                               "so failover time depends on who is master")
                else:
                    out.append(f"{label}: mismatched {what} ({shown}): adverts are dropped by the other side, "
                               "every node becomes MASTER (split brain)")
        addr_sets = {n: tuple(sorted(s.advert_addresses)) for n, s in members}
        if len(set(addr_sets.values())) > 1:
            out.append(f"{label}: virtual_ipaddress lists differ between nodes: adverts are dropped "
                       "(address-list check), split brain")
        out.extend(_weight_warnings(label, members))
    return out


def _weight_warnings(label: str, members: list[tuple[str, InstanceSpec]]) -> list[str]:
    out = []
    for n, s in members:
        others = [o.priority for m, o in members if m != n]
        if not others:
            continue
        for t in s.tracks:
            if t.weight == 0:
                continue
            if s.priority == 255:
                out.append(f"{label}: {n}: weight {t.weight} of {t.name} is ignored on an address owner "
                           "(priority 255); use weight 0 to fail over")
            elif t.weight < 0 and s.priority > max(others) and s.priority + t.weight >= max(others):
                out.append(f"{label}: {n}: {t.name} failing lowers priority {s.priority} by {-t.weight} to "
                           f"{s.priority + t.weight}, not below {max(others)}: the VIP will not move")
    return out


def scripts_of(config: Any) -> list[ScriptModel]:
    return [ScriptModel(name, s.interval, s.rise, s.fall, s.init_fail) for name, s in config.vrrp_scripts.items()]


def simulate(nodes: list[NodeInput], events: list[Event], until: float | None = None,
             latency: float = 0.0) -> dict:
    """Run the scenario; returns ``{nodes, warnings, formulas, timeline, vip_moves, final}``."""
    prepare(nodes)
    names = [n.name for n in nodes]
    for e in events:
        if e.node not in names:
            raise ScenarioError(f"event '{e}': unknown node {e.node!r} (known: {', '.join(names)})")
        if e.action in ("check-fail", "check-ok"):
            cfg = next(n.config for n in nodes if n.name == e.node)
            if e.arg not in cfg.vrrp_scripts:
                known = ", ".join(cfg.vrrp_scripts) or "none"
                raise ScenarioError(f"event '{e}': {e.node} has no vrrp_script {e.arg!r} (known: {known})")
    seg = Segment(latency)
    for n in nodes:
        seg.add_node(n.name, n.address, n.specs, groups=sync_groups(n.config), scripts=scripts_of(n.config),
                     bfd=bfd_models(n.config))
    seg.start(0.0)
    for e in sorted(events, key=lambda e: e.at):
        _schedule(seg, e)
    if until is None:
        slowest = max((master_down_interval(s.priority, s.advert_int, s.version, s.down_timer_adverts)
                       + s.preempt_delay for n in nodes for s in n.specs), default=3.0)
        script_lag = max((sc.interval * max(sc.rise, sc.fall) for n in nodes for sc in scripts_of(n.config)),
                         default=0.0)
        last = max((e.at for e in events), default=0.0)
        until = last + 2 * slowest + script_lag + 1.0
    seg.run_until(until)
    return {
        "nodes": [{"name": n.name, "address": n.address,
                   "instances": [s.name for s in n.specs]} for n in nodes],
        "warnings": lint(nodes),
        "formulas": _formulas(nodes),
        "events": [str(e) for e in sorted(events, key=lambda e: e.at)],
        "until": until,
        "timeline": [{"at": round(r.at, 6), "node": r.node, "instance": r.instance, "kind": r.kind,
                      "text": r.text, **r.data} for r in seg.timeline],
        "vip_moves": _vip_moves(seg, events),
        "split_brain": _split_episodes(seg, until),
        "drops": {f"{node}:{reason}": c for (node, reason), c in sorted(seg.drops.items())},
        "final": _final(seg, nodes),
    }


# Node-level events: action -> the Segment method that schedules it.
_NODE_EVENTS = {
    "link-down": "link_down", "link-up": "link_up", "stop": "stop_node", "start": "start_node",
    "crash": "crash_node", "partition": "partition", "heal": "heal", "reload": "reload",
    "input-cut": "cut_input", "input-restore": "restore_input",
}


def _schedule(seg: Segment, e: Event) -> None:
    a = e.action
    if a in ("check-fail", "check-ok"):
        (seg.check_fail if a == "check-fail" else seg.check_ok)(e.node, e.arg, at=e.at)
    elif a in ("track-down", "track-up"):
        seg.set_tracked(e.node, e.arg, a == "track-up", at=e.at)
    else:
        getattr(seg, _NODE_EVENTS[a])(e.node, at=e.at)


def _formulas(nodes: list[NodeInput]) -> list[dict]:
    out = []
    for n in nodes:
        for s in n.specs:
            iv = wire_interval(s.advert_int, s.version)
            out.append({
                "node": n.name, "instance": s.name, "vrid": s.vrid, "priority": s.priority,
                "version": s.version, "advert_int": iv,
                "skew_time": skew_time(s.priority, iv, s.version),
                "master_down_interval": master_down_interval(s.priority, iv, s.version, s.down_timer_adverts),
            })
    return out


def _vip_moves(seg: Segment, events: list[Event]) -> list[dict]:
    """Each change of a VIP's sole holder, with the time since the event that caused it."""
    moves = []
    holder: dict[str, str | None] = {}
    current: dict[str, set[str]] = {}
    for r in seg.timeline:
        if r.kind != "vip":
            continue
        vip = r.data["vip"]
        hs = current.setdefault(vip, set())
        if r.text.endswith("added"):
            hs.add(r.node)
        else:
            hs.discard(r.node)
        if r.text.endswith("added") and holder.get(vip) != r.node:
            prev = holder.get(vip)
            cause = max((e for e in events if e.at <= r.at), key=lambda e: e.at, default=None)
            moves.append({
                "at": round(r.at, 6), "vip": vip, "from": prev, "to": r.node,
                "after_event": str(cause) if cause else "start",
                "delay": round(r.at - cause.at, 6) if cause else round(r.at, 6),
            })
            holder[vip] = r.node
    return moves


def _split_episodes(seg: Segment, until: float) -> list[dict]:
    """Each split-brain episode a master reported: start, end (None: still on at ``until``), peers."""
    episodes: list[dict] = []
    open_: dict[tuple[str, str], dict] = {}
    for r in seg.timeline:
        key = (r.node, r.instance)
        if r.kind == "split-brain":
            ep = open_.get(key)
            if ep is None:
                ep = {"node": r.node, "instance": r.instance, "start": round(r.at, 6), "end": None,
                      "peers": [], "reason": r.text.removeprefix("split brain: "), "end_reason": None}
                open_[key] = ep
                episodes.append(ep)
            if r.data.get("peer") not in ep["peers"]:
                ep["peers"].append(r.data.get("peer"))
        elif r.kind == "split-brain-end" and key in open_:
            ep = open_.pop(key)
            ep["end"], ep["end_reason"] = round(r.at, 6), r.text.removeprefix("split brain over: ")
    return episodes


def _final(seg: Segment, nodes: list[NodeInput]) -> dict:
    out = {}
    for n in nodes:
        for s in n.specs:
            out.setdefault(s.name, {})[n.name] = str(seg.state(n.name, s.name)) if seg.nodes[n.name].running else "STOPPED"
    return out


def format_text(result: dict) -> str:
    """Human-readable rendering of :func:`simulate`'s result."""
    lines = ["Nodes:"]
    width = max([len(n["name"]) for n in result["nodes"]] + [8])
    for n in result["nodes"]:
        lines.append(f"  {n['name']:<{width}} {n['address']:<18} instances: {', '.join(n['instances']) or '-'}")
    lines.append("Timers (RFC formulas):")
    for f in result["formulas"]:
        lines.append(f"  {f['node']}/{f['instance']}: vrid {f['vrid']} v{f['version']} priority {f['priority']}, "
                     f"advert_int {f['advert_int']:g} s, skew {f['skew_time']:.3f} s, "
                     f"master down interval {f['master_down_interval']:.3f} s")
    if result["warnings"]:
        lines.append("Warnings:")
        lines.extend(f"  ! {w}" for w in result["warnings"])
    lines.append(f"Timeline (0 .. {result['until']:g} s):")
    wwho = max([len(f"{r['node']}/{r['instance']}") for r in result["timeline"]] + [12])
    for r in result["timeline"]:
        who = f"{r['node']}/{r['instance']}" if r["instance"] else r["node"]
        lines.append(f"  {r['at']:9.3f}  {who:<{wwho}} {r['text']}")
    lines.append("VIP moves:")
    if not result["vip_moves"]:
        lines.append("  (none)")
    for m in result["vip_moves"]:
        src = m["from"] or "nobody"
        lines.append(f"  {m['at']:9.3f}  {m['vip']}: {src} -> {m['to']}  ({m['delay']:.3f} s after {m['after_event']})")
    if result.get("split_brain"):
        lines.append("Split brain (a master heard another master):")
        for ep in result["split_brain"]:
            end = f"{ep['end']:.3f}" if ep["end"] is not None else "(still on)"
            over = f"ended: {ep['end_reason']}" if ep["end_reason"] else f"still on at {result['until']:g} s"
            lines.append(f"  {ep['start']:9.3f} .. {end}  {ep['node']}/{ep['instance']} with "
                         f"{', '.join(ep['peers'])}: {ep['reason']}; {over}")
    if result["drops"]:
        lines.append("Dropped adverts: " + ", ".join(f"{k}={v}" for k, v in result["drops"].items()))
    lines.append("Final states:")
    for inst, states in result["final"].items():
        lines.append(f"  {inst}: " + ", ".join(f"{n}={s}" for n, s in states.items()))
    return "\n".join(lines)
