"""HTTP_GET and SSL_GET: fetch each URL and compare status code and body digest.

Measured against keepalived 2.2.7's ``genhash`` (see docs/checkers.md): the
request is ``GET <path> HTTP/1.0`` (``http_protocol 1.1`` sends HTTP/1.1 and
``1.0C`` HTTP/1.0, both with ``Connection: close``), ``Host:`` is the
virtualhost, else ``address:port``; the digest is the MD5 of the raw bytes after
the header block, as sent (a chunked body is hashed with its chunk framing, as
genhash does), so a digest printed by ``genhash`` matches ours.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
from typing import Iterable

from chimeha.check._net import describe_oserror, endpoint, fmt, tcp_connect
from chimeha.check.spec import CheckResult, Target
from chimeha.config.model import HttpCheck, HttpUrl

MAX_BODY = 16 * 1024 * 1024  # more than any health page; bounds memory per probe
USER_AGENT = "KeepAliveClient"  # keepalived's; some servers' health rules key on it


def _ssl_context() -> ssl.SSLContext:
    # keepalived's SSL_GET does not verify the real server's certificate
    # (self-signed backends are the norm); the check is about liveness.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_SSL_CTX: ssl.SSLContext | None = None


def build_request(path: str, host_header: str, protocol: str | None) -> bytes:
    """The request bytes for one URL (``protocol``: None/"1.0", "1.0C" or "1.1")."""
    proto = (protocol or "1.0").upper()
    version = "HTTP/1.1" if proto == "1.1" else "HTTP/1.0"
    lines = [f"GET {path or '/'} {version}", f"User-Agent: {USER_AGENT}"]
    if proto in ("1.1", "1.0C"):
        lines.append("Connection: close")
    lines.append(f"Host: {host_header}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_response(raw: bytes) -> tuple[int, bytes]:
    """``(status, body)`` from a whole response; ValueError when it is not HTTP."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    if not sep:
        raise ValueError("no end of HTTP header")
    status_line = head.split(b"\n", 1)[0].strip()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"bad status line {status_line[:80]!r}")
    return int(parts[1]), body


def status_ranges(words: Iterable[str]) -> list[tuple[int, int]]:
    """A url's ``status_code`` words (``"200"``, ``"300-302"``, as ``HttpUrl``
    keeps them) as inclusive ranges. None given means 200-299."""
    out: list[tuple[int, int]] = []
    for word in words:
        lo, _, hi = word.partition("-")
        try:
            out.append((int(lo), int(hi or lo)))
        except ValueError as exc:
            raise ValueError(f"bad status_code {word!r}") from exc
    return out or [(200, 299)]


def status_ok(status: int, words: Iterable[str]) -> bool:
    """Whether ``status`` is allowed by ``status_code`` ``words`` (see :func:`status_ranges`)."""
    return any(lo <= status <= hi for lo, hi in status_ranges(words))


def regex_ok(body: bytes, pattern: str | None, no_match: bool) -> bool:
    """The url's ``regex`` test: found in the body (or, with ``regex_no_match``, not found).

    Python's ``re`` stands in for PCRE2: the common syntax is the same.
    """
    if not pattern:
        return True
    found = re.search(pattern.encode("utf-8", "surrogateescape"), body) is not None
    return found != bool(no_match)


