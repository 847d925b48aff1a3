"""Socket helpers shared by the network probes (non-blocking, asyncio)."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket

from chimeha.check.spec import Target
from chimeha.config.model import Checker


def endpoint(checker: Checker, target: Target, *, need_port: bool = True) -> tuple[str, int]:
    """The address and port to probe: ``connect_ip``/``connect_port`` over the real server's."""
    host = checker.connect_ip or target.address
    port = checker.connect_port or target.port
    if need_port and not port:
        raise ValueError(f"no port to connect to for {host} (set connect_port or the real server port)")
    return str(host), int(port or 0)


def family_of(host: str) -> int:
    """AF_INET or AF_INET6 for a literal address (checkers take addresses, never names)."""
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host.split("%")[0]).version == 6 else socket.AF_INET
    except ValueError as exc:
        raise ValueError(f"{host!r} is not an IP address") from exc


def fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)


def new_socket(checker: Checker, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A non-blocking socket: ``fwmark`` (SO_MARK), ``bind_if`` (SO_BINDTODEVICE) and
    ``bindto``/``bind_port`` applied when configured."""
    # SOCK_NONBLOCK: non-blocking from socket() on, without a second system call
    sock = socket.socket(family, kind | _NONBLOCK, proto)
    try:
        if sock.gettimeout() != 0:
            sock.setblocking(False)
        if checker.fwmark:
            # Lets policy routing / nft rules treat checker traffic apart (needs CAP_NET_ADMIN).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, checker.fwmark)
        if checker.bind_if:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, checker.bind_if.encode())
        if checker.bindto or checker.bind_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            any_addr = "::" if family == socket.AF_INET6 else "0.0.0.0"
            sock.bind((checker.bindto or any_addr, checker.bind_port or 0))
        return sock
    except BaseException:
        sock.close()
        raise


def describe_oserror(exc: OSError) -> str:
    """'refused', 'host unreachable', ... for an errno, else the OS message."""
    names = {
        errno.ECONNREFUSED: "refused",
        errno.EHOSTUNREACH: "host unreachable",
        errno.ENETUNREACH: "network unreachable",
        errno.ECONNRESET: "reset by peer",
        errno.ETIMEDOUT: "timed out",
        errno.EADDRNOTAVAIL: "bind address not available",
        errno.ENODEV: "failed: no such interface (bind_if)",
    }
    if exc.errno in names:
        return names[exc.errno]
    return exc.strerror or os.strerror(exc.errno or 0) or str(exc)


async def tcp_connect(checker: Checker, host: str, port: int) -> socket.socket:
    """Connect a non-blocking TCP socket (the caller bounds the time)."""
    sock = new_socket(checker, family_of(host), socket.SOCK_STREAM)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        return sock
    except BaseException:
        sock.close()
        raise
