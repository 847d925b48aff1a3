"""Accept mode off (``no_accept``, strict mode's default): drop traffic to and from held VIPs.

keepalived 2.2.7 (vrrp_nftables.c) puts the addresses of an instance that
does not accept into nftables sets while it holds them, with rules in an
``input`` and an ``output`` chain at hook priority -1: ``ip daddr @vips
drop`` and ``ip saddr @vips drop`` (IPv6 alike, after letting neighbour
solicitations and advertisements through so the address still resolves).
So a ping or a TCP connection to such a VIP is dropped on the master, as
RFC 3768 section 6.4.3 (and RFC 5798's Accept_Mode False) asks. ARP is not
IP: the VIP still answers ARP and gratuitous ARPs still go out.

chime-ha does the same with a table of its own, ``inet chimeha_vips``, created
when the first such VIP is added and deleted when none is left and at stop.
Each change renders the whole table and loads it with one ``nft -f``
(atomic: no packet sees half a table). :func:`render` is pure;
:class:`VipFilter` runs nft (synchronously: the executor calls it from its
netlink worker thread, in FIFO order with the address changes, so the drop
rule is in place before the address appears and goes after it is removed).
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import subprocess
from typing import Callable, Iterable

log = logging.getLogger("chimeha.net.vipfilter")

TABLE = "chimeha_vips"
#: keepalived's default nftables_priority: before the usual filter chains (priority 0)
PRIORITY = -1
_ND = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept"


def _bare(address: str) -> str:
    return str(address).split("/")[0]


def render(addresses: Iterable[str], priority: int = PRIORITY) -> str:
    """The nft script that makes the table hold exactly ``addresses`` (bare or CIDR); none: delete it."""
    v4, v6 = set(), set()
    for a in addresses:
        ip = ipaddress.ip_address(_bare(a))
        (v6 if ip.version == 6 else v4).add(ip)
    head = f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"
    if not v4 and not v6:
        return head

    def elements(ips) -> str:
        return f" elements = {{ {', '.join(str(i) for i in sorted(ips))} }};" if ips else ""

    chains = []
    for name, hook, field in (("in", "input", "daddr"), ("out", "output", "saddr")):
        chains.append(f"    chain {name} {{\n"
                      f"        type filter hook {hook} priority {priority}; policy accept;\n"
                      f"        {_ND}\n"
                      f"        ip {field} @vips4 drop\n"
                      f"        ip6 {field} @vips6 drop\n"
                      f"    }}\n")
    return (head + f"table inet {TABLE} {{\n"
            f"    set vips4 {{ type ipv4_addr;{elements(v4)} }}\n"
            f"    set vips6 {{ type ipv6_addr;{elements(v6)} }}\n"
            + "".join(chains) + "}\n")


Runner = Callable[[str], None]


def _nft_runner(netns: str | None) -> Runner:
    def run(script: str) -> None:
        pre = ["ip", "netns", "exec", netns] if netns else []
        proc = subprocess.run([*pre, "nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            raise OSError(proc.stderr.strip() or f"nft exited {proc.returncode}")
    return run


class VipFilter:
    """The held VIPs of the instances that do not accept, kept in the ``inet chimeha_vips`` table.

    ``runner`` loads one nft script (tests inject a recorder); by default nft
    runs in this network namespace (or ``netns``). A failure is logged, once
    per kind of error, and leaves the VIPs reachable: VRRP itself goes on.
    """

    def __init__(self, runner: Runner | None = None, netns: str | None = None):
        self._run = runner
        self._netns = netns
        self._by_instance: dict[str, frozenset[str]] = {}
        self._loaded: frozenset[str] | None = None  # what the table holds (None: we never touched it)
        self.errors = 0
        self._last_error: str | None = None

    @property
    def blocked(self) -> frozenset[str]:
        """Bare addresses whose traffic is dropped now."""
        return frozenset().union(*self._by_instance.values()) if self._by_instance else frozenset()

    def instances(self) -> frozenset[str]:
        """The instances whose VIPs are filtered now."""
        return frozenset(self._by_instance)

    def set(self, instance: str, addresses: Iterable[str], held: bool) -> None:
        """``instance`` now holds (``held``) or let go of ``addresses``; the table follows."""
        if held:
            self._by_instance[instance] = frozenset(_bare(a) for a in addresses)
        else:
            self._by_instance.pop(instance, None)
        self._sync()

    def clear_stale(self) -> None:
        """Delete a table a killed previous run left behind (start-up)."""
        self._load(frozenset(), force=True)

    def close(self) -> None:
        """Stop: nothing is filtered any more; the table is deleted if this filter ever loaded it."""
        self._by_instance.clear()
        if self._loaded is not None:
            self._load(frozenset(), force=True)

    def _sync(self) -> None:
        want = self.blocked
        if want != (self._loaded or frozenset()) or (self._loaded is None and want):
            self._load(want)

    def _load(self, want: frozenset[str], force: bool = False) -> None:
        run = self._run
        if run is None:
            if shutil.which("nft") is None:
                self._fail("the nft program is not installed (apt-get install nftables)")
                return
            run = self._run = _nft_runner(self._netns)
        try:
            run(render(want))
        except (OSError, subprocess.SubprocessError) as exc:
            self._fail(str(exc))
            return
        self._loaded = want
        if want or not force:
            log.info("no_accept: traffic to %s dropped", ", ".join(sorted(want)) or "no VIP")

    def _fail(self, why: str) -> None:
        self.errors += 1
        if why != self._last_error:
            self._last_error = why
            log.error("no_accept: cannot filter traffic to the VIPs (they stay reachable): %s", why)
