"""SMTP_CHECK: a 2xx greeting, then a 2xx answer to ``HELO <helo_name>`` (RFC 5321 4.2, 4.1.1.1)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

from chimeha.check._net import describe_oserror, endpoint, fmt, tcp_connect
from chimeha.check.spec import CheckResult, Target
from chimeha.config.model import SmtpCheck

MAX_REPLY_LINES = 100


class SmtpProtocolError(Exception):
    """The server did not speak SMTP as expected."""


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    """One (possibly multi-line, RFC 5321 4.2.1) reply: ``(code, text of last line)``."""
    for _ in range(MAX_REPLY_LINES):
        line = await reader.readline()
        if not line:
            raise SmtpProtocolError("connection closed by server")
        text = line.decode("latin-1").rstrip("\r\n")
        if len(text) < 3 or not text[:3].isdigit():
            raise SmtpProtocolError(f"not an SMTP reply: {text[:60]!r}")
        if len(text) == 3 or text[3] == " ":
            return int(text[:3]), text
        if text[3] != "-":
            raise SmtpProtocolError(f"not an SMTP reply: {text[:60]!r}")
    raise SmtpProtocolError("SMTP reply too long")


async def probe_smtp(checker: SmtpCheck, target: Target, timeout: float) -> CheckResult:
    """Greeting and HELO, each 2xx, within ``timeout``; then QUIT.

    Legacy ``host { }`` blocks (``checker.hosts``, parsed as nested
    ``SmtpCheck``) are each checked in turn and all must pass; what a host
    block leaves unset (``helo_name``, ``bindto``, ...) comes from its SMTP_CHECK.
    """
    if not checker.hosts:
        return await _probe_one(checker, target, timeout)
    notes = []
    for sub in checker.hosts:
        res = await _probe_one(host_settings(sub, checker), target, timeout)
        if not res.ok:
            return res
        notes.append(res.detail)
    return CheckResult(True, "; ".join(notes))


def host_settings(host: SmtpCheck, parent: SmtpCheck) -> SmtpCheck:
    """A ``host { }`` block with every field it leaves unset (None) taken from ``parent``."""
    inherited = {f.name: getattr(parent, f.name) for f in dataclasses.fields(host)
                 if getattr(host, f.name) is None}
    return dataclasses.replace(host, **inherited)


async def _probe_one(checker: SmtpCheck, target: Target, timeout: float) -> CheckResult:
    host, port = endpoint(checker, target, need_port=False)
    port = port or 25
    where = fmt(host, port)
    helo = checker.helo_name or socket.gethostname()
    try:
        async with asyncio.timeout(timeout):
            sock = await tcp_connect(checker, host, port)
            reader, writer = await asyncio.open_connection(sock=sock)
            try:
                code, text = await read_reply(reader)
                if code // 100 != 2:
                    return CheckResult(False, f"SMTP {where} greeting {text!r}")
                writer.write(f"HELO {helo}\r\n".encode())
                code, text = await read_reply(reader)
                if code // 100 != 2:
                    return CheckResult(False, f"SMTP {where} HELO answered {text!r}")
                writer.write(b"QUIT\r\n")
                await writer.drain()
            finally:
                writer.close()
    except TimeoutError:
        return CheckResult(False, f"SMTP {where} timed out after {timeout:g} s")
    except SmtpProtocolError as exc:
        return CheckResult(False, f"SMTP {where}: {exc}")
    except OSError as exc:
        return CheckResult(False, f"SMTP {where}: {describe_oserror(exc)}")
    return CheckResult(True, f"SMTP {where} greeted and accepted HELO {helo}")
