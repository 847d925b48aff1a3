"""Typed model of an instance's virtual MAC / ipvlan link (``use_vmac``, ``use_ipvlan``, ``use_vmac_addr``).

Split from :mod:`chimeha.config.model` to keep it small. What the link is
called and which MAC it gets is decided by :mod:`chimeha.vrrp.vmac`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import NOWHERE, Where


@dataclass(frozen=True)
class VmacConfig:
    """``use_vmac [NAME] [MAC]`` or ``use_ipvlan [NAME] [ADDRESS] [bridge|private|vepa]``.

    ``name`` None: keepalived's default name (vmac_prefix.VRID). ``mac``: the
    configured MAC (five octets: the VRID is the sixth); None: RFC 5798's.
    ``address``/``mode``: ipvlan only.
    """

    kind: str = "macvlan"  # "macvlan" (use_vmac) | "ipvlan" (use_ipvlan)
    where: Where = NOWHERE
    name: str | None = None
    mac: str | None = None
    address: str | None = None
    mode: str = "private"


@dataclass(frozen=True)
class VipVmac:
    """The VMAC a VIP goes on when it is not the instance's own (``use_vmac_addr``, a VIP's ``use_vmac``).

    keepalived 2.2.7: a VIP on another interface (``dev``), or of the other
    family, gets a macvlan of its own on that interface with the instance's
    VRID-based MAC of the VIP's family, named from ``vmac_addr_prefix``.
    """

    address: str  # the VIP as written (CIDR), to find it again
    name: str
    base: str
    family: int
