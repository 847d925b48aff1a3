"""Tiny programs run inside the BGP lab's namespaces (python -c text).

* ``SERVER``: a real server on port 80; for every line a client sends it
  answers ``PEER NAME`` (the peer is the director that masqueraded the flow),
  so the client learns which director carried each connection.
* ``CLIENT``: opens ``count`` connections to VIP:80, each from a new source
  port, and prints one JSON object: answers per director and errors.
* ``HOLDER``: opens ``count`` long-lived connections, reports the director of
  each, then on a line on stdin sends one more line on every connection and
  reports which ones still answer (the failed director's share that survived).
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
    srv = await asyncio.start_server(handle, "0.0.0.0", 80, backlog=1024)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"""

CLIENT = r"""
import json, socket, sys, collections
vip, count = sys.argv[1], int(sys.argv[2])
seen, errors = collections.Counter(), []
for i in range(count):
    try:
        s = socket.create_connection((vip, 80), timeout=3)
        s.sendall(b"hello\n")
        data = s.makefile().readline().split()
        s.close()
        if not data:
            raise OSError("empty answer")
        seen[data[0]] += 1
    except OSError as e:
        errors.append(str(e))
print(json.dumps({"directors": dict(seen), "errors": len(errors), "first_error": errors[0] if errors else None}))
"""

HOLDER = r"""
import json, socket, sys, collections
vip, count = sys.argv[1], int(sys.argv[2])
conns = []
for i in range(count):
    try:
        s = socket.create_connection((vip, 80), timeout=3)
        s.sendall(b"hello\n")
        f = s.makefile()
        d = f.readline().split()[0]
        conns.append((s, f, d))
    except (OSError, IndexError):
        pass
print(json.dumps({"opened": collections.Counter(d for _, _, d in conns)}), flush=True)
sys.stdin.readline()
alive, dead = collections.Counter(), collections.Counter()
for s, f, d in conns:
    try:
        s.settimeout(3)
        s.sendall(b"again\n")
        if f.readline():
            alive[d] += 1
        else:
            dead[d] += 1
    except OSError:
        dead[d] += 1
print(json.dumps({"alive": alive, "dead": dead}), flush=True)
"""
