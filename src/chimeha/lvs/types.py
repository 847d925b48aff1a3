"""Desired/actual data-plane state shared by the LVS core and its backends.

These types are deliberately independent of the config model: the config
describes what the operator wrote, these describe what one data plane must do
right now (which virtual services exist, which real servers they forward to
and with what weight). ``desired.py`` maps the former onto the latter, the
reconciler diffs two of these, backends apply the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

#: Forwarding methods, as keepalived's ``lb_kind`` spells them.
LB_KINDS = ("NAT", "DR", "TUN")


class LvsConfigError(ConfigError, ValueError):
    """A virtual server cannot be realised as configured (a local, operator error)."""


@dataclass(frozen=True)
class ServiceKey:
    """Identity of a virtual service: protocol plus VIP:port, or a firewall mark."""

    protocol: str  # "TCP" | "UDP" | "SCTP"
    address: str | None = None
    port: int | None = None
    fwmark: int | None = None

    def __str__(self) -> str:
        if self.fwmark is not None:
            return f"FWM {self.fwmark} {self.protocol}"
        host = f"[{self.address}]" if self.address and ":" in self.address else self.address
        return f"{self.protocol} {host}:{self.port}"

    def sort_key(self) -> tuple:
        """A total order over keys (addresses and marks may be None)."""
        return (self.fwmark is not None, self.fwmark or 0, self.address or "", self.port or 0, self.protocol)

    @property
    def family(self) -> int:
        return 6 if self.address and ":" in self.address else 4


@dataclass(frozen=True, order=True)
class DestKey:
    """Identity of a real server inside one service."""

    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Destination:
    """One real server as the data plane sees it.

    ``weight`` 0 means quiescent: existing connections live on, new ones are
    not scheduled to it (keepalived's ``inhibit_on_failure``).
    """

    address: str
    port: int
    weight: int = 1
    lb_kind: str = "NAT"

    @property
    def key(self) -> DestKey:
        return DestKey(self.address, self.port)


@dataclass(frozen=True)
class Service:
    """One virtual service with its real servers, in configuration order."""

    key: ServiceKey
    scheduler: str = "wlc"
    persistence_timeout: int | None = None  # seconds; None = no persistence
    persistence_netmask: str | None = None  # e.g. "255.255.255.0" or "64" (IPv6 prefix)
    lb_kind: str = "NAT"
    destinations: tuple[Destination, ...] = ()
    #: True when the destinations are the sorry server (quorum lost).
    sorry: bool = False
    #: scheduler flags: "fallback" (sh-fallback/mh-fallback), "port" (sh-port/mh-port)
    flags: tuple[str, ...] = ()

    def dest(self, key: DestKey) -> Destination | None:
        for d in self.destinations:
            if d.key == key:
                return d
        return None

    def attrs(self) -> tuple:
        """The service's own attributes (everything but its destinations)."""
        return (self.scheduler, self.persistence_timeout, self.persistence_netmask, self.lb_kind, self.flags)


@dataclass(frozen=True)
class DesiredState:
    """Every service one node should forward right now, keyed by ServiceKey."""

    services: dict[ServiceKey, Service] = field(default_factory=dict)
    #: Why each configured service is (or is not) present: operator-readable.
    notes: dict[str, str] = field(default_factory=dict)
    #: Quorum state per virtual server (desired.vs_id), remembered for hysteresis.
    quorum: dict[str, bool] = field(default_factory=dict)
