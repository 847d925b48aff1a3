"""proxy_loop: an asyncio loop whose selector is the relay's epoll (no root needed).

The relay's sockets are registered on the loop's epoll behind asyncio's back;
their events must go to the relay without returning to the loop, while the
loop's own work (callbacks from other threads, timers, its own sockets) still
runs on time.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading

from chimeha.lvs.backends.proxy_loop import new_loop, selector_of


def test_relay_events_bypass_the_loop_and_loop_work_still_runs():
    loop = new_loop()
    sel = selector_of(loop)
    relay_a, relay_b = socket.socketpair()
    relay_a.setblocking(False)
    seen: list[bytes] = []
    returns = []  # one entry per return of select() to asyncio

    def dispatch(events):
        for fd, ev in events:
            assert fd == relay_a.fileno() and ev & select.EPOLLIN
            seen.append(relay_a.recv(100))

    sel.dispatch = dispatch
    sel.epoll.register(relay_a.fileno(), select.EPOLLIN)
    real_select = sel.select

    def counting_select(timeout=None):
        ready = real_select(timeout)
        returns.append(len(ready))
        return ready

    sel.select = counting_select

    async def main():
        loop = asyncio.get_running_loop()
        for i in range(50):  # relay traffic, written from another thread
            await asyncio.to_thread(relay_b.send, b"%d;" % i)
        while sum(map(len, seen)) < len(b"".join(b"%d;" % i for i in range(50))):
            await asyncio.sleep(0.01)
        # a timer while relay traffic keeps arriving: select must return by its deadline
        stop = threading.Event()

        def pump():
            while not stop.is_set():
                relay_b.send(b"x")
                stop.wait(0.001)

        t = threading.Thread(target=pump)
        t.start()
        await asyncio.sleep(0.01)
        before, got = len(returns), len(seen)
        t0 = loop.time()
        await asyncio.sleep(0.1)
        woke = loop.time() - t0
        during = len(returns) - before, len(seen) - got
        # a callback from another thread wakes the loop through its self-pipe
        fut = loop.create_future()
        threading.Thread(target=lambda: loop.call_soon_threadsafe(fut.set_result, "ok")).start()
        assert await asyncio.wait_for(fut, 5) == "ok"
        stop.set()
        t.join()
        return woke, during

    try:
        woke, (returned, relayed) = loop.run_until_complete(main())
    finally:
        sel.epoll.unregister(relay_a.fileno())
        loop.close()
        relay_a.close()
        relay_b.close()
    assert b"".join(seen).startswith(b"".join(b"%d;" % i for i in range(50)))
    assert 0.1 <= woke < 1.0  # the timer fired although the relay was never idle
    # while only the relay had work, select stayed in its own loop: dozens of relayed
    # reads, a handful of returns to asyncio (the sleep's deadline)
    assert relayed >= 20 and returned <= 3, (relayed, returned)


def test_loop_sockets_still_work_beside_the_relay():
    loop = new_loop()
    try:
        async def main():
            srv = await asyncio.start_server(lambda r, w: w.write(b"hello") or w.close(), "127.0.0.1", 0)
            port = srv.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            data = await reader.read()
            writer.close()
            srv.close()
            await srv.wait_closed()
            return data

        assert loop.run_until_complete(main()) == b"hello"
    finally:
        loop.close()
