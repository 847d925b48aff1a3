"""TCP_CHECK: the real server is up when a TCP connection to it opens in time."""

from __future__ import annotations

import asyncio

from chimeha.check._net import describe_oserror, endpoint, fmt, tcp_connect
from chimeha.check.spec import CheckResult, Target
from chimeha.config.model import TcpCheck


async def probe_tcp(checker: TcpCheck, target: Target, timeout: float) -> CheckResult:
    """Open and close one TCP connection within ``timeout`` seconds."""
    host, port = endpoint(checker, target)
    where = fmt(host, port)
    try:
        async with asyncio.timeout(timeout):
            sock = await tcp_connect(checker, host, port)
    except TimeoutError:
        return CheckResult(False, f"connect to {where} timed out after {timeout:g} s")
    except OSError as exc:
        return CheckResult(False, f"connect to {where} {describe_oserror(exc)}")
    sock.close()
    return CheckResult(True, f"connected to {where}")
