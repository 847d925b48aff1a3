"""Typed model of the ``chimeha_bgp`` extension block (built by config.build_bgp)."""

from __future__ import annotations

from dataclasses import dataclass

from .model import NOWHERE, Where


@dataclass(frozen=True)
class Neighbor:
    """One BGP peer (normally the upstream router)."""

    address: str
    remote_as: int
    bfd: bool = False
    where: Where = NOWHERE


@dataclass(frozen=True)
class Announce:
    """One prefix to announce: ``address`` (bare IP) as a host route."""

    address: str
    where: Where = NOWHERE

    @property
    def prefix(self) -> str:
        return f"{self.address}/{128 if ':' in self.address else 32}"


@dataclass(frozen=True)
class BgpConfig:
    """The whole block. Timers in seconds; ``keepalive`` defaults to hold/3."""

    local_as: int
    router_id: str | None = None
    neighbors: tuple[Neighbor, ...] = ()
    announce: tuple[Announce, ...] = ()
    communities: tuple[str, ...] = ()
    med: int | None = None
    prepend: int = 0
    hold_time: int = 9
    keepalive: int = 3
    #: "nat": the virtual servers' own data plane (NAT + masquerade); "direct": announced hashed
    #: (mh/sh) IPv4 services are steered statelessly to the real servers, which answer directly
    #: (chimeha.bgp.steer)
    forwarding: str = "nat"
    #: vrrp_script names that must all pass for anything to be announced (``track_script { ... }``)
    track_scripts: tuple[str, ...] = ()
    state_dir: str = "/run/chime-ha/bgp"
    speaker: str = "/usr/lib/frr/bgpd"
    where: Where = NOWHERE
