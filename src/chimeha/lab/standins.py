"""Stand-ins for ChimeStack's services, for the lab.

``python -m chimeha.lab.standins server --name server1`` becomes a process
named exactly ``chime-server`` (the kernel's comm, which is what
``/usr/bin/pgrep chime-server`` matches) answering HTTP on TCP 8801 and 8802;
``portal`` becomes ``chime-portal`` serving a small Web UI on 8033. Every
answer names the node, so a client going through a VIP can tell which server
it reached. Stopping the process is the lab's ``systemctl stop chime-server``.

The HTTP handling is deliberately minimal (one request per connection, any
path): the lab's probes only need a fast, unambiguous answer.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import signal
import sys

SERVICES = {
    # kind -> (process name, default ports)
    "server": ("chime-server", (8801, 8802)),
    "portal": ("chime-portal", (8033,)),
}

_PR_SET_NAME = 15


def set_process_name(name: str) -> None:
    """Set the kernel's name for this process (comm, at most 15 bytes), as pgrep sees it."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl(PR_SET_NAME, {name!r}) failed")


def body_for(kind: str, node: str, port: int) -> tuple[str, str]:
    """(content type, body) that the stand-in answers with."""
    if kind == "portal":
        html = (
            "<!doctype html><html><head><title>chime-portal</title></head><body>"
            f"<h1>chime-portal on {node}</h1><p>Web UI stand-in, port {port}.</p></body></html>\n"
        )
        return "text/html; charset=utf-8", html
    return "application/json", f'{{"service": "chime-server", "node": "{node}", "port": {port}}}\n'


async def _handle(kind: str, node: str, port: int, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    try:
        # Any request line (or none at all within a second) gets the answer:
        # a bare TCP client such as `nc` still sees which node answered.
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=1.0)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        ctype, body = body_for(kind, node, port)
        data = body.encode()
        writer.write(
            b"HTTP/1.0 200 OK\r\nContent-Type: " + ctype.encode()
            + b"\r\nContent-Length: " + str(len(data)).encode()
            + b"\r\nX-Chime-Node: " + node.encode() + b"\r\nConnection: close\r\n\r\n" + data
        )
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(kind: str, node: str, ports: tuple[int, ...], bind: str) -> None:
    """Serve until SIGTERM/SIGINT."""
    servers = []
    for port in ports:
        servers.append(await asyncio.start_server(
            lambda r, w, p=port: _handle(kind, node, p, r, w), bind, port, reuse_address=True))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for srv in servers:
        srv.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chimeha.lab.standins",
                                     description="chime-server / chime-portal stand-ins for the lab")
    parser.add_argument("kind", choices=sorted(SERVICES))
    parser.add_argument("--name", required=True, help="node name to answer with, e.g. server1")
    parser.add_argument("--port", type=int, action="append", help="port to serve (repeatable; default per kind)")
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on (default: all)")
    args = parser.parse_args(argv)
    procname, default_ports = SERVICES[args.kind]
    ports = tuple(args.port or default_ports)
    for port in ports:
        if not 0 < port < 65536:
            parser.error(f"--port {port}: must be 1..65535")
    set_process_name(procname)
    try:
        asyncio.run(serve(args.kind, args.name, ports, args.bind))
    except OSError as exc:
        print(f"{procname}: cannot listen on {args.bind} {ports}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
