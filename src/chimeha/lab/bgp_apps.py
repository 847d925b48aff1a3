"""Tiny programs run inside the BGP lab's namespaces (python -c text).

* ``SERVER``: a real server on port 80; for every line a client sends it
  answers ``PEER NAME`` (the peer is the director that masqueraded the flow),
  so the client learns which director carried each connection and which real
  server the director chose.
* ``CLIENT``: opens ``count`` connections to VIP:80, each from a new source
  port, taking the client's source addresses in turn, and prints one JSON
  object: answers per director, per source address the real server each
  director chose, and errors.
* ``HOLDER``: opens ``count`` long-lived connections, prints the director and
  real server of each, then sends a line on every connection every
  ``interval`` seconds (the router re-hashes them while a director dies) until
  a line other than ``mark`` arrives on stdin (``mark`` prints the failures
  so far), and prints, per connection, whether it ever failed
  (timeout, reset, end of file) and which directors answered it.
* ``RATE``: for ``seconds`` seconds keeps ``parallel`` connections in flight
  (connect, one line, answer, close) and prints connections completed per
  second and errors: the new-connection rate of the bench.
"""

SERVER = r"""
import asyncio, sys
name = sys.argv[1]
async def handle(r, w):
    peer = w.get_extra_info("peername")[0]
    try:
        while True:
            line = await r.readline()
            if not line:
                break
            w.write(f"{peer} {name}\n".encode()); await w.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        w.close()
async def main():
    srv = await asyncio.start_server(handle, "0.0.0.0", 80, backlog=4096)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"""

CLIENT = r"""
import json, socket, sys, collections
vip, count = sys.argv[1], int(sys.argv[2])
sources = sys.argv[3].split(",") if len(sys.argv) > 3 and sys.argv[3] else [""]
seen, errors, conns = collections.Counter(), [], []
chosen = collections.defaultdict(lambda: collections.defaultdict(set))  # source -> director -> reals
for i in range(count):
    src = sources[i % len(sources)]
    try:
        s = socket.create_connection((vip, 80), timeout=3, source_address=(src, 0))
        sport = s.getsockname()[1]
        s.sendall(b"hello\n")
        data = s.makefile().readline().split()
        s.close()
        if len(data) != 2:
            raise OSError("empty answer")
        seen[data[0]] += 1
        chosen[src][data[0]].add(data[1])
        conns.append([src, sport, data[0], data[1]])
    except OSError as e:
        errors.append(str(e))
print(json.dumps({"directors": dict(seen), "errors": len(errors), "first_error": errors[0] if errors else None,
                  "chosen": {s: {d: sorted(r) for d, r in by.items()} for s, by in chosen.items()},
                  "conns": conns}))
"""

HOLDER = r"""
import asyncio, json, sys, time
vip, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sources = sys.argv[4].split(",") if len(sys.argv) > 4 and sys.argv[4] else [""]
async def one(i, conns):
    src = sources[i % len(sources)]
    r, w = await asyncio.wait_for(asyncio.open_connection(vip, 80, local_addr=(src, 0) if src else None), 3)
    w.write(b"hello\n"); await w.drain()
    d, real = (await asyncio.wait_for(r.readline(), 3)).decode().split()
    sport = w.get_extra_info("sockname")[1]
    conns.append({"r": r, "w": w, "director": d, "real": real, "source": src, "sport": sport, "failed": None,
                  "seen": {d}})
async def ping(c, stop):
    while not stop.is_set():
        try:
            c["w"].write(b"again\n"); await c["w"].drain()
            line = await asyncio.wait_for(c["r"].readline(), 2)
            if not line:
                raise ConnectionError("closed by the peer")
            c["seen"].add(line.decode().split()[0])
        except (OSError, asyncio.TimeoutError, ValueError, IndexError) as e:
            c["failed"] = f"{time.monotonic() - t0:.2f}s {type(e).__name__} {e}"
            return
        await asyncio.sleep(interval)
async def main():
    global t0
    conns, failed_open = [], 0
    for i in range(count):
        try:
            await one(i, conns)
        except (OSError, asyncio.TimeoutError, ValueError):
            failed_open += 1
    print(json.dumps({"opened": len(conns), "failed_open": failed_open}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    t0 = time.monotonic()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(ping(c, stop)) for c in conns]
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "mark":
        t = time.monotonic() - t0
        print(json.dumps({"mark": round(t, 3), "failed": sum(1 for c in conns if c["failed"])}), flush=True)
    stop.set()
    await asyncio.gather(*tasks)
    print(json.dumps({"conns": [{k: (sorted(v) if k == "seen" else v) for k, v in c.items() if k not in ("r", "w")}
                                for c in conns]}), flush=True)
asyncio.run(main())
"""

RATE = r"""
import asyncio, json, sys, time
vip, seconds, parallel = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
sources = sys.argv[4].split(",") if len(sys.argv) > 4 and sys.argv[4] else [""]
done, errors, per = 0, 0, {}
async def worker(i, until):
    global done, errors
    src = sources[i % len(sources)]
    while time.monotonic() < until:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(vip, 80, local_addr=(src, 0) if src else None), 10)
            w.write(b"hello\n"); await w.drain()
            d = (await asyncio.wait_for(r.readline(), 10)).split()[0].decode()
            w.close()
            done += 1
            per[d] = per.get(d, 0) + 1
        except (OSError, asyncio.TimeoutError, IndexError):
            errors += 1
async def main():
    t0 = time.monotonic()
    await asyncio.gather(*(worker(i, t0 + seconds) for i in range(parallel)))
    took = time.monotonic() - t0
    print(json.dumps({"connections": done, "errors": errors, "seconds": round(took, 3),
                      "rate": round(done / took, 1), "directors": per}))
asyncio.run(main())
"""
