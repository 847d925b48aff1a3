"""VMAC (macvlan) and ipvlan links over netlink, and the sysctls keepalived sets for them.

The node decides which link an instance needs (:class:`chimeha.vrrp.vmac.Link`
in its spec) and asks for one again when it was deleted (``RestoreLink``);
this adapter makes it so, in the netlink worker thread (pyroute2), as
keepalived 2.2.7 does (vrrp_vmac.c, vrrp_if_config.c):

* a private-mode macvlan named ``link.name`` on ``link.base`` with the
  link's MAC (``use_vmac``), or an L2 ipvlan with its address
  (``use_ipvlan``). A link of that name already there is reused when it is
  the right kind on the right base with the right MAC (a run killed before
  it could clean up), re-created when it is on another base or has the
  wrong MAC or mode, and refused when it is not a link of that kind;
* IPv6 addresses are never generated on it (addr_gen_mode none), and IPv6
  is off unless the instance is IPv6 or has excluded VIPs of the other
  family; an IPv6 VMAC that sends the adverts gets the base's link-local
  address (the adverts' source, RFC 5798 section 7.4);
* IPv4: on the link arp_ignore=1, accept_local=1, rp_filter=0,
  promote_secondaries=1; on the base arp_ignore=1 and arp_filter=1, so
  that only the link answers ARP for the VIPs (with the virtual MAC), the
  base's old values restored when its last link goes; and when
  net.ipv4.conf.all.rp_filter is set, every interface's rp_filter and
  default's are raised to it and all's is cleared (a VMAC needs rp_filter
  0), everything restored at the end;
* IGMP (IPv4) and MLD (IPv6) reports a VMAC would send go out of its base
  instead (nftables ``dup to ... device BASE`` then drop, as keepalived's
  ``table ip keepalived``; IPv6 router solicitations from a VMAC are
  dropped): a backup joining 224.0.0.18 / ff02::12 on its VMAC would
  otherwise teach the switch that the virtual MAC lives on the backup's port.
  One table per family, ``chimeha_vmac``, rewritten whole on every change;
* :meth:`LinkManager.remove` deletes the links (at stop, after the VIPs are
  gone, and at reload for links no instance needs any more).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import subprocess
from typing import Any, Callable, Iterable

from chimeha.errors import HostError

log = logging.getLogger("chimeha.runtime.vmac")

ARPHRD_ETHER = 1
IFA_F_NODAD = 0x02
SYSCTL = "/proc/sys/net"
_VMAC_SYSCTLS = (("arp_ignore", 1), ("accept_local", 1), ("rp_filter", 0), ("promote_secondaries", 1))
_BASE_SYSCTLS = (("arp_ignore", 1), ("arp_filter", 1))
_IPVLAN_MODES = {"bridge": 0, "private": 1, "vepa": 2}  # IFLA_IPVLAN_FLAGS
TABLE = "chimeha_vmac"


def firewall_script(links: Iterable[Any]) -> str:
    """The nft script that moves the VMACs' IGMP/MLD reports to their bases (empty tables deleted)."""
    rules = {"ip": [], "ip6": []}
    for lk in sorted(links, key=lambda x: x.name):
        if lk.kind != "macvlan":
            continue  # an ipvlan has its base's MAC: nothing to hide
        if lk.family == 4:
            rules["ip"].append(f'oifname "{lk.name}" ip protocol igmp dup to ip daddr device "{lk.base}" drop')
        if lk.family == 6 or lk.ipv6:
            rules["ip6"].append(f'oifname "{lk.name}" icmpv6 type mld2-listener-report dup to ip6 daddr device '
                                f'"{lk.base}" drop')
            rules["ip6"].append(f'oifname "{lk.name}" icmpv6 type nd-router-solicit drop')
    out = []
    for fam, lines in rules.items():
        out += [f"table {fam} {TABLE}", f"delete table {fam} {TABLE}"]
        if lines:
            out += [f"table {fam} {TABLE} {{", " chain out {",
                    "  type filter hook output priority filter - 1; policy accept;"]
            out += [f"  {line}" for line in lines] + [" }", "}"]
    return "\n".join(out) + "\n"