def body_digest(body: bytes) -> str:
    """MD5 hex of a body, as ``genhash`` prints it."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


async def _fetch(checker: HttpCheck, host: str, port: int, request: bytes, sni: str | None) -> bytes:
    global _SSL_CTX
    sock = await tcp_connect(checker, host, port)
    use_ssl = checker.ssl or checker.kind == "SSL_GET"
    if use_ssl and _SSL_CTX is None:
        _SSL_CTX = _ssl_context()
    try:
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=_SSL_CTX if use_ssl else None,
            # "" sends no SNI (asyncio needs a value when given a socket).
            server_hostname=(sni or "") if use_ssl else None)
    except BaseException:
        sock.close()  # a timed-out TLS handshake must not leak the descriptor
        raise
    try:
        writer.write(request)
        await writer.drain()
        chunks, size = [], 0
        while size <= MAX_BODY:
            data = await reader.read(65536)
            if not data:
                break
            chunks.append(data)
            size += len(data)
        return b"".join(chunks)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


class HttpProbeError(Exception):
    """One URL could not be fetched; the message is the operator sentence."""


def prepare_url(checker: HttpCheck, target: Target, url: HttpUrl) -> tuple[str, str, bytes, str | None]:
    """``(path, where, request bytes, sni)`` of one URL: what every fetch of it sends."""
    host, port = endpoint(checker, target)
    where = fmt(host, port)
    vhost = url.virtualhost or checker.virtualhost or target.virtualhost
    sni = vhost if checker.enable_sni else None
    return url.path or "/", where, build_request(url.path or "/", vhost or where, checker.http_protocol), sni


def timeout_error(path: str, where: str, timeout: float) -> str:
    return f"GET {path} from {where} timed out after {timeout:g} s"


def connection_error(path: str, where: str, exc: OSError) -> str:
    return f"GET {path} from {where}: connection {describe_oserror(exc)}"


def parse_or_error(path: str, where: str, raw: bytes) -> tuple[int, bytes]:
    """:func:`parse_response`, its ValueError turned into the operator's HttpProbeError."""
    try:
        return parse_response(raw)
    except ValueError as exc:
        raise HttpProbeError(f"GET {path} from {where}: {exc}") from None


async def get_url(checker: HttpCheck, target: Target, url: HttpUrl, timeout: float) -> tuple[int, bytes]:
    """Fetch one ``url`` as the checker would: ``(status, body)``, or HttpProbeError."""
    host, port = endpoint(checker, target)
    path, where, request, sni = prepare_url(checker, target, url)
    try:
        async with asyncio.timeout(timeout):
            raw = await _fetch(checker, host, port, request, sni)
    except TimeoutError:
        raise HttpProbeError(timeout_error(path, where, timeout)) from None
    except ssl.SSLError as exc:
        raise HttpProbeError(f"GET {path} from {where}: TLS error: {exc.reason or exc}") from None
    except OSError as exc:
        raise HttpProbeError(connection_error(path, where, exc)) from None
    return parse_or_error(path, where, raw)


def judge(url: HttpUrl, path: str, where: str, status: int, body: bytes) -> CheckResult | None:
    """The failing CheckResult when one fetched URL does not match status, regex and digest; None when it does."""
    if not status_ok(status, url.status_code):
        return CheckResult(False, f"GET {path} from {where}: status {status} not expected")
    try:
        matched = regex_ok(body, url.regex, url.regex_no_match)
    except re.error as exc:
        return CheckResult(False, f"GET {path}: bad regex: {exc}")
    if not matched:
        how = "matches" if url.regex_no_match else "does not match"
        return CheckResult(False, f"GET {path} from {where}: body {how} regex")
    if url.digest:
        want, got = url.digest.lower(), body_digest(body)
        if got != want:
            return CheckResult(False, f"GET {path} from {where}: digest {got} != {want}")
    return None


async def probe_http(checker: HttpCheck, target: Target, timeout: float) -> CheckResult:
    """Fetch every URL (each within ``timeout``); up when all match status, regex and digest.

    A checker without ``url`` blocks (the parser reports that as an error; a
    hand-built one may lack them) fetches ``/`` expecting 2xx.
    """
    host, port = endpoint(checker, target)
    where = fmt(host, port)
    notes = []
    for url in checker.urls or (HttpUrl(),):
        path = url.path or "/"
        try:
            status, body = await get_url(checker, target, url, timeout)
        except HttpProbeError as exc:
            return CheckResult(False, str(exc))
        failed = judge(url, path, where, status, body)
        if failed is not None:
            return failed
        notes.append(f"{path} {status}")
    return CheckResult(True, f"GET from {where}: " + ", ".join(notes))
