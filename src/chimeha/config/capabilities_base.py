"""The capability type and the reasons shared by several declarations.

A :class:`Capability` says what chime-ha does with one keepalived keyword
path: it acts on it (``implemented``), it reads it but it cannot matter here
(``no-effect``, with the reason), or it reads it and does not do what
keepalived does (``not-implemented``, with what is missing).  ``field`` names
the typed model field (``"VrrpInstance.use_vmac"``) the keyword fills, when
there is one, so a test can check that an implemented keyword's field is
read by the runtime and an unread field is declared as not acting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Mapping

Status = Literal["implemented", "no-effect", "not-implemented"]
STATUSES: tuple[Status, ...] = ("implemented", "no-effect", "not-implemented")


@dataclass(frozen=True)
class Capability:
    """What chime-ha does with one keyword path."""

    status: Status
    reason: str = ""
    field: str | None = None
    values: Mapping[str, "Capability"] = dataclasses.field(default_factory=dict, hash=False)

    def for_value(self, value: str | None) -> "Capability":
        """The capability for a use with first argument ``value`` (``auth_type AH``)."""
        if value is not None and value in self.values:
            return self.values[value]
        return self

    @property
    def acts(self) -> bool:
        return self.status == "implemented"


def ok(field: str | None = None, values: Mapping[str, Capability] | None = None) -> Capability:
    """chime-ha acts on this keyword."""
    return Capability("implemented", "", field, dict(values or {}))


def noeff(reason: str, field: str | None = None) -> Capability:
    """chime-ha reads this keyword; it cannot change anything here (``reason`` says why)."""
    return Capability("no-effect", reason, field)


def todo(reason: str, field: str | None = None) -> Capability:
    """chime-ha reads this keyword but does not do what keepalived does (``reason`` says what)."""
    return Capability("not-implemented", reason, field)


PROCESS = ("tuning of keepalived's separate processes (names, scheduling priority, memory locking, CPU "
           "affinity); chime-ha is one Python process whose limits its service manager sets")
BUFS = "kernel socket buffer sizing of keepalived's netlink and VRRP sockets; chime-ha sizes its own sockets"
FIREWALL = ("keepalived's choice of firewall for no_accept VIPs; chime-ha always uses its own nftables table "
            "(inet chimeha_vips, hook priority -1; docs/vrrp.md, vrrp_strict)")
SMTP = "e-mail alerts are not sent"
SNMP = "snmp_name is not served (virtualServerName); the SNMP rows of virtual and real servers are found by their index, their position in the config"
DBUS = "the DBus interface is not implemented"
NAMESPACE = "running inside a named network namespace is not implemented; start chime-ha in it (ip netns exec)"
RELOAD_OPTS = "reload is by SIGHUP or `chime-ha reload`; keepalived's reload-file options are not implemented"
