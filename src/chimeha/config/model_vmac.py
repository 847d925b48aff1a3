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
