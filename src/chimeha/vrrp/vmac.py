"""Virtual MAC (macvlan) and ipvlan links of VRRP instances: names, addresses, what to create (pure).

Theory of operation
-------------------
RFC 5798 section 7.3: a virtual router's MAC address is 00-00-5E-00-01-{VRID}
for IPv4 and 00-00-5E-00-02-{VRID} for IPv6. Linux gives an interface one
MAC address, so keepalived's ``use_vmac`` (2.2.7, vrrp_vmac.c) creates a
private-mode macvlan link with that address on the instance's interface,
puts the VIPs on it and sends the adverts (and so the gratuitous ARPs /
NAs) from it: when the master changes, the VIPs keep their MAC, and the
clients' ARP caches need no update at all. ``use_ipvlan`` creates an L2
ipvlan link instead (same MAC as its parent, its own address).

This module decides, from the configuration only: the link's name
(``use_vmac NAME``, else keepalived's ``create_vmac_name``: ``vrrp.{VRID}``
with ``vmac_prefix`` for ``vrrp``, and, when another instance already took
that name, ``vrrp6.{VRID}`` first for IPv6 then ``vrrp1.{VRID}``,
``vrrp2.{VRID}``...), its MAC address (``use_vmac`` may give six octets, or
five and the VRID is the sixth), and which interfaces the instance then
uses (:class:`Link`). Creating the link is the runtime's job
(:mod:`chimeha.runtime.vmac`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IFNAMSIZ = 16
RFC5798_PREFIX = (0x00, 0x00, 0x5E, 0x00)
IPVLAN_MODES = ("bridge", "private", "vepa")


class VmacError(ValueError):
    """A use_vmac / use_ipvlan argument keepalived refuses (str() says why)."""


@dataclass(frozen=True)
class Link:
    """The link an instance needs: a macvlan (``use_vmac``) or an ipvlan (``use_ipvlan``).

    ``base`` is the configured interface. ``mac`` is set for a macvlan only.
    ``address`` (ipvlan, CIDR) goes on the link and is the adverts' source.
    ``xmit_base``: adverts are sent and received on ``base``, not on the link.
    ``ipv6``: IPv6 stays enabled on the link (an IPv6 instance, or excluded
    VIPs of the other family); keepalived disables it otherwise.
    """

    kind: str  # "macvlan" | "ipvlan"
    name: str
    base: str
    family: int
    mac: str | None = None
    mode: str = "private"  # macvlan: private; ipvlan: bridge | private | vepa (L2 always)
    address: str | None = None
    xmit_base: bool = False
    ipv6: bool = False

    @property
    def socket_interface(self) -> str:
        """Where the instance's VRRP socket lives."""
        return self.base if self.xmit_base else self.name


def virtual_mac(vrid: int, family: int = 4) -> str:
    """The RFC 5798 virtual router MAC address: 00:00:5e:00:01:VRID (IPv6: 00:00:5e:00:02:VRID)."""
    if not 1 <= vrid <= 255:
        raise VmacError(f"virtual_router_id {vrid} is not 1-255")
    return "00:00:5e:00:%02x:%02x" % (2 if family == 6 else 1, vrid)


def parse_mac(text: str) -> tuple[tuple[int, ...], bool]:
    """``use_vmac``'s MAC argument: (octets, the VRID completes it); raises :class:`VmacError`.

    keepalived 2.2.7 (vrrp_parser.c): six octets, or five (then the VRID is
    the last); a multicast address and the RFC 5798 ranges themselves
    (00:00:5e:00:01:xx, 00:00:5e:00:02:xx) are refused.
    """
    parts = text.rstrip(":").split(":") if text.endswith(":") and text.count(":") == 5 else text.split(":")
    if len(parts) not in (5, 6) or any(not p or len(p) > 2 for p in parts):
        raise VmacError(f"invalid MAC address {text!r} (five or six hex octets separated by ':')")
    try:
        octets = tuple(int(p, 16) for p in parts)
    except ValueError:
        raise VmacError(f"invalid MAC address {text!r}") from None
    if octets[0] & 0x01:
        raise VmacError(f"MAC address {text} is multicast")
    if octets[:4] == RFC5798_PREFIX and octets[4] in (1, 2):
        raise VmacError(f"MAC address {text} is in the RFC 5798 range: leave it out to get that address")
    return octets, len(octets) == 5


def mac_for(configured: str | None, vrid: int, family: int) -> str:
    """The link's MAC: ``configured`` (five octets: plus the VRID), else the RFC 5798 address."""
    if not configured:
        return virtual_mac(vrid, family)
    octets, use_vrid = parse_mac(configured)
    if use_vrid:
        octets = octets + (vrid,)
    return ":".join("%02x" % o for o in octets)


def valid_name(name: str) -> bool:
    """The kernel's dev_valid_name (net/core/dev.c), as keepalived checks ``use_vmac NAME``."""
    if not name or len(name) >= IFNAMSIZ or name in (".", ".."):
        return False
    return not any(c in "/:" or c.isspace() for c in name)


def _fit(prefix: str, suffix: str) -> str:
    """``prefix + suffix`` cut from the prefix's end to fit IFNAMSIZ - 1 (keepalived does the same)."""
    room = IFNAMSIZ - 1 - len(suffix)
    return prefix[:max(room, 0)] + suffix


def default_name(prefix: str, vrid: int, family: int, taken) -> str:
    """keepalived's create_vmac_name: the first of prefix.VRID, prefix{N}.VRID not in ``taken``.

    IPv6 tries prefix6.VRID second, then 1, 2, 3, 4, 5, 7...
    """
    name = _fit(prefix, f".{vrid}")
    num = 0
    while name in taken:
        if family == 6:
            num = 6 if num == 0 else 1 if num == 6 else num + 1 + (num + 1 == 6)
        else:
            num += 1
        name = _fit(prefix, f"{num}.{vrid}")
    return name


def ipvlan_words(words) -> tuple[str | None, str | None, str]:
    """``use_ipvlan [NAME] [ADDRESS[/PREFIX]] [bridge|private|vepa]`` -> (name, address CIDR, mode)."""
    name = address = mode = None
    for w in words:
        if w in IPVLAN_MODES:
            if mode is not None:
                raise VmacError(f"ipvlan type already specified: '{w}'")
            mode = w
            continue
        try:
            iface = ipaddress.ip_interface(w)
        except ValueError:
            iface = None
        if iface is not None:
            if address is not None:
                raise VmacError(f"ipvlan address already specified: '{w}'")
            address = str(iface)
            continue
        if name is not None:
            raise VmacError(f"ipvlan interface already specified: '{w}'")
        if not valid_name(w):
            raise VmacError(f"ipvlan interface name '{w}' is too long or has invalid characters")
        name = w
    return name, address, mode or "bridge"


def garp_extra_words(words) -> tuple[bool, int | None]:
    """``garp_extra_if [all] SECONDS`` (keepalived 2.2.7: 0..86400) -> (all, seconds or None if invalid)."""
    every = "all" in words
    rest = [w for w in words if w != "all"]
    if len(rest) != 1 or not rest[0].isdigit() or int(rest[0]) > 86400:
        return every, None
    return every, int(rest[0])
