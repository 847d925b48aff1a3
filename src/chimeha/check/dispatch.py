"""``probe(checker, target)``: one attempt of any checker kind, never raising."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from chimeha.check.bfd import probe_bfd
from chimeha.check.catalog import IMPLEMENTED
from chimeha.check.dns import probe_dns
from chimeha.check.file import probe_file
from chimeha.check.http import probe_http
from chimeha.check.misc import probe_misc
from chimeha.check.ping import probe_ping
from chimeha.check.smtp import probe_smtp
from chimeha.check.spec import CheckResult, Target, Timing, checker_kind, resolve_timing
from chimeha.check.tcp import probe_tcp
from chimeha.check.udp import probe_udp
from chimeha.config.model import Checker

log = logging.getLogger(__name__)

_PROBES: dict[str, Callable[[Any, Target, float], Awaitable[CheckResult]]] = {
    "TCP_CHECK": probe_tcp,
    "HTTP_GET": probe_http,
    "SSL_GET": probe_http,
    "MISC_CHECK": probe_misc,
    "SMTP_CHECK": probe_smtp,
    "DNS_CHECK": probe_dns,
    "UDP_CHECK": probe_udp,
    "PING_CHECK": probe_ping,
    "FILE_CHECK": probe_file,
    "BFD_CHECK": probe_bfd,
}

SUPPORTED_KINDS = IMPLEMENTED
"""Checker keywords :func:`probe` implements (declared in :mod:`chimeha.check.catalog`)."""
if set(_PROBES) != set(IMPLEMENTED):  # a declaration without a probe (or the reverse) is a bug here
    raise AssertionError(f"check.catalog and check.dispatch disagree: {sorted(set(_PROBES) ^ set(IMPLEMENTED))}")


def attempt_timeout(checker: Checker, timing: Timing) -> float:
    """How long one attempt may take: ``misc_timeout`` (default ``delay_loop``) for MISC_CHECK, else ``connect_timeout``."""
    if checker_kind(checker) == "MISC_CHECK":
        mt = checker.misc_timeout
        return float(mt) if mt else timing.delay_loop
    return timing.connect_timeout


async def probe(checker_cfg: Checker, target: Target, timing: Timing | None = None) -> CheckResult:
    """Run one attempt of ``checker_cfg`` against ``target``.

    ``checker_cfg`` is a config-model checker (``chimeha.config.model.TcpCheck``,
    ``HttpCheck``, ...); ``timing`` defaults to :func:`resolve_timing` of the
    checker alone. Never raises for a failing server or a bad setting: those are a
    ``CheckResult(ok=False, detail=...)`` saying what happened.
    """
    kind = checker_kind(checker_cfg)
    fn = _PROBES.get(kind)
    if fn is None:
        return CheckResult(False, f"{kind} is not supported by chime-ha")
    timing = timing or resolve_timing(checker_cfg)
    try:
        return await fn(checker_cfg, target, attempt_timeout(checker_cfg, timing))
    except ValueError as exc:
        return CheckResult(False, f"{kind}: {exc}")
    except OSError as exc:
        return CheckResult(False, f"{kind}: {exc}")
    except Exception as exc:  # a checker bug must not stop the daemon's other checks
        log.exception("%s probe of %s crashed", kind, target.address)
        return CheckResult(False, f"{kind}: internal error {exc!r}")
