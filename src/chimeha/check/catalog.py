"""One declaration per health-checker keyword (pure data; every checker list derives from it).

``probe`` says which module implements one attempt (None: read and reported
``not-implemented`` by the dispatcher, never silently skipped); ``dynamic``
whether the checker can report a weight (MISC_CHECK ``misc_dynamic``,
FILE_CHECK ``dynamic``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckerDecl:
    kind: str
    summary: str
    probe: str | None
    dynamic: bool = False


CHECKERS: tuple[CheckerDecl, ...] = (
    CheckerDecl("TCP_CHECK", "TCP connect", "chimeha.check.tcp"),
    CheckerDecl("HTTP_GET", "HTTP request, status/digest/regex", "chimeha.check.http"),
    CheckerDecl("SSL_GET", "HTTPS request, status/digest/regex", "chimeha.check.http"),
    CheckerDecl("MISC_CHECK", "a script's exit status", "chimeha.check.misc", dynamic=True),
    CheckerDecl("SMTP_CHECK", "SMTP greeting and HELO", "chimeha.check.smtp"),
    CheckerDecl("DNS_CHECK", "a DNS query answered", "chimeha.check.dns"),
    CheckerDecl("UDP_CHECK", "a UDP datagram (optionally answered)", "chimeha.check.udp"),
    CheckerDecl("PING_CHECK", "ICMP echo", "chimeha.check.ping"),
    CheckerDecl("FILE_CHECK", "a number read from a track_file", "chimeha.check.file", dynamic=True),
    CheckerDecl("BFD_CHECK", "a BFD session's state", "chimeha.check.bfd"),
)

CHECKER = {c.kind: c for c in CHECKERS}
#: Every checker keyword a real_server block accepts.
KINDS: tuple[str, ...] = tuple(c.kind for c in CHECKERS)
#: The ones chime-ha probes.
IMPLEMENTED: frozenset[str] = frozenset(c.kind for c in CHECKERS if c.probe)
