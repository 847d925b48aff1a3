"""Helpers for the LVS system tests: name servers and a counting client, run inside namespaces."""

from __future__ import annotations

import json
import sys
import time

# A real server: answers every TCP connection (and UDP datagram) with its name.
NAME_SERVER = r'''
import socket, sys, threading
name, host, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3].split(",")]
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(512)
    while True:
        c, _ = s.accept()
        try:
            c.sendall(name.encode() + b"\n")
        except OSError:
            pass
        c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((host, port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(name.encode() + b"\n", peer)
for p in ports:
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
    threading.Thread(target=udp, args=(p,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
'''

# A client: N sequential TCP connections, prints {"name": count, "error: ...": count}.
CLIENT = r'''
import collections, json, socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
src = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
udp = len(sys.argv) > 5 and sys.argv[5].startswith("udp")
out = collections.Counter()
for i in range(n):
    if udp:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        # a distinct source port per datagram: one new flow each (a reused port is the same flow)
        s.bind((src or "", int(sys.argv[5][3:]) + i))
        try:
            s.sendto(b"hi", (host, port))
            out[s.recv(100).decode().strip()] += 1
        except OSError as e:
            out["error: " + type(e).__name__] += 1
        s.close()
        continue
    try:
        s = socket.socket()
        s.settimeout(3)
        if src:
            s.bind((src, 0))
        s.connect((host, port))
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
        s.close()
        out[data.decode().strip() or "error: empty"] += 1
    except OSError as e:
        out["error: " + type(e).__name__] += 1
print(json.dumps(out))
'''


def start_name_server(host, name: str, ports: list[int], bind: str = "0.0.0.0"):
    proc = host.popen([sys.executable, "-c", NAME_SERVER, name, bind, ",".join(map(str, ports))],
                      stdout=__import__("subprocess").PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"name server {name} did not start"
    return proc


def count(host, vip: str, port: int, n: int, src: str | None = None, udp_base_port: int = 0) -> dict:
    """Names answered to ``n`` TCP connections (or UDP datagrams from ``udp_base_port`` + i)."""
    args = [sys.executable, "-c", CLIENT, vip, str(port), str(n), src or ""]
    if udp_base_port:
        args.append(f"udp{udp_base_port}")
    return json.loads(host.run(args, timeout=120).stdout)


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns a truthy value; return it (or the last value on timeout)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


# A load client: WORKERS concurrent loops of one HTTP GET per new connection
# (chimeha.lab.probe.fetch: the stand-ins answer with their node's name),
# cycling over the targets, until MAX requests or SECONDS have passed. One line
# per request: "<start> <end> <host:port> <1|0> <node or error word>" (monotonic
# clock, shared by every namespace). PAUSE between a worker's requests keeps
# the load steady without starving the daemons on a 2-core machine.
LOAD = r'''
import asyncio, sys, time
from chimeha.lab.probe import fetch
workers, total, seconds, pause, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), \
    float(sys.argv[4]), float(sys.argv[5])
targets = [(t.rpartition(":")[0], int(t.rpartition(":")[2])) for t in sys.argv[6:]]
left = [total]
end = time.monotonic() + seconds
async def worker(i):
    n = i
    while left[0] > 0 and time.monotonic() < end:
        left[0] -= 1
        host, port = targets[n % len(targets)]
        n += 1
        t0 = time.monotonic()
        ok, who = await fetch(host, port, timeout)
        print(f"{t0:.6f} {time.monotonic():.6f} {host}:{port} {int(ok)} {who}", flush=True)
        await asyncio.sleep(pause)
async def main():
    await asyncio.gather(*(worker(i) for i in range(workers)))
asyncio.run(main())
'''


def start_load(node, targets: list[str], workers: int = 4, total: int = 20000, seconds: float = 30.0,
               pause: float = 0.01, timeout: float = 0.5):
    """Start the load client in ``node``; returns (Popen, results list filled by a reader thread).

    Each result is ``(start, end, target, ok, who)``.
    """
    import subprocess
    import threading

    proc = node.popen([sys.executable, "-c", LOAD, str(workers), str(total), str(seconds), str(pause),
                       str(timeout), *targets], stdout=subprocess.PIPE, text=True, bufsize=1)
    results: list[tuple[float, float, str, bool, str]] = []

    def read() -> None:
        for line in proc.stdout:
            p = line.split()
            if len(p) == 5:
                results.append((float(p[0]), float(p[1]), p[2], p[3] == "1", p[4]))

    threading.Thread(target=read, name="load-reader", daemon=True).start()
    return proc, results
