"""Which keywords each block accepts, derived from keepalived 2.2.7's grammar.

Used to tell a known-but-untyped keyword (kept in ``options``) from an
unknown one (warned about, with a did-you-mean).  The tables come from
``grammar.PATHS`` (plus chime-ha's ``grammar.EXTENSIONS``), so a keyword
2.2.7 does not know (``nat_mask``, ``lvs_id``, ``nb_get_retry`` in a
TCP_CHECK) is unknown here too, as ``keepalived -t`` says.
"""

from __future__ import annotations

from .grammar import EXTENSIONS, PATHS

_ALL = frozenset(PATHS) | frozenset(EXTENSIONS)


def children(*prefix: str) -> frozenset[str]:
    """The keywords directly below the block path ``prefix``."""
    n = len(prefix)
    return frozenset(p[n] for p in _ALL if len(p) == n + 1 and p[:n] == prefix)


TOP_LEVEL = children()
GLOBAL_DEFS = children("global_defs")
VRRP_SCRIPT = children("vrrp_script")
TRACK_PROCESS = children("vrrp_track_process")
TRACK_FILE = children("track_file")
SYNC_GROUP = children("vrrp_sync_group")
VRRP_INSTANCE = children("vrrp_instance")
AUTHENTICATION = children("vrrp_instance", "authentication")
BFD_INSTANCE = children("bfd_instance")
GARP_GROUP = children("garp_group")
VIRTUAL_SERVER = children("virtual_server")
REAL_SERVER = children("virtual_server", "real_server")
CHECKERS = ("TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK", "PING_CHECK",
            "FILE_CHECK", "BFD_CHECK")
CHECKER_KEYWORDS = {c: children("virtual_server", "real_server", c) for c in CHECKERS}
SMTP_HOST = children("virtual_server", "real_server", "SMTP_CHECK", "host")
HTTP_URL = children("virtual_server", "real_server", "HTTP_GET", "url")

# Top-level blocks kept as generic trees; None = free-form content (interface names etc.).
BLOCKS: dict[str, frozenset | None] = {
    "bfd_instance": BFD_INSTANCE,
    "garp_group": GARP_GROUP,
    "linkbeat_interfaces": None,
    "interface_up_down_delays": None,
    "track_group": children("track_group"),
    "SSL": children("SSL"),
    "chimeha_bgp": None,  # chime-ha\'s BGP extension, typed and checked by build_bgp
}
