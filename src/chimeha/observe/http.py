"""The metrics address: Prometheus ``/metrics``, the status page and its JSON.

A deliberately small HTTP/1.1 server on asyncio (GET and HEAD only, one request
per connection, ``Connection: close``): it serves four read-only resources, so
a framework would add more than it saves, and running prometheus_client's own
threaded server would put a second concurrency model into the daemon.

Routes: ``/`` (status page), ``/app.js``, ``/style.css``, ``/status.json``
(the normalized snapshot), ``/journal.json?limit=N`` (recent journal entries)
and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib import resources
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


def parse_listen(addr: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[V6ADDR]:PORT`` or ``:PORT`` (all addresses) -> (host, port).

    Raises ValueError with the offending text on anything else.
    """
    text = addr.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad listen address {addr!r}: expected [IPV6]:PORT")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"bad listen address {addr!r}: expected ADDR:PORT, e.g. 127.0.0.1:9650")
        if ":" in host:
            raise ValueError(f"bad listen address {addr!r}: write IPv6 addresses as [ADDR]:PORT")
    try:
        port_n = int(port)
    except ValueError:
        raise ValueError(f"bad listen address {addr!r}: port {port!r} is not a number") from None
    if not 0 <= port_n <= 65535:
        raise ValueError(f"bad listen address {addr!r}: port {port_n} is outside 0-65535")
    return host or "", port_n


def _static(name: str) -> bytes:
    return resources.files("chimeha.observe").joinpath("statuspage", name).read_bytes()


class HttpServer:
    """Serves the routes above; ``status()``, ``journal(limit)`` and ``metrics()`` supply the data."""

    def __init__(self, listen: str, status: Callable[[], dict[str, Any]],
                 journal: Callable[[int], list[dict[str, Any]]], metrics: Callable[[], bytes]):
        self.host, self.port = parse_listen(listen)
        self._status, self._journal, self._metrics = status, journal, metrics
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, host=self.host or None, port=self.port,
                                                  reuse_address=True, limit=16384)
        # With port 0 the kernel picks one; report what we really listen on.
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        host = self.host or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=10)
            # Headers carry nothing we need, but must be consumed before replying.
            while True:
                line = await asyncio.wait_for(reader.readline(), timeout=10)
                if line in (b"\r\n", b"\n", b""):
                    break
            status, ctype, body, head = self._route(request)
            hdr = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                   f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                   "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n")
            writer.write(hdr.encode() + (b"" if head else body))
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("status page request failed")
        finally:
            writer.close()

    def _route(self, request: bytes) -> tuple[int, str, bytes, bool]:
        parts = request.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, "text/plain", b"bad request\n", False
        method, target = parts[0], parts[1]
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET and HEAD\n", False
        url = urlsplit(target)
        try:
            if url.path in _STATIC:
                name, ctype = _STATIC[url.path]
                return 200, ctype, _static(name), head
            if url.path == "/status.json":
                return 200, "application/json", _json(self._status()), head
            if url.path == "/journal.json":
                q = parse_qs(url.query)
                try:
                    limit = max(0, min(10000, int(q.get("limit", ["200"])[0])))
                except ValueError:
                    return 400, "text/plain", b"limit must be an integer\n", head
                return 200, "application/json", _json({"entries": self._journal(limit)}), head
            if url.path == "/metrics":
                from .metrics import CONTENT_TYPE
                return 200, CONTENT_TYPE, self._metrics(), head
        except Exception:
            log.exception("serving %s failed", url.path)
            return 500, "text/plain", b"internal error, see the daemon log\n", head
        return 404, "text/plain", b"not found: try /, /status.json, /journal.json or /metrics\n", head


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()
