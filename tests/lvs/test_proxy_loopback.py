"""The userspace proxy on loopback (no root needed): relaying, half-close, counters, schedulers."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from chimeha.lvs.backends.proxy import ProxyBackend
from chimeha.lvs.reconcile import diff
from chimeha.lvs.types import DesiredState, Destination, Service, ServiceKey


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_servers(names, hold: asyncio.Event | None = None):
    """Real servers: send their name; close at once (or after ``hold`` is set), or echo when asked."""
    servers, ports = [], []
    for name in names:
        async def handle(reader, writer, name=name):
            first = await reader.read(100)
            if first.startswith(b"echo"):
                writer.write(first)
                while data := await reader.read(65536):
                    writer.write(data)
                await writer.drain()
            else:
                writer.write(name.encode())
                await writer.drain()
                if hold is not None:
                    await hold.wait()
            writer.close()
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        ports.append(srv.sockets[0].getsockname()[1])
    return servers, ports


async def ask(port: int, payload: bytes = b"hi") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    writer.write_eof()  # half-close: the answer must still arrive
    data = await reader.read()
    writer.close()
    return data


async def _scenario(own_loop=False):
    servers, ports = await start_servers(["a", "b"])
    vport = free_port()
    key = ServiceKey("TCP", "127.0.0.1", vport)
    svc = Service(key, "wrr", destinations=(Destination("127.0.0.1", ports[0], 2),
                                            Destination("127.0.0.1", ports[1], 1)))
    backend = ProxyBackend(own_loop=own_loop)
    await backend.apply(diff(DesiredState({key: svc}), await backend.read_actual()))
    try:
        got = [await ask(vport) for _ in range(6)]
        assert got == [b"a", b"a", b"b"] * 2
        big = b"echo" + bytes(range(256)) * 4096  # ~1 MB through back-pressure
        assert await ask(vport, big) in (big, b"a")  # wrr sends this one to "a" (no echo there)
        for _ in range(50):  # every connection closed: counters back to zero
            counts = [r["active"] for r in backend.stats()[str(key)]["real_servers"].values()]
            if counts == [0, 0]:
                break
            await asyncio.sleep(0.02)
        assert counts == [0, 0]
        # removing the service closes the listener
        await backend.apply(diff(DesiredState(), await backend.read_actual()))
        with pytest.raises(OSError):
            await ask(vport)
    finally:
        await backend.close()
        for s in servers:
            s.close()


def test_proxy_relays_and_counts_on_asyncio():
    asyncio.run(_scenario())


def test_proxy_relays_and_counts_on_uvloop():
    # uvloop never closes a transport after two EOFs by itself: counters leaked before the fix
    uvloop.run(_scenario())


def test_proxy_on_its_own_uvloop_thread():
    import threading

    asyncio.run(_scenario(own_loop=True))
    assert not [t for t in threading.enumerate() if t.name == "chimeha-proxy"]  # close() joined it


async def test_wlc_uses_live_connection_counts():
    hold = asyncio.Event()
    servers, ports = await start_servers(["a", "b"], hold)
    vport = free_port()
    key = ServiceKey("TCP", "127.0.0.1", vport)
    svc = Service(key, "wlc", destinations=(Destination("127.0.0.1", ports[0], 1),
                                            Destination("127.0.0.1", ports[1], 1)))
    backend = ProxyBackend(own_loop=False)
    await backend.apply(diff(DesiredState({key: svc}), await backend.read_actual()))
    try:
        conns = []
        for _ in range(6):  # held open: wlc must alternate on live counts
            r, w = await asyncio.open_connection("127.0.0.1", vport)
            w.write(b"x")
            conns.append((await r.read(1), w))
        assert [c for c, _ in conns] == [b"a", b"b"] * 3
        stats = backend.stats()[str(key)]["real_servers"]
        assert [v["active"] for v in stats.values()] == [3, 3]
        hold.set()
        for _, w in conns:
            w.close()
    finally:
        await backend.close()
        for s in servers:
            s.close()


async def test_proxy_counts_connections_and_bytes_per_real_server():
    servers, ports = await start_servers(["a"])
    vport = free_port()
    key = ServiceKey("TCP", "127.0.0.1", vport)
    backend = ProxyBackend()
    await backend.apply(diff(DesiredState({key: Service(key, "rr", destinations=(
        Destination("127.0.0.1", ports[0], 1),))}), await backend.read_actual()))
    try:
        for _ in range(3):
            assert await ask(vport, b"hello") == b"a"
        rs = backend.stats()[str(key)]["real_servers"][f"127.0.0.1:{ports[0]}"]
        assert (rs["connections"], rs["bytes_in"], rs["bytes_out"]) == (3, 15, 3)
    finally:
        await backend.close()
        for s in servers:
            s.close()
