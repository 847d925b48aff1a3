"""What a probe needs: checker settings, the target, resolved timing, the result.

The checker dataclasses here mirror the config model's (``chimeha.config.model``:
``TcpCheck``, ``HttpCheck``, ... see docs/contracts.md) field for field, so the
checkers accept either: every reader below uses ``getattr`` with the documented
default, never ``isinstance``. They exist so the checkers can be used and tested
without a parsed configuration (and before the config model lands).

Timing follows keepalived.conf(5): each timing keyword may be set on the
virtual server, the real server or the checker; the most specific setting wins,
and what nobody set falls back to a per-kind default (see :func:`resolve_timing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

# --- results and targets ---------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one probe attempt.

    ``ok``: the service answered as required. ``detail``: an operator sentence
    ("connect to 127.0.0.1:80 refused"). ``weight``: a weight the checker asks
    the real server to take (MISC_CHECK ``misc_dynamic``, FILE_CHECK
    ``dynamic``), None when the checker does not set weights.
    """

    ok: bool
    detail: str
    weight: int | None = None


@dataclass(frozen=True)
class Target:
    """The real server a checker probes.

    ``address``/``port`` are the real server's; a checker's ``connect_ip`` /
    ``connect_port`` override them. ``virtualhost`` is the one inherited from
    the real or virtual server (a URL's or checker's own wins). ``weight`` is
    the real server's configured weight (FILE_CHECK ``dynamic`` adds to it).
    ``track_files`` maps track_file names to objects with ``file`` and
    ``weight`` (config ``TrackFile``), for FILE_CHECK.
    """

    address: str
    port: int | None = None
    virtualhost: str | None = None
    weight: int = 1
    track_files: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Timing:
    """Resolved timing of one checker, in seconds (``retry`` is a count)."""

    delay_loop: float = 60.0
    connect_timeout: float = 5.0
    retry: int = 1
    delay_before_retry: float = 1.0
    warmup: float = 60.0
    alpha: bool = False


TIMING_KEYWORDS = ("delay_loop", "connect_timeout", "retry", "delay_before_retry", "warmup", "alpha")


def checker_kind(checker: Any) -> str:
    """The checker's keyword (``TCP_CHECK``, ``HTTP_GET``, ``SSL_GET``, ...)."""
    kind = getattr(checker, "kind", None)
    if kind == "HTTP_GET" and getattr(checker, "ssl", False):
        return "SSL_GET"
    if kind:
        return str(kind)
    name = type(checker).__name__
    return _CLASS_KIND.get(name, name)


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def resolve_timing(checker: Any, real_server: Any = None, virtual_server: Any = None) -> Timing:
    """Timing for ``checker``: checker, then real server, then virtual server, then defaults.

    Defaults (keepalived.conf(5)): ``delay_loop`` 60; ``connect_timeout`` 5;
    ``retry`` 1, but 3 for DNS_CHECK and 0 for MISC_CHECK; ``delay_before_retry``
    3 for HTTP_GET/SSL_GET, ``delay_loop`` for DNS_CHECK, 1 otherwise; ``warmup``
    = ``delay_loop`` (a random initial delay up to it; 0 disables); ``alpha``
    off. The config model's virtual server carries ``delay_loop`` already
    defaulted to 60, which is the same thing.
    """
    kind = checker_kind(checker)

    def pick(name: str) -> Any:
        return _first(getattr(checker, name, None), getattr(real_server, name, None),
                      getattr(virtual_server, name, None))

    delay_loop = float(_first(pick("delay_loop"), 60.0))
    retry_default = {"DNS_CHECK": 3, "MISC_CHECK": 0}.get(kind, 1)
    dbr_default = {"HTTP_GET": 3.0, "SSL_GET": 3.0, "DNS_CHECK": delay_loop}.get(kind, 1.0)
    return Timing(
        delay_loop=delay_loop,
        connect_timeout=float(_first(pick("connect_timeout"), 5.0)),
        retry=int(_first(pick("retry"), retry_default)),
        delay_before_retry=float(_first(pick("delay_before_retry"), dbr_default)),
        warmup=float(_first(pick("warmup"), delay_loop)),
        alpha=bool(_first(pick("alpha"), False)),
    )