def run_nft(script: str) -> None:
    """``nft -f -`` (raises OSError / CalledProcessError with nft's message)."""
    subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True, check=True, timeout=10)


class LinkError(HostError):
    """A VMAC / ipvlan link cannot be made (str() says which and why)."""


def read_sysctl(path: str) -> int | None:
    try:
        with open(os.path.join(SYSCTL, path)) as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def write_sysctl(path: str, value: int) -> bool:
    try:
        with open(os.path.join(SYSCTL, path), "w") as fh:
            fh.write(str(value))
        return True
    except OSError as exc:
        log.warning("cannot set net.%s to %d: %s", path.replace("/", "."), value, exc)
        return False


def _kind(msg) -> tuple[str | None, Any]:
    info = msg.get_attr("IFLA_LINKINFO")
    if info is None:
        return None, None
    return info.get_attr("IFLA_INFO_KIND"), info.get_attr("IFLA_INFO_DATA")


class LinkManager:
    """Creates, restores and removes the instances' links (see the module docstring).

    ``submit(fn, *args)`` runs ``fn(manager, *args)`` in the netlink worker
    (:meth:`chimeha.runtime.netlink.NetlinkWorker.submit`); everything that
    touches the kernel runs there, in FIFO order with the VIP changes.
    ``read``/``write`` are the sysctl accessors (tests replace them).
    """

    def __init__(self, submit: Callable[..., Any], read: Callable[[str], int | None] = read_sysctl,
                 write: Callable[[str, int], bool] = write_sysctl, nft: Callable[[str], None] = run_nft):
        self._submit = submit
        self._read, self._write, self._nft = read, write, nft
        self._fw: str | None = None  # the nft script last applied
        self.links: dict[str, Any] = {}  # name -> Link we hold (worker thread only after start)
        self._base_saved: dict[str, dict[str, int]] = {}  # base -> sysctl -> value before our first link
        self._base_refs: dict[str, set[str]] = {}  # base -> names of our IPv4 links on it
        self._rp_saved: dict[str, int] | None = None  # "all"/"default"/ifname -> rp_filter before we changed it

    # -- the daemon's verbs (called on the event loop) ------------------------
    def ensure(self, links: Iterable[Any], allow_missing_base: bool = False) -> None:
        """Create or adopt every link now (blocking: start and reload); raises :class:`LinkError`."""
        self._submit(self._ensure_all, tuple(links), allow_missing_base).result()

    def restore(self, link: Any) -> None:
        """The link was deleted under us (the node's RestoreLink): create it again, in the background."""
        def work(m: Any) -> None:
            try:
                self._ensure_one(m, link)
                log.info("%s: %s re-created on %s", link.name, link.kind, link.base)
            except LinkError as exc:
                log.error("%s", exc)
            self._sync_firewall()
        self._submit(work)

    def remove(self, names: Iterable[str] | None = None):
        """Delete the links ``names`` (default: all of ours) and undo their sysctls; returns the future."""
        return self._submit(self._remove_all, None if names is None else tuple(names))

    # -- worker thread --------------------------------------------------------
    def _ensure_all(self, m: Any, links: tuple, allow_missing_base: bool) -> None:
        try:
            for link in links:
                try:
                    self._ensure_one(m, link)
                except LinkError:
                    if allow_missing_base and not self._exists(m, link.base):
                        log.warning("%s: base interface %s does not exist; the %s is created when it appears",
                                    link.name, link.base, link.kind)
                        continue
                    raise
        finally:
            self._sync_firewall()

    def _sync_firewall(self) -> None:
        script = firewall_script(self.links.values())
        if script == self._fw or (self._fw is None and not self.links):
            return
        try:
            self._nft(script)
            self._fw = script
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", None) or exc
            log.warning("cannot move the VMACs' IGMP/MLD reports to their base interfaces (nft): %s", detail)

    @staticmethod
    def _exists(m: Any, name: str) -> bool:
        return bool(m.ipr.link_lookup(ifname=name))

    def _ensure_one(self, m: Any, link: Any) -> None:
        ipr = m.ipr
        found = ipr.link_lookup(ifname=link.base)
        if not found:
            raise LinkError(f"{link.name}: cannot create the {link.kind}: its interface {link.base} does not exist")
        base_idx = found[0]
        base = ipr.get_links(base_idx)[0]
        if base["ifi_type"] != ARPHRD_ETHER:
            raise LinkError(f"{link.name}: {link.kind} links need an Ethernet interface; {link.base} is not one")
        idx = self._adopt(m, link, base_idx)
        if idx is None:
            idx = self._create(m, link, base_idx)
        self.links[link.name] = link
        self._configure(m, link, idx, base_idx)

    def _adopt(self, m: Any, link: Any, base_idx: int) -> int | None:
        """The index of a usable existing link of that name (None: there is none, or it was deleted)."""
        ipr = m.ipr
        found = ipr.link_lookup(ifname=link.name)
        if not found:
            return None
        msg = ipr.get_links(found[0])[0]
        kind, data = _kind(msg)
        if kind != link.kind:
            raise LinkError(f"{link.name}: interface exists and is not a {link.kind} (it is "
                            f"{kind or 'a physical interface'}); not touching it")
        mode = data.get_attr("IFLA_MACVLAN_MODE") if data is not None and kind == "macvlan" else None
        right = msg.get_attr("IFLA_LINK") == base_idx and (
            kind != "macvlan" or (str(msg.get_attr("IFLA_ADDRESS")).lower() == link.mac and mode in ("private", 1)))
        if right:
            log.info("%s: using the existing %s on %s", link.name, link.kind, link.base)
            return found[0]
        log.info("%s: existing %s has the wrong base, MAC or mode; re-creating it", link.name, link.kind)
        ipr.link("del", index=found[0])
        return None

    def _create(self, m: Any, link: Any, base_idx: int) -> int:
        ipr = m.ipr
        kw: dict = {"ifname": link.name, "link": base_idx}
        if link.kind == "macvlan":
            kw.update(kind="macvlan", macvlan_mode="private", address=link.mac)
        else:
            kw.update(kind="ipvlan", ipvlan_mode=0, ipvlan_flags=_IPVLAN_MODES.get(link.mode, 0))  # mode L2
        try:
            ipr.link("add", **kw)
        except Exception as exc:  # NetlinkError: EOPNOTSUPP when the kernel has no such link type
            raise LinkError(f"{link.name}: cannot create the {link.kind} on {link.base}: "
                            f"{exc.args[-1] if getattr(exc, 'args', None) else exc}") from exc
        found = ipr.link_lookup(ifname=link.name)
        if not found:
            raise LinkError(f"{link.name}: the {link.kind} vanished right after it was created")
        log.info("%s: %s created on %s%s", link.name, link.kind, link.base, f" with MAC {link.mac}" if link.mac else "")
        return found[0]

    def _configure(self, m: Any, link: Any, idx: int, base_idx: int) -> None:
        name = link.name
        # No EUI-64 address from the virtual MAC (RFC 5798 7.4), and no IPv6 at all unless needed.
        self._write(f"ipv6/conf/{name}/addr_gen_mode", 1)
        self._write(f"ipv6/conf/{name}/disable_ipv6", 0 if link.ipv6 else 1)
        if link.family == 4 and link.kind == "macvlan":
            self._clear_rp_filter()
            for key, value in _VMAC_SYSCTLS:
                self._write(f"ipv4/conf/{name}/{key}", value)
            self._hold_base(link.base, name)
        m.ipr.link("set", index=idx, state="up")
        if link.kind == "ipvlan" and link.address:
            iface = ipaddress.ip_interface(link.address)
            self._add_address(m, idx, str(iface.ip), iface.network.prefixlen)
        elif link.family == 6 and not link.xmit_base:
            ll = self._link_local(m, base_idx)
            if ll:
                self._add_address(m, idx, ll, 64)
            else:
                log.warning("%s: %s has no IPv6 link-local address to send the adverts from", name, link.base)

    @staticmethod
    def _link_local(m: Any, base_idx: int) -> str | None:
        for msg in m.raw_addresses(base_idx, socket.AF_INET6):
            addr = msg.get("IFA_ADDRESS")
            if addr and ipaddress.IPv6Address(addr).is_link_local:
                return addr
        return None

    @staticmethod
    def _add_address(m: Any, idx: int, address: str, prefixlen: int) -> None:
        kw: dict = {"index": idx, "address": address, "prefixlen": prefixlen}
        if ":" in address:
            kw["flags"] = IFA_F_NODAD
        else:
            kw["local"] = address
        try:
            m.ipr.addr("add", **kw)
        except Exception as exc:
            if getattr(exc, "code", None) != 17:  # EEXIST: already there
                log.warning("cannot add %s/%d to interface %d: %s", address, prefixlen, idx, exc)

    def _hold_base(self, base: str, name: str) -> None:
        refs = self._base_refs.setdefault(base, set())
        if not refs:
            saved = {}
            for key, value in _BASE_SYSCTLS:
                old = self._read(f"ipv4/conf/{base}/{key}")
                if old is not None and old != value and self._write(f"ipv4/conf/{base}/{key}", value):
                    saved[key] = old
            self._base_saved[base] = saved
        refs.add(name)

    def _release_base(self, base: str, name: str) -> None:
        refs = self._base_refs.get(base)
        if refs is None or name not in refs:
            return
        refs.discard(name)
        if not refs:
            del self._base_refs[base]
            for key, old in self._base_saved.pop(base, {}).items():
                self._write(f"ipv4/conf/{base}/{key}", old)

    def _clear_rp_filter(self) -> None:
        """keepalived's clear_rp_filter: all.rp_filter 0, every interface and default raised to its old value."""
        if self._rp_saved is not None:
            return
        all_rp = self._read("ipv4/conf/all/rp_filter")
        self._rp_saved = {}
        if not all_rp:
            return
        self._rp_saved["all"] = all_rp
        try:
            names = sorted(os.listdir(os.path.join(SYSCTL, "ipv4/conf")))
        except OSError:
            names = []
        for n in names:
            if n == "all":
                continue
            cur = self._read(f"ipv4/conf/{n}/rp_filter")
            if cur is not None and cur < all_rp and self._write(f"ipv4/conf/{n}/rp_filter", all_rp):
                self._rp_saved[n] = cur
        log.info("setting net.ipv4.conf.all.rp_filter from %d to 0 (VMAC); interfaces keep rp_filter %d",
                 all_rp, all_rp)
        self._write("ipv4/conf/all/rp_filter", 0)

    def _restore_rp_filter(self) -> None:
        saved, self._rp_saved = self._rp_saved, None
        if not saved:
            return
        all_rp = saved.pop("all")
        if self._read("ipv4/conf/all/rp_filter") == 0:
            self._write("ipv4/conf/all/rp_filter", all_rp)
        for n, old in saved.items():
            if self._read(f"ipv4/conf/{n}/rp_filter") == all_rp:  # only what we set and nobody changed since
                self._write(f"ipv4/conf/{n}/rp_filter", old)

    def _remove_all(self, m: Any, names: tuple | None) -> None:
        for name in list(self.links) if names is None else names:
            link = self.links.pop(name, None)
            if link is None:
                continue
            self._release_base(link.base, name)
            found = m.ipr.link_lookup(ifname=name)
            if found:
                try:
                    m.ipr.link("del", index=found[0])
                    log.info("%s: %s removed", name, link.kind)
                except Exception as exc:
                    log.warning("%s: cannot remove the %s: %s", name, link.kind, exc)
        if not any(lk.family == 4 and lk.kind == "macvlan" for lk in self.links.values()):
            self._restore_rp_filter()
        self._sync_firewall()
