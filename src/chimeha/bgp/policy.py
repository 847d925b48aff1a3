"""Announce policy: which service prefixes this director announces, from its health.

Theory of operation
-------------------
A director announces a VIP as a host route (RFC 4271 section 9.1: the route
is in our Loc-RIB and our export policy lets it out) only while it can serve
it, so that the upstream router's ECMP set (RFC 2992) holds exactly the
directors that forward. For each ``announce`` address:

* every ``virtual_server`` on that address must have quorum (keepalived's
  quorum: the sum of the live real servers' weights, with hysteresis, as
  computed by :func:`chimeha.lvs.desired.desired_state`);
* if a ``vrrp_instance`` carries the address, that instance must be MASTER
  (BACKUP, FAULT and a stopped instance withdraw);
* every ``track_script`` of the block must pass (its result after rise/fall;
  optional: an operator's own health gate, e.g. the seed's ``pgrep
  chime-server``);
* while the daemon stops, everything is withdrawn (before the data plane
  stops, so the router moves flows away first).

The functions are pure: inputs are the quorum map, the instance states and
``stopping``; the output is the desired set of prefixes plus, for every
prefix held back, the reason in operator words. ``now`` is recorded in the
decision so the adapter can tell when a prefix changed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Mapping

from chimeha.config.model_bgp import BgpConfig


@dataclass(frozen=True)
class Decision:
    """Desired announcements and why each withheld prefix is withheld."""

    announce: frozenset[str] = frozenset()
    withheld: Mapping[str, str] = field(default_factory=dict)
    at: float = 0.0


def _canon(addr: str) -> str:
    return str(ipaddress.ip_address(addr.split("/")[0]))


def inputs(config: Any, quorum: Mapping[str, bool], instance_states: Mapping[str, str]
           ) -> tuple[dict[str, list[tuple[str, bool]]], dict[str, list[tuple[str, str]]]]:
    """Per address: [(virtual server id, has quorum)] and [(instance, state)].

    ``quorum`` maps ``chimeha.lvs.desired.vs_id(vs)`` to the current quorum (a
    virtual server missing from it, e.g. before the first reconcile, counts as
    without quorum); ``instance_states`` maps instance names to MASTER/BACKUP/...
    """
    by_vs: dict[str, list[tuple[str, bool]]] = {}
    for vs in getattr(config, "virtual_servers", ()):
        if not vs.address:
            continue
        vid = f"{vs.protocol} {vs.key}"
        by_vs.setdefault(_canon(vs.address), []).append((vid, bool(quorum.get(vid, False))))
    by_inst: dict[str, list[tuple[str, str]]] = {}
    for name, inst in getattr(config, "instances", {}).items():
        for va in inst.virtual_ipaddresses:
            by_inst.setdefault(_canon(va.address), []).append((name, instance_states.get(name, "INIT")))
    return by_vs, by_inst


def decide(bgp: BgpConfig, by_vs: Mapping[str, list[tuple[str, bool]]],
           by_inst: Mapping[str, list[tuple[str, str]]], *, stopping: bool = False, now: float = 0.0,
           scripts: Mapping[str, bool] | None = None) -> Decision:
    """The prefixes to announce now (see the module docstring for the rules).

    ``scripts``: vrrp_script name -> passing; a tracked script missing from it counts as failing.
    """
    want, withheld = set(), {}
    failing = [n for n in bgp.track_scripts if not (scripts or {}).get(n, False)]
    for a in bgp.announce:
        addr, prefix = a.address, a.prefix
        if stopping:
            withheld[prefix] = "the daemon is stopping"
            continue
        if failing:
            withheld[prefix] = f"vrrp_script {', '.join(failing)} failing"
            continue
        lost = [vid for vid, ok in by_vs.get(addr, ()) if not ok]
        if lost:
            withheld[prefix] = f"virtual server {', '.join(lost)} has no quorum"
            continue
        down = [f"{name} is {state}" for name, state in by_inst.get(addr, ()) if state != "MASTER"]
        if down:
            withheld[prefix] = f"vrrp_instance {', '.join(down)}"
            continue
        if addr not in by_vs and addr not in by_inst:
            withheld[prefix] = "no virtual_server or vrrp_instance has this address"
            continue
        want.add(prefix)
    return Decision(frozenset(want), withheld, now)


def changes(desired: frozenset[str], actual: frozenset[str] | set[str]) -> tuple[list[str], list[str]]:
    """(to announce, to withdraw), sorted: the adapter's diff of desired vs the speaker's RIB."""
    return sorted(set(desired) - set(actual)), sorted(set(actual) - set(desired))