def target_for(real_server: Any, virtual_server: Any = None, track_files: Mapping[str, Any] | None = None) -> Target:
    """A :class:`Target` from config ``RealServer`` / ``VirtualServer`` objects."""
    return Target(
        address=str(real_server.address),
        port=getattr(real_server, "port", None),
        virtualhost=_first(getattr(real_server, "virtualhost", None), getattr(virtual_server, "virtualhost", None)),
        weight=int(_first(getattr(real_server, "weight", None), 1)),
        track_files=track_files or {},
    )


# --- plain checker settings (same names as the config model) --------------


@dataclass(frozen=True)
class _Common:
    connect_ip: str | None = None
    connect_port: int | None = None
    bindto: str | None = None
    bind_port: int | None = None
    bind_if: str | None = None
    fwmark: int | None = None
    connect_timeout: float | None = None
    retry: int | None = None
    delay_before_retry: float | None = None
    warmup: float | None = None
    delay_loop: float | None = None
    alpha: bool | None = None


@dataclass(frozen=True)
class TcpCheck(_Common):
    """TCP_CHECK: up when a TCP connection opens within ``connect_timeout``."""

    kind: str = "TCP_CHECK"


@dataclass(frozen=True)
class Url:
    """One ``url { }`` block of HTTP_GET/SSL_GET.

    ``status_code``: words like ``"200"``/``"300-302"`` (as the config gives
    them), ints or ``(low, high)`` pairs; empty means 200-299. ``digest``: lowercase MD5 hex of the body (as ``genhash`` prints).
    """

    path: str = "/"
    digest: str | None = None
    status_code: tuple = ()
    virtualhost: str | None = None
    regex: str | None = None
    regex_no_match: bool = False


@dataclass(frozen=True)
class HttpCheck(_Common):
    """HTTP_GET, or SSL_GET when ``ssl`` is true: every URL must answer as configured."""

    kind: str = "HTTP_GET"
    ssl: bool = False
    urls: tuple[Url, ...] = ()
    virtualhost: str | None = None
    http_protocol: str | None = None  # "1.0", "1.0C", "1.1"; None = 1.0
    enable_sni: bool = False


@dataclass(frozen=True)
class MiscCheck(_Common):
    """MISC_CHECK: run ``misc_path`` (argv, no shell); exit 0 up, 1 down, 2-255 see misc_dynamic."""

    kind: str = "MISC_CHECK"
    misc_path: tuple[str, ...] | str = ()
    misc_timeout: float | None = None
    misc_dynamic: bool = False
    user: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class SmtpCheck(_Common):
    """SMTP_CHECK: a 2xx greeting and a 2xx answer to ``HELO helo_name``."""

    kind: str = "SMTP_CHECK"
    helo_name: str | None = None
    hosts: tuple = ()  # legacy ``host { }`` blocks: each checked, all must pass


@dataclass(frozen=True)
class DnsCheck(_Common):
    """DNS_CHECK over UDP: query ``name`` (default ``.``) of ``type`` (default SOA)."""

    kind: str = "DNS_CHECK"
    type: str = "SOA"
    name: str = "."


@dataclass(frozen=True)
class UdpCheck(_Common):
    """UDP_CHECK: send ``payload``; with ``require_reply`` a matching answer is needed."""

    kind: str = "UDP_CHECK"
    payload: bytes | str | None = None
    require_reply: bool | bytes | str | None = None
    min_reply_length: int = 0
    max_reply_length: int = 255


@dataclass(frozen=True)
class PingCheck(_Common):
    """PING_CHECK: an ICMP (or ICMPv6) echo reply within ``connect_timeout``."""

    kind: str = "PING_CHECK"


@dataclass(frozen=True)
class FileCheck:
    """FILE_CHECK: the number in a track_file's file (see track_file in keepalived.conf(5))."""

    kind: str = "FILE_CHECK"
    track_file: str = ""
    file: str | None = None  # direct path, when not resolved through Target.track_files
    weight: int | None = None
    weight_reverse: bool = False
    dynamic: bool = False


_CLASS_KIND = {
    "TcpCheck": "TCP_CHECK", "HttpCheck": "HTTP_GET", "MiscCheck": "MISC_CHECK",
    "SmtpCheck": "SMTP_CHECK", "DnsCheck": "DNS_CHECK", "UdpCheck": "UDP_CHECK",
    "PingCheck": "PING_CHECK", "FileCheck": "FILE_CHECK", "BfdCheck": "BFD_CHECK",
}
