"""What a probe needs besides its settings: the target, resolved timing, the result.

A checker's settings are the config model's own dataclasses
(``chimeha.config.model``: ``TcpCheck``, ``HttpCheck``, ``MiscCheck``, ...;
see docs/contracts.md), whether parsed from keepalived.conf or built directly
(tests, ``chime-ha genhash``). This module holds only what is the checker's
own: the :class:`CheckResult` of an attempt, the :class:`Target` probed and
the resolved :class:`Timing`.

Timing follows keepalived.conf(5): each timing keyword may be set on the
virtual server, the real server or the checker; the most specific setting wins,
and what nobody set falls back to a per-kind default (see :func:`resolve_timing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from chimeha.config.model import Checker, RealServer, TrackFile, VirtualServer

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
    ``track_files`` maps track_file names to config ``TrackFile`` objects
    (``Config.track_files``), for FILE_CHECK.
    """

    address: str
    port: int | None = None
    virtualhost: str | None = None
    weight: int = 1
    track_files: Mapping[str, TrackFile] = field(default_factory=dict)


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


def checker_kind(checker: Checker) -> str:
    """The checker's keyword (``TCP_CHECK``, ``HTTP_GET``, ``SSL_GET``, ...).

    An ``HttpCheck`` built with ``ssl=True`` but the default kind is SSL_GET
    (the parser sets both; code building one by hand may set only ``ssl``).
    """
    kind = getattr(checker, "kind", None) or type(checker).__name__  # never raise: probe() reports it
    if kind == "HTTP_GET" and getattr(checker, "ssl", False):
        return "SSL_GET"
    return str(kind)


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def resolve_timing(checker: Checker, real_server: RealServer | None = None,
                   virtual_server: VirtualServer | None = None) -> Timing:
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
        own = getattr(checker, name, None)
        if name == "retry" and own is None:
            own = getattr(checker, "nb_get_retry", None)  # HttpCheck's older spelling
        return _first(own, getattr(real_server, name, None), getattr(virtual_server, name, None))

    delay_loop = float(_first(pick("delay_loop"), 60.0))
    retry_default = {"DNS_CHECK": 3, "MISC_CHECK": 0, "BFD_CHECK": 0}.get(kind, 1)
    dbr_default = {"HTTP_GET": 3.0, "SSL_GET": 3.0, "DNS_CHECK": delay_loop}.get(kind, 1.0)
    return Timing(
        delay_loop=delay_loop,
        connect_timeout=float(_first(pick("connect_timeout"), 5.0)),
        retry=int(_first(pick("retry"), retry_default)),
        delay_before_retry=float(_first(pick("delay_before_retry"), dbr_default)),
        # BFD_CHECK follows session events (chimeha.check.bfd): no scatter needed
        warmup=float(_first(pick("warmup"), 0.0 if kind == "BFD_CHECK" else delay_loop)),
        alpha=bool(_first(pick("alpha"), False)),
    )


def target_for(real_server: RealServer, virtual_server: VirtualServer | None = None,
               track_files: Mapping[str, TrackFile] | None = None) -> Target:
    """A :class:`Target` from config ``RealServer`` / ``VirtualServer`` objects."""
    return Target(
        address=str(real_server.address),
        port=getattr(real_server, "port", None),
        virtualhost=_first(getattr(real_server, "virtualhost", None), getattr(virtual_server, "virtualhost", None)),
        weight=int(_first(getattr(real_server, "weight", None), 1)),
        track_files=track_files or {},
    )
