"""Stateless Maglev steering for ECMP directors (``forwarding direct`` in ``chimeha_bgp``). Pure.

Why: with NAT and masquerade, a flow the router re-hashes to another director
(a director died, or one joined and the hash-threshold split moved) arrives
mid-stream at a director without its conntrack entry; that director NATs it
afresh from its own address and the real server answers the unknown tuple
with a reset. Steering keeps no state at all: in the ``netdev`` ingress hook
(before conntrack, routing and NAT) every packet to an announced
VIP:port is sent on, unchanged, to the real server the service's Maglev
table picks for its source address (``fwd ip to ... device``: the kernel's
neighbour layer fills in the real server's MAC). Every director computes the
same table with the same hash seed, so whichever director a packet reaches,
it reaches the same real server, SYN or mid-stream. The real servers answer
the client directly (direct server return): they hold the VIP on a loopback
interface and route to the clients through the router, as with IPVS ``DR``.

:func:`render` makes the whole table (one ``nft -f`` transaction replaces it);
:func:`services` selects what to steer from the LVS desired state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

TABLE = "chimeha_bgp_steer"
#: Before conntrack (-200) would matter: netdev ingress runs before the IP stack anyway; the
#: priority only orders us among other ingress chains on the device.
PRIORITY = -150
HASHED = ("mh", "sh")


@dataclass(frozen=True)
class Steered:
    """One service to steer: its VIP:port, the hash field and the Maglev table (address per slot)."""

    address: str
    protocol: str  # "tcp" | "udp"
    port: int
    slots: tuple[str | None, ...]
    by_port: bool = False  # mh-port / sh-port: hash the source port too


def _rule(s: Steered, seed: int, device: str) -> str | None:
    live = [f"{i} : {a}" for i, a in enumerate(s.slots) if a]
    if not live:
        return None  # no live real server: not steered, the packet meets the NAT path (which has none)
    field = "ip saddr . th sport" if s.by_port else "ip saddr"
    # A slot without a server is absent from the map: no match, the rule does not apply.
    return (f"ip daddr {s.address} {s.protocol} dport {s.port} fwd ip to jhash {field} mod {len(s.slots)} "
            f"seed {seed:#x} map {{ {', '.join(live)} }} device \"{device}\"")


def render(device_in: str, device_out: str, steered: Iterable[Steered], seed: int) -> str:
    """The ``nft -f`` script: drop any previous table, then (if anything is steered) the new one."""
    lines = [f"table netdev {TABLE} {{}}", f"delete table netdev {TABLE}"]
    rules = [r for r in (_rule(s, seed, device_out) for s in sorted(steered, key=lambda s: (s.address, s.port)))
             if r]
    if rules:
        lines += [f"table netdev {TABLE} {{", "  chain ingress {",
                  f"    type filter hook ingress device \"{device_in}\" priority {PRIORITY}; policy accept;",
                  *(f"    {r}" for r in rules), "  }", "}"]
    return "\n".join(lines) + "\n"


def services(announced: Iterable[str], desired_services: dict, slots_of) -> tuple[list[Steered], list[str]]:
    """What to steer: IPv4 TCP/UDP services on an announced address scheduled by a hash (mh, sh).

    ``desired_services``: ServiceKey -> Service (the LVS manager's desired state, health applied);
    ``slots_of(service)``: the scheduler's table as (kind, [Destination | None]). Returns the steered
    services and why each other service on an announced address is not steered.
    """
    wanted = set(announced)
    out: list[Steered] = []
    skipped: list[str] = []
    for key, svc in desired_services.items():
        if key.fwmark is not None or key.address not in wanted:
            continue
        what = f"{key.address}:{key.port}/{key.protocol.lower()}"
        if key.family != 4:
            skipped.append(f"{what}: IPv6 is not steered (NAT path)")
            continue
        if svc.scheduler not in HASHED or key.protocol.lower() not in ("tcp", "udp"):
            skipped.append(f"{what}: lb_algo {svc.scheduler} is not a hash (use mh); NAT path")
            continue
        if any(d.port != key.port for d in svc.destinations):
            skipped.append(f"{what}: a real server listens on another port (steering cannot rewrite it); NAT path")
            continue
        kind, slots = slots_of(svc)
        if kind != "hash":
            skipped.append(f"{what}: no hash table ({kind}); NAT path")
            continue
        out.append(Steered(key.address, key.protocol.lower(), key.port,
                           tuple(d.address if d is not None else None for d in slots),
                           by_port="port" in svc.flags))
    return out, skipped
